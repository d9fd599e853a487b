"""The exported SavedModel against docs/serving-contract.md, from outside the project."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from lstm_math.components import tokenizer
from lstm_math.components.exporter import export_saved_model
from lstm_math.components.models import ModelHParams, build_model
from lstm_math.config import Coverage
from tests.helpers import BLOCK_KERAS

# The assets' coverage.json, as the Trainer writes coverage.json (every field, in order).
COVERAGE_JSON = {"operators": ["+", "-"], "operand_min": 0, "operand_max": 99,
                 "num_operands": 2, "min_operands": 2, "max_input_length": 5,
                 "max_result_length": 3, "reverse_output": True, "output_format": "left",
                 "answer_format": {}, "pad_operands": False}
COVERAGE = Coverage.from_dict(COVERAGE_JSON)
METRICS = {"exact_match": 0.25, "count": 4, "per_operator": {"+": {"exact_match": 0.5}}}
WARMUP_SIZES = [1, 4]
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tf.keras.utils.set_random_seed(3)
    model = build_model(ModelHParams(embedding_dim=8, encoder_units=16, decoder_units=16),
                        COVERAGE.max_result_length + 1)
    model((tf.zeros([1, 5], tf.int32), tf.zeros([1, 4], tf.int32)))
    path = str(tmp_path_factory.mktemp("export") / "saved_model")
    # as the pipeline exports by default: XLA decoder, TF Serving warm-up requests
    export_saved_model(model, COVERAGE, METRICS, path, jit_compile=True,
                       warmup_batch_sizes=WARMUP_SIZES)
    return model, path


def test_saved_model_cli_shows_exactly_the_contract(exported):
    _, path = exported
    proc = subprocess.run([SAVED_MODEL_CLI, "show", "--dir", path, "--all"],
                          capture_output=True, text=True, timeout=180, check=True)
    out = proc.stdout
    signatures = re.findall(r"signature_def\['([^']+)'\]", out)
    assert sorted(signatures) == ["__saved_model_init_op", "serving_default"]
    serving = out.split("signature_def['serving_default']")[1].split("signature_def[")[0]
    inputs = serving.split("The given SavedModel SignatureDef contains the following output")[0]
    outputs = serving.split("The given SavedModel SignatureDef contains the following output")[1]

    def tensors(block):
        return {m[0]: (m[1], m[2]) for m in re.findall(
            r"\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (\([^)]*\))", block)}

    assert tensors(inputs) == {"equation": ("DT_STRING", "(-1)")}
    assert tensors(outputs) == {"result": ("DT_STRING", "(-1)"), "valid": ("DT_BOOL", "(-1)"),
                                "error": ("DT_STRING", "(-1)"),
                                "confidence": ("DT_FLOAT", "(-1)"),
                                "trusted": ("DT_BOOL", "(-1)")}
    assert "Method name is: tensorflow/serving/predict" in serving


FRESH = r"""
import importlib.machinery, json, sys
BLOCK = sys.argv[2] == "block-keras"
""" + BLOCK_KERAS + r"""
if BLOCK:
    sys.meta_path.insert(0, BlockKeras())
import tensorflow as tf
keras_after_tf = "keras" in sys.modules
loaded = tf.saved_model.load(sys.argv[1])
fn = loaded.signatures["serving_default"]
rows = ["31 + 87", "12+7", " 99\t-\n0 ", "31 + x", "", "1 + 2 + 3", "5 * 5", "100 + 1", "5/0"]
out = fn(equation=tf.constant(rows))
assets = {k: json.loads(tf.io.gfile.GFile(a.asset_path.numpy().decode()).read())
          for k, a in loaded.assets.items()}
