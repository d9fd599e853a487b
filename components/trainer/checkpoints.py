"""Checkpoints: every model weight and optimizer slot after every epoch, with the state a
resume needs (the last finished epoch, early stopping's best and wait)."""

from __future__ import annotations

import math
import os
import shutil
import tempfile

import tensorflow as tf

from lstm_math.components.trainer.strategy import worker_role

CHECKPOINT_PREFIX = "ckpt"


def checkpointed_variables(variables) -> dict:
    """Variables of a Keras 3 model (``model.weights``) or optimizer (``.variables``),
    keyed by their position, for
    tf.train.Checkpoint. Checkpointing the model object itself leaves out the weights of
    layers Keras does not expose to TF's object graph (LSTM cells, layers kept in lists):
    a resume or a best-epoch restore would then mix restored Dense weights with untouched
    LSTM weights. Positions, not paths: Keras renames layers and optimizers that a process
    builds twice (``adam_1``, ``batch_normalization_1``); the order of the same
    architecture's variables does not change, and a restore checks every shape."""
    return {f"v{i:04d}": (v.value if hasattr(v, "value") else v)
            for i, v in enumerate(variables)}


def restore_epoch_weights(model, ckpt_dir: str, epoch: int) -> bool:
    """Loads the model weights of epoch ``epoch``'s checkpoint; False if it is gone."""
    path = os.path.join(ckpt_dir, f"{CHECKPOINT_PREFIX}-{epoch}")
    if not tf.io.gfile.exists(path + ".index"):
        return False
    status = tf.train.Checkpoint(model_variables=checkpointed_variables(model.weights)).read(path)
    status.expect_partial().assert_existing_objects_matched()
    return True


def is_better_epoch(exact_match: float, loss: float, best_exact_match: float,
                    best_loss: float) -> bool:
    """Whether an epoch's validation result beats the best so far: a higher exact match,
    or the same exact match (it saturates at 1.0 on easy tasks) with a lower loss."""
    return exact_match > best_exact_match or (exact_match == best_exact_match
                                              and loss < best_loss)


class TrainState:
    """The last finished epoch and early stopping's state, as checkpointed variables."""

    def __init__(self):
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.best = tf.Variable(-1.0, dtype=tf.float64, trainable=False,
                                name="best_val_exact_match")
        self.best_loss = tf.Variable(math.inf, dtype=tf.float64, trainable=False,
                                     name="best_val_loss")
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_epoch")
        self.wait = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_without_gain")

    def checkpoint(self, model) -> tf.train.Checkpoint:
        """Weights, optimizer slots and this state (the keys old checkpoints have)."""
        return tf.train.Checkpoint(
            model_variables=checkpointed_variables(model.weights),
            optimizer_variables=checkpointed_variables(model.optimizer.variables),
            epoch=self.epoch, best=self.best, best_loss=self.best_loss,
            best_epoch=self.best_epoch, wait=self.wait)

    def end_epoch(self, epoch: int, exact_match: float, loss: float) -> None:
        """Records an epoch's validation result. The kept weights are the best epoch's (ties
        on exact match broken by the lower loss); patience counts epochs without a gain."""
        gain = exact_match > float(self.best.numpy())
        if is_better_epoch(exact_match, loss, float(self.best.numpy()),
                           float(self.best_loss.numpy())):
            self.best.assign(exact_match)
            self.best_loss.assign(loss)
            self.best_epoch.assign(epoch)
        if gain:
            self.wait.assign(0)
        else:
            self.wait.assign_add(1)
        self.epoch.assign(epoch)


class CheckpointWriter:
    """Checkpoints after every epoch; under MultiWorkerMirroredStrategy every worker saves
    (saving may involve collectives) but only the chief's copy is kept."""

    def __init__(self, checkpoint: tf.train.Checkpoint, directory: str, chief: bool,
                 max_to_keep: int):
        self.directory = directory
        self.chief = chief
        if chief:
            write_dir = directory
        else:
            _, task_id = worker_role()
            write_dir = os.path.join(tempfile.gettempdir(), f"lstm_math_worker{task_id}_ckpt")
        self.write_dir = write_dir
        self.manager = tf.train.CheckpointManager(checkpoint, write_dir, max_to_keep=max_to_keep,
                                                  checkpoint_name=CHECKPOINT_PREFIX)

    def save(self, epoch: int) -> str:
        path = self.manager.save(checkpoint_number=epoch)
        if not self.chief:
            shutil.rmtree(self.write_dir, ignore_errors=True)
        return path
