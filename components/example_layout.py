"""The layout of ExampleGen's output, shared by every side that writes or reads it.

A leaf (TensorFlow's file API, no Beam): ExampleGen writes this layout, the tf.data input,
DataValidation, the Evaluator and the TFDS builder read it, and nobody keeps a copy.

  <examples_dir>/<split>-NNNNN-of-MMMMM.tfrecord[.gz]   tf.train.Example records
  <examples_dir>/stats.json                             counts per split, shards, compression
  <examples_dir>/stats.html                             the same numbers as a report
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

STATS_FILE = "stats.json"
REPORT_FILE = "stats.html"
SPLITS = ("train", "validation", "test")

# The features of one record (all bytes): the canonical equation text, its result, and the
# operator tag (components.equations.operator_tag: '+', '-', '*', '/' or 'mixed'); and,
# only where the task's answer format for the tag has one (task.data.answer_format), the
# working the model is trained to write (components.answer_formats), '' when absent.
FEATURE_KEYS = ("equation", "result", "operator")
FEATURES = {key: tf.io.FixedLenFeature([], tf.string) for key in FEATURE_KEYS}
WORKING_KEY = "working"
FEATURES[WORKING_KEY] = tf.io.FixedLenFeature([], tf.string, default_value="")


class NoShardsError(FileNotFoundError):
    pass


def _suffix(compression: str) -> str:
    return ".tfrecord.gz" if compression == "GZIP" else ".tfrecord"


def shard_name(split: str, index: int, count: int, compression: str) -> str:
    return f"{split}-{index:05d}-of-{count:05d}{_suffix(compression)}"


def shard_pattern(split: str, compression: str) -> str:
    return f"{split}-*-of-*{_suffix(compression)}"


def read_stats(examples_dir: str) -> dict:
    path = os.path.join(examples_dir, STATS_FILE)
    if not tf.io.gfile.exists(path):
        raise NoShardsError(f"no ExampleGen output under {examples_dir}: {STATS_FILE} is missing "
                            "(run `lstm-math generate --output DIR` or the ExampleGen component)")
    with tf.io.gfile.GFile(path) as f:
        return json.loads(f.read())


def shard_files(examples_dir: str, split: str) -> list[str]:
    stats = read_stats(examples_dir)
    pattern = shard_pattern(split, stats["compression"])
    files = sorted(tf.io.gfile.glob(os.path.join(examples_dir, pattern)))
    if not files:
        raise NoShardsError(f"no '{split}' shards under {examples_dir} (expected {pattern})")
    return files
