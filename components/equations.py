"""Equations: parsing, integer evaluation, canonical text, stable splits, sampling.

Pure Python and numpy; no TensorFlow. Everything here is deterministic: the same
arguments give the same equations on any machine, runner or worker count.

Rules (DESIGN.md section 2):
  * operands are non-negative integers; operators are ``+ - * /``;
  * ``/`` is floor division with a divisor > 0;
  * ``*`` and ``/`` bind tighter than ``+`` and ``-``; equal precedence is left to right;
  * canonical text separates operands and operators by single spaces.

Results are computed with integer arithmetic on parsed operands, never ``eval()``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import re
from typing import Iterator, Sequence

import numpy as np

OPERATORS = ("+", "-", "*", "/")
SPLITS = ("train", "validation", "test")

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
    return "mixed"


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


def stable_hash64(text: str) -> int:
    """A 64-bit hash of text that is the same in every process and on every machine."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def split_of(text: str, fractions: Sequence[float], salt: str = "") -> str:
    """The split ('train', 'validation', 'test') of a canonical equation text.

    A pure function of the text (and the salt): no equation can land in two splits,
    whatever the runner, worker count or sharding.
    """
    u = stable_hash64(salt + text) / 2.0**64
    edge = 0.0
    for name, fraction in zip(SPLITS, fractions):
        edge += fraction
        if u < edge:
            return name
    return SPLITS[-1]


# --------------------------------------------------------------------------------------
# The equation space and a keyed permutation of it, so that workers draw unique equations
# by construction (block i of the permutation), never by deduplicating through a shuffle.


@dataclasses.dataclass(frozen=True)
class EquationSpace:
    """All equations with ``num_operands`` operands in [low, high] and the given operators.

    Indexed by a mixed radix: first the operator combination, then each operand. An operand
    right after '/' ranges over [max(low, 1), high], so division by zero is never in the space.
    """

    operators: tuple[str, ...]
    low: int
    high: int
    num_operands: int = 2

    def __post_init__(self):
        combos = list(itertools.product(self.operators, repeat=self.num_operands - 1))
        sizes = []
        radices = []
        for combo in combos:
            r = [self.high - self.low + 1]
            for op in combo:
                lo = max(self.low, 1) if op == "/" else self.low
                r.append(self.high - lo + 1)
            radices.append(r)
            sizes.append(int(np.prod(np.array(r, dtype=object))))
        object.__setattr__(self, "_combos", combos)
        object.__setattr__(self, "_radices", radices)
        object.__setattr__(self, "_offsets", np.cumsum([0] + sizes))

    @property
    def size(self) -> int:
        return int(self._offsets[-1])

    def equation_at(self, index: int) -> Equation:
        combo_id = int(np.searchsorted(self._offsets, index, side="right") - 1)
        rest = int(index - self._offsets[combo_id])
        combo = self._combos[combo_id]
        operands = []
        for position, radix in enumerate(self._radices[combo_id]):
            digit = rest % radix
            rest //= radix
            lo = self.low
            if position > 0 and combo[position - 1] == "/":
                lo = max(self.low, 1)
            operands.append(lo + digit)
        return Equation(tuple(operands), tuple(combo))


_MASK64 = (1 << 64) - 1


class KeyedPermutation:
    """A bijection of [0, n) keyed by a seed: a Feistel network with cycle walking.

    ``permute(np.arange(a, b))`` gives block [a, b) of a pseudo-random ordering of the
    whole space without materialising it; distinct inputs give distinct outputs.
    """

    ROUNDS = 4

    def __init__(self, n: int, seed: int):
        if n <= 0:
            raise ValueError("permutation domain must be non-empty")
        self.n = int(n)
        bits = max(2, (self.n - 1).bit_length())
        bits += bits % 2
        self.half = bits // 2
        self.mask = (1 << self.half) - 1
        self.keys = [
            stable_hash64(f"lstm-math-perm:{seed}:{r}") & 0xFFFFFFFF for r in range(self.ROUNDS)
        ]

    def _round(self, x: np.ndarray, key: int) -> np.ndarray:
        h = (x * np.uint64(0x9E3779B97F4A7C15)) ^ np.uint64(key)
        h ^= h >> np.uint64(29)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(32)
        return h & np.uint64(self.mask)

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        left = x >> np.uint64(self.half)
        right = x & np.uint64(self.mask)
        for key in self.keys:
            left, right = right, left ^ self._round(right, key)
        return (left << np.uint64(self.half)) | right

    def permute(self, indices: np.ndarray) -> np.ndarray:
        x = np.asarray(indices, dtype=np.uint64)
        with np.errstate(over="ignore"):
            y = self._encrypt(x)
            out_of_range = y >= np.uint64(self.n)
            while out_of_range.any():
                y[out_of_range] = self._encrypt(y[out_of_range])
                out_of_range = y >= np.uint64(self.n)
        return y


def sample_block(
    space: EquationSpace, permutation: KeyedPermutation, start: int, stop: int
) -> Iterator[Equation]:
    """Equations at positions [start, stop) of the keyed permutation of the space."""
    for index in permutation.permute(np.arange(start, stop, dtype=np.uint64)):
        yield space.equation_at(int(index))


def max_result_chars(operators: Sequence[str], low: int, high: int, num_operands: int) -> int:
    """Length in characters of the longest result string over the space (sign included)."""
    lo_val, hi_val = _result_bounds(tuple(operators), low, high, num_operands)
    return max(len(str(lo_val)), len(str(hi_val)))


def _result_bounds(operators, low, high, num_operands):
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
