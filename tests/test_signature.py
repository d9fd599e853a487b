"""The serving function's per-row validation, on an untrained model (validation is model-free)."""

import dataclasses
import re

import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st

from lstm_math.components import equations as eq
from lstm_math.components import tokenizer
from lstm_math.components.models import ModelHParams, build_model
from lstm_math.components.signature import build_serving_function, operator_tags
from tests.helpers import OracleModel, make_coverage

COVERAGE = make_coverage(operators=["+", "-", "/"], operand_max=999, max_input_length=7,
                         max_result_length=4, reverse_output=True)


@pytest.fixture(scope="module")
def serve():
    model = build_model(ModelHParams(embedding_dim=4, encoder_units=4, decoder_units=4), 5)
    return build_serving_function(model, COVERAGE)


def call(serve, rows):
    out = serve(tf.constant(rows, dtype=tf.string))
    return [
        {k: (v[i].numpy().decode() if v.dtype == tf.string else v[i].numpy().item())
         for k, v in out.items()}
        for i in range(len(rows))
    ]


@pytest.mark.parametrize("text,reason", [
    ("", "empty"),
    ("  \t ", "empty"),
    ("31 x 87", "unknown character 'x'"),
    ("３１ + 2", "unknown character"),
    ("3 1 + 87", "two numbers"),
    ("31", "no operator"),
    ("31 +", "malformed"),
    ("+31", "malformed"),
    ("31 ++ 87", "malformed"),
    ("-5 + 3", "malformed"),
    ("1 + 2 + 3", "too long"),
    ("1 * 2", "operator '*' not trained"),
    ("1000 + 1", "out of the trained range"),
    ("99999999999999999999999999999 + 1", "out of the trained range"),
    ("5 / 0", "division by zero"),
    ("5 / 000", "division by zero"),
    ("1.5 + 2", "unknown character '.'"),
    ("31 + 87 = 118", "unknown character '='"),
    ("\x00", "unknown character U+0000"),
    ("31\x00+ 87", "unknown character U+0000"),
    ("١٢ + 3", "unknown character '١' (U+0661)"),
    ("12 ＋ 3", "unknown character '＋' (U+FF0B)"),
    ("12\u00a0+ 3", "unknown character U+00A0"),
    ("12 +\u200b3", "unknown character U+200B"),
    ("1 + 2\u202e", "unknown character U+202E"),
    ("🙂 + 1", "unknown character '🙂' (U+1F642)"),
    ("12 +\x1c3", "unknown character U+001C"),
    ("3\n1 + 2", "two numbers"),
    ("1 + -2", "malformed"),
    ("+", "malformed"),
    ("1 +\n", "malformed"),
    ("/ 5", "malformed"),
    ("1e3 + 1", "unknown character 'e'"),
    ("0x1F + 1", "unknown character 'x'"),
    ("+".join(["1"] * 200), "too long: this model takes 2 operands"),
    ("9" * 1000 + " + 1", "out of the trained range"),
    ("9" * 5000 + " + 1", "too long: more than 1024 bytes"),
    (" " * 2000 + "1 + 1", "too long: more than 1024 bytes"),
    ("0" * 30 + "1000 + 1", "out of the trained range"),
])
def test_invalid_rows_get_a_reason_and_the_rest_are_answered(serve, text, reason):
    rows = call(serve, ["31 + 87", text, "5 / 10"])
    assert rows[1]["valid"] is False
    assert reason in rows[1]["error"]
    assert rows[1]["result"] == "" and rows[1]["confidence"] == 0.0
    for good in (rows[0], rows[2]):
        assert good["valid"] is True and good["error"] == ""
        assert 0.0 <= good["confidence"] <= 1.0


def test_valid_forms(serve):
    rows = call(serve, ["31+87", " 31  + 87 ", "007 + 1", "0 - 999", "10 / 3", "999+999",
                        "\t31\n+\r87\x0b", "\x0c1/1", "0" * 900 + "5 + 5", "0 / 7"])
    assert all(r["valid"] for r in rows), rows


def test_invalid_utf8_and_huge_batches_never_fail_the_batch(serve):
    rows = [b"\xff\xfe + 1", b"1 + 1", b"\xc3", b"\xed\xa0\x80 + 1", b"2 / 0"] * 4000
    out = serve(tf.constant(rows))
    valid = out["valid"].numpy().reshape(4000, 5)
    assert (valid == [False, True, False, False, False]).all()
    errors = out["error"].numpy().reshape(4000, 5)
    assert errors[0, 0].decode() == "unknown character U+FFFD"
    assert errors[0, 4].decode() == "division by zero"


