"""The Evaluator's tables, pictures, exhaustive mode and blessing, on a model with known mistakes.

``OracleModel`` and ``TableOracle`` (tests/helpers.py) are stand-ins for a trained network
written in plain TensorFlow: ``greedy_decode`` reads the equation from the encoder ids,
computes or looks up the answer, and gets exactly the chosen equations wrong (by a chosen
amount, at a chosen confidence). So every figure the
Evaluator prints can be checked against a count done here independently.
"""

import collections
import dataclasses
import json
import os
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf

from lstm_math.components import equations as eq
from lstm_math.components import sampling
from lstm_math.components import data as data_lib
from lstm_math.components import evaluator, tokenizer
from lstm_math.components.example_gen import run_example_gen
from lstm_math.components.exporter import export_saved_model
from lstm_math.components import pusher
from lstm_math.config import DataConfig, coverage_of, load_config
from tests.helpers import OracleModel, TableOracle, evaluate_as_pipeline, make_coverage

OPERAND_MAX = 30
OPERATORS = ["+", "-"]


def small_config(tmp_path, **evaluator):
    overrides = [f"task.data.operand_max={OPERAND_MAX}", "task.data.num_examples=600",
                 "task.data.num_shards=2", f"task.data.operators={json.dumps(OPERATORS)}",
                 f"pusher.serving_base={tmp_path / 'serving'}", "evaluator.threshold=0.9",
                 # the oracle decodes with string ops, which XLA cannot compile
                 "exporter.jit_compile=false"]
    overrides += [f"evaluator.{k}={v}" for k, v in evaluator.items()]
    return load_config("smoke", overrides)


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    config = small_config(tmp_path_factory.mktemp("cfg"))
    out = str(tmp_path_factory.mktemp("examples"))
    run_example_gen(config.task.data, out)
    return out


def split_rows(examples_dir, split):
    rows = []
    for batch in data_lib.features_dataset(examples_dir, split, 512):
        rows += zip(batch["equation"].numpy().astype(str), batch["result"].numpy().astype(str))
    return rows


