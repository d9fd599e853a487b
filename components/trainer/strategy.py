"""Which tf.distribute strategy to train under, and which worker writes the outputs."""

from __future__ import annotations

import json
import logging
import os

import tensorflow as tf

log = logging.getLogger(__name__)


def choose_strategy(kind: str = "auto") -> tf.distribute.Strategy:
    """default: one device; mirrored: all local GPUs (or CPUs); multi_worker: TF_CONFIG cluster."""
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    workers = len(tf_config.get("cluster", {}).get("worker", []))
    if kind == "multi_worker" or (kind == "auto" and workers > 1):
        log.info("strategy: MultiWorkerMirroredStrategy (%d workers from TF_CONFIG)", workers)
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "mirrored" or (kind == "auto" and gpus):
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        log.info("strategy: MirroredStrategy over %s", devices)
        return tf.distribute.MirroredStrategy(devices)
    log.info("strategy: default (one device)")
    return tf.distribute.get_strategy()


def worker_role() -> tuple[str | None, int]:
    """(task type, task index) from TF_CONFIG; (None, 0) outside a cluster."""
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = cluster.get("task", {})
    return task.get("type"), int(task.get("index", 0))


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"  # the class is CollectiveAllReduceStrategy
    return type(strategy).__name__


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Writes TensorBoard logs, checkpoints and the model: worker 0 (or 'chief')."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = worker_role()
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0)
