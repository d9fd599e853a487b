"""The search in TensorBoard, under the Trainer's names.

* One run per trial, ``logs/trial-01``, ``logs/trial-02``, ... (keras-tuner's own layout,
  ``logs/<trial_id>/execution0``, is not used), with ``train`` and ``validation`` sub-runs
  holding the same tags as the Trainer's (``loss``, ``exact_match``, ``char_accuracy``,
  ``learning_rate``, ``examples_per_second``), one step per epoch, epochs counted from 1,
  so the same chart shows a trial's and the Trainer's curves.
* The HParams dashboard: each trial's run holds every model and optimizer hyperparameter it
  trained with and its objective (``OBJECTIVE_TAG``), written as the Trainer writes its own
  (``components.trainer.summaries``: same names, same experiment, same metrics), so the
  trials and trainings of every pipeline run line up in one table.
"""

from __future__ import annotations

import math
import os
import time

import keras
import tensorflow as tf

from lstm_math.components.trainer.summaries import BEST_TAG, write_best, write_hparams

OBJECTIVE_TAG = BEST_TAG  # the per-trial objective in TensorBoard, the Trainer's tag
TRIAL_PREFIX = "trial-"


def trial_run_name(trial_id: str, execution: int = 0) -> str:
    """keras-tuner's trial id ('0', '1', ... or '00', '01', ...) -> 'trial-01', 'trial-02'."""
    tid = str(trial_id)
    name = (f"{TRIAL_PREFIX}{int(tid) + 1:0{max(2, len(tid))}d}" if tid.isdigit()
            else f"{TRIAL_PREFIX}{tid}")
    return name if not execution else f"{name}-execution{execution + 1}"


class TrialSummaries(keras.callbacks.Callback):
    """Per-epoch scalars of one trial under the Trainer's tag names, its hyperparameters
    for the HParams dashboard and its objective. ``log_dir``, ``hparams`` (``{"model": ...,
    "optimizer": ...}``, what the trial trains with) and ``trial_name`` are set by the tuner
    for each trial (``_Recorder.configure_trial_callbacks``)."""

    def __init__(self, log_dir: str, batch_size: int, objective: str = "val_exact_match"):
        super().__init__()
        self.log_dir = log_dir
        self.batch_size = batch_size
        self.objective = objective
        self.hparams = None
        self.trial_name = None
        self._writers = None
        self._best = None
        self._epoch_start = self._train_seconds = None

    def on_train_begin(self, logs=None):
        self._writers = {sub: tf.summary.create_file_writer(os.path.join(self.log_dir, sub))
                         for sub in ("", "train", "validation")}
        self._best = None
        if self.hparams is not None:
            # the session group: unique per search (its output directory's fingerprint)
            search = os.path.basename(os.path.dirname(os.path.dirname(
                os.path.normpath(self.log_dir))))
            write_hparams(self._writers[""], self.hparams["model"], self.hparams["optimizer"],
                          f"{self.trial_name} {search[:8]}")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start, self._train_seconds = time.time(), None

    def on_test_begin(self, logs=None):  # validation inside fit: training of the epoch done
        if self._epoch_start is not None and self._train_seconds is None:
            self._train_seconds = time.time() - self._epoch_start

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        step = epoch + 1  # the Trainer counts epochs from 1
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        val = {k[4:]: v for k, v in logs.items() if k.startswith("val_")}
        try:
            train["learning_rate"] = float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate))
        except Exception:  # noqa: BLE001 - a scalar less, not a failed trial
            pass
        seconds = self._train_seconds or (time.time() - (self._epoch_start or time.time()))
        steps = (self.params or {}).get("steps")
        if steps and seconds > 0:
            train["examples_per_second"] = steps * self.batch_size / seconds
        for sub, values in (("train", train), ("validation", val)):
            with self._writers[sub].as_default(step=step):
                for name, value in values.items():
                    tf.summary.scalar(name, float(value))
            self._writers[sub].flush()
        value = logs.get(self.objective)
        if value is not None and not math.isnan(value):
            self._best = value if self._best is None else max(self._best, value)

    def on_train_end(self, logs=None):
        if self._writers is None:
            return
        if self._best is not None:  # the trial's run: the HParams dashboard's objective
            write_best(self._writers[""], self._best)
        for writer in self._writers.values():
            writer.close()
        self._writers = None