def test_empty_batch_and_invalid_utf8(serve):
    out = serve(tf.constant([], dtype=tf.string))
    assert {k: v.shape[0] for k, v in out.items()} == {"result": 0, "valid": 0, "error": 0,
                                                       "confidence": 0, "trusted": 0}
    out = serve(tf.constant([b"\xff\xfe + 1", b"1 + 1"]))
    assert out["valid"].numpy().tolist() == [False, True]


ALLOWED = set("0123456789+-*/ \t\n\r\x0b\x0c")


def covered(text: str) -> bool:
    """The reference: is this an equation the model covers? (pure Python, no TF)

    Whitespace is ASCII's six characters; anything else not a digit or operator (Python's
    wider notion of digits and spaces included) is an unknown character."""
    if any(c not in ALLOWED for c in text) or len(text.encode()) > 1024:
        return False
    if re.search(r"[0-9][ \t\n\r\x0b\x0c]+[0-9]", text):
        return False
    try:
        e = eq.parse(text)
    except eq.EquationError:
        return False
    if len(e.operands) != COVERAGE.num_operands:
        return False
    if any(op not in COVERAGE.operators for op in e.operators):
        return False
    if any(not COVERAGE.operand_min <= v <= COVERAGE.operand_max for v in e.operands):
        return False
    try:
        e.result
    except eq.EquationError:
        return False
    return True


equation_like = st.text(alphabet=st.sampled_from(list("0123456789+-*/ x.\t")), max_size=14)
# Characters a fuzzer tries: NUL and controls, Python-only whitespace (\x1c-\x1f, U+0085,
# U+00A0, U+2028, U+3000), unicode digits, full-width operators, format characters.
tricky_char = st.sampled_from(list("\x00\x1c\x1f\x85\xa0\u2028\u3000\u200b\u202e\ufeff"
                                   "١٢３４²½−＋×÷\x0b\x0c\r\n"))
tricky = st.lists(st.one_of(st.sampled_from(list("0123456789+-*/ ")), tricky_char),
                  max_size=12).map("".join)
well_formed = st.builds(
    lambda a, op, b, pad: f"{pad}{a}{pad}{op}{pad}{b}{pad}",
    st.integers(0, 1200), st.sampled_from(list("+-*/")), st.integers(0, 1200),
    st.sampled_from(["", " ", "  ", "\t", "\n", "\r\n", "\x0b"]))
long_rows = st.builds(lambda n, tail: "0" * n + tail, st.integers(900, 1100),
                      st.sampled_from(["1 + 1", "1000 + 1", "1 + 2 + 3"]))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(equation_like, st.text(max_size=12), tricky, well_formed, long_rows),
                min_size=1, max_size=8))
def test_random_strings_never_crash_and_valid_means_covered(serve, rows):
    out = call(serve, rows)
    for text, row in zip(rows, out):
        expected = covered(text)
        assert row["valid"] is expected, (text, row)
        assert (row["error"] == "") is row["valid"]
        if not row["valid"]:
            assert row["result"] == "" and row["confidence"] == 0.0
        else:
            assert 0.0 <= row["confidence"] <= 1.0


@pytest.mark.parametrize("rows,bucket", [
    (0, 1), (1, 1), (2, 2), (3, 4), (64, 64), (65, 128), (1024, 1024), (1025, 2048),
    (3000, 3072)])
def test_xla_batches_are_padded_to_few_buckets(rows, bucket):
    """One XLA compilation per bucket: powers of two to 1024, then multiples of 1024."""
    from lstm_math.components.signature import bucket_size
    assert int(bucket_size(tf.constant(rows))) == bucket


MIXED = dataclasses.replace(COVERAGE, operators=("+", "-", "*", "/"), num_operands=3,
                            min_operands=2, max_input_length=11, max_result_length=10)


@pytest.fixture(scope="module")
def serve_mixed():
    model = build_model(ModelHParams(embedding_dim=4, encoder_units=4, decoder_units=4), 11)
    return build_serving_function(model, MIXED)


