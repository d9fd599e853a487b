"""What a search leaves behind: one record per trial execution (who ran it, when, the
result), the trial table (trials.json, trials.csv), the best hyperparameters and the
TensorBoard HParams values of each trial."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
import socket
import time

import keras_tuner as kt
import tensorflow as tf

from lstm_math.components.tuner.oracles import OBJECTIVE
from lstm_math.components.tuner.space import Seq2SeqHyperModel
from lstm_math.components.tuner import kt_internals
from lstm_math.components.tuner.tensorboard import TrialSummaries, trial_run_name

log = logging.getLogger(__name__)

PROJECT = "search"
BEST_FILE = "best_hyperparameters.json"
TRIALS_FILE = "trials.json"


class _Recorder(kt_internals.TrialLogDirs):
    """Tuner mixin: one JSON record per trial execution under ``<output>/executions``."""

    executions_dir = None
    log_dir = None

    def trial_log_dir(self, logdir, trial_id, execution):
        return os.path.join(str(logdir), trial_run_name(trial_id, execution))

    def configure_trial_callbacks(self, callbacks, trial, execution=0):
        """Points each trial's ``TrialSummaries`` at ``logs/trial-NN`` with its values."""
        for callback in callbacks:
            if isinstance(callback, TrialSummaries):
                callback.log_dir = self.trial_log_dir(callback.log_dir, trial.trial_id,
                                                      execution)
                callback.trial_name = trial_run_name(trial.trial_id, execution)
                # {"model": ..., "optimizer": ...}: what the trial trains with
                callback.hparams = self.hypermodel.hparams_from(
                    trial.hyperparameters.copy()).to_dict()

    def run_trial(self, trial, *args, **kwargs):
        stale = os.path.join(self.log_dir, trial_run_name(trial.trial_id))
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
        kt_internals.init_with_oracle(self, oracle, hypermodel, **kwargs)


def _write_json(path: str, data) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(data, indent=2, default=str))


def read_executions(output_dir: str) -> list:
    records = []
    for path in sorted(tf.io.gfile.glob(os.path.join(output_dir, "executions", "*.json"))):
        with tf.io.gfile.GFile(path) as f:
            records.append(json.loads(f.read()))
    return records


def read_results(output_dir: str) -> tuple[dict, list]:
    """(best hyperparameters, trial table) of a finished search, as ``write_results`` left
    them under ``output_dir`` (read back by the launchers of a distributed search); no
    trial table written: an empty one."""
    with tf.io.gfile.GFile(os.path.join(output_dir, BEST_FILE)) as f:
        best = json.loads(f.read())
    trials = []
    trials_path = os.path.join(output_dir, TRIALS_FILE)
    if tf.io.gfile.exists(trials_path):
        with tf.io.gfile.GFile(trials_path) as f:
            trials = json.loads(f.read())
    return best, trials


def trial_table(oracle, hypermodel: Seq2SeqHyperModel, output_dir: str) -> list:
    """One row per trial, in trial-id order."""
    runs = {}
    for r in read_executions(output_dir):
        if r.get("finished") and not r.get("error"):
            runs[r["trial_id"]] = r  # the execution that produced the result
    t = hypermodel.trial
    base = {"model": dataclasses.asdict(t.model), "optimizer": dataclasses.asdict(t.optimizer)}
    rows = []
    for trial in sorted(oracle.trials.values(), key=lambda t: t.trial_id):
        values = dict(trial.hyperparameters.values)
        sections = {name: {**fields, **{k: v for k, v in values.items() if k in fields}}
                    for name, fields in base.items()}
        run = runs.get(trial.trial_id, {})
        rows.append({
            "trial_id": trial.trial_id,
            "status": str(trial.status),
            OBJECTIVE: trial.score,
            "best_epoch": trial.best_step,
            "hyperparameters": values,
            **sections,  # "model" and "optimizer": what the trial trained with
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
                        + [{**r["model"], **r["optimizer"]}.get(k) for k in searched]
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
    _write_json(os.path.join(output_dir, BEST_FILE), best.to_dict())
    _write_json(os.path.join(output_dir, TRIALS_FILE), rows)
    with tf.io.gfile.GFile(os.path.join(output_dir, "trials.csv"), "w") as f:
        f.write(_trials_csv(rows, list(hypermodel.tuner.search_space)))
    result = {
        "best": best.to_dict(),
        "best_trial": best_trial.trial_id,
        OBJECTIVE: best_trial.score,
        "trials": rows,
        "seconds": round(time.time() - started, 2),
        "tensorboard": os.path.join(output_dir, "logs"),  # runs trial-01, ...
        "tuner_dir": os.path.join(output_dir, "tuner", PROJECT),
        "trials_csv": os.path.join(output_dir, "trials.csv"),
    }
    chosen = {**result["best"]["model"], **result["best"]["optimizer"]}
    log.info("Tuner: %d trials (%d completed) in %.1fs; best trial %s: %s=%.4f, %s",
             len(rows), len(completed), result["seconds"], best_trial.trial_id, OBJECTIVE,
             best_trial.score, {k: chosen[k] for k in hypermodel.tuner.search_space})
    return result
