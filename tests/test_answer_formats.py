"""Answer formats with working (components.answer_formats): every format round-trips
(equation -> working -> final answer) over every stratum of operand digit lengths, the TF
reading equals the Python one, ExampleGen writes the working the input pipeline trains on,
the serving signature returns only the final answer in ``result`` (the working in its own
output), and a bad format config fails fast naming the field."""

import collections
import functools
import itertools
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st

from lstm_math.components import answer_formats as af
from lstm_math.components import equations as eq
from lstm_math.components import sampling
from lstm_math.components import tokenizer
from lstm_math.components.signature import build_serving_function
from lstm_math.config import ConfigError, Coverage, coverage_of, load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXED = ("column_carry", "running_sums")


def _stratum(d):
    return (0, 9) if d == 1 else (10 ** (d - 1), 10 ** d - 1)


# --------------------------------------------------------------------------------------
# Round trips (pure Python)


@pytest.mark.parametrize("fmt", FIXED)
@pytest.mark.parametrize("high", [9, 99])
def test_fixed_formats_round_trip_exhaustively_on_small_ranges(fmt, high):
    length = af.working_length(fmt, high)
    for a, b in itertools.product(range(high + 1), repeat=2):
        w = af.working(fmt, (a, b), ("*",), high)
        assert len(w) == length and w.isdigit()
        assert af.answer(fmt, w, high) == str(a * b), (a, b, w)
        assert af.first_wrong_step(fmt, w, w, high) is None
        assert af.raw_working(fmt, af.display(fmt, w, high)) == w


@pytest.mark.parametrize("fmt", FIXED)
@pytest.mark.parametrize("da,db", list(itertools.product([1, 2, 3], repeat=2)))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_fixed_formats_round_trip_in_every_digit_stratum_of_0_999(fmt, da, db, data):
    a = data.draw(st.integers(*_stratum(da)))
    b = data.draw(st.integers(*_stratum(db)))
    w = af.working(fmt, (a, b), ("*",), 999)
    assert len(w) == af.working_length(fmt, 999)
    assert af.answer(fmt, w, 999) == str(a * b)


def test_running_sums_is_the_documented_layout():
    w = af.working("running_sums", (123, 456), ("*",), 999)
    assert af.display("running_sums", w, 999) == "810 610 820 410 420 030 110 610 500 0"
    assert af.answer("running_sums", w, 999) == "56088"
    # every running sum is the previous one (or the carry into its column) plus one
    # digit-pair product: the step names say which
    names = [n for _, _, n in af.steps_of("running_sums", 3)]
    assert names[:3] == ["column 0: + a0*b0", "column 1: + a0*b1", "column 1: + a1*b0"]
    assert names[-1] == "column 5: final carry" and len(names) == 10


@pytest.mark.parametrize("fmt", af.REDUCTIONS)
@pytest.mark.parametrize("counts", [(3,), (3, 4)])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_reductions_round_trip_with_precedence(fmt, counts, data):
    k = data.draw(st.sampled_from(counts))
    ops = data.draw(st.lists(st.sampled_from(eq.OPERATORS), min_size=k - 1, max_size=k - 1))
    digits = data.draw(st.lists(st.integers(1, 3), min_size=k, max_size=k))  # every stratum
    values = [data.draw(st.integers(max(1 if i and ops[i - 1] == "/" else 0,
                                        10 ** (d - 1) if d > 1 else 0), 10 ** d - 1))
              for i, d in enumerate(digits)]
    w = af.working(fmt, values, ops, 999)
    truth = eq.evaluate(values, ops)
    assert af.answer(fmt, w, 999) == str(truth)
    longest = eq.max_result_chars(list(eq.OPERATORS), 0, 999, k)
    assert len(w) <= af.working_length(fmt, 999, k, longest)
    assert af.first_wrong_step(fmt, w, w, 999) is None
    # the values are reduce_first's (reduce_unsigned: its own order of sums and
    # differences); a worked reduction comes before its own value
    parts = af.reduction_parts(fmt, values, ops, 999)
    values_only = [text for text, steps in parts if steps[0][2].startswith("value")
                   and "worked" not in steps[0][2]]
    if fmt in af.UNSIGNED:
        written = [v[::-1] for v in values_only]
        assert all(not v.startswith("-") for v in written[:-1])  # no signed value but the last
        assert [int(v) for v in written] == [
            r[3] for r in af.reductions(values, ops, unsigned=True)]
    else:
        assert af.SEPARATOR.join(values_only) == af.working("reduce_first", values, ops, 999)
    # every step of the working is named, in order, and the steps cover every character
    text, spans = af.working_and_steps(fmt, values, ops, 999)
    assert text == w
    assert "".join(w[a:b] for a, b, _ in spans) == w.replace(af.SEPARATOR, "")
    for a, b, name in spans:  # a wrong character is named by the step that holds it
        bad = w[:a] + ("9" if w[a] != "9" else "8") + w[a + 1:]
        assert af.first_wrong_step(fmt, w, bad, 999, spans) == name


def test_reduce_running_sums_works_the_products_of_two_operands_only():
    rs = af.working("running_sums", (34, 5), ("*",), 999)
    assert af.working("reduce_running_sums", (12, 34, 5), ("+", "*"), 999) == rs + " 071 281"
    # a * b * c: a * b worked; the product of that value and c written directly
    w = af.working("reduce_running_sums", (7, 7, 4), ("*", "*"), 999)
    assert w == af.working("running_sums", (7, 7), ("*",), 999) + " 94 691"
    # a / b * c: the product's left operand is a quotient, so no working
    assert af.working("reduce_running_sums", (100, 5, 3), ("/", "*"), 999) == "02 06"
    assert af.working("reduce_running_sums", (9, 8, 7), ("+", "-"), 999) == "71 01"
    assert af.working_length("reduce_running_sums", 999, 3, 10) == 29 + 21
    # where a wrong answer went wrong: inside the worked product, or at a value
    truth, spans = af.working_and_steps("reduce_running_sums", (12, 34, 5), ("+", "*"), 999)
    bad = rs[:3] + ("9" if rs[3] != "9" else "8") + rs[4:] + " 071 281"
    assert af.first_wrong_step("reduce_running_sums", truth, bad, 999, spans) == \
        "value 1, worked: column 1: + a0*b1"
    assert af.first_wrong_step("reduce_running_sums", truth, rs + " 071 291", 999,
                               spans) == "value 2"


def test_reduce_unsigned_writes_no_negative_value_before_the_answer():
    # a - b + c: a + c first, then minus b; a - b - c: b + c first, then a minus that sum
    assert af.working("reduce_unsigned", (9, 8, 7), ("-", "+"), 999) == "61 8"
    assert af.working("reduce_unsigned", (2, 13, 1), ("-", "-"), 999) == "41 21-"
    assert af.working("reduce_unsigned", (1, 2, 3, 4), ("-", "+", "-"), 999) == "4 6 2-"
    # a + b - c, and one sum or difference after the products: reduce_running_sums' working
    for values, ops in [((9, 8, 7), ("+", "-")), ((12, 34, 5), ("-", "*")),
                        ((12, 34, 5), ("*", "-")), ((100, 5, 3), ("/", "-")),
                        ((7, 7, 4), ("*", "*")), ((9, 8, 7), ("+", "+"))]:
        assert af.working("reduce_unsigned", values, ops, 999) == \
            af.working("reduce_running_sums", values, ops, 999)
    assert af.working_length("reduce_unsigned", 999, 3, 10) == \
        af.working_length("reduce_running_sums", 999, 3, 10)
    # every single-digit equation: only the answer may be negative
    for ops in itertools.product(eq.OPERATORS, repeat=2):
        for values in itertools.product(range(1, 10), repeat=3):
            reduced = af.reductions(values, ops, unsigned=True)
            assert all(r[3] >= 0 for r in reduced[:-1]), (values, ops, reduced)
    # where it went wrong: the sum of the subtracted terms is value 1
    truth, spans = af.working_and_steps("reduce_unsigned", (2, 13, 1), ("-", "-"), 999)
    assert af.first_wrong_step("reduce_unsigned", truth, "31 21-", 999, spans) == "value 1"
    assert af.first_wrong_step("reduce_unsigned", truth, "41 11-", 999, spans) == "value 2"


