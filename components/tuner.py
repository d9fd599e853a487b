"""Tuner: a keras-tuner search over the model hyperparameters; objective = validation exact match.

* Search space from ``tuner.search_space``: each key is a ``trainer.model.*`` field, each
  value a list of choices or a range ``{min, max, step?, sampling?}``; algorithm ``random``,
  ``bayesian`` or ``hyperband``; budget ``max_trials`` x ``epochs`` x ``steps_per_trial_epoch``
  and an optional wall-clock ``max_seconds`` (no trial starts after it).
* Every trial trains through the Trainer's own code: ``components.trainer.compile_model``,
  ``choose_strategy`` and ``components.data.training_dataset``. The datasets are built inside
  ``HyperModel.fit`` from the trial's hyperparameters (``reverse_output`` changes the targets).
* The keras-tuner project lives under the component's output directory (under the pipeline
  root), so a search killed at any point and restarted with the same command continues:
  finished trials are kept, the interrupted one runs again.
* Distributed: keras-tuner's own mode. One chief serves the oracle over gRPC
  (``KERASTUNER_TUNER_ID=chief``), workers (``KERASTUNER_TUNER_ID=<anything else>``) ask it
  for trials at ``KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT`` and write into the same
  (shared) directory; ``lstm-math tune --role chief|worker`` sets these up. A worker that
  cannot reach the chief for ``--chief-timeout`` seconds exits with status 3 and says so.

Writes, under its output directory:
  best_hyperparameters.json   the full ModelHParams the Trainer trains
  trials.json, trials.csv     one row per trial: id, status, objective, hyperparameters,
                              which tuner ran it and for how long
  logs/                       TensorBoard: one run per trial (logs/<trial>/execution0) with
                              the HParams dashboard's data (hyperparameters + objective)
  tuner/search/               keras-tuner's project (oracle state, trials, checkpoints)
  executions/                 one record per trial execution (who ran it, when, the result)
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import logging
import math
import os
import signal
import socket
import threading
import time
import typing

import keras
import keras_tuner as kt
import numpy as np
import tensorflow as tf

from components import data as data_lib
from components.models import ModelHParams
from components.trainer import (choose_strategy, compile_model, model_coverage, seed_weights,
                                steps_for)

log = logging.getLogger(__name__)

OBJECTIVE = "val_exact_match"
OBJECTIVE_TAG = "tuner/val_exact_match"  # the per-trial objective in TensorBoard
ALGORITHMS = ("random", "bayesian", "hyperband")
PROJECT = "search"
BEST_FILE = "best_hyperparameters.json"
LOST_CHIEF_EXIT = 3
ROLES = ("local", "chief", "worker")


# --------------------------------------------------------------------------------------
# Search space.


def hyperparameter_kinds() -> dict:
    """Searchable ``ModelHParams`` fields -> 'int', 'float' or 'bool' (family is not)."""
    hints = typing.get_type_hints(ModelHParams)
    kinds = {}
    for f in dataclasses.fields(ModelHParams):
        hint = hints[f.name]
        if hint is bool:
            kinds[f.name] = "bool"
        elif hint is int:
            kinds[f.name] = "int"
        elif hint is float:
            kinds[f.name] = "float"
    return kinds


def declare(hp: kt.HyperParameters, name: str, spec, kind: str):
    """Registers one search-space entry on ``hp`` and returns its current value."""
    if isinstance(spec, dict):
        common = dict(sampling=spec.get("sampling", "linear"))
        if spec.get("step") is not None:
            common["step"] = spec["step"]
        if kind == "int":
            return int(hp.Int(name, int(spec["min"]), int(spec["max"]), **common))
        return float(hp.Float(name, float(spec["min"]), float(spec["max"]), **common))
    values = list(spec)
    if kind == "bool":
        if len(set(values)) == 1:
            return bool(hp.Fixed(name, bool(values[0])))
        return bool(hp.Boolean(name, default=bool(values[0])))
    if kind == "float":
        values = [float(v) for v in values]
    if len(values) == 1:
        return hp.Fixed(name, values[0])
    return hp.Choice(name, values, ordered=kind != "bool")


class Seq2SeqHyperModel(kt.HyperModel):
    """Builds and fits one trial with the Trainer's own model, compile step and input."""

    def __init__(self, config, examples_dir: str, base_coverage: dict):
        super().__init__(name="lstm_math")
        self.config = config
        self.examples_dir = examples_dir
        self.base_coverage = base_coverage
        self.kinds = hyperparameter_kinds()
        tu = config.tuner
        self.steps_per_epoch = tu.steps_per_trial_epoch
        self.total_steps = tu.steps_per_trial_epoch * tu.epochs
        self._validation_steps = tu.validation_steps

    def hparams_from(self, hp: kt.HyperParameters) -> ModelHParams:
        values = dataclasses.asdict(self.config.trainer.model)
        for name, spec in self.config.tuner.search_space.items():
            values[name] = declare(hp, name, spec, self.kinds[name])
        return ModelHParams(**values)

    def coverage_for(self, hparams: ModelHParams) -> dict:
        return model_coverage(self.base_coverage, hparams)

    def build(self, hp):
        hparams = self.hparams_from(hp)
        seed_weights(getattr(self.config.trainer, "seed", None))  # same start for every trial
        return compile_model(hparams, self.coverage_for(hparams), self.total_steps,
                             self.config.trainer.lr_schedule)

    def datasets(self, hparams: ModelHParams):
        """(train, validation) for this trial: targets encoded for the trial's hparams."""
        t, tu, coverage = self.config.trainer, self.config.tuner, self.coverage_for(hparams)
        counts = {s: v["count"] for s, v in
                  data_lib.read_stats(self.examples_dir)["splits"].items()}
        # Cache (as the Trainer does when asked) only what a trial reads in full at least once.
        read = t.batch_size * tu.epochs
        train = data_lib.training_dataset(
            self.examples_dir, "train", coverage, t.batch_size, shuffle_buffer=t.shuffle_buffer,
            cache=t.cache_dataset and read * self.steps_per_epoch >= counts["train"],
            repeat=True, seed=tu.seed)
        val = data_lib.training_dataset(
            self.examples_dir, "validation", coverage, t.batch_size,
            cache=t.cache_dataset and read * self.validation_steps() >= counts["validation"],
            repeat=True)
        return train, val

    def validation_steps(self) -> int:
        if self._validation_steps:
            return self._validation_steps
        count = data_lib.read_stats(self.examples_dir)["splits"]["validation"]["count"]
        return steps_for(count, self.config.trainer.batch_size)

    def fit(self, hp, model, *args, callbacks=None, epochs=None, initial_epoch=0, **kwargs):
        hparams = self.hparams_from(hp)
        train, val = self.datasets(hparams)
        history = model.fit(
            train,
            epochs=epochs or self.config.tuner.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=self.steps_per_epoch,
            validation_data=val,
            validation_steps=self.validation_steps(),
            callbacks=callbacks,
            shuffle=False,  # the dataset shuffles
            verbose=0,
        )
        values = [v for v in history.history.get(OBJECTIVE, []) if not math.isnan(v)]
        if values:
            for cb in callbacks or []:
                if isinstance(cb, keras.callbacks.TensorBoard):
                    # The trial's run: the HParams dashboard's objective column.
                    with tf.summary.create_file_writer(cb.log_dir).as_default():
                        tf.summary.scalar(OBJECTIVE_TAG, max(values), step=0)
        return history


