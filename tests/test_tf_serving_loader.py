"""The exported SavedModel under the loader TensorFlow Serving uses.

TF Serving does not load a model with ``tf.saved_model.load``: it imports the MetaGraph into
a graph-mode Session, restores the variables through the SaverDef's restore op, runs the
init op and calls the signature by its tensor names (``tf.compat.v1.saved_model.loader``
and ``saved_model_cli run`` take the same path). Keras 3 variables are invisible to that
restore unless the export tracks them; these tests load every kind of export that way, in
a fresh process that imports no project code and in which Keras cannot be imported, and
compare the answers row for row with the object loader's.
"""

import dataclasses
import base64
import json
import os
import re
import subprocess
import sys

import keras
import pytest
import tensorflow as tf

from lstm_math.components import infra_validator, tokenizer
from lstm_math.components.exporter import export_saved_model
from lstm_math.components.models import ModelHParams, build_model
from lstm_math.components.signature import build_serving_function
from tests.helpers import BLOCK_KERAS, OracleModel, make_coverage

COVERAGE = make_coverage(operators=["+", "-"], max_input_length=5, max_result_length=3,
                         reverse_output=True)
SEED_COVERAGE = dataclasses.replace(COVERAGE, reverse_output=False,
                                    output_format="right_aligned")
WARMUP_SIZES = [1, 3]
TRUST_METRICS = {"exact_match": 0.99, "confidence": {"overall": {"threshold": 0.9},
                                                    "+": {"threshold": 0.9},
                                                    "-": {"threshold": 0.9}}}
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


class KerasOracle(keras.Model):
    """Answers every equation right, through a Keras weight: the answer is
    ``scale * truth`` with ``scale`` a Keras variable set to 1. Loaded without its variables
    restored, the model cannot run at all; restored from the wrong variable, it answers
    wrong. Decodes with string ops (no XLA)."""

    def __init__(self, coverage):
        super().__init__()
        self.reverse = coverage.reverse_output
        self.scale = self.add_weight(shape=(), initializer="zeros", dtype="int64",
                                     trainable=False, name="scale")
        self.scale.assign(1)

    def greedy_decode(self, encoder_ids, steps: int):
        chars = tf.gather(tf.constant([""] * len(tokenizer.SPECIALS)
                                      + list(tokenizer.CHARACTERS) + [""]), encoder_ids)
        text = tf.strings.reduce_join(chars, axis=1)
        numbers = tf.strings.split(tf.strings.regex_replace(text, r"[+\-*/]", " "))
        values = tf.strings.to_number(numbers, out_type=tf.int64).to_tensor(shape=[None, 2])
        a, b = values[:, 0], values[:, 1]
        minus = tf.strings.regex_full_match(text, r"\d+-\d+")
        result = self.scale * tf.where(minus, a - b, a + b)
        _, ids = tokenizer.encode_results(tf.strings.as_string(result), steps - 1, self.reverse)
        used = tf.sequence_mask(tokenizer.result_lengths(ids), steps)
        return ids, tf.where(used, 0.99, 1.0)


def _untrained(family):
    keras.utils.set_random_seed(3)
    if family == "seed":
        model = build_model(ModelHParams(family="seed", encoder_units=8), 4)
    elif family == "transformer":
        model = build_model(ModelHParams(family="transformer", embedding_dim=8, encoder_units=16,
                                         decoder_units=16, attention_heads=2,
                                         decoder_layers=2), 4)
    else:
        model = build_model(ModelHParams(embedding_dim=8, encoder_units=16, decoder_units=16), 4)
    model((tf.zeros([1, 5], tf.int32), tf.zeros([1, 4], tf.int32)))
    return model


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    base = tmp_path_factory.mktemp("exports")
    out = {}
    for family, coverage in (("attention", COVERAGE), ("transformer", COVERAGE),
                             ("seed", SEED_COVERAGE)):
        model = _untrained(family)
        for jit in (False, True):
            name = f"{family}-{'xla' if jit else 'plain'}"
            out[name] = export_saved_model(model, coverage, {"exact_match": 0.5},
                                           str(base / name), jit_compile=jit,
                                           warmup_batch_sizes=WARMUP_SIZES)
    out["oracle"] = export_saved_model(KerasOracle(COVERAGE), COVERAGE, {"exact_match": 1.0},
                                       str(base / "oracle"), warmup_batch_sizes=WARMUP_SIZES)
    # wrong on '7 + b' (0.6 per step), right elsewhere (0.99 per step); the trust
    # thresholds as an Evaluator report gives them
    out["oracle-trust"] = export_saved_model(OracleModel(COVERAGE), COVERAGE, TRUST_METRICS,
                                             str(base / "oracle-trust"),
                                             warmup_batch_sizes=WARMUP_SIZES)
    return out


# Runs with `python -I` (no PYTHONPATH, no project on sys.path) and Keras made unimportable.
FRESH = r"""
import base64, importlib.machinery, json, sys
""" + BLOCK_KERAS + r"""
sys.meta_path.insert(0, BlockKeras())
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

request = json.load(sys.stdin)
rows = [base64.b64decode(r) for r in request["rows"]]

def listed(out):
    return [{"result": out["result"][i].decode(), "valid": bool(out["valid"][i]),
             "error": out["error"][i].decode(), "confidence": float(out["confidence"][i]),
             "trusted": bool(out["trusted"][i])}
            for i in range(len(out["result"]))]

report = {}
for name, path in request["exports"].items():
    obj = tf.saved_model.load(path).signatures["serving_default"]
    by_object = listed({k: v.numpy() for k, v in obj(equation=tf.constant(rows)).items()})
    warmup = [tf.make_ndarray(prediction_log_pb2.PredictionLog.FromString(r.numpy())
                              .predict_log.request.inputs["equation"]).tolist()
              for r in tf.data.TFRecordDataset(path + "/assets.extra/tf_serving_warmup_requests")]
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
        sig = meta.signature_def["serving_default"]
        fetch = {k: v.name for k, v in sig.outputs.items()}
        by_session = listed(sess.run(fetch, {sig.inputs["equation"].name: rows}))
        warmup_sizes = [len(sess.run(fetch, {sig.inputs["equation"].name: b})["result"])
                        for b in warmup]
    report[name] = {"object": by_object, "session": by_session,
                    "warmup_sizes": [len(b) for b in warmup], "warmup_answered": warmup_sizes,
                    "method": sig.method_name}
report["keras_imported"] = "keras" in sys.modules
report["project_modules"] = sorted(m for m in sys.modules if m.split(".")[0] in
                                   ("components", "pipeline", "serving", "tests"))
print(json.dumps(report))
"""


