"""The serving contract, in one place (docs/serving-contract.md describes it in words).

A leaf module: the standard library only, so the Exporter, the Pusher, the Evaluator, the
local server, the client and tests all import these names instead of keeping copies.

* where a model lives: ``<serving_base>/<model_name>/<version>/saved_model.pb``;
* the one rule for what a version is (``parse_version``) and the one listing of them
  (``versions``), shared by the Pusher, the Evaluator's "pushed model" and the server;
* the ``serving_default`` signature's input and output keys (``trusted`` included);
* the TF Serving warm-up file's path inside a version;
* the batch sizes the XLA-compiled decoder is compiled for.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Callable, Iterable

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "lstm_math"
# A model name: TF Serving's REST API takes anything but '/' and ':' in /v1/models/<name>;
# here it is also a directory <serving_base>/<name>, and a word a shell, a URL and a
# Kubernetes manifest take as it is.
MODEL_NAME_RULE = "letters, digits, '_', '-' and '.', not '.' or '..', at most 255"
_MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,255}")


def is_model_name(name: str) -> bool:
    """Whether ``name`` follows MODEL_NAME_RULE."""
    return bool(_MODEL_NAME.fullmatch(name)) and name not in (".", "..")
SIGNATURE_NAME = "serving_default"
METHOD_NAME = "tensorflow/serving/predict"
INPUT_KEY = "equation"
# `trusted`: the answer's confidence is at or above the trust threshold of its operator
# (the Evaluator's, baked into the graph at export); false for an invalid row.
TRUSTED_KEY = "trusted"
OUTPUT_KEYS = ("result", "valid", "error", "confidence", TRUSTED_KEY)
# An extra output of models that write their working (task.data.answer_format): the steps,
# as written, for clients who want to see them; '' for rows whose operator has none. The
# keys above never change meaning: ``result`` is the final answer only.
WORKING_OUTPUT = "working"
# TF Serving's SavedModel warm-up file, replayed before a version takes traffic.
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
SAVED_MODEL_FILE = "saved_model.pb"
# Assets the Exporter writes: what the model covers and how it was evaluated.
COVERAGE_ASSET = "coverage.json"
METRICS_ASSET = "metrics.json"

# Batch sizes the XLA-compiled decoder is compiled for: powers of two up to the largest,
# then multiples of it. The local server's default batch limit is the largest bucket.
JIT_BATCH_BUCKETS = tuple(2 ** k for k in range(11))  # 1, 2, 4, ..., 1024
LARGEST_BUCKET = JIT_BATCH_BUCKETS[-1]

INT64_MAX = 2 ** 63 - 1


def parse_version(name: str) -> int | None:
    """A version directory's number, or None when the name is not a version.

    Only plain ASCII decimal integers in 1..int64 max are versions (TF Serving's rule): not
    '²' or '٣' (``str.isdigit`` is true for them), not '+3', ' 3', '0' or 2**63. A trailing
    '/' (as ``tf.io.gfile.listdir`` reports directories) is ignored.
    """
    name = name.rstrip("/")
    if not name or len(name) > 19 or not all("0" <= c <= "9" for c in name):
        return None
    value = int(name)
    return value if 0 < value <= INT64_MAX else None


def _listdir(path: str) -> list[str]:
    if "://" in path:  # gs://, s3://, ...: through TensorFlow's file system layer
        import tensorflow as tf

        return tf.io.gfile.listdir(path) if tf.io.gfile.isdir(path) else []
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


_warned: set = set()


def versions(model_dir: str, listdir: Callable[[str], Iterable[str]] | None = None,
             complete_only: bool = False, quiet: bool = False) -> list[int]:
    """The version numbers under ``<serving_base>/<model_name>``, ascending.

    Names that are not versions (staging directories, '²', numbers beyond int64) are
    skipped, with one warning per name and process rather than one per call.
    ``complete_only``: only versions whose ``saved_model.pb`` is there. ``quiet``: no
    warnings (a check that only asks whether there is a version).
    """
    entries = list((listdir or _listdir)(model_dir))
    found = []
    for entry in entries:
        name = entry.rstrip("/")
        number = parse_version(name)
        if number is None:
            if not (quiet or name.startswith(".")) and (model_dir, name) not in _warned:
                _warned.add((model_dir, name))
                log.warning("%s: ignoring %r, which is not a version number (a positive "
                            "ASCII decimal integer within int64)", model_dir, name)
            continue
        if complete_only and not _exists(os.path.join(model_dir, name, SAVED_MODEL_FILE)):
            continue
        found.append(number)
    return sorted(found)


def _exists(path: str) -> bool:
    if "://" in path:
        import tensorflow as tf

        return tf.io.gfile.exists(path)
    return os.path.exists(path)


def latest_version(model_dir: str, quiet: bool = False) -> int | None:
    """The highest complete version, or None (``quiet``: see ``versions``)."""
    found = versions(model_dir, complete_only=True, quiet=quiet)
    return found[-1] if found else None


def bucket_rows(rows: int) -> int:
    """The batch size the XLA decoder runs ``rows`` rows at (the graph's ``bucket_size``)."""
    for bucket in JIT_BATCH_BUCKETS:
        if rows <= bucket:
            return bucket
    return -(-rows // LARGEST_BUCKET) * LARGEST_BUCKET