# --------------------------------------------------------------------------------------
# Oracles with a wall-clock budget, tuners that record who ran which trial.


class _TimeBudget:
    """Oracle mixin: after ``deadline`` (time.time()) no new trial starts."""

    deadline = None

    def populate_space(self, trial_id):
        if self.deadline is not None and time.time() >= self.deadline:
            log.info("Tuner: time budget spent; no new trials")
            return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
        return super().populate_space(trial_id)


class RandomOracle(_TimeBudget, kt.oracles.RandomSearchOracle):
    pass


class NumpyGP:
    """Gaussian process regression (Matern 5/2, normalized targets) in numpy.

    Stands in for scikit-learn's GaussianProcessRegressor, which keras-tuner's Bayesian
    oracle needs (with scipy) and which this project does not depend on; the length scale
    is chosen by marginal likelihood over a grid instead of by L-BFGS.
    """

    LENGTH_SCALES = np.geomspace(0.05, 3.0, 16)

    def __init__(self, alpha: float = 1e-4):
        self.alpha = alpha

    @staticmethod
    def _kernel(a, b, length_scale):
        d = np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0))
        r = math.sqrt(5.0) * d / length_scale
        return (1.0 + r + r * r / 3.0) * np.exp(-r)

    def fit(self, x, y):
        x, y = np.asarray(x, float), np.asarray(y, float)
        self._mean, self._std = y.mean(), y.std() or 1.0
        z = (y - self._mean) / self._std
        best = None
        for ls in self.LENGTH_SCALES:
            k = self._kernel(x, x, ls) + self.alpha * np.eye(len(x))
            try:
                chol = np.linalg.cholesky(k)
            except np.linalg.LinAlgError:
                continue
            weights = np.linalg.solve(chol.T, np.linalg.solve(chol, z))
            evidence = -0.5 * z @ weights - np.log(np.diag(chol)).sum()
            if best is None or evidence > best[0]:
                best = (evidence, ls, chol, weights)
        if best is None:
            raise np.linalg.LinAlgError("Gaussian process: no usable length scale")
        _, self._ls, self._chol, self._weights = best
        self._x = x
        return self

    def predict(self, x, return_std=False):
        x = np.asarray(x, float)
        ks = self._kernel(x, self._x, self._ls)
        mu = ks @ self._weights * self._std + self._mean
        if not return_std:
            return mu
        v = np.linalg.solve(self._chol, ks.T)
        var = np.maximum(1.0 - (v * v).sum(0), 1e-12)
        return mu, np.sqrt(var) * self._std


