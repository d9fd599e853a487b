"""Equations: the grammar (parsing, canonical text, operator tags) and integer evaluation,
and the longest result and equation text over a range of operands.

Pure Python; no TensorFlow. Which equations a data set holds (the space, its seeded
permutation, splits, vectorized sampling) is ``lstm_math.components.sampling``.

Rules (DESIGN.md section 2):
  * operands are non-negative integers; operators are ``+ - * /``;
  * ``/`` is floor division with a divisor > 0;
  * ``*`` and ``/`` bind tighter than ``+`` and ``-``; equal precedence is left to right;
  * canonical text separates operands and operators by single spaces.

Results are computed with integer arithmetic on parsed operands, never ``eval()``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

OPERATORS = ("+", "-", "*", "/")
# What an equation is tagged with (``operator_tag``): its operator when it has two operands,
# "mixed" for three or more. The Evaluator's per-operator slices and gates use the same tags.
MIXED_TAG = "mixed"
OPERATOR_TAGS = OPERATORS + (MIXED_TAG,)

_TOKEN_RE = re.compile(r"\s*(\d+|[+\-*/]|\S)")


class EquationError(ValueError):
    """An equation that cannot be parsed or evaluated; ``reason`` is human readable."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Equation:
    operands: tuple[int, ...]
    operators: tuple[str, ...]

    @property
    def text(self) -> str:
        return canonical_text(self.operands, self.operators)

    @property
    def result(self) -> int:
        return evaluate(self.operands, self.operators)

    @property
    def tag(self) -> str:
        """Operator tag: the operator for two operands, 'mixed' otherwise."""
        return operator_tag(self.operators)


def operator_tag(operators: Sequence[str]) -> str:
    if len(operators) == 1:
        return operators[0]
    return MIXED_TAG


def operator_pattern(operators: Sequence[str]) -> str:
    """The shape of an equation's operators with letters for its operands: ``a + b * c``
    for ``12 + 34 * 5``. The Evaluator's per-pattern slice of three or more operands."""
    letters = [chr(ord("a") + i) for i in range(len(operators) + 1)]
    return canonical_text(letters, operators)


def canonical_text(operands: Sequence[int], operators: Sequence[str]) -> str:
    parts = [str(operands[0])]
    for op, value in zip(operators, operands[1:]):
        parts.append(op)
        parts.append(str(value))
    return " ".join(parts)


def parse(text: str) -> Equation:
    """Parses whitespace-insensitive equation text; raises EquationError with a reason."""
    tokens = _TOKEN_RE.findall(text)
    if not "".join(tokens).strip() or not text.strip():
        raise EquationError("empty equation")
    operands: list[int] = []
    operators: list[str] = []
    expect_operand = True
    for token in tokens:
        if token.isdigit():
            if not expect_operand:
                raise EquationError("malformed: two numbers without an operator between them")
            operands.append(int(token))
            expect_operand = False
        elif token in OPERATORS:
            if expect_operand:
                raise EquationError(f"malformed: operator {token!r} where a number was expected")
            operators.append(token)
            expect_operand = True
        else:
            raise EquationError(f"unknown character {token!r}")
    if expect_operand:
        raise EquationError("malformed: ends with an operator")
    if not operators:
        raise EquationError("malformed: no operator")
    return Equation(tuple(operands), tuple(operators))


def evaluate(operands: Sequence[int], operators: Sequence[str]) -> int:
    """Integer value with the usual precedence; '/' is floor division."""
    if len(operands) != len(operators) + 1:
        raise EquationError("malformed: operands and operators do not alternate")
    # First pass: fold * and / into terms, left to right.
    terms: list[int] = [int(operands[0])]
    additive: list[str] = []
    for op, value in zip(operators, operands[1:]):
        value = int(value)
        if op == "*":
            terms[-1] = terms[-1] * value
        elif op == "/":
            if value == 0:
                raise EquationError("division by zero")
            terms[-1] = terms[-1] // value
        elif op in ("+", "-"):
            additive.append(op)
            terms.append(value)
        else:
            raise EquationError(f"unknown operator {op!r}")
    # Second pass: + and -, left to right.
    total = terms[0]
    for op, term in zip(additive, terms[1:]):
        total = total + term if op == "+" else total - term
    return total


def max_result_chars(operators: Sequence[str], low: int, high: int, num_operands: int,
                     min_operands: int | None = None) -> int:
    """Length in characters of the longest result string over the space (sign included),
    for every operand count from ``min_operands`` (None: ``num_operands``) to ``num_operands``."""
    out = 0
    for k in range(num_operands if min_operands is None else min_operands, num_operands + 1):
        lo_val, hi_val = result_bounds(tuple(operators), low, high, k)
        out = max(out, len(str(lo_val)), len(str(hi_val)))
    return out


def result_bounds(operators, low, high, num_operands):
    """Loose but safe bounds on the result of any expression in the space."""
    if num_operands == 2:
        candidates = []
        for op in operators:
            if op == "+":
                candidates += [2 * low, 2 * high]
            elif op == "-":
                candidates += [low - high, high - low]
            elif op == "*":
                candidates += [low * low, high * high]
            elif op == "/":
                candidates += [0, high // max(low, 1)]
        return min(candidates), max(candidates)
    # Mixed: the largest magnitude of a term is high ** k for k multiplied operands.
    biggest = high ** (num_operands if "*" in operators else 1)
    total = biggest * (1 if "*" in operators else num_operands)
    total = max(total, high * num_operands)
    lowest = -total if "-" in operators else 0
    return lowest, total


def max_equation_chars(high: int, num_operands: int) -> int:
    """Length of the longest compact equation (no spaces) in the space."""
    return num_operands * len(str(high)) + (num_operands - 1)


def min_equation_chars(low: int, num_operands: int) -> int:
    """Length of the shortest compact equation: every operand as narrow as ``low``."""
    return max_equation_chars(low, num_operands)
