"""Tuner: keras-tuner over the model hyperparameters, objective = validation exact match.

Trials train through the Trainer's own input pipeline, model builder, compile step and
strategy selection (components.trainer); the tuner directory lives under the component's
output, so a restarted search continues without re-running finished trials.

Writes best_hyperparameters.json (a full ModelHParams) and trials.json (every trial's
hyperparameters and score).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time

import keras
import keras_tuner as kt
import tensorflow as tf

from components import data as data_lib
from components.models import ModelHParams
from components.trainer import choose_strategy, compile_model, model_coverage

log = logging.getLogger(__name__)

OBJECTIVE = "val_exact_match"


class Seq2SeqHyperModel(kt.HyperModel):
    def __init__(self, base: ModelHParams, search_space: dict, coverage: dict, total_steps: int):
        super().__init__()
        self.base = base
        self.search_space = search_space
        self.coverage = coverage
        self.total_steps = total_steps

    def hparams_from(self, hp: kt.HyperParameters) -> ModelHParams:
        values = dataclasses.asdict(self.base)
        for name, choices in self.search_space.items():
            values[name] = hp.Choice(name, choices)
        return ModelHParams(**values)

    def build(self, hp):
        hparams = self.hparams_from(hp)
        return compile_model(hparams, model_coverage(self.coverage, hparams), self.total_steps)


def _make_tuner(algorithm: str, hypermodel, tuner_cfg, directory: str, strategy):
    common = dict(
        objective=kt.Objective(OBJECTIVE, direction="max"),
        directory=directory,
        project_name="search",
        overwrite=False,
        seed=tuner_cfg.seed,
        distribution_strategy=strategy,
    )
    if algorithm == "random":
        return kt.RandomSearch(hypermodel, max_trials=tuner_cfg.max_trials, **common)
    if algorithm == "bayesian":
        return kt.BayesianOptimization(hypermodel, max_trials=tuner_cfg.max_trials, **common)
    return kt.Hyperband(hypermodel, max_epochs=max(tuner_cfg.epochs, 2), **common)


def run_tuner(config, examples_dir: str, base_coverage: dict, output_dir: str) -> dict:
    tu = config.tuner
    tf.io.gfile.makedirs(output_dir)
    base = config.trainer.model
    batch_size = config.trainer.batch_size
    # Reversal changes the targets; a search over it needs one dataset per choice, so trials
    # use the base setting (the trainer applies whatever is chosen).
    coverage = model_coverage(base_coverage, base)
    hypermodel = Seq2SeqHyperModel(base, tu.search_space, coverage,
                                   tu.steps_per_trial_epoch * tu.epochs)
    strategy = choose_strategy(config.runtime.strategy)
    tuner = _make_tuner(tu.algorithm, hypermodel, tu, os.path.join(output_dir, "tuner"), strategy)
    train_ds = data_lib.training_dataset(
        examples_dir, "train", coverage, batch_size, shuffle_buffer=config.trainer.shuffle_buffer,
        repeat=True, seed=tu.seed)
    val_ds = data_lib.training_dataset(examples_dir, "validation", coverage, batch_size,
                                       repeat=True)
    started = time.time()
    log.info("Tuner: %s search, %d trials x %d epochs x %d steps over %s", tu.algorithm,
             tu.max_trials, tu.epochs, tu.steps_per_trial_epoch, tu.search_space)
    tuner.search(
        train_ds,
        epochs=tu.epochs,
        steps_per_epoch=tu.steps_per_trial_epoch,
        validation_data=val_ds,
        validation_steps=tu.validation_steps,
        # keras-tuner gives each trial its own run under logs/ (and HParams data).
        callbacks=[keras.callbacks.TensorBoard(os.path.join(output_dir, "logs"))],
        verbose=0,
    )
    best_hp = tuner.get_best_hyperparameters(1)[0]
    best = hypermodel.hparams_from(best_hp)
    trials = []
    for trial in tuner.oracle.trials.values():
        trials.append({
            "trial_id": trial.trial_id,
            "status": str(trial.status),
            "hyperparameters": dict(trial.hyperparameters.values),
            OBJECTIVE: trial.score,
        })
    trials.sort(key=lambda t: t["trial_id"])
    with tf.io.gfile.GFile(os.path.join(output_dir, "best_hyperparameters.json"), "w") as f:
        f.write(json.dumps(dataclasses.asdict(best), indent=2))
    with tf.io.gfile.GFile(os.path.join(output_dir, "trials.json"), "w") as f:
        f.write(json.dumps(trials, indent=2))
    log.info("Tuner: done in %.1fs; best %s (%s=%s)", time.time() - started,
             dict(best_hp.values), OBJECTIVE, trials and max(
                 (t[OBJECTIVE] for t in trials if t[OBJECTIVE] is not None), default=None))
    return {"best": dataclasses.asdict(best), "trials": trials,
            "seconds": time.time() - started}


def load_best(output_dir: str) -> ModelHParams:
    with tf.io.gfile.GFile(os.path.join(output_dir, "best_hyperparameters.json")) as f:
        return ModelHParams(**json.loads(f.read()))
