"""The serving function's per-row validation, on an untrained model (validation is model-free)."""

import re

import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st

from components import equations as eq
from components.models import ModelHParams, build_model
from serving.signature import build_serving_function

COVERAGE = {"operators": ["+", "-", "/"], "operand_min": 0, "operand_max": 999,
            "num_operands": 2, "max_input_length": 7, "max_result_length": 4,
            "reverse_output": True}


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
    rows = call(serve, ["31+87", " 31  + 87 ", "007 + 1", "0 - 999", "10 / 3", "999+999"])
    assert all(r["valid"] for r in rows), rows


def test_empty_batch_and_invalid_utf8(serve):
    out = serve(tf.constant([], dtype=tf.string))
    assert {k: v.shape[0] for k, v in out.items()} == {"result": 0, "valid": 0, "error": 0,
                                                       "confidence": 0}
    out = serve(tf.constant([b"\xff\xfe + 1", b"1 + 1"]))
    assert out["valid"].numpy().tolist() == [False, True]


def covered(text: str) -> bool:
    """The reference: is this an equation the model covers? (pure Python, no TF)."""
    if re.search(r"\d\s+\d", text):
        return False
    try:
        e = eq.parse(text)
    except eq.EquationError:
        return False
    if len(e.operands) != COVERAGE["num_operands"]:
        return False
    if any(op not in COVERAGE["operators"] for op in e.operators):
        return False
    if any(not COVERAGE["operand_min"] <= v <= COVERAGE["operand_max"] for v in e.operands):
        return False
    try:
        e.result
    except eq.EquationError:
        return False
    return True


equation_like = st.text(alphabet=st.sampled_from(list("0123456789+-*/ x.\t")), max_size=14)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(equation_like, st.text(max_size=12)), min_size=1, max_size=8))
def test_random_strings_never_crash_and_valid_means_covered(serve, rows):
    out = call(serve, rows)
    for text, row in zip(rows, out):
        # Python's str.isdigit/\s are wider than the graph's ASCII rules: compare on ASCII.
        expected = covered(text) if text.isascii() else False
        assert row["valid"] is expected, (text, row)
        assert (row["error"] == "") is row["valid"]
        if not row["valid"]:
            assert row["result"] == "" and row["confidence"] == 0.0