def _have_scipy_and_sklearn() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("scipy", "sklearn"))


class _BayesianOracle(kt.oracles.BayesianOptimizationOracle):
    """keras-tuner's Bayesian optimization; without scipy/scikit-learn its Gaussian process
    is NumpyGP and the acquisition (upper confidence bound) is minimized over random
    candidates instead of by L-BFGS-B restarts."""

    CANDIDATES = 4096

    def __init__(self, objective=None, max_trials=10, num_initial_points=None, alpha=1e-4,
                 beta=2.6, seed=None, **kwargs):
        self._native = _have_scipy_and_sklearn()
        if self._native:
            super().__init__(objective=objective, max_trials=max_trials,
                             num_initial_points=num_initial_points, alpha=alpha, beta=beta,
                             seed=seed, **kwargs)
            return
        kt.Oracle.__init__(self, objective=objective, max_trials=max_trials, seed=seed,
                           **kwargs)
        self.num_initial_points = num_initial_points
        self.alpha, self.beta = alpha, beta
        self._random_state = np.random.RandomState(self.seed)
        self.gpr = self._make_gpr()

    def _make_gpr(self):
        return super()._make_gpr() if self._native else NumpyGP(self.alpha)

    def populate_space(self, trial_id):
        if self._native:
            return super().populate_space(trial_id)
        completed = [t for t in self.trials.values() if t.status == "COMPLETED"]
        dimensions = len(self.hyperparameters.space)
        if len(completed) < (self.num_initial_points or max(3 * dimensions, 3)):
            return self._random_populate_space()
        x, y = self._vectorize_trials()
        x = np.nan_to_num(x, posinf=0, neginf=0)
        y = np.nan_to_num(y, posinf=0, neginf=0)  # the objective's sign: lower is better
        self.gpr.fit(x, y)
        bounds = self._get_hp_bounds()
        candidates = self._random_state.uniform(bounds[:, 0], bounds[:, 1],
                                                size=(self.CANDIDATES, bounds.shape[0]))
        mu, sigma = self.gpr.predict(candidates, return_std=True)
        best = candidates[int(np.argmin(mu - self.beta * sigma))]
        return {"status": kt.engine.trial.TrialStatus.RUNNING,
                "values": self._vector_to_values(best)}


class BayesianOracle(_TimeBudget, _BayesianOracle):
    pass


class HyperbandOracle(_TimeBudget, kt.oracles.HyperbandOracle):
    pass