def test_reduce_fitting_works_every_product_whose_factors_fit_an_operand():
    rs = functools.partial(af.running_sums, d=3)
    # a * b * c: the second product worked exactly when a * b fits three digits
    assert af.working("reduce_fitting", (7, 4, 7), ("*", "*"), 999) == \
        " ".join([rs(7, 4), "82", rs(28, 7), "691"])
    assert af.working("reduce_fitting", (999, 1, 7), ("*", "*"), 999) == \
        " ".join([rs(999, 1), "999", rs(999, 7), "3996"])
    assert af.working("reduce_fitting", (100, 10, 7), ("*", "*"), 999) == \
        " ".join([rs(100, 10), "0001", "0007"])  # 1000 is wider than an operand: direct
    # a / b * c: a quotient of two operands always fits, so its product is worked
    assert af.working("reduce_fitting", (100, 5, 3), ("/", "*"), 999) == \
        " ".join(["02", rs(20, 3), "06"])
    # everything else as reduce_unsigned: quotients direct, sums unsigned
    for values, ops in [((5, 5, 3), ("*", "/")), ((9, 8, 7), ("-", "-")),
                        ((12, 34, 5), ("+", "*")), ((999, 999, 999), ("*", "*")),
                        ((120, 7, 9), ("/", "/")), ((2, 13, 1), ("-", "+"))]:
        assert af.working("reduce_fitting", values, ops, 999) == \
            af.working("reduce_unsigned", values, ops, 999), (values, ops)
    # two-digit operands: the factors fit two digits
    assert af.working("reduce_fitting", (9, 9, 9), ("*", "*"), 99) == \
        " ".join([af.running_sums(9, 9, 2), "18", af.running_sums(81, 9, 2), "927"])
    # a wrong step inside the second product's working is named as that product's
    truth, spans = af.working_and_steps("reduce_fitting", (7, 4, 7), ("*", "*"), 999)
    start = len(rs(7, 4)) + 4 + 3  # the second product's second running sum
    bad = truth[:start] + ("9" if truth[start] != "9" else "8") + truth[start + 1:]
    assert af.first_wrong_step("reduce_fitting", truth, bad, 999, spans) == \
        "value 2, worked: column 1: + a0*b1"
    assert af.answer("reduce_fitting", truth, 999) == "196"
    # the longest working of three operands: both products worked (28 + 3 + 28 + 6 and
    # 3 spaces), within the decoder's bound
    longest = _longest_working("reduce_fitting", [(999, 1, 999), (31, 32, 999),
                                                  (999, 999, 999)])
    assert longest == 68 <= af.working_length("reduce_fitting", 999, 3, 9)


def _read_back_every_one_digit_equation(fmt):
    """Every equation of three one-digit operands: its working's answer is its value, and
    the working fits the decoder's bound."""
    longest = 0
    for ops in itertools.product(eq.OPERATORS, repeat=2):
        for x, y, z in itertools.product(range(10), repeat=3):
            try:
                w = af.working(fmt, (x, y, z), ops, 9)
            except af.WorkingError:  # division by zero
                continue
            value = af.reduction_values((x, y, z), ops)[-1]
            assert af.answer(fmt, w, 9) == str(value), (x, y, z, ops)
            longest = max(longest, len(w))
    assert longest <= af.working_length(fmt, 9, 3, 3)


def _longest_working(fmt, operand_triples, high=999):
    """The longest working of the given operands under every pair of operators."""
    return max(len(af.working(fmt, values, ops, high))
               for ops in itertools.product(eq.OPERATORS, repeat=2)
               for values in operand_triples)


def test_reduce_fitting_division_works_every_quotient_of_a_value_that_fits_an_operand():
    rs = functools.partial(af.running_sums, d=3)
    ld = functools.partial(af.long_division, d=3, db=3, layout="shown")
    # a * b / c: the product worked, then its quotient as long division of 036 by 003,
    # each step written out: 0 (0, 0, 0), 3 (1, 3, 0), 6 (2, 6, 0)
    assert ld(36, 3) == "0000" "0" "0000" "000" "3000" "1" "3000" "000" "6000" "2" "6000" "000"
    assert af.working("reduce_fitting_division", (4, 9, 3), ("*", "/"), 999) == \
        " ".join([rs(4, 9), "63", ld(36, 3), "21"])
    # exactly when the dividend fits three digits: 999 * 1 does, 100 * 10 does not
    assert af.working("reduce_fitting_division", (999, 1, 7), ("*", "/"), 999) == \
        " ".join([rs(999, 1), "999", ld(999, 7), "241"])
    assert af.working("reduce_fitting_division", (100, 10, 7), ("*", "/"), 999) == \
        af.working("reduce_fitting", (100, 10, 7), ("*", "/"), 999) == \
        " ".join([rs(100, 10), "0001", "241"])
    # a / b / c: the second quotient (of a value, which always fits) worked, the first
    # (of two operands) written directly
    assert af.working("reduce_fitting_division", (120, 7, 9), ("/", "/"), 999) == \
        " ".join(["71", ld(17, 9), "1"])
    # a quotient after a sum is of two operands: everything without a quotient of a value
    # is reduce_fitting's working
    for values, ops in [((7, 4, 7), ("*", "*")), ((100, 5, 3), ("/", "*")),
                        ((9, 8, 7), ("-", "-")), ((12, 34, 5), ("+", "/")),
                        ((999, 999, 999), ("*", "*")), ((2, 13, 1), ("-", "+"))]:
        assert af.working("reduce_fitting_division", values, ops, 999) == \
            af.working("reduce_fitting", values, ops, 999), (values, ops)
    # a wrong quotient digit inside the long division is named as that digit's step
    truth, spans = af.working_and_steps("reduce_fitting_division", (4, 9, 3), ("*", "/"),
                                        999)
    assert af.answer("reduce_fitting_division", truth, 999) == "12"
    start = len(rs(4, 9)) + len(" 63 ") + 12 + 4  # the second digit's quotient digit
    bad = truth[:start] + "2" + truth[start + 1:]
    assert af.first_wrong_step("reduce_fitting_division", truth, bad, 999, spans) == \
        "value 2, worked: digit 2 of 3: quotient digit"
    # every equation of one-digit operands read back, within the decoder's bound
    _read_back_every_one_digit_equation("reduce_fitting_division")
    # three-digit operands: the longest is a product, then the long division of its value
    # (28 + 3 + 36 + 3 and 3 spaces)
    longest = _longest_working("reduce_fitting_division", [(999, 1, 1), (31, 32, 1),
                                                           (999, 999, 999)])
    assert longest == 73 <= af.working_length("reduce_fitting_division", 999, 3, 9)


def test_reduce_chunked_works_a_wider_product_in_chunks_of_an_operands_digits():
    rs = functools.partial(af.running_sums, d=3)
    # a * b * c with a * b wider than three digits: each three-digit chunk of 56088 times
    # 789 worked and written as six digits, then the product's value
    assert af.working("reduce_chunked", (123, 456, 789), ("*", "*"), 999) == \
        " ".join([rs(123, 456), "88065", rs(88, 789), "234960", rs(56, 789), "481440",
                  "23435244"])
    assert af.working("reduce_chunked", (999, 999, 999), ("*", "*"), 999) == \
        " ".join([rs(999, 999), "100899", rs(1, 999), "999000", rs(998, 999), "200799",
                  "999200799"])
    # a zero chunk is still worked: every such product has the same parts
    assert af.working("reduce_chunked", (100, 10, 7), ("*", "*"), 999) == \
        " ".join([rs(100, 10), "0001", rs(0, 7), "000000", rs(1, 7), "700000", "0007"])
    # a product that fits, and everything without a wider product: reduce_fitting's working
    for values, ops in [((7, 4, 7), ("*", "*")), ((999, 1, 7), ("*", "*")),
                        ((100, 5, 3), ("/", "*")), ((5, 5, 3), ("*", "/")),
                        ((9, 8, 7), ("-", "-")), ((12, 34, 5), ("+", "*")),
                        ((999, 999, 7), ("*", "/")), ((120, 7, 9), ("/", "/"))]:
        assert af.working("reduce_chunked", values, ops, 999) == \
            af.working("reduce_fitting", values, ops, 999), (values, ops)
    # the answer is the last value; a wrong step in a chunk is named by its chunk
    truth, spans = af.working_and_steps("reduce_chunked", (123, 456, 789), ("*", "*"), 999)
    assert af.answer("reduce_chunked", truth, 999) == str(123 * 456 * 789)
    start = 3 * (len(rs(1, 1)) + 1) + len("88065 234960 ") + 2  # '481440': its 1
    bad = truth[:start] + ("9" if truth[start] != "9" else "8") + truth[start + 1:]
    assert af.first_wrong_step("reduce_chunked", truth, bad, 999, spans) == \
        "value 2, worked: chunk 2 of 2"
    # every equation of one-digit operands read back, within the decoder's bound
    _read_back_every_one_digit_equation("reduce_chunked")
    # three-digit operands: the longest is two products, the second in two chunks
    longest = _longest_working("reduce_chunked", [(999, 1, 999), (31, 33, 999),
                                                  (999, 999, 999)])
    assert longest == 117 <= af.working_length("reduce_chunked", 999, 3, 9)


