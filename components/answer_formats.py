"""Answer formats: what the decoder writes for an equation (its *working*), and how the
final answer is read back from it. The one definition used by ExampleGen (the targets it
writes), the input pipeline, the decoder length, the serving signature and the Evaluator.

Pure Python and integer arithmetic (never ``eval``); the TensorFlow string ops that read a
decoded working back live in the ``*_tf`` functions (TensorFlow is imported there only, so
the config schema can import this module).

A config picks a format per operator tag (``task.data.answer_format``, e.g.
``{"*": "running_sums"}``); tags it does not name are ``direct``.

  direct        the answer itself (the model's ``reverse_output`` decides the digit order);
                no working.
  column_carry  a * b: for each column k of the product, least significant first, the answer
                digit and the carry out of the column (``carry_width`` digits, units first).
  running_sums  a * b, after Bai et al. 2025: operands zero-padded to D digits (D: digits of
                the largest operand); for column k = 0 .. 2D-2 and each digit pair (i, j)
                with i + j = k (i: a's digit from the least significant, ascending), the
                running sum s = previous + a_i * b_j, starting from the carry into column k,
                written as ``sum_width`` digits, least significant first. The answer digit of
                column k is the units digit of the column's last sum, the carry into the next
                column that sum // 10; the last token is the final carry (the product's top
                digit). Each next token needs two operand digits and the sum just written.
                For 123 * 456: ``810 610 820 410 420 030 110 610 500 0`` (spaces for the
                eye only) -> 56088.
  msd_first     the answer, most significant digit first (a minus sign first), whatever
                the model's ``reverse_output``: so one model can write ``/`` the way long
                division finds its digits while its other operators run units first.
  lsd_first     the answer, least significant digit first (a minus sign last), whatever
                the model's ``reverse_output``.
  reduce_first  three or more operands: the value after each reduction in evaluation order
                (``*`` and ``/`` left to right, then ``+`` and ``-`` left to right), least
                significant digit first (a minus sign last), separated by spaces; the last
                value is the answer. ``12 + 34 * 5`` -> ``071 281`` (170, then 182).
  reduce_running_sums
                reduce_first, and a product of two of the equation's own operands is
                worked before its value: its ``running_sums`` working (operands zero-padded
                to D digits), a space, then the value. A product whose left operand is an
                earlier value (``a * b * c``'s second, ``a / b * c``) is written directly.
                ``12 + 34 * 5`` -> ``0202007101001001000000000000 071 281``: the
                running sums of 034 * 005, then 170, then 182.
  reduce_unsigned
                reduce_running_sums with the sums and differences reordered so that no value
                before the answer is negative: the terms added are summed first, left to
                right, then the terms subtracted, then one subtraction. ``9 - 8 + 7`` ->
                ``61 8`` (16, then 8); ``9 - 8 - 7`` -> ``51 6-`` (8 + 7, then 9 - 15);
                ``a + b - c`` and every equation with at most one ``+``/``-`` reduction as
                in reduce_running_sums.
  reduce_fitting
                reduce_unsigned, and every product whose two factors fit an operand's D
                digits is worked as its running sums (operands zero-padded to D digits),
                whether its left factor is an operand or a value the model wrote: the
                second product of ``a * b * c`` when a * b < 10^D, and the product of
                ``a / b * c`` (a quotient of two operands always fits). A wider product is
                written directly, as in reduce_unsigned. ``7 * 4 * 7``: the running sums
                of 007 * 004, ``82`` (28), the running sums of 028 * 007, ``691`` (196).
  reduce_chunked
                reduce_fitting, and a product whose left factor is a value wider than D
                digits is worked in D-digit chunks of that factor, least significant
                first: for each chunk (as many as the value can have: two for a product
                of two operands), the running sums of the chunk times the operand (both
                zero-padded to D digits), a space, then that chunk's product as 2D digits,
                zero-padded, least significant first; then the product's value, the chunk
                products summed each D digits further left. Every product is then the one
                product of two D-digit numbers the first reduction already works, and the
                last step an addition of column-aligned values. ``123 * 456 * 789``: the
                running sums of 123 * 456, ``88065`` (56088), the running sums of
                088 * 789, ``234960`` (69432), those of 056 * 789, ``481440`` (44184),
                then ``23435244`` (44184 * 1000 + 69432 = 44253432).
  reduce_fitting_division
                reduce_fitting, and every quotient of a value the model wrote whose
                dividend fits an operand's D digits is worked as long division with each
                step written out (as in reduce_long_division: the number brought down, the
                quotient digit, its product with the divisor, the remainder, all least
                significant first), the value zero-padded to D digits: the quotient of
                ``a * b / c`` when a * b < 10^D (every single-digit one) and the second
                quotient of ``a / b / c``. A quotient of two operands and one of a wider
                value are written directly. ``4 * 9 / 3``: the running sums of 004 * 009,
                ``63`` (36), the long division of 036 by 003: ``0000 0 0000 000`` (the
                first digit, 0), ``3000 1 3000 000`` (3: quotient digit 1), ``6000 2 6000
                000`` (6: 2), then ``21`` (12).
  reduce_worked reduce_first, and every product and every quotient of an earlier value is
                worked before its value: no step multiplies or divides a value the model
                wrote itself in one go. A product x * y (y is always one of the
                equation's operands: products and quotients reduce left to right) is written
                as running sums with x zero-padded to the digits its bound can have (D for
                an operand, the sum of both for a product, the dividend's for a quotient)
                and y to D digits. A quotient x / y of an earlier value is written as long
                division, most significant digit of x first: for each digit, the quotient
                digit, then the remainder as D digits, least significant first. A quotient
                of two operands is written directly (the ``division`` preset's measurements
                learn it). ``7 * 7 * 4``: the running sums of 007 * 007, ``94`` (49), the
                running sums of 000049 * 004, ``691`` (196).
  reduce_aligned
                reduce_worked in reduce_unsigned's order, every value before the answer
                written as the digits it can have, zero-padded (least significant first:
                a product of two operands 2D digits, a sum one more than the longer of its
                terms): each part of the working starts at the same decoder step in every
                equation of one operator pattern, so a step that re-reads a value's digit
                finds it at a fixed step. ``7 * 7 * 4``: the running sums of 007 * 007,
                ``940000`` (49), the running sums of 000049 * 004, ``691`` (196).
  reduce_digit_products
                reduce_worked with each worked product's digit-pair product a_i * b_j
                written (two digits, least significant first) before the running sum it
                is added to: a step looks up one product of two digits, the next adds the
                product it just wrote to the carry or the sum before it. ``7 * 7 * 4``:
                ``94`` ``940`` (7 * 7 = 49, sum 49) ... per digit pair of 007 * 007, then
                ``94``, the same for 000049 * 004, then ``691`` (196).
  reduce_long_division
                reduce_digit_products with each step of a long division written out, all
                least significant first: the number brought down (the remainder so far
                times ten plus the dividend's next digit, D + 1 digits), the quotient
                digit, the quotient digit times the divisor (D + 1 digits), then the
                remainder (D digits): a step subtracts two numbers written just before it.
                ``7 * 2 / 2``: the digit products and sums of 007 * 002, ``41`` (14), the
                long division of 000014 by 002: ``0000 0 0000 000`` for each zero, then
                for the 1 ``1000 0 0000 100`` (1, quotient digit 0, 0, remainder 1), for
                the 4 ``4100 7 4100 000`` (14, 7, 14, 0); then ``7``.
  reduce_division_table
                reduce_long_division with the divisor's multiples written before each long
                division of a value: 1, 2, .. 9 times the divisor (D + 1 digits each, least
                significant first; each is the one before plus the divisor), then the steps
                as in reduce_long_division. The quotient digit is how many of the written
                multiples the number brought down reaches, and its product with the divisor
                is a copy of one of them. ``7 * 2 / 2``: ``2000 4000 .. 8100`` (2, 4, .. 18),
                then reduce_long_division's steps.
  reduce_column_division
                reduce_long_division with each remainder written column by column: after
                the number brought down and the quotient digit, for each column k of
                D + 1, least significant first, the brought-down number's digit k, the
                digit k of the quotient digit times the divisor, then the remainder's
                digit k (their difference less the borrow): each digit of the remainder
                is written right after the two digits it subtracts. ``7 * 2 / 2``, for
                the 4: ``4100 7`` (14, quotient digit 7), then ``440`` ``110`` ``000``
                ``000`` (4 - 4, 1 - 1, 0 - 0, 0 - 0).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # the config leaf imports this module
    from lstm_math.config import Coverage

DIRECT = "direct"
FORMATS = ("direct", "msd_first", "lsd_first", "column_carry", "running_sums", "reduce_first",
           "reduce_running_sums", "reduce_unsigned", "reduce_fitting", "reduce_chunked",
           "reduce_fitting_division", "reduce_worked", "reduce_aligned",
           "reduce_digit_products", "reduce_long_division", "reduce_division_table",
           "reduce_column_division")
# a value per reduction, the last the answer
REDUCTIONS = ("reduce_first", "reduce_running_sums", "reduce_unsigned", "reduce_fitting",
              "reduce_chunked", "reduce_fitting_division", "reduce_worked", "reduce_aligned",
              "reduce_digit_products", "reduce_long_division", "reduce_division_table",
              "reduce_column_division")
# the reductions that work a product of two of the equation's operands, and only those
WORK_PRODUCTS_OF_OPERANDS = ("reduce_running_sums", "reduce_unsigned")
# the reductions that work every product whose factors both fit an operand's digits
WORK_FITTING_PRODUCTS = ("reduce_fitting", "reduce_chunked", "reduce_fitting_division")
# ... and every wider product of a value in D-digit chunks of the value
WORK_CHUNKED_PRODUCTS = ("reduce_chunked",)
# ... and every quotient of a value whose dividend fits an operand's digits
WORK_FITTING_QUOTIENTS = ("reduce_fitting_division",)
# the reductions that work every product, and every quotient of an earlier value
WORK_EVERY_PRODUCT = ("reduce_worked", "reduce_aligned", "reduce_digit_products",
                      "reduce_long_division", "reduce_division_table", "reduce_column_division")
# no negative value before the answer
UNSIGNED = ("reduce_unsigned", "reduce_fitting", "reduce_chunked", "reduce_fitting_division",
            "reduce_aligned")
ALIGNED = ("reduce_aligned",)  # every value before the answer zero-padded to its digits
# each digit-pair product of a worked product written before the running sum it joins
DIGIT_PRODUCTS = ("reduce_digit_products", "reduce_long_division", "reduce_division_table",
                  "reduce_column_division")
# How a worked quotient of a value is written (``long_division``'s ``layout``), by format:
# "quotients": per dividend digit its quotient digit and the remainder; "shown": each step
# written out (the number brought down, the quotient digit, its product with the divisor,
# the remainder); "table": "shown" after the divisor's multiples 1..9, so a quotient digit
# is a comparison with numbers written before it and its product a copy of one; "columns":
# "shown" with the remainder's subtraction written column by column, each remainder digit
# right after the digit brought down and the product's digit it subtracts.
DIVISION_LAYOUTS = ("quotients", "shown", "table", "columns")
DIVISION_LAYOUT = {"reduce_fitting_division": "shown", "reduce_long_division": "shown",
                   "reduce_division_table": "table", "reduce_column_division": "columns"}
ORDERS = ("msd_first", "lsd_first")  # the answer alone, in a fixed digit order
# The operator tags (components.equations.OPERATOR_TAGS) each format can answer.
FORMAT_TAGS = {
    "direct": ("+", "-", "*", "/", "mixed"),
    "msd_first": ("+", "-", "*", "/", "mixed"),
    "lsd_first": ("+", "-", "*", "/", "mixed"),
    "column_carry": ("*",),
    "running_sums": ("*",),
    "reduce_first": ("mixed",),
    "reduce_running_sums": ("mixed",),
    "reduce_unsigned": ("mixed",),
    "reduce_fitting": ("mixed",),
    "reduce_chunked": ("mixed",),
    "reduce_fitting_division": ("mixed",),
    "reduce_worked": ("mixed",),
    "reduce_aligned": ("mixed",),
    "reduce_digit_products": ("mixed",),
    "reduce_long_division": ("mixed",),
    "reduce_division_table": ("mixed",),
    "reduce_column_division": ("mixed",),
}
SEPARATOR = " "  # between the values of reduce_first (the tokenizer's SPACE token)


class WorkingError(ValueError):
    """A format asked for an equation it cannot write."""


# --------------------------------------------------------------------------------------
# Layouts of the multiplication formats.


def digits_of(high: int) -> int:
    """D: the digits of the largest operand (operands are zero-padded to D digits)."""
    return len(str(int(high)))


def pairs_of_column(k: int, d: int, dy: int | None = None) -> list[tuple[int, int]]:
    """Digit pairs (i, j) with i + j = k, 0 <= i < d and 0 <= j < dy (default d), i
    ascending."""
    dy = d if dy is None else dy
    return [(i, k - i) for i in range(max(0, k - dy + 1), min(k, d - 1) + 1)]


def sum_width(d: int) -> int:
    """Digits of the largest running sum: s <= 81 d + s // 10, so s < 90 d."""
    return len(str(90 * d))