def test_a_model_of_two_to_three_operands_takes_both_and_names_the_range(serve_mixed):
    rows = call(serve_mixed, ["7 * 6", "131 + 83 * 744", "131 + 83 - 744 * 33", "5"])
    assert [r["valid"] for r in rows] == [True, True, False, False]
    assert rows[2]["error"] == "too long: this model takes 2 to 3 operands"
    three_only = build_serving_function(
        build_model(ModelHParams(embedding_dim=4, encoder_units=4, decoder_units=4), 11),
        dataclasses.replace(MIXED, min_operands=3))
    rows = call(three_only, ["7 * 6", "1 + 2 + 3"])
    assert rows[0]["error"] == "too short: this model takes 3 operands" and rows[1]["valid"]


@pytest.mark.parametrize("reverse", [True, False])
def test_answers_decode_in_the_models_digit_order(reverse):
    """`reverse_output` false (the division preset: most significant digit first, as long
    division finds them) and true (units first: + - *) both serve the right strings."""
    coverage = make_coverage(operators=["/", "-"], operand_max=999, max_input_length=7,
                             max_result_length=4, reverse_output=reverse)
    serve = build_serving_function(OracleModel(coverage, wrong_a=-1), coverage)
    rows = ["932 / 3", "999 / 1", "5 / 7", "100 / 19", "12 - 980", "990 / 9"]
    got = [(r["result"], r["valid"]) for r in call(serve, rows)]
    assert got == [("310", True), ("999", True), ("0", True), ("5", True), ("-968", True),
                   ("110", True)]


# --------------------------------------------------------------------------------------
# `trusted`: the answer's confidence against its operator's threshold, in the graph.

def test_trusted_compares_each_rows_confidence_with_its_operators_threshold():
    """The oracle answers '7 + b' wrong at 0.6 per step and every other equation right at
    0.99 per step. With the thresholds an Evaluator would ship, the wrong answer comes
    back `trusted=false`, right ones true; an operator without a threshold is never
    trusted; an invalid row never is."""
    serve = build_serving_function(OracleModel(COVERAGE), COVERAGE,
                                   trust_thresholds={"+": 0.9, "-": 0.5})
    rows = call(serve, ["31 + 87", "7 + 5", "12 - 980", "932 / 3", "7 + x", "1000 + 1"])
    assert [r["result"] for r in rows[:4]] == ["118", "112", "-968", "310"]
    assert rows[1]["confidence"] < 0.9 <= rows[0]["confidence"]
    assert [r["trusted"] for r in rows] == [True, False, True, False, False, False]
    # without thresholds (a model exported without an Evaluator report): nothing trusted
    bare = call(build_serving_function(OracleModel(COVERAGE), COVERAGE), ["31 + 87"])
    assert bare[0]["valid"] and bare[0]["trusted"] is False


def test_trusted_holds_at_the_threshold_itself_and_mixed_rows_use_theirs():
    """At or above: a threshold equal to an answer's own confidence trusts it, the next
    float32 up does not. Three operands are judged by the 'mixed' threshold."""
    serve = build_serving_function(OracleModel(COVERAGE), COVERAGE)
    exact = float(call(serve, ["31 + 87"])[0]["confidence"])
    above = float(tf.experimental.numpy.nextafter(tf.constant(exact, tf.float32),
                                                  tf.constant(2.0, tf.float32)).numpy())
    for limit, want in ((exact, True), (above, False)):
        judged = build_serving_function(OracleModel(COVERAGE), COVERAGE,
                                        trust_thresholds={"+": limit})
        assert call(judged, ["31 + 87"])[0]["trusted"] is want, limit
    tags = tf.constant(["1+2", "3-4", "5*6", "8/2", "1+2*3", "1+2+3"])
    assert [t.decode() for t in operator_tags(tags).numpy()] == [
        "+", "-", "*", "/", eq.MIXED_TAG, eq.MIXED_TAG]


class _SilentModel(tf.Module):
    """Writes END at once, sure of it: a valid row with no answer."""

    def greedy_decode(self, encoder_ids, steps: int):
        rows = tf.shape(encoder_ids)[0]
        return (tf.fill([rows, steps], tf.constant(tokenizer.END_ID, tf.int32)),
                tf.fill([rows, steps], 0.999))


def test_no_answer_is_never_trusted_however_sure_the_model_is():
    """A model that writes no answer (or a working out of shape, read as no answer) gives an
    empty `result` at confidence near 1: it must not come back trusted."""
    serve = build_serving_function(_SilentModel(), COVERAGE, trust_thresholds={"+": 0.5})
    (row,) = call(serve, ["31 + 87"])
    assert row["valid"] is True and row["result"] == "" and row["confidence"] > 0.5
    assert row["trusted"] is False