def test_reduce_worked_works_every_product_and_every_quotient_of_a_value():
    # a * b * c: both products as running sums, the second's left operand padded to the
    # six digits a product of two operands can have
    w = af.working("reduce_worked", (7, 7, 4), ("*", "*"), 999)
    assert w == " ".join([af.running_sums(7, 7, 3), "94", af.running_sums(49, 4, 6, 3), "691"])
    assert af.display("reduce_worked", w, 999) == w and af.answer("reduce_worked", w, 999) == "196"
    # a * b / c: the quotient of the product as long division, most significant digit first
    # (quotient digit, then the remainder least significant first): 998001 // 7 = 142571 r 4
    w = af.working("reduce_worked", (999, 999, 7), ("*", "/"), 999)
    division = w.split(af.SEPARATOR)[2]
    assert [division[k:k + 4] for k in range(0, 24, 4)] == [
        "1200", "4100", "2400", "5500", "7100", "1400"]  # 9 = 1*7 + 2, 29 = 4*7 + 1, ...
    assert af.answer("reduce_worked", w, 999) == "142571"
    # a wrong quotient digit and a wrong remainder are named apart
    truth, spans = af.working_and_steps("reduce_worked", (999, 999, 7), ("*", "/"), 999)
    at = len(" ".join(truth.split(af.SEPARATOR)[:2])) + 1 + 2 * 4  # the third digit's
    assert af.first_wrong_step("reduce_worked", truth, truth[:at] + "9" + truth[at + 1:], 999,
                               spans) == "value 2, worked: digit 3 of 6: quotient digit"
    assert af.first_wrong_step("reduce_worked", truth,
                               truth[:at + 1] + "9" + truth[at + 2:], 999, spans) == \
        "value 2, worked: digit 3 of 6: remainder"
    # a quotient of two operands is written directly; of a value, worked
    assert af.working("reduce_worked", (100, 5, 3), ("/", "*"), 999) == \
        "02 " + af.running_sums(20, 3, 3) + " 06"
    assert af.working("reduce_worked", (100, 5, 3), ("/", "/"), 999) == \
        "02 " + af.long_division(20, 3, 3, 3) + " 6"
    assert af.working("reduce_worked", (9, 8, 7), ("+", "-"), 999) == "71 01"
    # the longest working of three operands is a * b * c: 28 + 6 + 55 + 9 and 3 spaces
    longest = max(len(af.working("reduce_worked", (999, 999, 999), ops, 999))
                  for ops in itertools.product(eq.OPERATORS, repeat=2))
    assert longest == 101 <= af.working_length("reduce_worked", 999, 3, 10)
    # where it went wrong: named from the equation (a value can be as long as a step)
    truth, spans = af.working_and_steps("reduce_worked", (9, 9, 5), ("*", "*"), 999)
    start = truth.index(" ", truth.index(" ") + 1) + 1 + 3  # second product's 2nd sum
    bad = truth[:start] + ("9" if truth[start] != "9" else "8") + truth[start + 1:]
    assert af.first_wrong_step("reduce_worked", truth, bad, 999, spans) == \
        "value 2, worked: column 1: + a0*b1"
    for fmt in af.REDUCTIONS:  # the working alone cannot say where its steps are
        with pytest.raises(af.WorkingError, match="working_and_steps"):
            af.step_spans(fmt, truth, 999)


def test_reduce_digit_products_writes_each_digit_product_before_the_sum_it_joins():
    # 7 * 7 * 4: per digit pair of 007 * 007 the product (two digits) then the running sum
    # (three), least significant first: 7 * 7 = 49 -> '94', sum 49 -> '940'; the column 1
    # pairs multiply a zero: '00', and the carry 4 -> '400'
    w = af.working("reduce_digit_products", (7, 7, 4), ("*", "*"), 999)
    parts = w.split(af.SEPARATOR)
    assert parts[0][:15] == "94" "940" "00" "400" "00" "400"
    assert parts[1] == "94" and parts[3] == "691"
    assert af.answer("reduce_digit_products", w, 999) == "196"
    # the running sums are reduce_worked's, each after its product; the values the same
    worked = af.working("reduce_worked", (7, 7, 4), ("*", "*"), 999).split(af.SEPARATOR)
    for fine, plain, (da, db) in ((parts[0], worked[0], (3, 3)), (parts[2], worked[2], (6, 3))):
        w_sum = af.sum_width(min(da, db))
        steps = af.running_sums_steps(da, db, products=True)
        assert "".join(fine[a:b] for a, b, name in steps if "+" in name or "carry" in name) \
            == plain
        products = [fine[a:b][::-1] for a, b, name in steps if "*" in name and "+" not in name]
        assert len(products) == da * db and all(len(p) == 2 for p in products)
        assert len(fine) == af.running_sums_length(da, db, products=True) == \
            da * db * (2 + w_sum) + 1
    # where it went wrong: a product looked up wrong is named apart from the sum after it
    truth, spans = af.working_and_steps("reduce_digit_products", (9, 9, 5), ("*", "*"), 999)
    start = truth.index(" ", truth.index(" ") + 1) + 1  # the second product's first product
    bad = truth[:start] + ("9" if truth[start] != "9" else "8") + truth[start + 1:]
    assert af.first_wrong_step("reduce_digit_products", truth, bad, 999, spans) == \
        "value 2, worked: column 0: a0*b0"
    assert af.first_wrong_step("reduce_digit_products", truth,
                               bad[:start] + truth[start:start + 2] + "?" + truth[start + 3:],
                               999, spans) == "value 2, worked: column 0: + a0*b0"
    # the decoder holds the longest, a * b * c's: 18 + 90 + 6 + 9 more than reduce_worked's
    longest = max(len(af.working("reduce_digit_products", (999, 999, 999), ops, 999))
                  for ops in itertools.product(eq.OPERATORS, repeat=2))
    assert longest == 101 + 2 * (9 + 18) <= af.working_length("reduce_digit_products", 999, 3, 10)