class _Recorder:
    """Tuner mixin: one JSON record per trial execution under ``<output>/executions``."""

    executions_dir = None
    log_dir = None

    def run_trial(self, trial, *args, **kwargs):
        stale = os.path.join(self.log_dir, str(trial.trial_id))
        if tf.io.gfile.exists(stale):  # a rerun of an interrupted trial: fresh curves
            tf.io.gfile.rmtree(stale)
        record = {"trial_id": trial.trial_id, "tuner_id": self.tuner_id, "pid": os.getpid(),
                  "host": socket.gethostname(), "started": time.time(),
                  "hyperparameters": dict(trial.hyperparameters.values)}
        path = os.path.join(self.executions_dir, f"trial_{trial.trial_id}.{self.tuner_id}."
                                                 f"{os.getpid()}.{int(record['started'])}.json")
        _write_json(path, record)
        log.info("Tuner[%s]: trial %s %s", self.tuner_id, trial.trial_id,
                 dict(trial.hyperparameters.values))
        try:
            results = super().run_trial(trial, *args, **kwargs)
        except Exception as e:
            record.update(finished=time.time(), error=repr(e))
            _write_json(path, record)
            raise
        values = [v for h in results for v in h.history.get(OBJECTIVE, [])
                  if not math.isnan(v)]
        record.update(finished=time.time(), objective=max(values) if values else None)
        _write_json(path, record)
        log.info("Tuner[%s]: trial %s done in %.1fs: %s=%s", self.tuner_id, trial.trial_id,
                 record["finished"] - record["started"], OBJECTIVE, record["objective"])
        return results

    def on_trial_end(self, trial):
        if trial.status != kt.engine.trial.TrialStatus.COMPLETED:
            log.warning("Tuner[%s]: trial %s %s: %s", self.tuner_id, trial.trial_id,
                        trial.status, (trial.message or "").strip().splitlines()[-1:])
        super().on_trial_end(trial)


class SearchTuner(_Recorder, kt.Tuner):
    pass


class HyperbandSearchTuner(_Recorder, kt.Hyperband):
    def __init__(self, oracle, hypermodel, **kwargs):  # noqa: D107 - oracle built by us
        kt.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)


def make_tuner(config, hypermodel, output_dir: str, strategy=None):
    tu = config.tuner
    objective = kt.Objective(OBJECTIVE, direction="max")
    if tu.algorithm == "random":
        oracle = RandomOracle(objective=objective, max_trials=tu.max_trials, seed=tu.seed)
    elif tu.algorithm == "bayesian":
        oracle = BayesianOracle(objective=objective, max_trials=tu.max_trials, seed=tu.seed)
    elif tu.algorithm == "hyperband":
        oracle = HyperbandOracle(objective=objective, max_epochs=tu.epochs,
                                 factor=tu.hyperband_factor,
                                 hyperband_iterations=tu.hyperband_iterations, seed=tu.seed)
        oracle.max_trials = tu.max_trials  # the trial budget applies to every algorithm
    else:  # validate() rejects it first
        raise ValueError(f"tuner.algorithm: unknown {tu.algorithm!r}")
    cls = HyperbandSearchTuner if tu.algorithm == "hyperband" else SearchTuner
    tuner = cls(oracle, hypermodel, directory=os.path.join(output_dir, "tuner"),
                project_name=PROJECT, overwrite=False, distribution_strategy=strategy)
    tuner.executions_dir = os.path.join(output_dir, "executions")
    tuner.log_dir = os.path.join(output_dir, "logs")
    tf.io.gfile.makedirs(tuner.executions_dir)
    return tuner


# --------------------------------------------------------------------------------------
# TensorBoard HParams, outputs.


def _write_json(path: str, data) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(data, indent=2, default=str))


def write_hparams_config(oracle, log_dir: str) -> None:
    """The HParams dashboard's experiment: the searched hyperparameters and the metrics."""
    from keras_tuner.src.engine import tuner_utils
    from tensorboard.plugins.hparams import api as hp_api

    hparams = list(tuner_utils.convert_hyperparams_to_hparams(oracle.get_space(), hp_api))
    metrics = [
        hp_api.Metric(OBJECTIVE_TAG, display_name="objective: best val exact match"),
        hp_api.Metric("epoch_exact_match", group="validation", display_name="val exact match"),
        hp_api.Metric("epoch_loss", group="validation", display_name="val loss"),
        hp_api.Metric("epoch_exact_match", group="train", display_name="train exact match"),
    ]
    with tf.summary.create_file_writer(log_dir).as_default():
        hp_api.hparams_config(hparams=hparams, metrics=metrics)


def read_executions(output_dir: str) -> list:
    records = []
    for path in sorted(tf.io.gfile.glob(os.path.join(output_dir, "executions", "*.json"))):
        with tf.io.gfile.GFile(path) as f:
            records.append(json.loads(f.read()))
    return records


