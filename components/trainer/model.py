"""Model assembly shared by the Trainer, the Tuner's trials, benchmarks and the Exporter:
the coverage a model is trained for, its optimizer (``trainer.optimizer``: Adam, schedule,
warm-up, clipping), seeding, compiling, warm-starting from a trained model
(``trainer.warm_start``), and loading a trained model back."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence

import keras
import tensorflow as tf

from lstm_math.components.metrics import CharAccuracy, ExactMatch, loss_fn
from lstm_math.components.models import build_model
from lstm_math.config import (MODEL_FILE, ConfigError, Coverage, FinishConfig,
                              ModelHParams, OptimizerConfig, warm_start_file)



def model_coverage(base_coverage: Coverage, hparams: ModelHParams,
                   max_result_length: int = 0) -> Coverage:
    """The data's coverage as this model is trained on it (``Coverage.for_model``: how its
    family lays out answers, whether it pads operands; ``max_result_length``, 0 = the
    data's)."""
    return base_coverage.for_model(hparams.family, hparams.reverse_output, max_result_length,
                                   hparams.pad_operands)


@keras.saving.register_keras_serializable("lstm_math")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """From 0 up to ``learning_rate`` over ``warmup_steps`` steps, then constant."""

    def __init__(self, learning_rate: float, warmup_steps: int):
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        fraction = keras.ops.minimum(
            keras.ops.cast(step, "float32") / float(max(1, self.warmup_steps)), 1.0)
        return self.learning_rate * fraction

    def get_config(self):
        return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable("lstm_math")
class FinishStage(keras.optimizers.schedules.LearningRateSchedule):
    """``main`` (a schedule or a constant rate) for the first ``main_steps`` steps, then a
    cosine decay from ``learning_rate`` to 2% of it over ``steps`` more
    (``trainer.finish``)."""

    def __init__(self, main, main_steps: int, learning_rate: float, steps: int):
        if isinstance(main, dict):
            main = keras.optimizers.schedules.deserialize(main)
        self.main = main
        self.main_steps = int(main_steps)
        self.learning_rate = float(learning_rate)
        self.steps = int(steps)
        self._finish = keras.optimizers.schedules.CosineDecay(
            self.learning_rate, decay_steps=max(1, self.steps), alpha=0.02)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        main = self.main(step) if callable(self.main) else self.main
        finish = self._finish(keras.ops.maximum(step - float(self.main_steps), 0.0))
        return keras.ops.where(step < float(self.main_steps),
                               keras.ops.cast(main, "float32"), finish)

    def get_config(self):
        main = (keras.optimizers.schedules.serialize(self.main) if callable(self.main)
                else float(self.main))
        return {"main": main, "main_steps": self.main_steps,
                "learning_rate": self.learning_rate, "steps": self.steps}


def learning_rate_schedule(optimizer: OptimizerConfig, total_steps: int,
                           finish_stages: Sequence[tuple[int, float]] = ()):
    """The rate (a float or a schedule of the optimizer step) over a run of ``total_steps``,
    then each of ``finish_stages`` in order, given as (steps, learning rate): each stage's
    cosine starts again from its own rate (``FinishStage`` around the schedule before it).

    cosine: decays to 2% of the rate at ``total_steps``; with ``warmup_steps`` it first
    rises linearly from 0 and decays over the rest. constant: the rate (after warm-up).
    """
    schedule, start = _main_schedule(optimizer, total_steps), total_steps
    for steps, rate in finish_stages:
        schedule = FinishStage(schedule, start, rate, steps)
        start += steps
    return schedule


def finish_stage_steps(finish: FinishConfig,
                       steps_per_epoch: int) -> tuple[tuple[int, float], ...]:
    """The finishing stages that run (``finish.stages()``) as (steps, learning rate)."""
    return tuple((steps_per_epoch * s.epochs, s.learning_rate) for s in finish.stages())


def _main_schedule(optimizer: OptimizerConfig, total_steps: int):
    rate, warmup = optimizer.learning_rate, optimizer.warmup_steps
    if optimizer.schedule == "cosine":
        if not warmup:
            return keras.optimizers.schedules.CosineDecay(
                rate, decay_steps=max(1, total_steps), alpha=0.02)
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=max(1, total_steps - warmup), alpha=0.02, warmup_target=rate,
            warmup_steps=warmup)
    if not warmup:
        return rate
    return LinearWarmup(rate, warmup)