def _random_quotients_of_products(high, seed, n=500):
    """n random (a, b, c) of 0..high for a * b / c, c never 0."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        a, b, c = (int(v) for v in rng.integers(0, high + 1, 3))
        yield a, b, max(c, 1)


def _division_steps(fmt, operands, operators, high):
    """{(digit, step name): the integer it writes} of the long division in a working."""
    text, spans = af.working_and_steps(fmt, operands, operators, high)
    out = {}
    for start, stop, name in spans:
        if "worked: digit" in name:
            digit, step = name.split("worked: digit ")[1].split(": ", 1)
            out[int(digit.split(" of ")[0]), step] = int(text[start:stop][::-1])
    return out


@pytest.mark.parametrize("high", [9, 99, 999])
def test_reduce_long_division_writes_each_long_division_step_out(high):
    # 7 * 2 / 2 on 0..999: the long division of 000014 by 002, per digit the number
    # brought down (four digits), the quotient digit, its product with 2 (four), the
    # remainder (three), least significant first
    if high == 999:
        parts = af.working("reduce_long_division", (7, 2, 2), ("*", "/"), 999).split(" ")
        assert parts[1:] == ["41", ("0000" "0" "0000" "000") * 4
                             + "1000" "0" "0000" "100" "4100" "7" "4100" "000", "7"]
    d = af.digits_of(high)
    for a, b, c in _random_quotients_of_products(high, seed=high):
        steps = _division_steps("reduce_long_division", (a, b, c), ("*", "/"), high)
        plain = _division_steps("reduce_digit_products", (a, b, c), ("*", "/"), high)
        # each step is the arithmetic its name says; the quotient digits and remainders are
        # reduce_digit_products', so the answer is the same
        assert {k: v for k, v in steps.items() if k[1] in ("quotient digit", "remainder")} \
            == plain and len(steps) == 2 * len(plain) == 4 * 2 * d
        remainder, dividend = 0, str(a * b).zfill(2 * d)
        for n in range(1, 2 * d + 1):
            brought = steps[n, "brought down"]
            assert brought == remainder * 10 + int(dividend[n - 1])
            assert steps[n, "quotient digit"] == brought // c
            assert steps[n, "quotient digit * divisor"] == steps[n, "quotient digit"] * c
            remainder = steps[n, "remainder"]
            assert remainder == brought - steps[n, "quotient digit * divisor"] < c
        w = af.working("reduce_long_division", (a, b, c), ("*", "/"), high)
        assert af.answer("reduce_long_division", w, high) == str(a * b // c)
    # a product of two operands' quotient is written directly, as in reduce_digit_products
    assert af.working("reduce_long_division", (8, 3, 5), ("/", "+"), high) == \
        af.working("reduce_digit_products", (8, 3, 5), ("/", "+"), high)
    # the decoder holds the longest working of any pattern (on one digit a long division
    # of a product is longer than the product's working: 27 characters against 23)
    longest = max(len(af.working("reduce_long_division", (high, high, v), ops, high))
                  for ops in itertools.product(eq.OPERATORS, repeat=2) for v in (1, high))
    longest_chars = eq.max_result_chars(list(eq.OPERATORS), 0, high, 3)
    assert longest <= af.working_length("reduce_long_division", high, 3, longest_chars)
    if high == 9:
        assert af.long_division_length(2, 1, "shown") == 12 > \
            af.running_sums_length(2, 1, products=True) == 9
    # where it went wrong: the product written wrong is named apart from the remainder
    truth, spans = af.working_and_steps("reduce_long_division", (high, high, 7), ("*", "/"),
                                        high)
    start, stop, name = [s for s in spans if s[2].endswith(
        f"digit {2 * d} of {2 * d}: quotient digit * divisor")][0]
    bad = truth[:start] + ("9" if truth[start] != "9" else "8") + truth[start + 1:]
    assert af.first_wrong_step("reduce_long_division", truth, bad, high, spans) == name


@pytest.mark.parametrize("high", [9, 99, 999])
def test_reduce_division_table_writes_the_divisors_multiples_before_its_long_division(high):
    # 7 * 2 / 2 on 0..999: 2, 4, .. 18 (four digits each, least significant first), then
    # reduce_long_division's steps of 000014 / 002
    if high == 999:
        parts = af.working("reduce_division_table", (7, 2, 2), ("*", "/"), 999).split(" ")
        shown = af.working("reduce_long_division", (7, 2, 2), ("*", "/"), 999).split(" ")
        assert parts[2] == "2000" "4000" "6000" "8000" "0100" "2100" "4100" "6100" "8100" \
            + shown[2] and parts[3:] == shown[3:] == ["7"]
    d = af.digits_of(high)
    for a, b, c in _random_quotients_of_products(high, seed=high + 1):
        text, spans = af.working_and_steps("reduce_division_table", (a, b, c), ("*", "/"),
                                           high)
        written = {name.split("worked: ")[1]: int(text[start:stop][::-1])
                   for start, stop, name in spans if "worked: divisor table" in name}
        multiples = [written[f"divisor table: {k} * divisor"] for k in range(1, 10)]
        assert multiples == [k * c for k in range(1, 10)]
        steps = _division_steps("reduce_division_table", (a, b, c), ("*", "/"), high)
        # the steps are reduce_long_division's; the quotient digit is how many multiples
        # the number brought down reaches, its product with the divisor one of them
        assert steps == _division_steps("reduce_long_division", (a, b, c), ("*", "/"), high)
        for n in range(1, 2 * d + 1):
            q = steps[n, "quotient digit"]
            assert q == sum(m <= steps[n, "brought down"] for m in multiples)
            assert steps[n, "quotient digit * divisor"] == ([0] + multiples)[q]
        assert af.answer("reduce_division_table", text, high) == str(a * b // c)
        # a quotient of two operands, and a product, are written as before
        for ops in (("/", "+"), ("*", "*")):
            assert af.working("reduce_division_table", (a, c, b), ops, high) == \
                af.working("reduce_long_division", (a, c, b), ops, high)
    longest = max(len(af.working("reduce_division_table", (high, high, v), ops, high))
                  for ops in itertools.product(eq.OPERATORS, repeat=2) for v in (1, high))
    longest_chars = eq.max_result_chars(list(eq.OPERATORS), 0, high, 3)
    assert longest <= af.working_length("reduce_division_table", high, 3, longest_chars)
    # a wrong multiple is named as that multiple
    truth, spans = af.working_and_steps("reduce_division_table", (high, high, 7), ("*", "/"),
                                        high)
    start, stop, name = [s for s in spans if s[2].endswith("divisor table: 6 * divisor")][0]
    bad = truth[:start] + ("9" if truth[start] != "9" else "8") + truth[start + 1:]
    assert af.first_wrong_step("reduce_division_table", truth, bad, high, spans) == name


@pytest.mark.parametrize("high", [9, 99, 999])
def test_reduce_column_division_writes_each_remainder_digit_after_the_two_it_subtracts(high):
    # 7 * 2 / 2 on 0..999, the dividend's last digit: 14 brought down, quotient digit 7,
    # then per column the digit of 14, of 7 * 2 = 14, of the remainder 0
    if high == 999:
        w = af.working("reduce_column_division", (7, 2, 2), ("*", "/"), 999)
        assert w.split(" ")[2].endswith("4100" "7" "440" "110" "000" "000")
    d = af.digits_of(high)
    for a, b, c in _random_quotients_of_products(high, seed=high + 2):
        steps = _division_steps("reduce_column_division", (a, b, c), ("*", "/"), high)
        shown = _division_steps("reduce_long_division", (a, b, c), ("*", "/"), high)
        for n in range(1, 2 * d + 1):
            # the number brought down and the quotient digit are reduce_long_division's;
            # each column's digits are those of the brought-down number, the product and the
            # remainder, and the remainder digit is the difference less the borrow
            for step in ("brought down", "quotient digit"):
                assert steps[n, step] == shown[n, step]
            borrow, product = 0, shown[n, "quotient digit * divisor"]
            for k in range(d + 1):
                down, times = (steps[n, f"column {k}: {name}"]
                               for name in ("brought down", "quotient digit * divisor"))
                assert (down, times) == (shown[n, "brought down"] // 10 ** k % 10,
                                         product // 10 ** k % 10)
                assert steps[n, f"column {k}: remainder"] == (down - times - borrow) % 10
                assert steps[n, f"column {k}: remainder"] == \
                    shown[n, "remainder"] // 10 ** k % 10
                borrow = int(down - times - borrow < 0)
            assert borrow == 0
        w = af.working("reduce_column_division", (a, b, c), ("*", "/"), high)
        assert af.answer("reduce_column_division", w, high) == str(a * b // c)
        for ops in (("/", "+"), ("*", "*")):
            assert af.working("reduce_column_division", (a, c, b), ops, high) == \
                af.working("reduce_long_division", (a, c, b), ops, high)
    # a wrong remainder digit is named as that column's
    truth, spans = af.working_and_steps("reduce_column_division", (high, high, 7),
                                        ("*", "/"), high)
    start, stop, name = [s for s in spans if s[2].endswith(
        f"digit {2 * d} of {2 * d}: column 0: remainder")][0]
    bad = truth[:start] + ("9" if truth[start] != "9" else "8") + truth[start + 1:]
    assert af.first_wrong_step("reduce_column_division", truth, bad, high, spans) == name


@pytest.mark.parametrize("fmt", af.WORK_FITTING_PRODUCTS + af.WORK_EVERY_PRODUCT)
@pytest.mark.parametrize("high", [9, 99, 999])
def test_the_decoder_of_every_worked_format_holds_its_longest_working_and_little_more(
        fmt, high):
    # every decoder step is paid for in training and serving: the bound may round each
    # value up to the longest answer, never count a working no equation writes (the first
    # reduction is of two operands, so never a worked quotient)
    longest_chars = eq.max_result_chars(list(eq.OPERATORS), 0, high, 3)
    longest = max(len(af.working(fmt, (x, y, z), ops, high))
                  for ops in itertools.product(eq.OPERATORS, repeat=2)
                  for x, y, z in itertools.product((high, 1), (high, 1), (high, 1))
                  if not ("/" in ops and 0 in (y, z)))
    assert longest <= af.working_length(fmt, high, 3, longest_chars) <= longest + longest_chars


def test_reduce_aligned_writes_every_step_where_it_starts_in_every_equation_of_its_pattern():
    # a * b * c: reduce_worked's working with the first product's value written as the six
    # digits a product of two operands can have
    w = af.working("reduce_aligned", (7, 7, 4), ("*", "*"), 999)
    assert w == " ".join([af.running_sums(7, 7, 3), "940000", af.running_sums(49, 4, 6, 3),
                          "691"])
    assert af.answer("reduce_aligned", w, 999) == "196"
    # sums and differences in reduce_unsigned's order, each value before the answer padded
    # (a sum of two operands: four digits), the answer not: 9 - (8 + 7) = -6
    assert af.working("reduce_aligned", (9, 8, 7), ("-", "-"), 999) == "5100 6-"
    assert af.working("reduce_aligned", (12, 34, 5), ("+", "*"), 999) == \
        af.running_sums(34, 5, 3) + " 071000 281"
    # in every equation of one operator pattern each part but the answer has one length:
    # a step re-reads the digits of a value from the same decoder positions every time
    rng = np.random.default_rng(7)
    for ops in itertools.product(eq.OPERATORS, repeat=2):
        lengths = set()
        for _ in range(300):
            values = [int(rng.integers(0, 10 ** int(rng.integers(1, 4)))) for _ in range(3)]
            values = [v or 1 if i and ops[i - 1] == "/" else v for i, v in enumerate(values)]
            parts = af.working("reduce_aligned", values, ops, 999).split(af.SEPARATOR)
            lengths.add(tuple(len(p) for p in parts[:-1]))
            assert af.answer("reduce_aligned", af.SEPARATOR.join(parts), 999) == \
                str(eq.evaluate(values, ops))
        assert len(lengths) == 1, (ops, lengths)
    assert af.working_length("reduce_aligned", 999, 3, 10) == \
        af.working_length("reduce_worked", 999, 3, 10)


@pytest.mark.parametrize("high", [9, 99, 999])
def test_long_division_and_rectangular_running_sums_read_back_exactly(high):
    rng = np.random.default_rng(high)
    d = af.digits_of(high)
    for _ in range(3000):
        y = int(rng.integers(1, high + 1))
        x = int(rng.integers(0, (high + 1) ** 2))
        division = af.long_division(x, y, 2 * d, d)
        assert len(division) == 2 * d * (1 + d)
        assert int("".join(division[k] for k in range(0, len(division), 1 + d))) == x // y
        assert int(division[-d:][::-1]) == x % y
        product = af.running_sums(x, y, 2 * d, d)
        assert len(product) == len(af.running_sums(0, 0, 2 * d, d))
        last = {}  # the units digit of each column's last sum is that digit of the product
        for a, _, name in af.running_sums_steps(2 * d, d):
            last[name.split(":")[0]] = product[a]
        assert int("".join(reversed(list(last.values())))) == x * y  # the carry on top


def test_every_layout_writes_the_same_long_division_and_an_unknown_one_is_refused():
    rng = np.random.default_rng(5)
    for _ in range(500):
        y = int(rng.integers(1, 1000))
        x = int(rng.integers(0, 10 ** 6))
        texts = {lay: af.long_division(x, y, 6, 3, lay) for lay in af.DIVISION_LAYOUTS}
        for lay, text in texts.items():  # each step's text where its steps say
            steps = af.long_division_steps(6, 3, lay)
            assert len(text) == af.long_division_length(6, 3, lay) == steps[-1][1]
            quotient = "".join(text[a:b] for a, b, name in steps
                               if name.endswith("quotient digit"))
            assert int(quotient) == x // y, lay
            if lay == "columns":
                left = [text[a] for a, _, name in steps[-12:] if name.endswith(": remainder")]
                assert int("".join(reversed(left))) == x % y
            else:
                assert int(text[steps[-1][0]:steps[-1][1]][::-1]) == x % y, lay
    assert [af.division_layout(f) for f in ("reduce_long_division", "reduce_division_table",
                                            "reduce_column_division", "reduce_worked")] == \
        ["shown", "table", "columns", "quotients"]
    with pytest.raises(af.WorkingError, match="unknown long division layout 'column'.*columns"):
        af.long_division(7, 2, 1, 1, "column")
    with pytest.raises(af.WorkingError, match="unknown long division layout"):
        af.long_division_steps(1, 1, "Shown")


@pytest.mark.parametrize("fmt", af.REDUCTIONS)
def test_reductions_are_right_on_every_single_digit_equation(fmt):
    count = 0
    for ops in itertools.product(eq.OPERATORS, repeat=2):
        for values in itertools.product(range(10), repeat=3):
            if any(op == "/" and v == 0 for op, v in zip(ops, values[1:])):
                continue
            w = af.working(fmt, values, ops, 9)
            assert af.answer(fmt, w, 9) == str(eq.evaluate(values, ops)), (values, ops, w)
            assert len(w) <= af.working_length(fmt, 9, 3, eq.max_result_chars(
                list(eq.OPERATORS), 0, 9, 3))
            count += 1
    assert count == 10 * 39 * 39  # 15,210: a divisor of zero is no equation


def test_reduce_first_writes_the_higher_precedence_value_first():
    assert af.working("reduce_first", (12, 34, 5), ("+", "*"), 999) == "071 281"  # 170, 182
    assert af.working("reduce_first", (5, 9, 3), ("-", "*"), 999) == "72 22-"  # 27, -22
    assert af.answer("reduce_first", "72 22-", 999) == "-22"


@pytest.mark.parametrize("fmt", af.ORDERS)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_digit_order_formats_write_the_answer_in_their_order_for_any_equation(fmt, data):
    k = data.draw(st.sampled_from((2, 3)))
    ops = data.draw(st.lists(st.sampled_from(eq.OPERATORS), min_size=k - 1, max_size=k - 1))
    values = [data.draw(st.integers(1 if i and ops[i - 1] == "/" else 0, 999))
              for i in range(k)]
    truth = str(eq.evaluate(values, ops))
    w = af.working(fmt, values, ops, 999)
    assert w == (truth if fmt == "msd_first" else truth[::-1])  # '-22' or '22-'
    assert af.answer(fmt, w, 999) == truth
    assert len(w) <= af.working_length(fmt, 999, k, eq.max_result_chars(list(ops), 0, 999, k))
    assert af.first_wrong_step(fmt, w, w, 999) is None


def test_digit_order_formats_name_the_first_wrong_character():
    assert af.working("msd_first", (999, 4), ("/",), 999) == "249"
    assert af.first_wrong_step("msd_first", "249", "259", 999) == "character 2"
    assert af.first_wrong_step("lsd_first", "942", "94", 999) == "character 3"
    assert af.answer("msd_first", "0249", 999) == "249" and af.answer("lsd_first", "0-", 999) == ""


def test_formats_refuse_what_they_cannot_write():
    with pytest.raises(af.WorkingError):
        af.working("running_sums", (3, 4), ("+",), 999)
    with pytest.raises(af.WorkingError):
        af.working("running_sums", (1000, 4), ("*",), 999)
    for fmt in af.REDUCTIONS:
        with pytest.raises(af.WorkingError):
            af.working(fmt, (3, 4), ("+",), 999)


def test_first_wrong_step_names_the_step_that_went_wrong():
    w = af.working("running_sums", (123, 456), ("*",), 999)
    bad = w[:6] + ("9" if w[6] != "9" else "8") + w[7:]
    assert af.first_wrong_step("running_sums", w, bad, 999) == "column 1: + a1*b0"
    assert af.first_wrong_step("running_sums", w, w[:-1], 999) == "column 5: final carry"
    assert af.first_wrong_step("running_sums", w, w + "1", 999) == "after the last step"


# --------------------------------------------------------------------------------------
# TF reading == Python reading, malformed workings included


@pytest.mark.parametrize("fmt", FIXED + af.REDUCTIONS + af.ORDERS)
def test_tf_reading_equals_python_reading(fmt):
    rng = np.random.default_rng(0)
    rows = []
    for n in range(300):
        if fmt in af.ORDERS:
            ops = list(rng.choice(list("+-*/"), 1 + n % 2))
            values = [int(v) for v in rng.integers(1, 1000, len(ops) + 1)]
            rows.append(af.working(fmt, values, ops, 999))
        elif fmt in af.REDUCTIONS:
            ops = list(rng.choice(list("+-*/"), 2))
            values = [int(v) for v in rng.integers(1, 1000, 3)]
            rows.append(af.working(fmt, values, ops, 999))
        else:
            rows.append(af.working(fmt, tuple(int(v) for v in rng.integers(0, 1000, 2)),
                                   ("*",), 999))
    # malformed: cut short, too long, a stray token, empty, signs and zeros out of place
    rows += [rows[0][:-1], rows[1] + "7", rows[2][:3] + "-" + rows[2][4:], "", "0",
             "-0", "0-", "00", "-", "1-2", "12 3", "0012"]
    got = af.answer_tf(fmt, tf.constant(rows), 999).numpy()
    for text, answer in zip(rows, got):
        assert answer.decode() == af.answer(fmt, text, 999), text
    shown = af.display_tf(fmt, tf.constant(rows), 999).numpy()
    for text, s in zip(rows, shown):
        assert s.decode() == af.display(fmt, text, 999)


# --------------------------------------------------------------------------------------
# ExampleGen -> records -> input pipeline


def test_example_gen_writes_the_working_and_the_pipeline_trains_on_it():
    from lstm_math.components.data import to_model_inputs
    from lstm_math.components.example_gen import block_workings
    from lstm_math.components.example_records import encode_examples, make_example
    from lstm_math.components.example_layout import FEATURES

    space = sampling.EquationSpace(("+", "*"), 0, 999)
    block = sampling.Sampler(space, 1, 400).block(0, 400)
    fmt = {"*": "running_sums"}
    workings = block_workings(block, fmt, 999)
    records = encode_examples(block.texts(), sampling.int_bytes(block.results), block.tags(),
                              block.operand_digits(), workings)
    for equation, result, working, record in zip(block.equations(), block.results.tolist(),
                                                 workings, records):
        want = af.working("running_sums", equation.operands, equation.operators, 999) \
            if equation.operators == ("*",) else ""
        assert working.decode() == want
        ours = tf.train.Example.FromString(record)
        assert ours == tf.train.Example.FromString(make_example(equation, result, want))
    # a task without working formats writes the records it always wrote
    assert block_workings(block, {}, 999) is None
    assert encode_examples(block.texts(), sampling.int_bytes(block.results), block.tags(),
                           block.operand_digits(), None) == encode_examples(
        block.texts(), sampling.int_bytes(block.results), block.tags(), block.operand_digits())

    features = tf.io.parse_example(tf.constant(records), FEATURES)
    coverage = Coverage.from_dict({
        "operators": ["*"], "operand_min": 0, "operand_max": 999, "num_operands": 2,
        "max_input_length": 7, "reverse_output": True,
        "max_result_length": af.working_length("running_sums", 999),
        "answer_format": fmt, "pad_operands": True})
    (enc, dec_in), targets = to_model_inputs(features, coverage)
    dec_in, targets = dec_in.numpy(), targets.numpy()
    texts = tokenizer.decode_results(targets, False, keep_spaces=True).numpy()
    enc_texts = tf.strings.reduce_join(tf.gather(tf.constant(
        [""] * 4 + list(tokenizer.CHARACTERS) + [" "]), enc), axis=1).numpy()
    for equation, text, enc_text in zip(block.equations(), texts, enc_texts):
        a, b = equation.operands
        assert enc_text.decode() == f"{a:03d}{equation.operators[0]}{b:03d}"
        if equation.operators == ("*",):  # the working, as written
            assert text.decode() == af.working("running_sums", (a, b), ("*",), 999)
        else:  # the answer, least significant digit first
            assert text.decode() == str(a + b)[::-1]
    # teacher forcing: START, then the targets shifted right (END not fed back)
    shifted = np.where(targets[:, :-1] == tokenizer.END_ID, tokenizer.PAD_ID, targets[:, :-1])
    np.testing.assert_array_equal(dec_in[:, 1:], shifted)
    assert (dec_in[:, 0] == tokenizer.START_ID).all()


# --------------------------------------------------------------------------------------
# The serving signature: result is the final answer only


class WritingOracle(tf.Module):
    """A model of ``coverage`` that writes, token for token, what a table holds for each
    equation (keyed by its text, '12 * 345'; looked up as the model's encoder reads it,
    '012*345' where the coverage pads operands).
    (tests/helpers.TableOracle answers numbers; this one writes workings.)"""

    def __init__(self, table: dict, coverage: Coverage):
        super().__init__()
        keys = tokenizer.model_text(tf.constant(list(table)), coverage)
        init = tf.lookup.KeyValueTensorInitializer(keys, list(table.values()))
        self.table = tf.lookup.StaticHashTable(init, "")

    def greedy_decode(self, encoder_ids, steps: int):
        chars = tf.gather(tf.constant([""] * 4 + list(tokenizer.CHARACTERS) + [""]),
                          encoder_ids)
        text = self.table.lookup(tf.strings.reduce_join(chars, axis=1))
        _, ids = tokenizer.encode_results(text, steps - 1, False, "left", text)
        return ids, tf.ones(tf.shape(ids), tf.float32) * 0.99


class WorkingOracle(WritingOracle):
    """Operands 0..99. Writes the true working of every '*' row (for ``a == wrong_a``, with
    the third running sum's units digit changed), the reversed answer of the others."""

    def __init__(self, coverage: Coverage, wrong_a: int):
        space = coverage.space()
        table = {}
        high = coverage.operand_max
        for i in range(space.size):
            e = space.equation_at(i)
            a, b = e.operands
            if e.operators == ("*",):
                w = af.working("running_sums", e.operands, e.operators, high)
                if a == wrong_a:
                    # the units digit of column 1's last running sum: the answer's tens digit
                    w = w[:6] + ("9" if w[6] != "9" else "8") + w[7:]
            else:
                w = str(e.result)[::-1]
            table[e.text] = w
        super().__init__(table, coverage)


def _working_coverage(high=99):
    return Coverage.from_dict({
        "operators": ["+", "*"], "operand_min": 0, "operand_max": high, "num_operands": 2,
        "min_operands": 2, "max_input_length": 5,
        "max_result_length": af.working_length("running_sums", high), "reverse_output": True,
        "output_format": "left", "answer_format": {"*": "running_sums"},
        "pad_operands": True})


def test_signature_returns_the_final_answer_in_result_and_the_working_beside_it():
    coverage = _working_coverage()
    serve = build_serving_function(WorkingOracle(coverage, wrong_a=7), coverage)
    rows = [f"{a} * {b}" for a in range(0, 100, 7) for b in range(0, 100, 11)]
    rows += ["12 + 34", "99 + 99", "7*3", "12 * ", "123 * 4"]
    out = serve(tf.constant(rows))
    for text, result, working, valid in zip(rows, out["result"].numpy(),
                                            out["working"].numpy(), out["valid"].numpy()):
        result, working = result.decode(), working.decode()
        try:
            e = eq.parse(text)
        except eq.EquationError:
            e = None
        if e is None or max(e.operands) > 99:
            assert not valid and result == "" and working == ""
            continue
        truth = str(e.result)
        if e.operators == ("+",):
            assert result == truth and working == ""
            continue
        true_working = af.working("running_sums", e.operands, e.operators, 99)
        # result never carries the working: it is the number read from it
        assert result == af.answer("running_sums", af.raw_working("running_sums", working), 99)
        assert re.fullmatch(r"\d+", result) and " " not in result
        if e.operands[0] == 7:
            assert af.raw_working("running_sums", working) != true_working
            assert af.first_wrong_step("running_sums", true_working,
                                       af.raw_working("running_sums", working), 99) \
                == "column 1: + a1*b0"
            assert result != truth
        else:
            assert result == truth
            assert working == af.display("running_sums", true_working, 99)


def test_one_model_writes_each_operator_in_its_own_digit_order():
    # A model whose answers run units first (reverse_output) but whose '/' is written most
    # significant digit first: training targets and the served answers both follow the
    # operator's format, and `result` is the plain number either way.
    fmt = {"/": "msd_first"}
    space = sampling.EquationSpace(("-", "/"), 0, 99)
    block = sampling.Sampler(space, 1, 300).block(0, 300)
    from lstm_math.components.data import to_model_inputs
    from lstm_math.components.example_gen import block_workings
    from lstm_math.components.example_layout import FEATURES
    from lstm_math.components.example_records import encode_examples

    records = encode_examples(block.texts(), sampling.int_bytes(block.results), block.tags(),
                              block.operand_digits(), block_workings(block, fmt, 99))
    coverage = Coverage.from_dict({
        "operators": ["-", "/"], "operand_min": 0, "operand_max": 99, "num_operands": 2,
        "min_operands": 2, "max_input_length": 5, "max_result_length": 3,
        "reverse_output": True, "output_format": "left", "answer_format": fmt})
    features = tf.io.parse_example(tf.constant(records), FEATURES)
    _, targets = to_model_inputs(features, coverage)
    written = tokenizer.decode_results(targets, False).numpy()
    for equation, text in zip(block.equations(), written):
        truth = str(equation.result)
        assert text.decode() == (truth if equation.operators == ("/",) else truth[::-1])

    table = {}
    for e in map(coverage.space().equation_at, range(coverage.space().size)):
        truth = str(e.result)
        table[e.text] = truth if e.operators == ("/",) else truth[::-1]
    serve = build_serving_function(WritingOracle(table, coverage), coverage)
    rows = ["99 / 4", "7 / 9", "90 / 1", "3 - 57", "57 - 3", "0 - 0", "5 / 0"]
    out = serve(tf.constant(rows))
    assert [r.decode() for r in out["result"].numpy()] == ["24", "0", "90", "-54", "54", "0", ""]
    assert out["valid"].numpy().tolist() == [True] * 6 + [False]


def test_evaluator_reports_where_wrong_answers_went_wrong():
    from lstm_math.components.evaluator.exhaustive import all_equations
    from lstm_math.components.evaluator.scoring import predict
    from lstm_math.components.evaluator.working import working_errors

    coverage = _working_coverage()
    serve = build_serving_function(WorkingOracle(coverage, wrong_a=7), coverage)
    texts, truths, tags = all_equations(coverage)
    extras = {}
    answers, valid, _ = predict(serve, texts, 2048, extras)
    report = working_errors(texts, tags, answers, truths, valid, extras["working"], coverage)
    assert list(report) == ["*"]
    star = report["*"]
    wrong = sum(a != t for a, t, tag in zip(answers, truths, tags) if tag == "*")
    # 7 * b: column 1's last running sum is wrong in its units digit, the answer's tens
    assert star["count"] == 100 * 100 and star["wrong"] == wrong == 100
    assert star["first_wrong_step"] == {"column 1: + a1*b0": 100}
    assert star["working_right_answer_wrong"] == 0
    assert star["right_answer_wrong_working"] == 0


# --------------------------------------------------------------------------------------
# Config


@pytest.mark.parametrize("preset,override,field", [
    ("multiplication", 'task.data.answer_format={"*": "long_hand"}',
     "task.data.answer_format.*"),
    ("full", 'task.data.answer_format={"+": "running_sums"}', "task.data.answer_format.+"),
    ("full", 'task.data.answer_format={"*": "reduce_first"}', "task.data.answer_format.*"),
    ("full", 'task.data.answer_format={"/": "reduce_worked"}', "task.data.answer_format./"),
    ("multiplication", 'task.data.answer_format={"/": "direct"}', "task.data.answer_format"),
    ("multiplication", 'task.data.answer_format=["running_sums"]', "task.data.answer_format"),
    ("multiplication", "trainer.max_result_length=7", "trainer.max_result_length"),
])
def test_bad_answer_format_fails_naming_the_field(preset, override, field):
    with pytest.raises(ConfigError) as info:
        load_config(preset, [override])
    assert str(info.value).startswith(field + ":"), str(info.value)


def test_a_model_that_answers_all_at_once_cannot_take_a_working():
    with pytest.raises(ConfigError, match="^task.data.answer_format: 'seed' models"):
        load_config("seed", ['task.data.operators=["*"]',
                             'task.data.answer_format={"*": "running_sums"}'])


def test_bad_answer_format_on_the_cli_is_one_line_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lstm_math.pipeline.cli", "run", "--config", "multiplication",
         "--pipeline-root", str(tmp_path / "root"), "--set",
         'task.data.answer_format={"*": "long_hand"}'],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]  # after TensorFlow's own import lines
    assert last.startswith("lstm-math run: error: bad config: task.data.answer_format.*: "
                           "unknown format 'long_hand'"), last
    assert os.listdir(tmp_path) == []  # no pipeline root, no run directory


