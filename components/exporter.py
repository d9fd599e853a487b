"""Exporter: a SavedModel with the string signature of DESIGN.md section 4.

The graph holds the tokenizer, the per-row validation, greedy decoding and detokenizing;
no project code (and no Keras) is needed to load or call it. Assets: ``coverage.json``
(operators, operand range, lengths: what a client may send) and ``metrics.json`` (the
evaluation of this model).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile

import tensorflow as tf

from serving.signature import build_serving_function

log = logging.getLogger(__name__)


class ServingModule(tf.Module):
    def __init__(self, model, coverage: dict, asset_paths: dict):
        super().__init__()
        self.model = model
        self.serve = build_serving_function(model, coverage)
        self.assets = {name: tf.saved_model.Asset(path) for name, path in asset_paths.items()}


def export_saved_model(model, coverage: dict, metrics: dict | None, export_dir: str) -> str:
    staging = tempfile.mkdtemp(prefix="lstm-math-assets-")
    try:
        paths = {}
        for name, content in (("coverage.json", coverage), ("metrics.json", metrics or {})):
            paths[name.replace(".", "_")] = os.path.join(staging, name)
            with open(paths[name.replace(".", "_")], "w") as f:
                json.dump(content, f, indent=2)
        module = ServingModule(model, coverage, paths)
        tf.saved_model.save(module, export_dir, signatures={"serving_default": module.serve})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("Exporter: SavedModel written to %s", export_dir)
    return export_dir


def run_exporter(model_dir: str, evaluation_dir: str | None, output_dir: str) -> dict:
    from components.trainer import load_trained

    model, coverage = load_trained(model_dir)
    metrics = None
    if evaluation_dir:
        with tf.io.gfile.GFile(os.path.join(evaluation_dir, "metrics.json")) as f:
            metrics = json.loads(f.read())
        metrics.pop("pictures", None)
    export_dir = os.path.join(output_dir, "saved_model")
    if tf.io.gfile.exists(export_dir):
        tf.io.gfile.rmtree(export_dir)
    export_saved_model(model, coverage, metrics, export_dir)
    return {"saved_model": export_dir, "coverage": coverage}