def _rows(coverage):
    good = [t.encode() for t, _ in infra_validator.canaries(coverage, 20)]
    return good + [b"31 + 87", b"99-9", b"7 + 5"] + [
        r for r, _ in infra_validator.hostile_for(coverage)]


def test_tf_serving_loader_answers_like_the_object_loader_row_for_row(exports, tmp_path):
    rows = _rows(COVERAGE)
    request = {"exports": exports, "rows": [base64.b64encode(r).decode() for r in rows]}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", "-c", FRESH], input=json.dumps(request),
                          capture_output=True, text=True, timeout=600, cwd=str(tmp_path),
                          env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout)
    assert report.pop("keras_imported") is False
    assert report.pop("project_modules") == []
    assert sorted(report) == sorted(exports)
    for name, got in report.items():
        assert len(got["session"]) == len(rows)
        for i, (s, o) in enumerate(zip(got["session"], got["object"])):
            assert (s["result"], s["valid"], s["error"], s["trusted"]) == (
                o["result"], o["valid"], o["error"], o["trusted"]), (name, rows[i][:40])
            assert s["confidence"] == pytest.approx(o["confidence"], abs=1e-5), name
        assert got["warmup_sizes"] == got["warmup_answered"] == WARMUP_SIZES, name
        assert got["method"] == "tensorflow/serving/predict"
        # hostile rows are refused per row under both loaders
        hostile = got["session"][23:]
        assert not any(r["valid"] or r["trusted"] for r in hostile)
        assert all(r["error"] for r in hostile)
    oracle = report["oracle"]["session"]
    assert [r["result"] for r in oracle[20:22]] == ["118", "90"]
    truths = [t for _, t in infra_validator.canaries(COVERAGE, 20)]
    assert [r["result"] for r in oracle[:20]] == truths
    # The wrong answer, below its operator's threshold, is not trusted under either loader;
    # the right ones are. Exported without thresholds, nothing is.
    for how in ("session", "object"):
        judged = report["oracle-trust"][how]
        assert [(r["result"], r["valid"], r["trusted"]) for r in judged[20:23]] == [
            ("118", True, True), ("90", True, True), ("112", True, False)], how
        assert judged[22]["confidence"] < 0.9 <= judged[20]["confidence"]
        assert not any(r["trusted"] for r in report["oracle"][how])


def _saved_model_cli_run(path, equations):
    proc = subprocess.run(
        [SAVED_MODEL_CLI, "run", "--dir", path, "--tag_set", "serve", "--signature_def",
         "serving_default", "--input_exprs", f"equation={json.dumps(equations)}"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs = {}
    for key, value in re.findall(r"Result for output key (\w+):\n(.*?)(?=\nResult for|\Z)",
                                 proc.stdout, flags=re.S):
        outputs[key] = value.strip()
    return outputs


def test_saved_model_cli_run_gives_the_right_answer(exports):
    out = _saved_model_cli_run(exports["oracle"], ["31 + 87", "99-9", "7 + x"])
    assert out["result"] == "[b'118' b'90' b'']"
    assert out["valid"] == "[ True  True False]"
    assert "unknown character 'x'" in out["error"]


def test_saved_model_cli_run_on_the_xla_export_equals_the_object_loader(exports):
    path = exports["attention-xla"]
    equations = ["31 + 87", "5-9", "1 * 2"]
    out = _saved_model_cli_run(path, equations)
    expected = tf.saved_model.load(path).signatures["serving_default"](
        equation=tf.constant(equations))
    assert out["result"] == str(expected["result"].numpy())
    assert out["valid"] == str(expected["valid"].numpy())


class _UntrackedModule(tf.Module):
    """The export as it was before: the module holds the Keras model and the signature, and
    nothing tracks the tf.Variables under the Keras variables."""

    def __init__(self, model, coverage):
        super().__init__()
        self.model = model
        self.serve = build_serving_function(model, coverage)


def test_infra_validator_refuses_a_model_tf_serving_cannot_load(exports, tmp_path,
                                                                monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no tensorflow_model_server here
    broken = str(tmp_path / "untracked")
    module = _UntrackedModule(KerasOracle(COVERAGE), COVERAGE)
    tf.saved_model.save(module, broken, signatures={"serving_default": module.serve})
    # the object loader alone would not notice:
    fn = tf.saved_model.load(broken).signatures["serving_default"]
    assert fn(equation=tf.constant(["31 + 87"]))["result"].numpy().tolist() == [b"118"]
    out = infra_validator.run_infra_validator(broken, COVERAGE, 0.999, str(tmp_path / "iv"),
                                              num_canaries=10, huge_batch=64)
    assert out["passed"] is False
    assert any(p.startswith("TF Serving's loader (SaverDef restore in a graph-mode Session) "
                            "cannot run this SavedModel") for p in out["problems"]), out["problems"]