def test_multiplication_preset_writes_running_sums():
    config = load_config("multiplication")
    coverage = coverage_of(config)
    assert coverage.answer_format == {"*": "running_sums"}
    assert coverage.max_result_length == af.working_length("running_sums", 999) == 28
    assert config.trainer.model.tokens_per_step == 3  # a running sum a decoder step


# --------------------------------------------------------------------------------------
# A model trained on working: TF Serving's loader and the serving contract


def _trained_working_model(coverage, steps: int = 30, tokens_per_step: int = 1):
    """The project's attention model with a step embedding (writing ``tokens_per_step``
    tokens a decoder step), fitted for a few steps on working targets (the input
    pipeline's own encoding)."""
    import keras

    from lstm_math.components.data import to_model_inputs
    from lstm_math.components.models import ModelHParams, build_model

    keras.utils.set_random_seed(5)
    width = coverage.max_result_length + 1
    model = build_model(ModelHParams(embedding_dim=8, encoder_units=16, decoder_units=16,
                                     attention_heads=2, step_embedding=True,
                                     pad_operands=True, tokens_per_step=tokens_per_step),
                        width)
    optimizer = keras.optimizers.Adam(0.01)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        a, b = rng.integers(0, 100, 64), rng.integers(0, 100, 64)
        ops = rng.choice(["+", "*"], 64)
        texts = [f"{x} {o} {y}" for x, o, y in zip(a.tolist(), ops.tolist(), b.tolist())]
        results = [str(x * y if o == "*" else x + y) for x, o, y in zip(a, ops, b)]
        workings = [af.working("running_sums", (x, y), ("*",), 99) if o == "*" else ""
                    for x, o, y in zip(a.tolist(), ops.tolist(), b.tolist())]
        (enc, dec_in), targets = to_model_inputs(
            {"equation": tf.constant(texts), "result": tf.constant(results),
             "working": tf.constant(workings)}, coverage)
        with tf.GradientTape() as tape:
            loss = loss_fn(targets, model((enc, dec_in), training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return model


CONTRACT = r"""
import json, sys
import tensorflow as tf
fn = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
rows = ["12 * 34", "99*99", "3 + 4", "7 * x", ""]
out = fn(equation=tf.constant(rows))
print(json.dumps({
    "dtypes": {k: v.dtype.name for k, v in out.items()},
    "valid": out["valid"].numpy().tolist(),
    "result": [r.decode() for r in out["result"].numpy()],
    "working": [r.decode() for r in out["working"].numpy()],
    "project_modules": sorted(m for m in sys.modules if m.split(".")[0] == "lstm_math"),
}))
"""


@pytest.mark.parametrize("tokens_per_step", [1, 3])  # 3: the multiplication preset's
def test_a_model_trained_on_working_passes_the_session_loader_and_the_contract(
        tmp_path, tokens_per_step):
    from lstm_math.components import infra_validator
    from lstm_math.components.exporter import export_saved_model

    coverage = _working_coverage()
    model = _trained_working_model(coverage, tokens_per_step=tokens_per_step)
    path = export_saved_model(model, coverage, {"exact_match": 0.0}, str(tmp_path / "m"),
                              warmup_batch_sizes=[1, 3])
    out = infra_validator.run_infra_validator(path, coverage, 0.0, str(tmp_path / "iv"),
                                              num_canaries=10, huge_batch=64, timeout_s=600)
    assert out["passed"] is True, out["problems"]
    assert any(c.startswith("TF Serving's loader (tf.compat.v1 Session") for c in out["checks"])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", "-c", CONTRACT, path], capture_output=True,
                          text=True, timeout=300, cwd=str(tmp_path), env=env, check=True)
    got = __import__("json").loads(proc.stdout)
    assert got["project_modules"] == []
    # the outputs of the contract, unchanged (``trusted`` included), and the working beside them
    assert got["dtypes"] == {"result": "string", "valid": "bool", "error": "string",
                             "confidence": "float32", "trusted": "bool", "working": "string"}
    assert got["valid"] == [True, True, True, False, False]
    for result, working, valid in zip(got["result"], got["working"], got["valid"]):
        # result: never the working; a number read from it, or '' when it cannot be read
        assert result == "" or re.fullmatch(r"\d+", result)
        if not valid:
            assert result == "" and working == ""
    assert got["working"][2] == ""  # '+' is answered directly: no working
    for row in (0, 1):
        if len(af.raw_working("running_sums", got["working"][row])) == 13:
            assert got["result"][row] == af.answer(
                "running_sums", af.raw_working("running_sums", got["working"][row]), 99)


def _first_sum_of_part_off(part: int, parts: list) -> list:
    """The working with the first running sum of its ``part``-th part off by one digit."""
    parts = list(parts)
    parts[part] = ("9" if parts[part][0] != "9" else "8") + parts[part][1:]
    return parts


def _second_operand_7(operators):
    """The equations of ``operators`` whose second operand is 7."""
    return lambda e: e.operators == operators and e.operands[1] == 7


# (format, operators, the equations given a wrong working, which part is made wrong,
#  the step the Evaluator must name, how many equations of 0..12 that is)
REDUCTION_CASES = [
    # b * c of 'a + b * c' worked, its first sum off where b == 7
    ("reduce_running_sums", ("+", "*"), _second_operand_7(("+", "*")),
     0, "value 1, worked: column 0: + a0*b0", 13 * 13),
    # the second product of 'a * 7 * c' worked where a * 7 fits two digits (every a of
    # 0..12), its first sum off
    ("reduce_fitting", ("*", "/"), _second_operand_7(("*", "*")),
     2, "value 2, worked: column 0: + a0*b0", 13 * 13),
    # the second product of 'a * b * c' (a value times c) worked, its first sum off
    ("reduce_worked", ("*", "/"), _second_operand_7(("*", "*")),
     2, "value 2, worked: column 0: + a0*b0", 13 * 13),
    # the same with the first product's value padded: the steps are where they were
    ("reduce_aligned", ("*", "/"), _second_operand_7(("*", "*")),
     2, "value 2, worked: column 0: + a0*b0", 13 * 13),
    # the second product of 'a * b * c' where a * b is wider than two digits (11 of the
    # pairs of 0..12), worked in two chunks: the first chunk's first sum off
    ("reduce_chunked", ("*", "/"),
     lambda e: e.operators == ("*", "*") and e.operands[0] * e.operands[1] >= 100,
     2, "value 2, worked: chunk 1 of 2: column 0: + a0*b0", 11 * 13),
    # the quotient of 'a * 7 / c' (a * 7 fits two digits for every a of 0..12) worked as
    # long division with its steps written: its first character is the first number
    # brought down
    ("reduce_fitting_division", ("*", "/"), _second_operand_7(("*", "/")),
     2, "value 2, worked: digit 1 of 2: brought down", 13 * 12),
    # the same with each digit product written: the first character is a product's
    ("reduce_digit_products", ("*", "/"), _second_operand_7(("*", "*")),
     2, "value 2, worked: column 0: a0*b0", 13 * 13),
    # the long division of 'a * b / c' with each step written: its first character is the
    # first number brought down (a zero: the product is zero-padded to four digits)
    ("reduce_long_division", ("*", "/"), _second_operand_7(("*", "/")),
     2, "value 2, worked: digit 1 of 4: brought down", 13 * 12),
    # the same with the divisor's multiples first: the first character is the divisor's
    ("reduce_division_table", ("*", "/"), _second_operand_7(("*", "/")),
     2, "value 2, worked: divisor table: 1 * divisor", 13 * 12),
    # the remainder written column by column: the first character is the first number
    # brought down, as in reduce_long_division
    ("reduce_column_division", ("*", "/"), _second_operand_7(("*", "/")),
     2, "value 2, worked: digit 1 of 4: brought down", 13 * 12),
]


@pytest.mark.parametrize("fmt,operators,made_wrong,part,step,wrong",
                         REDUCTION_CASES, ids=[c[0] for c in REDUCTION_CASES])
def test_reductions_from_example_gen_to_the_signature_and_the_evaluator(
        tmp_path, fmt, operators, made_wrong, part, step, wrong):
    """Three operands with their working: ExampleGen writes it, DataValidation recomputes
    it, the decoder length covers the longest, the signature reads only the final value
    into ``result``, and a wrong step inside a worked reduction is named as such."""
    from lstm_math.components.data_validation import run_data_validation
    from lstm_math.components.evaluator.working import working_errors
    from lstm_math.components.example_gen import run_example_gen

    config = load_config("mixed", ["task.data.operand_max=12", "task.data.num_examples=800",
                                   "task.data.num_shards=1",
                                   f"task.data.operators={list(operators)}",
                                   f'task.data.answer_format={{"mixed": "{fmt}"}}'])
    coverage = coverage_of(config)
    longest = eq.max_result_chars(list(operators), 0, 12, 3)  # '1884' / '1728'
    assert coverage.max_result_length == af.working_length(fmt, 12, 3, longest)
    out = str(tmp_path / "examples")
    run_example_gen(config.task.data, out)
    assert run_data_validation(out, coverage, str(tmp_path / "dv"))["passed"]

    space = coverage.space()
    table, texts, truths, wrong_at = {}, [], [], set()
    for i in range(space.size):
        e = space.equation_at(i)
        w = af.working(fmt, e.operands, e.operators, 12)
        assert len(w) <= coverage.max_result_length
        if made_wrong(e):  # a wrong step, and the answer 10 off with it
            parts = _first_sum_of_part_off(part, w.split(af.SEPARATOR))
            w = af.SEPARATOR.join(parts[:-1] + [str(e.result + 10)[::-1]])
            wrong_at.add(e.text)
        table[e.text] = w
        texts.append(e.text)
        truths.append(str(e.result))
    serve = build_serving_function(WritingOracle(table, coverage), coverage)
    got = serve(tf.constant(texts))
    results = [r.decode() for r in got["result"].numpy()]
    workings = [w.decode() for w in got["working"].numpy()]
    for text, truth, result, working in zip(texts, truths, results, workings):
        assert " " not in result and result == af.answer(fmt, working, 12)
        assert working == table[text]
        assert result == (str(eq.parse(text).result + 10) if text in wrong_at else truth), text
    report = working_errors(texts, [eq.MIXED_TAG] * len(texts), results, truths,
                            got["valid"].numpy(), workings, coverage)["mixed"]
    assert report["format"] == fmt and report["count"] == len(texts)
    assert report["wrong"] == len(wrong_at) == wrong
    assert report["first_wrong_step"] == {step: wrong}
    # per operator pattern: every equation counted once, the wrong ones under their own
    # pattern and the reduction the step belongs to ('value 2, worked')
    per_pattern = report["per_pattern"]
    assert sum(p["count"] for p in per_pattern.values()) == len(texts)
    expected = collections.Counter(eq.operator_pattern(eq.parse(t).operators) for t in wrong_at)
    assert {name: (p["wrong"], p["first_wrong_step"]) for name, p in per_pattern.items()
            if p["wrong"]} == {name: (n, {step.split(":")[0]: n})
                               for name, n in expected.items()}
    from lstm_math.components.evaluator.report import working_errors_section
    table = "\n".join(working_errors_section({"working_errors": {"mixed": report}}))
    name, n = expected.most_common(1)[0]
    assert (f"| {name} | {n} of {per_pattern[name]['count']} | {step.split(':')[0]}: {n} |"
            in table)


def test_data_validation_recomputes_the_working(tmp_path):
    import glob

    from lstm_math.components.data_validation import (DataValidationError,
                                                      run_data_validation)
    from lstm_math.components.example_gen import run_example_gen

    config = load_config("multiplication", ["task.data.operand_max=99",
                                            "task.data.num_examples=600",
                                            "task.data.num_shards=1",
                                            "task.data.compression=NONE"])
    out = str(tmp_path / "examples")
    run_example_gen(config.task.data, out)
    coverage = coverage_of(config)
    assert run_data_validation(out, coverage, str(tmp_path / "dv"))["passed"]
    # one record's working altered: DataValidation says which and why
    (shard,) = glob.glob(os.path.join(out, "test-*"))
    records = [r.numpy() for r in tf.data.TFRecordDataset(shard)]
    example = tf.train.Example.FromString(records[0])
    feature = example.features.feature["working"].bytes_list.value
    text = example.features.feature["equation"].bytes_list.value[0].decode()
    feature[0] = bytes(b"1"[0] if c == b"0"[0] else b"0"[0] for c in feature[0])
    records[0] = example.SerializeToString()
    with tf.io.TFRecordWriter(shard) as writer:
        for r in records:
            writer.write(r)
    with pytest.raises(DataValidationError, match=re.escape(f"for {text!r} (test) != ")):
        run_data_validation(out, coverage, str(tmp_path / "dv2"))


def test_predict_prints_the_working_beside_the_answer():
    from lstm_math.serving.client import format_row

    row = {"equation": "123 * 456", "result": "56088", "valid": True, "error": "",
           "confidence": 0.5, "working": "810 610 820 410 420 030 110 610 500 0"}
    assert format_row(row) == ("123 * 456 = 56088  (confidence 0.500)  working: "
                               "810 610 820 410 420 030 110 610 500 0")
    assert format_row({**row, "working": ""}) == "123 * 456 = 56088  (confidence 0.500)"
    # a model with `trusted` too: the verdict, then the working
    trusted = {**row, "trusted": True}
    assert format_row(trusted) == ("123 * 456 = 56088  working: "
                                   "810 610 820 410 420 030 110 610 500 0")
    unsure = {**row, "trusted": False, "trust_threshold": 0.75}
    assert format_row(unsure) == ("123 * 456 = 56088?  (unsure: confidence 0.500 < 0.750)"
                                  "  working: 810 610 820 410 420 030 110 610 500 0")