print(json.dumps({
    "keras_after_tf": keras_after_tf,
    "keras_after_load_and_call": sorted(m for m in sys.modules if m.split(".")[0] == "keras"),
    "project_modules": sorted(m for m in sys.modules
                              if m.split(".")[0] in ("components", "pipeline", "serving", "tests")),
    "valid": out["valid"].numpy().tolist(),
    "error": [e.decode() for e in out["error"].numpy()],
    "result": [r.decode() for r in out["result"].numpy()],
    "confidence": out["confidence"].numpy().tolist(),
    "assets": assets,
}))
"""


def test_loads_and_answers_without_project_code_or_keras(exported, tmp_path):
    """`import tensorflow` imports Keras whenever it is installed (TF's __init__ eagerly
    imports keras.src.optimizers and tolerates an ImportError there); so the process makes
    Keras unimportable, as on a machine without it, and the model must still load and
    answer."""
    _, path = exported
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", "-c", FRESH, path, "block-keras"],
                          capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["project_modules"] == []
    assert out["keras_after_tf"] is False
    assert out["keras_after_load_and_call"] == []
    assert out["valid"] == [True, True, True, False, False, False, False, False, False]
    assert out["error"][:3] == ["", "", ""]
    assert [e.split(" ")[0] for e in out["error"][3:]] == [
        "unknown", "empty", "too", "operator", "operand", "operator"]
    # Untrained: any output characters, but only the vocabulary's, never a special token.
    assert all(re.fullmatch(r"[0-9+\-*/]*", r) for r in out["result"][:3])
    assert out["result"][3:] == [""] * 6 and out["confidence"][3:] == [0.0] * 6
    assert all(0.0 < c <= 1.0 for c in out["confidence"][:3])
    assert out["assets"] == {"coverage_json": COVERAGE_JSON, "metrics_json": METRICS}


def test_assets_are_plain_json_files_in_the_assets_dir(exported):
    _, path = exported
    assert sorted(os.listdir(os.path.join(path, "assets"))) == ["coverage.json", "metrics.json"]
    with open(os.path.join(path, "assets", "coverage.json")) as f:
        text = f.read()
    # the JSON form, key for key and in the order the Trainer's coverage.json has them
    assert text == json.dumps(COVERAGE_JSON, indent=2)
    assert list(json.loads(text)) == list(COVERAGE_JSON)
    with open(os.path.join(path, "assets", "metrics.json")) as f:
        assert json.load(f) == METRICS


def test_confidence_is_the_probability_of_the_whole_answer(exported):
    """confidence = P(answer tokens and END | equation), from teacher-forced logits."""
    model, path = exported
    fn = tf.saved_model.load(path).signatures["serving_default"]
    rows = ["31 + 87", "0 - 99", "5+5", "99 + 99", "7 - 70", "42 + 0"]
    out = fn(equation=tf.constant(rows))
    for text, answer, confidence in zip(rows, out["result"].numpy(), out["confidence"].numpy()):
        answer = answer.decode()
        encoder = tokenizer.encode_equations(tf.constant([text]), COVERAGE.max_input_length)
        dec_in, targets = tokenizer.encode_results(tf.constant([answer]),
                                                   COVERAGE.max_result_length, True)
        probs = tf.nn.softmax(model((encoder, dec_in)), axis=-1).numpy()[0]
        target = targets.numpy()[0]
        steps = len(answer) + 1  # the characters and END
        if steps > len(target):  # no END within the width: all steps count
            steps = len(target)
        expected = float(np.prod([probs[t, target[t]] for t in range(steps)]))
        assert confidence == pytest.approx(expected, rel=1e-4, abs=1e-7), text
        assert 0.0 <= confidence <= 1.0


def test_huge_batch_of_mixed_rows(exported):
    _, path = exported
    fn = tf.saved_model.load(path).signatures["serving_default"]
    base = ["1 + 1", "x", "", "99-99", "1 * 2", "\x00", "100 + 0", "9" * 3000]
    rows = base * 2500  # 20 000 rows
    out = fn(equation=tf.constant(rows))
    valid = out["valid"].numpy()
    assert valid.shape == (20000,)
    assert valid.reshape(2500, 8).tolist() == [[True, False, False, True, False, False, False,
                                                False]] * 2500
    results = out["result"].numpy().reshape(2500, 8)
    assert (results == results[0]).all()


def test_xla_decoder_answers_exactly_like_the_plain_graph(exported, tmp_path):
    """exporter.jit_compile changes the speed, not the answers: every batch size (padded to
    its bucket and cut back) gives the plain graph's results, validity and errors."""
    model, path = exported
    plain_path = str(tmp_path / "plain")
    export_saved_model(model, COVERAGE, METRICS, plain_path, jit_compile=False)
    xla = tf.saved_model.load(path).signatures["serving_default"]
    plain = tf.saved_model.load(plain_path).signatures["serving_default"]
    rng = np.random.default_rng(7)
    rows = [f"{a} {'+-'[i % 2]} {b}" for i, (a, b) in enumerate(rng.integers(0, 100, (40, 2)))]
    rows += ["31 + x", "", "5 * 5", "100 + 1", "1 + 2 + 3"]
    for size in (0, 1, 3, 17, len(rows)):
        batch = tf.constant(rows[:size], dtype=tf.string, shape=[size])
        a, b = xla(equation=batch), plain(equation=batch)
        for key in ("result", "valid", "error"):
            assert a[key].numpy().tolist() == b[key].numpy().tolist(), (size, key)
        np.testing.assert_allclose(a["confidence"].numpy(), b["confidence"].numpy(), atol=1e-5)
    assert not os.path.exists(os.path.join(plain_path, "assets.extra"))


def test_warmup_file_holds_tf_serving_predict_logs_of_valid_equations(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    _, path = exported
    fn = tf.saved_model.load(path).signatures["serving_default"]
    records = list(tf.data.TFRecordDataset(
        os.path.join(path, "assets.extra", "tf_serving_warmup_requests")))
    sizes = []
    for record in records:
        entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = entry.predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        assert list(request.inputs) == ["equation"]
        rows = tf.make_ndarray(request.inputs["equation"])
        sizes.append(len(rows))
        assert fn(equation=tf.constant(rows))["valid"].numpy().all()  # the decoder runs
    assert sizes == WARMUP_SIZES


def test_local_server_replays_the_warmup_before_serving(exported, tmp_path, caplog):
    from lstm_math.serving.client import predict_grpc
    from lstm_math.serving.server import ModelServer

    _, path = exported
    shutil.copytree(path, str(tmp_path / "lstm_math" / "1"))
    caplog.set_level("INFO", logger="lstm_math.serving")
    with ModelServer(str(tmp_path), rest_port=None, grpc_port=0) as server:
        assert server.manager._latest.warmup_requests == len(WARMUP_SIZES)
        [row] = predict_grpc(["31 + 87"], port=server.grpc_port)
        assert row["valid"] is True
    assert "2 warm-up requests replayed" in caplog.text
    with ModelServer(str(tmp_path), rest_port=None, grpc_port=0,
                     model_warmup=False) as server:
        assert server.manager._latest.warmup_requests == 0
    # a corrupt warm-up file fails the load of that version, with the reason in its status
    with open(tmp_path / "lstm_math" / "1" / "assets.extra" / "tf_serving_warmup_requests",
              "wb") as f:
        f.write(b"not a TFRecord")
    from lstm_math.serving.server import ModelManager
    manager = ModelManager(str(tmp_path), poll_seconds=60)
    manager.poll_once()
    assert manager._latest is None
    [(attempts, reason)] = manager._failures.values()
    assert attempts == 1, reason
    assert reason.startswith("DataLossError"), reason