def trial_table(oracle, hypermodel: Seq2SeqHyperModel, output_dir: str) -> list:
    """One row per trial, in trial-id order."""
    runs = {}
    for r in read_executions(output_dir):
        if r.get("finished") and not r.get("error"):
            runs[r["trial_id"]] = r  # the execution that produced the result
    base = dataclasses.asdict(hypermodel.config.trainer.model)
    rows = []
    for trial in sorted(oracle.trials.values(), key=lambda t: t.trial_id):
        values = dict(trial.hyperparameters.values)
        model = {**base, **{k: v for k, v in values.items() if k in base}}
        run = runs.get(trial.trial_id, {})
        rows.append({
            "trial_id": trial.trial_id,
            "status": str(trial.status),
            OBJECTIVE: trial.score,
            "best_epoch": trial.best_step,
            "hyperparameters": values,
            "model": model,
            "tuner_id": run.get("tuner_id"),
            "seconds": round(run["finished"] - run["started"], 2) if run else None,
        })
    return rows


def _trials_csv(rows: list, searched: list) -> str:
    out = io.StringIO()
    columns = ["trial_id", "status", OBJECTIVE, "best_epoch", "tuner_id", "seconds"]
    extra = sorted({k for r in rows for k in r["hyperparameters"] if k not in searched})
    writer = csv.writer(out)
    writer.writerow(columns + list(searched) + extra)
    for r in rows:
        writer.writerow([r[c] for c in columns]
                        + [r["model"].get(k) for k in searched]
                        + [r["hyperparameters"].get(k) for k in extra])
    return out.getvalue()


def write_results(tuner, hypermodel: Seq2SeqHyperModel, output_dir: str, started: float) -> dict:
    oracle = tuner.oracle
    rows = trial_table(oracle, hypermodel, output_dir)
    completed = [r for r in rows if r["status"] == "COMPLETED" and r[OBJECTIVE] is not None]
    if not completed:
        reasons = [t.message.strip().splitlines()[-1] for t in oracle.trials.values()
                   if t.message]
        raise RuntimeError(f"Tuner: no trial completed ({len(rows)} ran); "
                           f"last error: {reasons[-1] if reasons else 'none recorded'}")
    # Highest objective; ties go to the earliest trial (whatever order the oracle reloaded).
    best_id = min(completed, key=lambda r: (-r[OBJECTIVE], r["trial_id"]))["trial_id"]
    best_trial = oracle.trials[best_id]
    best = hypermodel.hparams_from(best_trial.hyperparameters.copy())
    _write_json(os.path.join(output_dir, BEST_FILE), dataclasses.asdict(best))
    _write_json(os.path.join(output_dir, "trials.json"), rows)
    with tf.io.gfile.GFile(os.path.join(output_dir, "trials.csv"), "w") as f:
        f.write(_trials_csv(rows, list(hypermodel.config.tuner.search_space)))
    result = {
        "best": dataclasses.asdict(best),
        "best_trial": best_trial.trial_id,
        OBJECTIVE: best_trial.score,
        "trials": rows,
        "seconds": round(time.time() - started, 2),
        "tensorboard": os.path.join(output_dir, "logs"),
        "tuner_dir": os.path.join(output_dir, "tuner", PROJECT),
        "trials_csv": os.path.join(output_dir, "trials.csv"),
    }
    log.info("Tuner: %d trials (%d completed) in %.1fs; best trial %s: %s=%.4f, %s",
             len(rows), len(completed), result["seconds"], best_trial.trial_id, OBJECTIVE,
             best_trial.score, {k: getattr(best, k) for k in hypermodel.config.tuner.search_space})
    return result


# --------------------------------------------------------------------------------------
# Running a search: locally, as the chief (oracle server) or as a worker.


def role_from_env() -> str:
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "local"
    return "chief" if "chief" in os.environ.get("KERASTUNER_TUNER_ID", "") else "worker"


def _serve_oracle(tuner, address: str) -> None:
    """keras-tuner's chief loop (oracle_chief.start_server), polling every 0.5 s, not 20 s."""
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    oracle = tuner.oracle
    tuner.save()
    servicer = oracle_chief.OracleServicer(oracle)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as e:
        raise RuntimeError(f"Tuner chief: cannot listen on {address}: {e}") from e
    if not port:
        raise RuntimeError(f"Tuner chief: cannot listen on {address}")
    server.start()
    log.info("Tuner chief: oracle serving on %s; waiting for workers", address)
    last_note = time.time()
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(0.5)
            if time.time() - last_note > 60:
                last_note = time.time()
                done = sum(t.status == "COMPLETED" for t in oracle.trials.values())
                log.info("Tuner chief: %d trials completed; running: %s; workers: %s", done,
                         {k: t.trial_id for k, t in oracle.ongoing_trials.items()},
                         sorted(oracle.tuner_ids))
    finally:
        server.stop(grace=2)


