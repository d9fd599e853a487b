"""Trainer: tf.data from the shards into a Keras seq2seq model under a tf.distribute strategy.

Writes, under its output directory:
  model.keras          the trained model (Keras format; custom classes registered)
  coverage.json        what the model covers (operators, range, lengths): the serving contract
  hparams.json         the hyperparameters it was trained with
  logs/                TensorBoard: loss, char accuracy, exact match, learning rate, examples/s
  checkpoints/         weights after every epoch
  backup/              Keras BackupAndRestore state: a killed run resumes from the last epoch
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time

import keras
import tensorflow as tf

from components import data as data_lib
from components.metrics import CharAccuracy, ExactMatch, loss_fn
from components.models import ModelHParams, build_model

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


def model_coverage(base_coverage: dict, hparams: ModelHParams) -> dict:
    return {**base_coverage, "reverse_output": hparams.reverse_output}


def compile_model(hparams: ModelHParams, coverage: dict, total_steps: int,
                  lr_schedule: str = "cosine") -> keras.Model:
    model = build_model(hparams, coverage["max_result_length"] + 1)
    if lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            hparams.learning_rate, decay_steps=max(1, total_steps), alpha=0.02)
    else:
        lr = hparams.learning_rate
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr, clipnorm=1.0),
        loss=loss_fn(),
        metrics=[ExactMatch(), CharAccuracy()],
    )
    # Build the variables now (inside the strategy scope of the caller).
    width = coverage["max_result_length"] + 1
    model((tf.zeros([1, coverage["max_input_length"]], tf.int32), tf.zeros([1, width], tf.int32)))
    return model


class EpochStats(keras.callbacks.Callback):
    """Adds learning rate and examples/s to the epoch logs (TensorBoard writes them)."""

    def __init__(self, global_batch_size: int):
        super().__init__()
        self.global_batch_size = global_batch_size

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()
        self._steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        elapsed = max(time.time() - self._start, 1e-9)
        logs["examples_per_second"] = self._steps * self.global_batch_size / elapsed
        lr = self.model.optimizer.learning_rate
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(lr))


def steps_for(count: int, batch_size: int) -> int:
    return max(1, math.ceil(count / batch_size))


def run_trainer(config, examples_dir: str, base_coverage: dict, hparams: ModelHParams,
                output_dir: str) -> dict:
    t = config.trainer
    tf.io.gfile.makedirs(output_dir)
    stats = data_lib.read_stats(examples_dir)
    coverage = model_coverage(base_coverage, hparams)
    strategy = choose_strategy(config.runtime.strategy)
    batch_size = t.batch_size
    train_count = stats["splits"]["train"]["count"]
    val_count = stats["splits"]["validation"]["count"]
    steps_per_epoch = t.steps_per_epoch or steps_for(train_count, batch_size)
    validation_steps = t.validation_steps or steps_for(val_count, batch_size)

    train_ds = data_lib.training_dataset(
        examples_dir, "train", coverage, batch_size, shuffle_buffer=t.shuffle_buffer,
        cache=t.cache_dataset, repeat=True, seed=config.task.data.seed)
    val_ds = data_lib.training_dataset(
        examples_dir, "validation", coverage, batch_size, cache=t.cache_dataset, repeat=True)

    with strategy.scope():
        model = compile_model(hparams, coverage, steps_per_epoch * t.epochs, t.lr_schedule)

    log_dir = os.path.join(output_dir, "logs")
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(output_dir, "backup")),
        EpochStats(batch_size),
        keras.callbacks.ModelCheckpoint(
            os.path.join(output_dir, "checkpoints", "epoch-{epoch:03d}.weights.h5"),
            save_weights_only=True),
        keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=True, update_freq="epoch"),
    ]
    log.info("Trainer: %s, %d examples, %d epochs x %d steps of %d (global batch), "
             "%d replica(s)", hparams, train_count, t.epochs, steps_per_epoch, batch_size,
             strategy.num_replicas_in_sync)
    started = time.time()
    history = model.fit(
        train_ds,
        epochs=t.epochs,
        steps_per_epoch=steps_per_epoch,
        validation_data=val_ds,
        validation_steps=validation_steps,
        callbacks=callbacks,
        verbose=2,
    )
    elapsed = time.time() - started
    model.save(os.path.join(output_dir, "model.keras"))
    with tf.io.gfile.GFile(os.path.join(output_dir, "coverage.json"), "w") as f:
        f.write(json.dumps(coverage, indent=2))
    with tf.io.gfile.GFile(os.path.join(output_dir, "hparams.json"), "w") as f:
        f.write(json.dumps(dataclasses.asdict(hparams), indent=2))
    final = {k: float(v[-1]) for k, v in history.history.items() if v}
    log.info("Trainer: done in %.1fs: %s", elapsed,
             ", ".join(f"{k}={v:.4f}" for k, v in sorted(final.items())))
    return {"train_seconds": elapsed, "final_metrics": final, "log_dir": log_dir}


def load_trained(model_dir: str):
    """(model, coverage) from a Trainer output directory."""
    import components.metrics  # noqa: F401  (registers custom objects)
    import components.models  # noqa: F401

    model = keras.models.load_model(os.path.join(model_dir, "model.keras"), compile=False)
    with tf.io.gfile.GFile(os.path.join(model_dir, "coverage.json")) as f:
        coverage = json.loads(f.read())
    return model, coverage
