"""A tiny SavedModel that obeys the serving contract (docs/serving-contract.md).

The model server is model-agnostic, so its tests (and the serving benchmark when no real
model is given) use this stand-in: ``serving_default`` takes ``equation`` (tf.string
[batch]) and returns ``result`` / ``valid`` / ``error`` / ``confidence`` / ``trusted``,
validating the text with tf.strings regex ops and computing ``a + b`` for operands 0..999 in
the graph. Invalid rows come back ``valid=False`` with a reason, ``result=""``, confidence 0
and ``trusted=False``; they never fail the batch. ``trusted``: confidence >= the
``trust_threshold`` given.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import tensorflow as tf

MODEL_NAME = "lstm_math"
MAX_LENGTH = 64

_ALLOWED_CHARS = r"[0-9+\-*/\s]"
_ADDITION = r"^\s*(\d+)\s*\+\s*(\d+)\s*$"
_IN_RANGE = r"^\s*\d{1,3}\s*\+\s*\d{1,3}\s*$"
_OTHER_OPERATOR = r"^\s*\d+\s*([-*/])\s*\d+\s*$"


class AdditionModel(tf.Module):
    """Contract-conforming stand-in for the LSTM model: exact ``a + b`` for 0..999."""

    def __init__(self, confidence: float = 0.999, trust_threshold: float = 0.9):
        super().__init__()
        self.confidence = tf.constant(confidence, tf.float32)
        self.trust_threshold = tf.constant(trust_threshold, tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="equation")])
    def serve(self, equation):
        text = tf.strings.unicode_transcode(
            equation, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
        length = tf.strings.length(text, unit="UTF8_CHAR")
        too_long = length > MAX_LENGTH
        stray = tf.strings.regex_replace(text, _ALLOWED_CHARS, "")
        unknown = tf.strings.length(stray) > 0
        first_stray = tf.strings.substr(stray, 0, 1, unit="UTF8_CHAR")
        is_addition = tf.strings.regex_full_match(text, _ADDITION)
        in_range = tf.strings.regex_full_match(text, _IN_RANGE)
        other_op = tf.strings.regex_full_match(text, _OTHER_OPERATOR)
        operator = tf.strings.regex_replace(text, _OTHER_OPERATOR, r"\1")

        empty = tf.fill(tf.shape(equation), "")
        error = tf.where(
            too_long, tf.fill(tf.shape(equation), f"too long (more than {MAX_LENGTH} characters)"),
            tf.where(
                unknown, tf.strings.join(["unknown character '", first_stray, "'"]),
                tf.where(
                    other_op, tf.strings.join(["operator not trained: '", operator, "'"]),
                    tf.where(
                        tf.logical_not(is_addition),
                        tf.fill(tf.shape(equation), "malformed equation"),
                        tf.where(
                            tf.logical_not(in_range),
                            tf.fill(tf.shape(equation), "operand out of the trained range 0..999"),
                            empty)))))
        valid = tf.equal(error, "")
        safe = tf.where(valid, text, tf.fill(tf.shape(equation), "0+0"))
        a = tf.strings.to_number(tf.strings.regex_replace(safe, _ADDITION, r"\1"), tf.int64)
        b = tf.strings.to_number(tf.strings.regex_replace(safe, _ADDITION, r"\2"), tf.int64)
        result = tf.where(valid, tf.strings.as_string(a + b), empty)
        confidence = tf.where(valid, tf.fill(tf.shape(equation), self.confidence),
                              tf.zeros(tf.shape(equation), tf.float32))
        return {"result": result, "valid": valid, "error": error, "confidence": confidence,
                "trusted": valid & (confidence >= self.trust_threshold)}


def save_model(export_dir: str, confidence: float = 0.999) -> str:
    """Write the fixture SavedModel to ``export_dir`` (a version directory)."""
    model = AdditionModel(confidence)
    tf.saved_model.save(model, export_dir, signatures={"serving_default": model.serve})
    return export_dir


def push_version(model_base: str, version: int, confidence: float = 0.999,
                 model_name: str = MODEL_NAME) -> str:
    """Atomically push a version: save beside the target, then ``os.rename`` into place."""
    parent = os.path.join(model_base, model_name)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".staging-{version}-", dir=model_base)
    try:
        save_model(staging, confidence)
        target = os.path.join(parent, str(version))
        os.rename(staging, target)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return target


def copy_version(src_version_dir: str, model_base: str, version: int,
                 model_name: str = MODEL_NAME) -> str:
    """Push an existing version directory again under a new version number (atomic)."""
    parent = os.path.join(model_base, model_name)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".staging-{version}-", dir=model_base)
    os.rmdir(staging)
    shutil.copytree(src_version_dir, staging)
    target = os.path.join(parent, str(version))
    os.rename(staging, target)
    return target