class ChiefWatch:
    """Worker side: exits the search when the chief is unreachable for ``timeout`` seconds.

    keras-tuner's client waits for the chief with ``wait_for_ready`` and a one-hour deadline,
    and only talks to it between trials; this thread asks the chief every few seconds.
    """

    def __init__(self, address: str, timeout: float):
        import grpc
        from keras_tuner.src import protos

        self.address, self.timeout = address, timeout
        self.lost = False
        self._stop = threading.Event()
        self._channel = grpc.insecure_channel(address)
        self._stub = protos.get_service_grpc().OracleStub(self._channel)
        self._request = protos.get_service().GetSpaceRequest()
        self._thread = threading.Thread(target=self._run, name="chief-watch", daemon=True)

    def __enter__(self):
        self._old_handler = None
        if threading.current_thread() is threading.main_thread():
            self._old_handler = signal.signal(signal.SIGUSR1, self._interrupt)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=15)
        self._channel.close()
        if self._old_handler is not None:
            signal.signal(signal.SIGUSR1, self._old_handler)

    @staticmethod
    def _interrupt(signum, frame):
        raise _ChiefGone()

    def _run(self):
        import grpc

        last_ok = time.time()
        interval = max(0.5, min(5.0, self.timeout / 5))
        while not self._stop.wait(interval):
            try:
                self._stub.GetSpace(self._request, timeout=min(10.0, self.timeout))
                last_ok = time.time()
            except grpc.RpcError:
                if time.time() - last_ok >= self.timeout:
                    break
        else:
            return
        self.lost = True
        log.error("Tuner worker: lost the oracle chief at %s (no answer for %.0fs); exiting. "
                  "Restart this worker with the same --tuner-id once the chief is back.",
                  self.address, time.time() - last_ok)
        if self._old_handler is not None:  # interrupts the trial or RPC in progress
            signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
        if not self._stop.wait(10):  # the main thread is stuck in native code
            logging.shutdown()
            os._exit(LOST_CHIEF_EXIT)


class LostChief(RuntimeError):
    pass


class _ChiefGone(BaseException):
    """Raised in the main thread by ChiefWatch; not an Exception, so that keras-tuner does not
    take it for a failed trial."""