def build_optimizer(optimizer: OptimizerConfig, family: str, total_steps: int,
                    finish_stages: Sequence[tuple[int, float]] = ()
                    ) -> keras.optimizers.Optimizer:
    """Adam with the configured schedule (and finishing stages); gradients clipped to
    ``optimizer.clipnorm`` (null: the family's default, FAMILY_CLIPNORM: the seed model gets
    the post's plain Adam)."""
    clipnorm = optimizer.clipnorm_for(family)
    clip = {"clipnorm": clipnorm} if clipnorm else {}
    return keras.optimizers.Adam(
        learning_rate=learning_rate_schedule(optimizer, total_steps, finish_stages),
        **clip)


def compile_model(hparams: ModelHParams, coverage: Coverage, total_steps: int,
                  optimizer: OptimizerConfig | None = None,
                  finish_stages: Sequence[tuple[int, float]] = ()) -> keras.Model:
    """The model, built and compiled (call inside the strategy's scope): ``total_steps`` of
    the optimizer's schedule, then each finishing stage's (steps, learning rate) in order
    (``finish_stage_steps``)."""
    model = build_model(hparams, coverage.max_result_length + 1)
    model.compile(
        optimizer=build_optimizer(optimizer or OptimizerConfig(), hparams.family, total_steps,
                                  finish_stages),
        loss=loss_fn(from_logits=getattr(model, "from_logits", True)),
        metrics=[ExactMatch(), CharAccuracy()],
    )
    # Build the variables now (inside the strategy scope of the caller).
    width = coverage.max_result_length + 1
    model((tf.zeros([1, coverage.max_input_length], tf.int32), tf.zeros([1, width], tf.int32)))
    return model


def seed_weights(seed: int | None) -> None:
    """Seeds Python, NumPy and TF so the next model built gets the same initial weights."""
    if seed is not None:
        keras.utils.set_random_seed(seed)


def load_trained(model_dir: str):
    """(model, Coverage) from a Trainer output directory (a coverage.json without an
    ``output_format`` takes the model's own)."""
    model = keras.models.load_model(os.path.join(model_dir, MODEL_FILE), compile=False)
    with tf.io.gfile.GFile(os.path.join(model_dir, "coverage.json")) as f:
        stored = json.loads(f.read())
    stored.setdefault("output_format", getattr(model, "output_format", "left"))
    return model, Coverage.from_dict(stored)


def warm_start_source(path: str) -> dict | None:
    """``trainer.warm_start`` resolved: {"path": the model file, "digest": its sha256}; None
    when off. A Trainer output directory means its model.keras. ConfigError (naming the
    field) when there is no such model."""
    if not path:
        return None
    file = warm_start_file(path)
    if not tf.io.gfile.exists(file):
        raise ConfigError(f"trainer.warm_start: no model at {file} (a Trainer output "
                          f"directory or its {MODEL_FILE})")
    h = hashlib.sha256()
    with tf.io.gfile.GFile(file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"path": file, "digest": h.hexdigest()}


def warm_start_weights(model: keras.Model, file: str) -> None:
    """Assigns every weight of the trained model in ``file`` to ``model`` (the same
    architecture: ConfigError naming ``trainer.warm_start`` and the first weight that
    differs, before anything is assigned). One difference is allowed: a decoder step
    embedding with more steps here (a longer working format) takes the trained rows for
    the steps both have and keeps its initial rows for the steps after them."""
    source = keras.models.load_model(file, compile=False)
    theirs, ours = source.weights, model.weights
    if len(theirs) != len(ours):
        raise ConfigError(f"trainer.warm_start: {file} has {len(theirs)} weights, this model "
                          f"{len(ours)}: it must be the same architecture (trainer.model)")
    for n, (a, b) in enumerate(zip(theirs, ours)):
        if tuple(a.shape) != tuple(b.shape) and not _longer_steps(a, b):
            raise ConfigError(
                f"trainer.warm_start: weight {n} ({b.path}) is {tuple(a.shape)} in {file} and "
                f"{tuple(b.shape)} here: it must be the same architecture (trainer.model, the "
                f"decoder length)")
    for a, b in zip(theirs, ours):
        if _longer_steps(a, b):
            value = b.numpy()
            value[:a.shape[0]] = a.numpy()
            b.assign(value)
        else:
            b.assign(a.numpy())


def _longer_steps(theirs, ours) -> bool:
    """Whether ``ours`` is a step embedding of the same width with more steps."""
    return ("step_embedding" in ours.path and len(ours.shape) == 2
            and tuple(theirs.shape[1:]) == tuple(ours.shape[1:])
            and theirs.shape[0] < ours.shape[0])