PRODUCT_WIDTH = 2  # digits of a digit-pair product as written (at most 81)


def carry_width(d: int) -> int:
    """Digits of the largest carry out of a column (< 9 d)."""
    return len(str(9 * d))


def _lsb(value: int, width: int) -> str:
    return str(value).zfill(width)[::-1]


def _operand_digits(value: int, d: int) -> list[int]:
    text = str(int(value))
    if int(value) < 0 or len(text) > d:
        raise WorkingError(f"operand {value} is not in 0..{10 ** d - 1}")
    return [int(c) for c in text.zfill(d)[::-1]]


def column_carry(a: int, b: int, d: int) -> str:
    ad, bd = _operand_digits(a, d), _operand_digits(b, d)
    out, carry, w = [], 0, carry_width(d)
    for k in range(2 * d):
        s = carry + sum(ad[i] * bd[j] for i, j in pairs_of_column(k, d))
        out.append(str(s % 10) + _lsb(s // 10, w))
        carry = s // 10
    return "".join(out)


def running_sums(a: int, b: int, d: int, db: int | None = None,
                 products: bool = False) -> str:
    """a * b as running sums, a zero-padded to d digits and b to db (default d);
    ``products``: each digit-pair product written (two digits, least significant first)
    before the running sum it is added to."""
    db = d if db is None else db
    ad, bd = _operand_digits(a, d), _operand_digits(b, db)
    out, carry, w = [], 0, sum_width(min(d, db))  # a column holds at most min(d, db) pairs
    for k in range(d + db - 1):
        s = carry
        for i, j in pairs_of_column(k, d, db):
            product = ad[i] * bd[j]
            s += product
            out.append((_lsb(product, PRODUCT_WIDTH) if products else "") + _lsb(s, w))
        carry = s // 10
    out.append(str(carry))  # < 10: a d-digit times a db-digit number has at most d + db digits
    return "".join(out)


def running_sums_length(d: int, db: int, products: bool = False) -> int:
    """Characters of ``running_sums(., ., d, db, products)``: a sum (and a product) per
    digit pair, the final carry: where its last step ends."""
    return running_sums_steps(d, db, products)[-1][1]


@functools.lru_cache(maxsize=None)
def running_sums_steps(d: int, db: int | None = None,
                       products: bool = False) -> tuple[tuple[int, int, str], ...]:
    """(start, stop, name) of each step of ``running_sums(., ., d, db, products)``."""
    db = d if db is None else db
    w, out, n = sum_width(min(d, db)), [], 0
    for k in range(d + db - 1):
        for i, j in pairs_of_column(k, d, db):
            if products:
                out.append((n, n + PRODUCT_WIDTH, f"column {k}: a{i}*b{j}"))
                n += PRODUCT_WIDTH
            out.append((n, n + w, f"column {k}: + a{i}*b{j}"))
            n += w
    out.append((n, n + 1, f"column {d + db - 1}: final carry"))
    return tuple(out)


def division_layout(fmt: str) -> str:
    """How ``fmt`` writes a worked quotient of a value (one of DIVISION_LAYOUTS)."""
    return DIVISION_LAYOUT.get(fmt, "quotients")


def _check_layout(layout: str) -> None:
    if layout not in DIVISION_LAYOUTS:
        raise WorkingError(f"unknown long division layout {layout!r}; choose from "
                           f"{', '.join(DIVISION_LAYOUTS)}")


def long_division(a: int, b: int, d: int, db: int, layout: str = "quotients") -> str:
    """a // b as long division: a zero-padded to d digits, most significant first; for each
    digit the quotient digit, then the remainder as db digits, least significant first.
    ``layout`` (DIVISION_LAYOUTS): "shown", each digit's step written out, all least
    significant first: the number brought down (the remainder so far times ten plus the
    digit, db + 1 digits), the quotient digit, its product with b (db + 1 digits), then the
    remainder; "table", b's multiples 1 .. 9 (db + 1 digits each, least significant first)
    before the "shown" steps; "columns", the "shown" steps with the product and the
    remainder written as db + 1 columns, least significant first, each the brought-down
    number's digit, the product's, the remainder's."""
    _check_layout(layout)
    if b <= 0:
        raise WorkingError("division by zero" if b == 0 else f"divisor {b} is negative")
    _operand_digits(b, db)
    out = [_lsb(k * b, db + 1) for k in range(1, 10)] if layout == "table" else []
    remainder = 0
    for digit in reversed(_operand_digits(a, d)):
        brought_down = remainder * 10 + digit  # < 10 b: at most db + 1 digits
        q, remainder = divmod(brought_down, b)  # q < 10
        if layout == "quotients":
            out.append(str(q) + _lsb(remainder, db))
            continue
        down, product = _lsb(brought_down, db + 1), _lsb(q * b, db + 1)
        if layout == "columns":
            left = _lsb(remainder, db + 1)
            out.append(down + str(q) + "".join(down[k] + product[k] + left[k]
                                               for k in range(db + 1)))
        else:
            out.append(down + str(q) + product + _lsb(remainder, db))
    return "".join(out)


def long_division_length(d: int, db: int, layout: str = "quotients") -> int:
    """Characters of ``long_division(., ., d, db, layout)``: where its last step ends."""
    steps = long_division_steps(d, db, layout)
    return steps[-1][1] if steps else 0


@functools.lru_cache(maxsize=None)
def long_division_steps(d: int, db: int,
                        layout: str = "quotients") -> tuple[tuple[int, int, str], ...]:
    """(start, stop, name) of each step of ``long_division(., ., d, db, layout)``: per
    digit of the dividend its quotient digit, then the remainder (named apart: which of the
    two goes wrong first); "shown" (and "table"): the number brought down before the
    quotient digit and the quotient digit times the divisor after it; "table": first each
    multiple of the divisor (``divisor table: k * divisor``); "columns": the number brought
    down and the quotient digit, then per column k its three digits (``column k: brought
    down``, ``column k: quotient digit * divisor``, ``column k: remainder``)."""
    _check_layout(layout)
    if layout == "quotients":
        widths = (("quotient digit", 1), ("remainder", db))
    elif layout == "columns":
        widths = (("brought down", db + 1), ("quotient digit", 1)) + tuple(
            (f"column {k}: {name}", 1) for k in range(db + 1)
            for name in ("brought down", "quotient digit * divisor", "remainder"))
    else:
        widths = (("brought down", db + 1), ("quotient digit", 1),
                  ("quotient digit * divisor", db + 1), ("remainder", db))
    out, n = [], 0
    if layout == "table":
        for k in range(1, 10):
            out.append((n, n + db + 1, f"divisor table: {k} * divisor"))
            n += db + 1
    for digit in range(1, d + 1):
        for name, width in widths:
            out.append((n, n + width, f"digit {digit} of {d}: {name}"))
            n += width
    return tuple(out)


@functools.lru_cache(maxsize=None)
def steps_of(fmt: str, d: int) -> tuple[tuple[int, int, str], ...]:
    """The steps of a fixed-layout working: (start, stop, name), in order."""
    if fmt == "column_carry":
        w = 1 + carry_width(d)
        return tuple((k * w, (k + 1) * w, f"column {k}: digit and carry")
                     for k in range(2 * d))
    if fmt == "running_sums":
        return running_sums_steps(d)
    raise WorkingError(f"{fmt!r} has no fixed layout")


def answer_positions(fmt: str, d: int) -> list[int]:
    """Positions of the answer digits in a fixed-layout working, least significant first."""
    steps = steps_of(fmt, d)
    if fmt == "column_carry":
        return [start for start, _, _ in steps]
    positions = []
    for k in range(2 * d - 1):
        last = max(n for n, (_, _, name) in enumerate(steps)
                   if name.startswith(f"column {k}:"))
        positions.append(steps[last][0])
    positions.append(steps[-1][0])
    return positions


# --------------------------------------------------------------------------------------
# reduce_first


def _write_value(value: int) -> str:
    return str(value)[::-1]  # '-22' -> '22-': least significant digit first, sign last


def reduction_values(operands: Sequence[int], operators: Sequence[str]) -> list[int]:
    """The value of each reduction in evaluation order; the last is the answer."""
    return [r[3] for r in reductions(operands, operators)]


def _value_digits(op: str, da: int, db: int) -> int:
    """The digits ``a op b`` can have when a has at most ``da`` and b ``db`` (a difference:
    as written in the order that keeps it non-negative)."""
    return {"*": da + db, "/": da, "+": max(da, db) + 1, "-": max(da, db)}[op]


def _unsigned_sums(values: list[int], ops: list[str], own: list[bool],
                   widths: list[int]) -> list[tuple]:
    """The ``+``/``-`` reductions of ``v0 op1 v1 op2 v2 ...`` with no negative value before
    the last: the added terms summed left to right, then the subtracted ones, then one
    subtraction."""
    plus = [(values[0], own[0], widths[0])] + [
        (v, o, w) for v, o, w, op in zip(values[1:], own[1:], widths[1:], ops) if op == "+"]
    minus = [(v, o, w) for v, o, w, op in zip(values[1:], own[1:], widths[1:], ops)
             if op == "-"]
    out, totals = [], []
    for terms in (plus, minus):
        if not terms:
            continue
        (total, total_own, total_w), rest = terms[0], terms[1:]
        for v, o, w in rest:
            width = _value_digits("+", total_w, w)
            out.append((total, "+", v, total + v, total_own and o, total_w, width))
            total, total_own, total_w = total + v, False, width
        totals.append((total, total_own, total_w))
    if len(totals) == 2:
        (p, p_own, p_w), (n, n_own, n_w) = totals
        out.append((p, "-", n, p - n, p_own and n_own, p_w, _value_digits("-", p_w, n_w)))
    return out


def reductions(operands: Sequence[int], operators: Sequence[str],
               d: int = 0, unsigned: bool = False) -> list[tuple]:
    """(a, operator, b, value, of_operands, a_digits, digits) of each reduction in
    evaluation order; ``of_operands``: a and b are both the equation's own operands (no
    earlier value); ``a_digits`` and ``digits``: the digits a and the value can have
    whatever the operands' values, when each operand has at most ``d`` (a product: the sum
    of both; a quotient: the dividend's; a sum: the longer's and one; a difference: the
    longer's); ``unsigned``: the sums and differences in ``_unsigned_sums``' order
    (reduce_unsigned, reduce_aligned), not left to right."""
    values, ops, out = [int(v) for v in operands], list(operators), []
    own = [True] * len(values)
    digits = [d] * len(values)
    for level in (("*", "/"), ("+", "-")):
        if level == ("+", "-") and unsigned and ops:
            return out + _unsigned_sums(values, ops, own, digits)
        i = 0
        while i < len(ops):
            if ops[i] not in level:
                i += 1
                continue
            a, b = values[i], values[i + 1]
            if ops[i] == "*":
                v = a * b
            elif ops[i] == "/":
                if b == 0:
                    raise WorkingError("division by zero")
                v = a // b
            elif ops[i] == "+":
                v = a + b
            else:
                v = a - b
            width = _value_digits(ops[i], digits[i], digits[i + 1])
            out.append((a, ops[i], b, v, own[i] and own[i + 1], digits[i], width))
            values[i:i + 2] = [v]
            own[i:i + 2] = [False]
            digits[i:i + 2] = [width]
            del ops[i]
    return out


# --------------------------------------------------------------------------------------
# The format interface (pure Python).


def applies(fmt: str, tag: str) -> bool:
    return tag in FORMAT_TAGS.get(fmt, ())


def working(fmt: str, operands: Sequence[int], operators: Sequence[str], high: int) -> str:
    """The working a format writes for an equation ('' for ``direct``)."""
    if fmt == DIRECT:
        return ""
    if fmt in ORDERS:
        value = reduction_values(operands, operators)[-1]
        return str(value) if fmt == "msd_first" else _write_value(value)
    if fmt in ("column_carry", "running_sums"):
        if list(operators) != ["*"]:
            raise WorkingError(f"{fmt} writes a * b only, not {' '.join(operators)}")
        fn = column_carry if fmt == "column_carry" else running_sums
        return fn(int(operands[0]), int(operands[1]), digits_of(high))
    if fmt in REDUCTIONS:
        return working_and_steps(fmt, operands, operators, high)[0]
    raise WorkingError(f"unknown answer format {fmt!r}; choose from {', '.join(FORMATS)}")


def reduction_parts(fmt: str, operands: Sequence[int], operators: Sequence[str],
                    high: int) -> list[tuple[str, list[tuple[int, int, str]]]]:
    """The space-separated parts of a reduction format's working, each with its steps
    ((start, stop, name), relative to the part): the values and any worked reductions."""
    if len(operators) < 2:
        raise WorkingError(f"{fmt} writes three or more operands")
    d, parts = digits_of(high), []
    reduced = reductions(operands, operators, d, unsigned=fmt in UNSIGNED)
    for n, (a, op, b, value, of_operands, da, width) in enumerate(reduced, start=1):
        worked = None
        if op == "*" and fmt in WORK_FITTING_PRODUCTS and max(a, b) < 10 ** d:
            worked = (running_sums(a, b, d), running_sums_steps(d))
        elif op == "*" and (fmt in WORK_EVERY_PRODUCT or
                            (fmt in WORK_PRODUCTS_OF_OPERANDS and of_operands)):
            fine = fmt in DIGIT_PRODUCTS
            worked = (running_sums(a, b, da, d, fine), running_sums_steps(da, d, fine))
        elif op == "*" and fmt in WORK_CHUNKED_PRODUCTS and b < 10 ** d:
            chunks = -(-da // d)  # the D-digit chunks the left factor can have
            for i in range(chunks):
                chunk = a // 10 ** (d * i) % 10 ** d
                name = f"value {n}, worked: chunk {i + 1} of {chunks}"
                parts.append((running_sums(chunk, b, d),
                              [(start, stop, f"{name}: {step}")
                               for start, stop, step in running_sums_steps(d)]))
                parts.append((_lsb(chunk * b, 2 * d), [(0, 2 * d, name)]))
        elif op == "/" and not of_operands and (
                fmt in WORK_EVERY_PRODUCT or (fmt in WORK_FITTING_QUOTIENTS and a < 10 ** d)):
            # the dividend zero-padded to the digits its bound can have, or to D when only
            # the quotients of a value that fits are worked
            width, layout = (da if fmt in WORK_EVERY_PRODUCT else d), division_layout(fmt)
            worked = (long_division(a, b, width, d, layout),
                      long_division_steps(width, d, layout))
        if worked is not None:
            parts.append((worked[0], [(start, stop, f"value {n}, worked: {name}")
                                      for start, stop, name in worked[1]]))
        if fmt in ALIGNED and n < len(reduced):  # never negative before the answer
            text = _lsb(value, width)
        else:
            text = _write_value(value)
        parts.append((text, [(0, len(text), f"value {n}")]))
    return parts


def working_and_steps(fmt: str, operands: Sequence[int], operators: Sequence[str],
                      high: int) -> tuple[str, list[tuple[int, int, str]]]:
    """The working of an equation and its steps (start, stop, name), built once, for any
    format with a working."""
    if fmt not in REDUCTIONS:
        text = working(fmt, operands, operators, high)
        return text, step_spans(fmt, text, high)
    texts, spans, start = [], [], 0
    for text, steps in reduction_parts(fmt, operands, operators, high):
        texts.append(text)
        spans += [(start + a, start + b, name) for a, b, name in steps]
        start += len(text) + len(SEPARATOR)
    return SEPARATOR.join(texts), spans


def _canonical_number(text: str) -> str:
    """'00560' -> '560', '-007' -> '-7'; '' when not a number."""
    sign = "-" if text.startswith("-") else ""
    body = text[len(sign):]
    if not body or not body.isdigit() or not body.isascii():
        return ""
    body = body.lstrip("0") or "0"
    return "" if sign and body == "0" else sign + body


def answer(fmt: str, text: str, high: int) -> str:
    """The final answer read from a working ('' when it cannot be read)."""
    if fmt in ("column_carry", "running_sums"):
        d = digits_of(high)
        if len(text) != working_length(fmt, high):
            return ""
        return _canonical_number("".join(text[p] for p in reversed(answer_positions(fmt, d))))
    if fmt in REDUCTIONS:
        return _canonical_number(text.split(SEPARATOR)[-1][::-1])
    if fmt in ORDERS:
        return _canonical_number(text if fmt == "msd_first" else text[::-1])
    raise WorkingError(f"{fmt!r} has no working to read")


def working_length(fmt: str, high: int, num_operands: int = 3,
                   max_result_chars: int = 0) -> int:
    """Tokens of the longest working (before END)."""
    d = digits_of(high)
    if fmt == "column_carry":
        return 2 * d * (1 + carry_width(d))
    if fmt == "running_sums":
        return d * d * sum_width(d) + 1
    if fmt == "reduce_first":
        return (num_operands - 1) * (max_result_chars + 1) - 1
    if fmt in WORK_PRODUCTS_OF_OPERANDS:  # each worked product takes two operands
        worked = num_operands // 2 * (working_length("running_sums", high) + 1)
        return worked + (num_operands - 1) * (max_result_chars + 1) - 1
    if fmt in WORK_CHUNKED_PRODUCTS:
        # The longest is a chain of products a * b * c ...: the k-th (k > 1) multiplies a
        # value of k D digits, so k chunks, each its running sums and 2D digits; every
        # value at most max_result_chars.
        sums = working_length("running_sums", high) + 1
        chunk = sums + 2 * d + 1
        worked = sums + sum(k * chunk for k in range(2, num_operands))
        return worked + (num_operands - 1) * (max_result_chars + 1) - 1
    if fmt in WORK_FITTING_QUOTIENTS:
        # Every reduction but the first worked (the first is of two operands: a worked
        # product or a quotient written directly): each value before the answer a factor
        # or dividend of the next, so at most D digits, the answer at most 2D. One fewer
        # worked: any values. A worked step is a product's running sums or a quotient's
        # long division of D digits, whichever is longer.
        sums = working_length("running_sums", high) + 1
        step = max(sums, long_division_length(d, d, division_layout(fmt)) + 1)
        every = sums + (num_operands - 2) * (step + d + 1) + 2 * d
        fewer = (num_operands - 2) * step + (num_operands - 1) * (max_result_chars + 1) - 1
        return max(every, fewer)
    if fmt in WORK_FITTING_PRODUCTS:
        # Every reduction worked: all are products, each value before the answer a factor
        # of the next, so at most D digits, and the answer at most 2D. One fewer worked:
        # any values.
        worked = working_length("running_sums", high) + 1
        every = (num_operands - 1) * worked + (num_operands - 2) * (d + 1) + 2 * d
        fewer = (num_operands - 2) * worked + (num_operands - 1) * (max_result_chars + 1) - 1
        return max(every, fewer)
    if fmt in WORK_EVERY_PRODUCT:
        # The longest is a chain of products or quotients, a * b * c ... or a * b / c ...:
        # the k-th multiplies or divides a value of k D digits by an operand (sums and
        # differences are not worked); the first is of two operands, so never a worked
        # quotient (a quotient of two operands is written directly).
        fine = fmt in DIGIT_PRODUCTS
        layout = division_layout(fmt)
        worked = sum(max(running_sums_length(k * d, d, fine),
                         long_division_length(k * d, d, layout) if k > 1 else 0) + 1
                     for k in range(1, num_operands))
        return worked + (num_operands - 1) * (max_result_chars + 1) - 1
    return max_result_chars


def step_spans(fmt: str, text: str, high: int) -> list[tuple[int, int, str]]:
    """The steps of a working as (start, stop, name), for the formats whose layout the
    working alone gives (the digit columns, the answer orders). A reduction's steps follow
    from its equation (a value can be as long as a worked step): ``working_and_steps``."""
    if fmt in REDUCTIONS:
        raise WorkingError(f"{fmt}'s steps follow from the equation: use working_and_steps")
    if fmt in ("column_carry", "running_sums"):
        return list(steps_of(fmt, digits_of(high)))
    if fmt in ORDERS:
        return [(k, k + 1, f"character {k + 1}") for k in range(len(text))]
    raise WorkingError(f"{fmt!r} has no working to read")


def first_wrong_step(fmt: str, truth: str, predicted: str, high: int,
                     spans: list[tuple[int, int, str]] | None = None) -> str | None:
    """The name of the first step of ``predicted`` that differs from the true working
    (None when the whole working is right); ``spans``: the true working's steps
    (``working_and_steps``), read from the working when not given (``step_spans``)."""
    if truth == predicted:
        return None
    for start, stop, name in spans if spans is not None else step_spans(fmt, truth, high):
        if predicted[start:stop] != truth[start:stop]:
            return name
    return "after the last step"  # right steps, then extra tokens


def display(fmt: str, text: str, high: int) -> str:
    """A working with a space between steps (the reductions already have them)."""
    if fmt in ("column_carry", "running_sums"):
        if len(text) != working_length(fmt, high):
            return text
        return " ".join(text[start:stop] for start, stop, _ in steps_of(fmt, digits_of(high)))
    return text


# --------------------------------------------------------------------------------------
# A model's formats (its coverage's ``answer_format``).


def formats_of(coverage: Coverage) -> dict:
    """{operator tag: format} of the tags whose format has a working."""
    return {tag: fmt for tag, fmt in coverage.answer_format.items()
            if fmt != DIRECT}


def equation_tag(operators: Sequence[str]) -> str:
    return operators[0] if len(operators) == 1 else "mixed"


def max_target_length(answer_format: dict, high: int, num_operands: int,
                      max_result_chars: int) -> int:
    """Decoder tokens (before END) that every answer and working of the task fits in."""
    out = max_result_chars
    for fmt in answer_format.values():
        out = max(out, working_length(fmt, high, num_operands, max_result_chars))
    return out


# --------------------------------------------------------------------------------------
# TensorFlow: reading decoded workings back (the serving signature, the Trainer's samples).


def row_tags_tf(compact):
    """[batch] compact equation texts ('12*345') -> their operator tags."""
    import tensorflow as tf

    ops = tf.strings.regex_replace(compact, r"[^+\-*/]", "")
    return tf.where(tf.strings.length(ops) == 1, ops, "mixed")


def answer_tf(fmt: str, text, high: int):
    """``answer`` for a [batch] string tensor of workings ('' when it cannot be read)."""
    import tensorflow as tf

    if fmt in ("column_carry", "running_sums"):
        d = digits_of(high)
        # substr fails on a position past the end: pad first (a short working is refused)
        padded = tf.strings.join([text, "?" * working_length(fmt, high)])
        digits = [tf.strings.substr(padded, p, 1) for p in reversed(answer_positions(fmt, d))]
        joined = tf.strings.join(digits)
        ok = (tf.strings.length(text) == working_length(fmt, high)) & \
            tf.strings.regex_full_match(joined, r"[0-9]+")
        return tf.where(ok, tf.strings.regex_replace(joined, r"^0+(\d)", r"\1"), "")
    if fmt in REDUCTIONS + ORDERS:
        value = text
        if fmt in REDUCTIONS:
            value = tf.strings.regex_replace(value, r"^.*" + SEPARATOR, "")
        if fmt != "msd_first":
            chars = tf.strings.unicode_split(value, "UTF-8")
            value = tf.strings.reduce_join(tf.reverse(chars, axis=[1]), axis=1)
        value = tf.strings.regex_replace(value, r"^(-?)0+(\d)", r"\1\2")
        ok = tf.strings.regex_full_match(value, r"-?[0-9]+") & (value != "-0")
        return tf.where(ok, value, "")
    raise WorkingError(f"{fmt!r} has no working to read")


def display_tf(fmt: str, text, high: int):
    """``display`` for a [batch] string tensor."""
    import tensorflow as tf

    if fmt not in ("column_carry", "running_sums"):
        return text
    steps = steps_of(fmt, digits_of(high))
    # A working of the right length gets its spaces; any other is shown as it came.
    padded = tf.strings.join([text, "?" * working_length(fmt, high)])
    parts = [tf.strings.substr(padded, start, stop - start) for start, stop, _ in steps]
    spaced = tf.strings.reduce_join(tf.stack(parts, axis=1), axis=1, separator=" ")
    return tf.where(tf.strings.length(text) == working_length(fmt, high), spaced, text)


def raw_working(fmt: str, shown: str) -> str:
    """The working as the model wrote it, from ``display``'s spaced form."""
    if fmt in ("column_carry", "running_sums"):
        return shown.replace(" ", "")
    return shown