def run_tuner(config, examples_dir: str, base_coverage: dict, output_dir: str,
              chief_timeout: float = 120.0) -> dict:
    """Runs (or continues) the search. Role from the KERASTUNER_* environment (default local).

    local / chief: returns the results (best hyperparameters, trial table, ...) and writes
    them; worker: runs trials until the chief says stop; returns what it ran.
    """
    tu = config.tuner
    role = role_from_env()
    tf.io.gfile.makedirs(output_dir)
    hypermodel = Seq2SeqHyperModel(config, examples_dir, base_coverage)
    strategy = choose_strategy(config.runtime.strategy)
    started = time.time()
    if role == "worker":
        from keras_tuner.src.distribute import oracle_client

        # The client's per-call deadline (keras-tuner: 1 hour).
        oracle_client.TIMEOUT = chief_timeout
    tuner = make_tuner(config, hypermodel, output_dir, strategy)
    log_dir = os.path.join(output_dir, "logs")
    tb = keras.callbacks.TensorBoard(log_dir, update_freq="epoch")
    if role != "worker":
        oracle = tuner.oracle
        oracle.verbose = 0
        if tu.max_seconds:  # counted from here, in this process: a restart gets it anew
            oracle.deadline = time.time() + tu.max_seconds
        write_hparams_config(oracle, log_dir)
        done = sum(t.status == "COMPLETED" for t in oracle.trials.values())
        log.info("Tuner (%s): %s search, budget %d trials x %d epochs x %d steps%s; %d trials "
                 "already completed in %s", role, tu.algorithm, tu.max_trials, tu.epochs,
                 tu.steps_per_trial_epoch,
                 f", {tu.max_seconds}s" if tu.max_seconds else "", done, tuner.project_dir)
    if role == "local":
        tuner.search(callbacks=[tb], verbose=0)
    elif role == "chief":
        address = (f"{os.environ['KERASTUNER_ORACLE_IP']}:"
                   f"{os.environ['KERASTUNER_ORACLE_PORT']}")
        oracle = tuner.oracle
        if oracle.remaining_trials() == 0 and not oracle._retry_queue and not any(
                t.status == "RUNNING" for t in oracle.trials.values()):
            log.info("Tuner chief: all %d trials already ran; not serving", len(oracle.trials))
        else:
            _serve_oracle(tuner, address)
    else:
        address = (f"{os.environ['KERASTUNER_ORACLE_IP']}:"
                   f"{os.environ['KERASTUNER_ORACLE_PORT']}")
        _create = tuner.oracle.create_trial

        def create_trial(tuner_id):  # keras-tuner resends at once while the oracle is IDLE
            trial = _create(tuner_id)
            if trial.status == kt.engine.trial.TrialStatus.IDLE:
                time.sleep(1)
            return trial

        tuner.oracle.create_trial = create_trial
        log.info("Tuner worker %s: asking the chief at %s for trials", tuner.tuner_id, address)
        watch = ChiefWatch(address, chief_timeout)
        try:
            with watch:
                tuner.search(callbacks=[tb], verbose=0)
        except Exception as e:  # grpc errors: the chief went away between calls
            import grpc

            if isinstance(e, grpc.RpcError) or watch.lost:
                raise LostChief(f"lost the oracle chief at {address}: {e}") from e
            raise
        except _ChiefGone:
            raise LostChief(f"lost the oracle chief at {address} (no answer for "
                            f"{chief_timeout:.0f}s)") from None
        ran = [r for r in read_executions(output_dir) if r["tuner_id"] == tuner.tuner_id
               and r.get("finished")]
        log.info("Tuner worker %s: chief says done; ran %d trials here", tuner.tuner_id, len(ran))
        return {"role": "worker", "tuner_id": tuner.tuner_id,
                "trials_run": sorted(r["trial_id"] for r in ran),
                "seconds": round(time.time() - started, 2)}
    return {**write_results(tuner, hypermodel, output_dir, started), "role": role}


def load_best(output_dir: str) -> ModelHParams:
    with tf.io.gfile.GFile(os.path.join(output_dir, BEST_FILE)) as f:
        return ModelHParams(**json.loads(f.read()))


# --------------------------------------------------------------------------------------
# `lstm-math tune`: one command per machine.


def add_tune_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--role", choices=ROLES,
                   help="local (default; or from KERASTUNER_* variables): one process; chief: "
                        "serve the oracle, run no trials; worker: run trials the chief hands out")
    p.add_argument("--oracle", metavar="HOST:PORT",
                   help="chief: address to listen on; worker: the chief's address (default: "
                        "KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT)")
    p.add_argument("--tuner-id", help="this worker's id, unique and stable across restarts "
                                      "(default: KERASTUNER_TUNER_ID or worker-<hostname>)")
    p.add_argument("--examples", help="ExampleGen output directory (default: this config's "
                                      "ExampleGen artifact under --pipeline-root)")
    p.add_argument("--output", help="the shared tuning directory (default: this config's Tuner "
                                    "artifact directory under --pipeline-root)")
    p.add_argument("--chief-timeout", type=float, default=120.0, metavar="SECONDS",
                   help="worker: exit (status 3) when the chief is unreachable this long")


def _find_upstream(config):
    """(examples_dir, base_coverage, Tuner artifact dir or None, upstream artifacts)."""
    from pipeline.config import coverage_of
    from pipeline.pipeline import Artifact, create_pipeline
    from pipeline.runner import LocalRunner

    runner, pipeline = LocalRunner(config), create_pipeline(config)
    eg = runner.load_cached("ExampleGen", runner.fingerprint(pipeline, "ExampleGen", {}))
    if eg is None:
        # Not generated with this very config: the latest ExampleGen output covering the task.
        want = {k: v for k, v in coverage_of(config).items() if k != "reverse_output"}
        found = []
        for path in tf.io.gfile.glob(os.path.join(runner.root, "ExampleGen", "*",
                                                  "artifact.json")):
            with tf.io.gfile.GFile(path) as f:
                a = Artifact.from_json(f.read())
            cov = {k: v for k, v in a.properties.get("coverage", {}).items()
                   if k != "reverse_output"}
            if cov == want:
                found.append((tf.io.gfile.stat(path).mtime_nsec, a))
        if not found:
            raise FileNotFoundError(
                f"no ExampleGen output for this task under {runner.root}; run `lstm-math "
                f"component ExampleGen` with this config first, or pass --examples DIR")
        eg = max(found, key=lambda x: x[0])[1]
        log.info("Tuner: using the latest matching ExampleGen output %s", eg.uri)
        return eg.properties["examples_dir"], eg.properties["coverage"], None, {}
    upstream = {"ExampleGen": eg}
    dv = runner.load_cached("DataValidation",
                            runner.fingerprint(pipeline, "DataValidation", upstream))
    if dv is None:
        return eg.properties["examples_dir"], eg.properties["coverage"], None, upstream
    upstream["DataValidation"] = dv
    fp = runner.fingerprint(pipeline, "Tuner", upstream)
    return (eg.properties["examples_dir"], eg.properties["coverage"],
            runner.artifact_path("Tuner", fp), {**upstream, "_fingerprint": fp})


