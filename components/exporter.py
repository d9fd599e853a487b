"""Exporter: a SavedModel with the string signature of docs/serving-contract.md.

The graph holds the tokenizer, the per-row validation, greedy decoding and detokenizing;
no project code (and no Keras) is needed to load or call it. Assets: ``coverage.json``
(operators, operand range, lengths: what a client may send) and ``metrics.json`` (the
evaluation of this model). The Evaluator's trust threshold per operator
(``metrics.json``'s ``confidence.<op>.threshold``) is baked into the graph as a constant:
the ``trusted`` output compares each answer's confidence with it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile

import tensorflow as tf

from lstm_math.components.evaluator.scoring import trust_thresholds
from lstm_math.components.signature import build_serving_function
from lstm_math.config import Coverage
from lstm_math.serving.contract import DEFAULT_MODEL_NAME, SIGNATURE_NAME, WARMUP_FILE

log = logging.getLogger(__name__)


class ServingModule(tf.Module):
    def __init__(self, model, coverage: Coverage, asset_paths: dict, jit_compile: bool = False,
                 thresholds: dict | None = None):
        super().__init__()
        self.serve = build_serving_function(model, coverage, jit_compile=jit_compile,
                                            trust_thresholds=thresholds)
        # The variables the signature reads, tracked by the module itself (as
        # keras.export.ExportArchive does): TF Serving's loader restores variables by the
        # SaverDef's names, and Keras 3 layers do not expose their tf.Variables to TF's
        # object graph, so a module that tracks only the model saves no restorable copy.
        self.serving_variables = list(self.serve.get_concrete_function().variables)
        self.assets = {name: tf.saved_model.Asset(path) for name, path in asset_paths.items()}


def warmup_equations(coverage: Coverage, batch_size: int) -> list[str]:
    """Valid equations of the model's space (the warm-up must run the decoder)."""
    low, high = coverage.operand_min, coverage.operand_max
    operators, n = coverage.operators, coverage.num_operands
    rows = []
    for i in range(batch_size):
        operands = [str(low + (i * 37 + k * 101) % (high - low + 1)) for k in range(n)]
        op = operators[i % len(operators)]
        if op == "/":
            operands = [o if k == 0 or o != "0" else str(max(low, 1)) for k, o in
                        enumerate(operands)]
        rows.append(f" {op} ".join(operands))
    return rows


def write_warmup_requests(export_dir: str, coverage: Coverage, batch_sizes, model_name: str):
    """TF Serving's SavedModel warm-up file: one PredictionLog per batch size, replayed by
    tensorflow_model_server (and `lstm-math serve`) before the version takes traffic."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = os.path.join(export_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for size in batch_sizes:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name,
                                               signature_name=SIGNATURE_NAME))
            request.inputs["equation"].CopyFrom(
                tf.make_tensor_proto(warmup_equations(coverage, size), dtype=tf.string))
            log_entry = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log_entry.SerializeToString())
    return path


def export_saved_model(model, coverage: Coverage, metrics: dict | None, export_dir: str,
                       jit_compile: bool = False, warmup_batch_sizes=(),
                       model_name: str = DEFAULT_MODEL_NAME) -> str:
    staging = tempfile.mkdtemp(prefix="lstm-math-assets-")
    try:
        paths = {}
        # the assets are JSON: the model server reads them without this project's code
        for name, content in (("coverage.json", coverage.to_dict()),
                              ("metrics.json", metrics or {})):
            paths[name.replace(".", "_")] = os.path.join(staging, name)
            with open(paths[name.replace(".", "_")], "w") as f:
                json.dump(content, f, indent=2)
        thresholds = trust_thresholds(metrics)
        if not thresholds:
            log.warning("Exporter: no trust thresholds (no Evaluator report with confidence "
                        "figures): the model's `trusted` output will be false on every row")
        module = ServingModule(model, coverage, paths, jit_compile=jit_compile,
                               thresholds=thresholds)
        tf.saved_model.save(module, export_dir, signatures={SIGNATURE_NAME: module.serve})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if warmup_batch_sizes:
        write_warmup_requests(export_dir, coverage, warmup_batch_sizes, model_name)
    log.info("Exporter: SavedModel written to %s (XLA decoder: %s, warm-up batch sizes: %s, "
             "trust thresholds: %s)", export_dir, "on" if jit_compile else "off",
             list(warmup_batch_sizes) or "none",
             ", ".join(f"{k} {v:.6g}" for k, v in sorted(thresholds.items())) or "none")
    return export_dir


def run_exporter(model_dir: str, evaluation_dir: str | None, output_dir: str,
                 jit_compile: bool = False, warmup_batch_sizes=()) -> dict:
    from lstm_math.components.trainer import load_trained

    model, coverage = load_trained(model_dir)
    metrics = None
    if evaluation_dir:
        with tf.io.gfile.GFile(os.path.join(evaluation_dir, "metrics.json")) as f:
            metrics = json.loads(f.read())
        metrics.pop("pictures", None)
    export_dir = os.path.join(output_dir, "saved_model")
    if tf.io.gfile.exists(export_dir):
        tf.io.gfile.rmtree(export_dir)
    export_saved_model(model, coverage, metrics, export_dir, jit_compile=jit_compile,
                       warmup_batch_sizes=warmup_batch_sizes)
    return {"saved_model": export_dir, "coverage": coverage.to_dict(), "jit_compile": jit_compile}
