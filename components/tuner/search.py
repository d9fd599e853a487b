"""Running a search (or continuing one): locally, as the chief (oracle server) or as a worker."""

from __future__ import annotations

import logging
import os
import time

import keras_tuner as kt
import tensorflow as tf

from lstm_math.components.trainer import choose_strategy
from lstm_math.components.tuner import kt_internals
from lstm_math.components.tuner.distributed import (ChiefWatch, LostChief, _ChiefGone, role_from_env,
                                          serve_oracle)
from lstm_math.components.tuner.oracles import make_oracle
from lstm_math.components.tuner.records import (PROJECT, HyperbandSearchTuner, SearchTuner,
                                      read_executions, write_results)
from lstm_math.components.tuner.space import Seq2SeqHyperModel, TrialSettings
from lstm_math.components.tuner.tensorboard import TrialSummaries
from lstm_math.config import Coverage

log = logging.getLogger(__name__)


def make_tuner(tu, hypermodel, output_dir: str, strategy=None):
    """The keras-tuner Tuner of the ``tuner`` section ``tu`` over ``hypermodel``."""
    oracle = make_oracle(tu)
    cls = HyperbandSearchTuner if tu.algorithm == "hyperband" else SearchTuner
    tuner = cls(oracle, hypermodel, directory=os.path.join(output_dir, "tuner"),
                project_name=PROJECT, overwrite=False, distribution_strategy=strategy)
    tuner.executions_dir = os.path.join(output_dir, "executions")
    tuner.log_dir = os.path.join(output_dir, "logs")
    tf.io.gfile.makedirs(tuner.executions_dir)
    return tuner


def run_tuner(tu, trial: TrialSettings, examples_dir: str, base_coverage: Coverage,
              output_dir: str, chief_timeout: float = 120.0, strategy: str = "auto") -> dict:
    """Runs (or continues) the search of the ``tuner`` section ``tu``, each trial trained
    with ``trial`` (what it takes of ``trainer``) under ``strategy`` (``runtime.strategy``).
    Role from the KERASTUNER_* environment (default local).

    local / chief: returns the results (best hyperparameters, trial table, ...) and writes
    them; worker: runs trials until the chief says stop; returns what it ran.
    """
    role = role_from_env()
    tf.io.gfile.makedirs(output_dir)
    hypermodel = Seq2SeqHyperModel(tu, trial, examples_dir, base_coverage)
    strategy = choose_strategy(strategy)
    started = time.time()
    if role == "worker":
        # The client's per-call deadline (keras-tuner: 1 hour).
        kt_internals.set_client_timeout(chief_timeout)
    tuner = make_tuner(tu, hypermodel, output_dir, strategy)
    log_dir = os.path.join(output_dir, "logs")
    # logs/trial-NN/{train,validation}: the Trainer's tag names (components.tuner.tensorboard)
    tb = TrialSummaries(log_dir, trial.batch_size)
    if role != "worker":
        oracle = tuner.oracle
        oracle.verbose = 0
        if tu.max_seconds:  # counted from here, in this process: a restart gets it anew
            oracle.deadline = time.time() + tu.max_seconds
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
        if oracle.remaining_trials() == 0 and not kt_internals.trials_to_retry(oracle) and not any(
                t.status == "RUNNING" for t in oracle.trials.values()):
            log.info("Tuner chief: all %d trials already ran; not serving", len(oracle.trials))
        else:
            serve_oracle(tuner, address)
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