def run_tune(args, config=None) -> int:
    """`lstm-math tune`: returns the exit status (0 done, 3 worker lost the chief)."""
    from pipeline.config import coverage_of, fingerprint_dict, load_config
    from pipeline.pipeline import Artifact

    if config is None:
        overrides = list(getattr(args, "overrides", []) or [])
        if getattr(args, "pipeline_root", None):
            overrides.append(f"runtime.pipeline_root={args.pipeline_root}")
        config = load_config(args.config, overrides)
    if not config.tuner.enabled:
        log.error("tuner.enabled is false: nothing to tune (the Trainer uses trainer.model)")
        return 2
    role = args.role or role_from_env()
    if role != "local":
        address = args.oracle or (
            f"{os.environ.get('KERASTUNER_ORACLE_IP', '')}:"
            f"{os.environ.get('KERASTUNER_ORACLE_PORT', '')}")
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            log.error("--role %s needs the chief's address: --oracle HOST:PORT (or "
                      "KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT)", role)
            return 2
        tuner_id = "chief" if role == "chief" else (
            args.tuner_id or os.environ.get("KERASTUNER_TUNER_ID")
            or f"worker-{socket.gethostname()}")
        if role == "worker" and "chief" in tuner_id:
            log.error("--tuner-id %r: a worker's id must not contain 'chief'", tuner_id)
            return 2
        os.environ.update(KERASTUNER_ORACLE_IP=host, KERASTUNER_ORACLE_PORT=port,
                          KERASTUNER_TUNER_ID=tuner_id)
    else:
        for var in ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
            os.environ.pop(var, None)

    artifact_dir, upstream = None, {}
    if args.examples:
        examples_dir, coverage = args.examples, coverage_of(config)
    else:
        try:
            examples_dir, coverage, artifact_dir, upstream = _find_upstream(config)
        except FileNotFoundError as e:
            log.error("%s", e)
            return 2
    output_dir = args.output or artifact_dir or os.path.join(
        config.runtime.pipeline_root, "Tuner", "tune-" + fingerprint_dict({
            "tuner": dataclasses.asdict(config.tuner),
            "model": dataclasses.asdict(config.trainer.model),
            "batch": config.trainer.batch_size, "examples": examples_dir})[:16])
    log.info("Tuner %s: examples %s -> %s", role, examples_dir, output_dir)
    try:
        result = run_tuner(config, examples_dir, coverage, output_dir,
                           chief_timeout=args.chief_timeout)
    except LostChief as e:
        log.error("Tuner worker: %s; exiting", e)
        return LOST_CHIEF_EXIT
    if role == "worker":
        print(json.dumps(result), flush=True)
        return 0
    if artifact_dir and output_dir == artifact_dir:
        # The pipeline's Tuner step for this config is done: `lstm-math run` reuses it.
        artifact = Artifact(component="Tuner", uri=output_dir,
                            fingerprint=upstream["_fingerprint"],
                            properties={**result, "tuned": True})
        with tf.io.gfile.GFile(os.path.join(output_dir, "artifact.json"), "w") as f:
            f.write(artifact.to_json())
    print(json.dumps({"best_hyperparameters": os.path.join(output_dir, BEST_FILE),
                      "trials_csv": result["trials_csv"], "best_trial": result["best_trial"],
                      OBJECTIVE: result[OBJECTIVE], "best": result["best"],
                      "trials": len(result["trials"]), "seconds": result["seconds"],
                      "tensorboard": result["tensorboard"]}, indent=2), flush=True)
    return 0