def png_ok(path):
    """A real PNG: signature, IHDR first, IEND last, every chunk's CRC right."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        kinds.append(kind)
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_tables_histogram_worst_errors_and_pictures(tmp_path, examples):
    config = small_config(tmp_path)
    coverage = coverage_of(config)
    out = tmp_path / "eval"
    result = evaluate_as_pipeline(config, OracleModel(coverage), coverage, examples, str(out))
    m = result["metrics"]

    test = split_rows(examples, "test")
    wrong = [(t, r) for t, r in test if t.startswith("7 + ")]
    assert wrong, "the test split should hold some '7 + b' equations"
    assert m["count"] == len(test) and m["wrong"] == len(wrong)
    assert m["exact_match"] == pytest.approx(1 - len(wrong) / len(test))
    plus = [t for t, _ in test if " + " in t]
    assert m["per_operator"]["+"]["wrong"] == len(wrong)
    assert m["per_operator"]["+"]["count"] == len(plus)
    assert m["per_operator"]["-"] == {"exact_match": 1.0, "wrong": 0,
                                      "count": len(test) - len(plus)}
    # 7 is one digit: b >= 10 lands in 1x2; b < 10 would be 1x1, but single-digit
    # equations all train (sampling.always_trains), so the test split has no 1x1.
    assert "1x1" not in m["per_operand_digits"]
    assert m["per_operand_digits"]["1x2"]["wrong"] == len(wrong)
    assert m["per_operand_digits"]["2x2"]["wrong"] == 0
    assert set(m["per_operand_digits"]) <= {"1x1", "1x2", "2x1", "2x2"}
    # The truth of 7 + b (b <= 30) has 1 or 2 characters; '-' results such as '-23' have 3.
    assert sum(v["wrong"] for v in m["per_result_length"].values()) == len(wrong)
    assert m["per_result_length"]["1"]["wrong"] == sum(len(r) == 1 for _, r in wrong)
    assert sum(v["count"] for v in m["per_result_length"].values()) == len(test)
    # Every wrong answer is off by exactly 100.
    assert m["error_sizes"]["100-999"] == len(wrong)
    assert sum(m["error_sizes"].values()) == len(wrong)
    assert {e["equation"] for e in m["worst_errors"]} <= {t for t, _ in wrong}
    for e in m["worst_errors"]:
        assert int(e["answer"]) - int(e["truth"]) == 100 and e["error_size"] == 100
        assert e["truth"] == str(eq.parse(e["equation"]).result)
        assert e["confidence"] == pytest.approx(0.6 ** (len(e["answer"]) + 1), rel=1e-4)

    # Exhaustive: all 31 x 31 equations of each operator, split into seen / never seen.
    ex = m["exhaustive"]
    assert ex["count"] == 2 * 31 * 31 and ex["wrong"] == 31
    assert ex["per_operand_digits"]["1x1"] == {"exact_match": 0.95, "count": 200, "wrong": 10}
    assert ex["per_operand_digits"]["1x2"] == {"exact_match": 1 - 21 / 420, "count": 420,
                                               "wrong": 21}
    train = {t for t, _ in split_rows(examples, "train")}
    seen_wrong = sum(f"7 + {b}" in train for b in range(31))
    sv = ex["seen_vs_unseen"]
    assert sv["seen_in_training"]["count"] == len(train)
    assert sv["seen_in_training"]["wrong"] == seen_wrong
    assert sv["never_seen"]["count"] == ex["count"] - len(train)
    assert sv["never_seen"]["wrong"] == 31 - seen_wrong
    # Never-seen equations of the test split are exactly those split_of puts in 'test'.
    fractions = [config.task.data.split_fractions[s] for s in sampling.SPLITS]
    all_texts = [f"{a} {op} {b}" for op in OPERATORS for a in range(31) for b in range(31)]
    assert sv["never_seen/test"]["count"] == sum(sampling.split_of(t, fractions) == "test"
                                                 for t in all_texts)

    # Files: metrics.json, blessing.json, report.md, valid PNGs, TensorBoard images.
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["exhaustive"]["wrong"] == 31 and on_disk["count"] == len(test)
    blessing = json.loads((out / "blessing.json").read_text())
    assert blessing["blessed"] is True and blessing["baseline"] is None
    assert any("threshold alone" in r for r in blessing["reasons"])
    report = (out / "report.md").read_text()
    assert "per operand length" in report and "| 1x2 |" in report and "`7 + " in report
    for name in ("error_map_plus.png", "error_map_minus.png", "error_sizes.png"):
        width, height = png_ok(out / name)
        # readable when TensorBoard scales it to its ~350 px card: ~700 px, large text and dots
        assert 600 <= width <= 800 and height >= 400
    tags = set()
    for path in tf.io.gfile.glob(str(out / "logs" / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(v.tag for v in event.summary.value)
    assert {"error_map_plus", "error_map_minus", "error_sizes", "evaluation_report"} <= tags


def test_error_map_marks_the_wrong_cells():
    """The plus map is red exactly in the column a = 7 (the rest right, green)."""
    coverage = make_coverage(operand_max=9)
    texts = [f"{a} + {b}" for a in range(10) for b in range(10)]
    truths = [str(a + b) for a in range(10) for b in range(10)]
    answers = [str(a + b + (100 if a == 7 else 0)) for a in range(10) for b in range(10)]
    png = evaluator.error_map_pngs({"texts": texts, "answers": answers, "truths": truths,
                                    "valid": [True] * 100}, coverage, "t")["+"]
    image = tf.image.decode_png(png, channels=3).numpy().astype(int)
    red = (image[..., 0] > 180) & (image[..., 1] < 90) & (image[..., 2] < 90)
    green = (np.abs(image[..., 0] - 0x9F) < 8) & (np.abs(image[..., 1] - 0xD8) < 8)
    assert red.sum() > 500 and green.sum() > 10 * red.sum() / 2
    cols = np.nonzero(red.sum(axis=0) > 20)[0]  # the red column of the map
    greens = np.nonzero(green.sum(axis=0) > 20)[0]
    # Nine green columns of cells, one red one: the red lies between green ones.
    assert greens.min() < cols.min() and cols.max() < greens.max()


def test_exhaustive_is_skipped_when_the_space_is_too_big(tmp_path, examples):
    config = small_config(tmp_path, exhaustive_max_equations=100)
    coverage = coverage_of(config)
    m = evaluate_as_pipeline(config, OracleModel(coverage), coverage, examples,
                             str(tmp_path / "e"))["metrics"]
    assert m["exhaustive"] is None and "1922 equations" in m["exhaustive_skipped"]


def test_error_size_buckets():
    assert evaluator.error_size_bucket("118", "118") is None
    assert evaluator.error_size_bucket("1903", "1003") == "100-999"  # the post's example
    assert evaluator.error_size_bucket("119", "118") == "1"
    assert evaluator.error_size_bucket("-5", "5") == "10-99"
    assert evaluator.error_size_bucket("1-1", "0") == evaluator.NOT_A_NUMBER
    assert evaluator.error_size_bucket("007", "7") == evaluator.NOT_A_NUMBER
    assert evaluator.error_size_bucket("", "7", valid=False) == evaluator.NO_ANSWER
    assert evaluator.error_size_bucket("99999", "1") == ">=10000"


def test_regression_against_a_really_pushed_model_is_rejected(tmp_path, examples):
    """Push an exact model; a worse candidate is then refused although it meets the
    threshold, and a candidate as good is blessed against it."""
    config = small_config(tmp_path, regression_margin=0.001, exhaustive_max_equations=0)
    coverage = coverage_of(config)
    perfect = OracleModel(coverage, wrong_a=-1)  # never wrong
    first = evaluate_as_pipeline(config, perfect, coverage, examples, str(tmp_path / "e1"))
    assert first["blessing"]["blessed"] is True and first["metrics"]["exact_match"] == 1.0
    export = str(tmp_path / "export")
    export_saved_model(perfect, coverage, first["metrics"], export)
    pushed = pusher.run_pusher(export, first["blessing"], {"passed": True},
                               config.pusher.serving_base, config.pusher.model_name, 3)
    assert pushed["version"] == 1

    worse = evaluate_as_pipeline(config, OracleModel(coverage), coverage, examples,
                                 str(tmp_path / "e2"))
    m, blessing = worse["metrics"], worse["blessing"]
    assert m["exact_match"] >= config.evaluator.threshold  # meets the absolute bar ...
    assert blessing["blessed"] is False  # ... but is worse than what is being served
    assert blessing["baseline"]["version"] == 1 and blessing["baseline"]["exact_match"] == 1.0
    assert any(r.startswith("regression") for r in blessing["reasons"])
    on_disk = json.loads((tmp_path / "e2" / "blessing.json").read_text())
    assert on_disk["blessed"] is False and on_disk["reasons"] == blessing["reasons"]

    again = evaluate_as_pipeline(config, OracleModel(coverage, wrong_a=-1), coverage, examples,
                                 str(tmp_path / "e3"))
    assert again["blessing"]["blessed"] is True
    assert any("not worse than the pushed model" in r for r in again["blessing"]["reasons"])


def test_blessing_threshold_and_margin_edges():
    assert evaluator.bless(0.999, 0.999, None, 0.0)["blessed"] is True
    assert evaluator.bless(0.99899, 0.999, None, 0.5)["blessed"] is False
    assert evaluator.bless(0.9990, 0.999, 0.9995, 0.0005)["blessed"] is True
    out = evaluator.bless(0.9989, 0.9, 0.9995, 0.0005)
    assert out["blessed"] is False and out["reasons"][0].startswith("exact match")


def test_a_slice_below_its_operator_threshold_is_not_blessed(tmp_path, examples):
    """The oracle gets '7 + b' wrong: overall and '-' meet their bars, '+' does not."""
    config = small_config(tmp_path, exhaustive_max_equations=0)
    config = dataclasses.replace(config, evaluator=dataclasses.replace(
        config.evaluator, operator_thresholds={"+": 0.999, "-": 0.999}))
    coverage = coverage_of(config)
    result = evaluate_as_pipeline(config, OracleModel(coverage), coverage, examples,
                                  str(tmp_path / "e"))
    m, blessing = result["metrics"], result["blessing"]
    plus = m["per_operator"]["+"]["exact_match"]
    assert m["exact_match"] >= config.evaluator.threshold and plus < 0.999
    assert blessing["blessed"] is False
    assert f"+: exact match {plus:.5f} is below its threshold 0.999" in blessing["reasons"]
    assert "-: exact match 1.00000 meets its threshold 0.999" in blessing["reasons"]
    on_disk = json.loads((tmp_path / "e" / "blessing.json").read_text())
    assert on_disk["reasons"] == blessing["reasons"]

    # a bar exactly at the slice's figure is met; a bar on a slice with no equations is not
    assert evaluator.bless(0.95, 0.9, None, 0.0, m["per_operator"], {"+": plus})["blessed"]
    out = evaluator.bless(0.95, 0.9, None, 0.0, m["per_operator"], {"*": 0.1})
    assert out["blessed"] is False and "*: no test equations" in out["reasons"][1]


# --- confidence quality ------------------------------------------------------------------

def brute_auroc(right, wrong):
    pairs = [(r > w) + 0.5 * (r == w) for r in right for w in wrong]
    return sum(pairs) / len(pairs)


def test_auroc_and_client_threshold_agree_with_a_count_done_by_hand():
    rng = np.random.default_rng(1)
    right = np.round(rng.uniform(0.5, 1.0, 300), 2)  # rounded: plenty of ties
    wrong = np.round(rng.uniform(0.0, 0.8, 40), 2)
    assert evaluator.auroc(right, wrong) == pytest.approx(brute_auroc(right, wrong))
    assert evaluator.auroc(right, []) is None and evaluator.auroc([0.3], [0.3]) == 0.5
    q = evaluator.confidence_quality(right, wrong, keep=0.99)
    # the highest threshold that keeps 99% of the right answers: at most 3 of 300 below it
    t = q["threshold"]
    assert np.sum(right < t) <= 3 and np.sum(right < np.min(right[right > t])) > 3
    assert q["wrong_below_threshold"] == pytest.approx(np.mean(wrong < t))
    assert q["right"] == 300 and q["wrong"] == 40
    perfect = evaluator.confidence_quality([0.9, 0.95, 0.99], [0.1, 0.2])
    assert perfect["auroc"] == 1.0 and perfect["wrong_below_threshold"] == 1.0
    assert perfect["threshold"] == 0.9


# --- a model of 2..3 operands and all four operators -------------------------------------

MIXED_MAX = 12


def mixed_config(tmp_path, **evaluator_overrides):
    overrides = [f"task.data.operand_max={MIXED_MAX}", "task.data.num_examples=2500",
                 "task.data.num_shards=2", "task.data.operators=['+', '-', '*', '/']",
                 "task.data.num_operands=3", "task.data.min_operands=2",
                 f"pusher.serving_base={tmp_path / 'serving'}", "evaluator.threshold=0.5",
                 "exporter.jit_compile=false", "evaluator.exhaustive_max_equations=100000"]
    overrides += [f"evaluator.{k}={v}" for k, v in evaluator_overrides.items()]
    return load_config("smoke", overrides)


def mixed_mistake(e):
    """'a * b' with an odd a wrong by one and confident; three operands starting '5 +' wrong
    by ten, unsure."""
    if e.operators == ("*",) and e.operands[0] % 2:
        return e.result + 1, 0.999
    if len(e.operands) == 3 and e.operands[0] == 5 and e.operators[0] == "+":
        return e.result + 10, 0.5
    return None


def test_mixed_model_gets_tables_per_operator_count_and_length_maps_and_confidence(
        tmp_path, caplog):
    config = mixed_config(tmp_path)
    data_dir = str(tmp_path / "examples")
    run_example_gen(config.task.data, data_dir)
    coverage = coverage_of(config)
    model = TableOracle(coverage, mixed_mistake)
    out = tmp_path / "eval"
    with caplog.at_level("INFO"):
        m = evaluate_as_pipeline(config, model, coverage, data_dir, str(out))["metrics"]

    test = split_rows(data_dir, "test")
    parsed = [(eq.parse(t), r) for t, r in test]
    wrong_times = [e for e, _ in parsed if mixed_mistake(e) and e.operators == ("*",)]
    wrong_mixed = [e for e, _ in parsed if mixed_mistake(e) and len(e.operands) == 3]
    assert wrong_times and wrong_mixed
    assert m["wrong"] == len(wrong_times) + len(wrong_mixed)
    assert set(m["per_operator"]) == {"+", "-", "*", "/", "mixed"}
    assert m["per_operator"]["*"]["wrong"] == len(wrong_times)
    assert m["per_operator"]["mixed"]["wrong"] == len(wrong_mixed)
    assert m["per_operand_count"]["2"]["count"] == sum(len(e.operands) == 2 for e, _ in parsed)
    assert m["per_operand_count"]["3"]["wrong"] == len(wrong_mixed)
    times = m["per_operator_operand_digits"]["*"]
    assert "1x1" not in times  # single-digit equations all train
    assert times["2x2"]["wrong"] == sum(min(e.operands) >= 10 for e in wrong_times)
    assert sum(v["count"] for v in m["per_operator_operand_digits"]["mixed"].values()) == \
        m["per_operator"]["mixed"]["count"]
    assert {"1x1x2", "2x2x2"} <= set(m["per_operator_operand_digits"]["mixed"])
    assert not [e for e, _ in parsed if max(e.operands) < 10]  # they all train
    assert m["small_operands"]["<100"]["count"] == len(parsed)  # every operand <= 12
    assert set(m["uniform"]["per_operator"]) == {"+", "-", "*", "/", "mixed"}
    assert m["uniform"]["per_operator"]["+"] == 1.0 and m["uniform"]["exact_match"] < 1.0

    # Per operator pattern of three operands: where the wrong answers are ('5 + b ? c').
    patterns = collections.Counter(eq.operator_pattern(e.operators) for e, _ in parsed
                                   if len(e.operands) == 3)
    wrong_patterns = collections.Counter(eq.operator_pattern(e.operators) for e in wrong_mixed)
    assert len(patterns) == 16 and set(m["per_pattern"]) == set(patterns)
    assert list(m["per_pattern"])[:4] == ["a + b + c", "a + b - c", "a + b * c", "a + b / c"]
    for pattern, cell in m["per_pattern"].items():
        assert (cell["count"], cell["wrong"]) == (patterns[pattern], wrong_patterns[pattern])
    assert set(wrong_patterns) <= {"a + b + c", "a + b - c", "a + b * c", "a + b / c"}
    assert m["uniform"]["per_pattern"]["a * b - c"] == 1.0
    assert m["uniform"]["per_pattern"]["a + b * c"] < 1.0
    # ... and among the single-digit equations, evaluated whole: '5 + b ? c', c > 0 for '/'
    small = m["small_operands_all"]["per_pattern"]
    assert len(small) == 16 and sum(v["count"] for v in small.values()) == \
        m["small_operands_all"]["per_operand_count"]["3"]["count"]
    assert small["a * b * c"]["count"] == 1000 and small["a / b / c"]["count"] == 810
    assert {p: v["wrong"] for p, v in small.items() if v["wrong"]} == {
        "a + b + c": 100, "a + b - c": 100, "a + b * c": 100, "a + b / c": 90}

    # Confidence: '*' is confidently wrong (worse than useless), 'mixed' honestly unsure.
    def conf(e, answer):
        p = mixed_mistake(e)[1] if mixed_mistake(e) else 0.99
        return p ** (len(str(answer)) + 1)

    for tag, wrong_rows in (("*", wrong_times), ("mixed", wrong_mixed)):
        right_c = [conf(e, r) for e, r in parsed if e.tag == tag and not mixed_mistake(e)]
        wrong_c = [conf(e, mixed_mistake(e)[0]) for e in wrong_rows]
        q = m["confidence"][tag]
        assert q["auroc"] == pytest.approx(brute_auroc(right_c, wrong_c), abs=1e-6)
        assert q["wrong"] == len(wrong_rows)
    assert m["confidence"]["*"]["auroc"] < 0.2 and m["confidence"]["*"][
        "wrong_below_threshold"] == 0.0
    assert m["confidence"]["mixed"]["auroc"] == 1.0 and m["confidence"]["mixed"][
        "wrong_below_threshold"] == 1.0
    assert m["confidence"]["+"]["auroc"] is None  # no wrong answers: nothing to separate

    # Exhaustive covers both counts; error maps for every operator from the 2-operand rows.
    ex = m["exhaustive"]
    assert ex["per_operand_count"]["2"]["count"] == 4 * 13 * 13 - 13
    assert ex["per_operand_count"]["3"]["count"] == 13 * (3 * 13 + 12) ** 2
    assert ex["per_operator"]["*"]["wrong"] == 6 * 13
    assert ex["per_pattern"]["a + b + c"] == {"exact_match": pytest.approx(12 / 13),
                                              "count": 13 ** 3, "wrong": 13 * 13}
    assert ex["per_pattern"]["a + b / c"]["wrong"] == 13 * 12  # c > 0
    assert ex["per_pattern"]["a / b * c"]["wrong"] == 0
    for name in ("plus", "minus", "times", "divide"):
        png_ok(out / f"error_map_{name}.png")
    report = (out / "report.md").read_text()
    assert "per operand count" in report and "AUROC" in report and "| mixed |" in report
    assert "per operand length, *" in report and "small operands" in report
    assert "| `a + b * c` | " in report and "per operator pattern" in report
    assert "| a + b / c | 0.90000 | 900 | 90 |" in report  # the single-digit slice's table
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["confidence"]["*"]["threshold"] > 0 and "CPU" in on_disk["hardware"]
    assert on_disk["coverage"]["min_operands"] == 2
    logged = caplog.text
    assert "exhaustive (every equation of the space" in logged
    assert "uniform sampling" not in logged


def test_no_errors_says_none_in_the_report(tmp_path, examples):
    config = small_config(tmp_path, exhaustive_max_equations=0)
    coverage = coverage_of(config)
    result = evaluate_as_pipeline(config, OracleModel(coverage, wrong_a=-1), coverage, examples,
                                  str(tmp_path / "e"))
    report = (tmp_path / "e" / "report.md").read_text()
    assert result["metrics"]["wrong"] == 0
    assert "**worst errors**\n\nnone" in report


def test_uniform_estimate_reweights_a_stratified_sample_by_stratum_size():
    coverage = make_coverage(operand_max=99)
    texts = [f"{a} + {b}" for a in range(100) for b in range(100)]
    right = [a % 10 != 7 for a in range(100) for b in range(100)]
    whole = evaluator.uniform_estimate(texts, right, coverage)
    assert whole["exact_match"] == pytest.approx(np.mean(right)) and whole["strata"] == 4
    # a stratified sample: all 100 1x1 equations, only the 2x2 ones with b < 20
    sample = [(t, r) for t, r in zip(texts, right)
              if len(t.split()[0]) == len(t.split()[2]) and int(t.split()[2]) < 20]
    est = evaluator.uniform_estimate([t for t, _ in sample], [r for _, r in sample], coverage)
    em_1x1 = 0.9  # a = 7 wrong
    em_2x2 = 0.9  # a % 10 == 7 wrong
    assert est["exact_match"] == pytest.approx((100 * em_1x1 + 8100 * em_2x2) / 8200)
    assert est["per_operator"] == {"+": pytest.approx(0.9)}


def plus_seven_mistake(e):
    """'7 + b' wrong by 100: unsure (0.6 per character) for an even b, confident (0.999,
    above every right answer's 0.99) for an odd b."""
    if e.operators == ("+",) and e.operands[0] == 7:
        return e.result + 100, (0.6 if e.operands[1] % 2 == 0 else 0.999)
    return None


def test_trust_figures_the_single_digit_slice_and_its_bar(tmp_path, examples):
    """What `trusted` does, per operator, on the test split and over every equation; every
    single-digit equation evaluated whole, reported, and judged against its bar; the
    exported signature's `trusted` agrees with the figures."""
    config = small_config(tmp_path, small_operands_threshold=1.0)
    coverage = coverage_of(config)
    model = OracleModel(coverage, sure_when_b_odd=True)  # wrong as plus_seven_mistake says
    out = evaluate_as_pipeline(config, model, coverage, examples, str(tmp_path / "e"))
    m, blessing = out["metrics"], out["blessing"]

    # the test split: the threshold keeps every right '+' answer (fewer than 1000 of them)
    test = [eq.parse(t) for t, _ in split_rows(examples, "test")]
    wrong_test = [e for e in test if plus_seven_mistake(e)]
    t_plus = m["confidence"]["+"]["threshold"]
    assert t_plus == pytest.approx(0.99 ** 3, rel=1e-5)  # the least sure right '+' answer
    trust = m["trust"]["+"]
    assert trust["threshold"] == t_plus and trust["wrong"] == len(wrong_test)
    unsure = sum(e.operands[1] % 2 == 0 for e in wrong_test)
    assert trust["wrong_caught"] == pytest.approx(unsure / len(wrong_test))
    assert trust["wrong_trusted"] == len(wrong_test) - unsure
    assert trust["right_given_up"] == 0.0 and m["trust"]["-"]["wrong_caught"] is None
    # every equation, judged by the test split's thresholds: 16 of the 31 wrong caught
    ex = m["exhaustive"]["trust"]
    assert ex["+"]["threshold"] == t_plus and ex["+"]["wrong"] == 31
    assert ex["+"]["wrong_caught"] == pytest.approx(16 / 31) and ex["+"]["wrong_trusted"] == 15
    assert ex["overall"]["wrong_trusted"] == 15 and ex["-"]["right_given_up"] == 0.0

    # single-digit operands: all 2 x 10 x 10, whatever the split; '7 + 0..9' wrong
    small = m["small_operands_all"]
    assert small["count"] == 200 and small["wrong"] == 10
    assert small["per_operator"]["+"] == {"exact_match": 0.9, "count": 100, "wrong": 10}
    assert {e["equation"] for e in small["worst_errors"]} == {f"7 + {b}" for b in range(10)}
    assert blessing["blessed"] is False
    assert ("single-digit operands (all 200): exact match 0.95000 (10 wrong) is below the "
            "threshold 1.0") in blessing["reasons"]
    report = (tmp_path / "e" / "report.md").read_text()
    assert "### Every equation whose operands are all below 10" in report
    assert "wrong answers caught" in report

    # the exported model's `trusted` is these figures, row for row
    export = export_saved_model(model, coverage, m, str(tmp_path / "export"))
    fn = tf.saved_model.load(export).signatures["serving_default"]
    rows = [f"7 + {b}" for b in range(31)] + ["3 + 4", "20 - 9"]
    served = fn(equation=tf.constant(rows))
    assert served["trusted"].numpy().tolist() == [b % 2 == 1 for b in range(31)] + [True, True]

    # a model right on every single-digit equation meets the bar
    right = evaluate_as_pipeline(config, OracleModel(coverage, wrong_a=-1), coverage,
                                 examples, str(tmp_path / "e2"))
    assert right["blessing"]["blessed"] is True
    assert ("single-digit operands (all 200): exact match 1.00000 (0 wrong) meets the "
            "threshold 1.0") in right["blessing"]["reasons"]


def test_an_empty_answer_is_never_counted_as_trusted():
    """As the served `trusted`: a valid row whose answer could not be read ('') is not
    trusted whatever its confidence, so it counts as a wrong answer caught."""
    from lstm_math.components.evaluator.scoring import summarize

    out = summarize(["1 + 2", "3 + 4", "5 + 6"], ["3", "7", "11"], ["3", "", "12"],
                    [True, True, True], [0.99, 0.99, 0.99], ["+", "+", "+"],
                    thresholds={"+": 0.5})
    trust = out["trust"]["+"]
    assert trust["wrong"] == 2 and trust["wrong_trusted"] == 1
    assert trust["wrong_caught"] == pytest.approx(0.5) and trust["right_given_up"] == 0.0


def test_a_long_evaluation_logs_its_progress(monkeypatch, caplog):
    """Every few seconds (here: every batch) the Evaluator says how far it is and how long is
    left, naming what it evaluates."""
    import logging

    import tensorflow as tf

    from lstm_math.components.evaluator import scoring

    monkeypatch.setattr(scoring, "PROGRESS_EVERY_S", 0.0)

    def serve_fn(equation):
        rows = tf.shape(equation)[0]
        return {"result": tf.fill([rows], "1"), "valid": tf.ones([rows], tf.bool),
                "confidence": tf.ones([rows])}

    with caplog.at_level(logging.INFO, logger=scoring.log.name):
        answers, _, _ = scoring.predict(serve_fn, ["0 + 1"] * 10, 4, what="the test split")
    assert answers == ["1"] * 10
    progress = [r.getMessage() for r in caplog.records if "answered" in r.getMessage()]
    assert progress and progress[-1].startswith("Evaluator: the test split: 8 of 10 answered")


@pytest.mark.parametrize("cores,words", [({0}, "1 CPU core ("), ({0, 1}, "2 CPU cores (")])
def test_hardware_names_the_cores_the_run_could_use(monkeypatch, cores, words):
    from lstm_math.components.evaluator.component import hardware

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: cores)
    described = hardware()
    assert described.startswith(words) and described.endswith(("no GPU", "GPU(s)")), described
