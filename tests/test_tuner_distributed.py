"""Tuner as separate processes: `lstm-math tune` chief + workers (keras-tuner's distributed
mode), a worker losing its chief, a SIGKILLed search that resumes, and the other algorithms."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lstm_math.components.tuner.space import TrialSettings
from lstm_math.config import coverage_of, load_config

from tests.helpers import REPO, free_port
UNITS_AND_REVERSAL = "tuner.search_space={encoder_units: [8, 16], reverse_output: [true, false]}"


class Procs:
    """`lstm-math` subprocesses whose output goes to files; all are killed at the end."""

    def __init__(self, tmp_path):
        self.dir, self.procs = tmp_path, []

    def start(self, name, *args):
        env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
        for var in ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
            env.pop(var, None)
        out = open(self.dir / f"{name}.out", "w")
        err = open(self.dir / f"{name}.err", "w")
        p = subprocess.Popen([sys.executable, "-m", "lstm_math.pipeline.cli", *args], cwd=REPO, env=env,
                             stdout=out, stderr=err)
        p.name = name
        self.procs.append(p)
        return p

    def output(self, name):
        return (self.dir / f"{name}.out").read_text(), (self.dir / f"{name}.err").read_text()

    def wait(self, p, timeout):
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            out, err = self.output(p.name)
            raise AssertionError(f"{p.name} still running after {timeout}s:\n{err[-4000:]}")

    def kill_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture
def procs(tmp_path):
    p = Procs(tmp_path)
    yield p
    p.kill_all()


def _prepare_root(root, overrides):
    """ExampleGen + DataValidation for this config (in-process); returns (config, Tuner dir)."""
    from lstm_math.pipeline.pipeline import create_pipeline
    from lstm_math.pipeline.runner import LocalRunner

    config = load_config("smoke", [*overrides, f"runtime.pipeline_root={root}"])
    runner, pipeline = LocalRunner(config), create_pipeline(config)
    runner.run(pipeline, only=["ExampleGen", "DataValidation"])
    place = runner.resolve(pipeline, "Tuner")
    return config, runner, place.output_dir, place.fingerprint


def _executions(out_dir):
    from lstm_math.components.tuner import read_executions

    return read_executions(str(out_dir))


def test_worker_without_a_chief_exits_with_a_clear_message(procs, tmp_path, examples_for):
    port = free_port()  # nothing listens there
    examples = examples_for("smoke")  # (examples without shards are refused before anything)
    started = time.time()
    p = procs.start("worker", "tune", "--config", "smoke", "--role", "worker",
                    "--oracle", f"127.0.0.1:{port}", "--tuner-id", "w1", "--chief-timeout", "3",
                    "--examples", str(examples), "--output", str(tmp_path / "out"))
    assert procs.wait(p, timeout=180) == 3
    _, err = procs.output("worker")
    assert f"lost the oracle chief at 127.0.0.1:{port}" in err
    assert time.time() - started < 150


@pytest.mark.slow
def test_chief_and_two_workers_run_every_trial_exactly_once(procs, tmp_path):
    overrides = [UNITS_AND_REVERSAL, "tuner.max_trials=4"]
    config, runner, tuner_dir, fp = _prepare_root(tmp_path / "root", overrides)
    port = free_port()
    common = ["tune", "--config", "smoke", "--pipeline-root", str(tmp_path / "root"),
              "--oracle", f"127.0.0.1:{port}", "--chief-timeout", "60"]
    for o in overrides:
        common += ["--set", o]
    started = time.time()
    chief = procs.start("chief", *common, "--role", "chief")
    workers = [procs.start(w, *common, "--role", "worker", "--tuner-id", w) for w in ("w1", "w2")]
    for p in workers + [chief]:
        assert procs.wait(p, timeout=600) == 0, procs.output(p.name)[1][-3000:]
    seconds = time.time() - started

    with open(os.path.join(tuner_dir, "trials.json")) as f:
        trials = json.load(f)
    assert len(trials) == 4 and all(t["status"] == "COMPLETED" for t in trials)
    assert len({json.dumps(t["hyperparameters"], sort_keys=True) for t in trials}) == 4
    runs = _executions(tuner_dir)
    assert sorted(r["trial_id"] for r in runs) == sorted(t["trial_id"] for t in trials)
    assert all(r.get("finished") and not r.get("error") for r in runs)
    ran = {w: json.loads(procs.output(w)[0].strip().splitlines()[-1])["trials_run"]
           for w in ("w1", "w2")}
    assert sorted(ran["w1"] + ran["w2"]) == sorted(t["trial_id"] for t in trials)
    assert {r["tuner_id"] for r in runs} <= {"w1", "w2"}

    best_trial = min(trials, key=lambda t: (-t["val_exact_match"], t["trial_id"]))
    with open(os.path.join(tuner_dir, "best_hyperparameters.json")) as f:
        assert json.load(f) == {"model": best_trial["model"], "optimizer": best_trial["optimizer"]}
    chief_says = json.loads(procs.output("chief")[0])
    assert chief_says["best_trial"] == best_trial["trial_id"] and chief_says["trials"] == 4
    # The pipeline's Tuner step for this config is done: `lstm-math run` reuses it.
    cached = runner.load_cached("Tuner", fp)
    assert cached is not None and cached.properties["best"] == {
        "model": best_trial["model"], "optimizer": best_trial["optimizer"]}
    print(f"\ndistributed search: chief + 2 workers, 4 trials, {seconds:.0f}s")


@pytest.mark.slow
def test_worker_that_loses_its_chief_mid_trial_exits(procs, tmp_path, examples_for):
    examples = examples_for("smoke")
    port = free_port()
    common = ["tune", "--config", "smoke", "--set", "tuner.steps_per_trial_epoch=2000",
              "--examples", str(examples), "--output", str(tmp_path / "out"),
              "--oracle", f"127.0.0.1:{port}"]
    chief = procs.start("chief", *common, "--role", "chief")
    worker = procs.start("worker", *common, "--role", "worker", "--tuner-id", "w1",
                         "--chief-timeout", "5")
    deadline = time.time() + 300
    while not _executions(tmp_path / "out"):  # the worker is inside a trial
        assert time.time() < deadline and worker.poll() is None, procs.output("worker")[1]
        time.sleep(1)
    chief.kill()
    killed = time.time()
    assert procs.wait(worker, timeout=120) == 3
    assert time.time() - killed < 60  # not keras-tuner's one-hour retry
    _, err = procs.output("worker")
    assert f"lost the oracle chief at 127.0.0.1:{port}" in err


@pytest.mark.slow
def test_sigkilled_search_resumes_without_rerunning_finished_trials(procs, tmp_path):
    overrides = [UNITS_AND_REVERSAL, "tuner.max_trials=3"]
    config, runner, tuner_dir, fp = _prepare_root(tmp_path / "root", overrides)
    # (`lstm-math component Tuner` continues the same way: same config, same directory.)
    command = ["tune", "--config", "smoke", "--pipeline-root", str(tmp_path / "root")]
    for o in overrides:
        command += ["--set", o]
    first = procs.start("first", *command)
    deadline = time.time() + 400
    while True:  # kill it once a trial has finished and the next one is running
        runs = _executions(tuner_dir)
        if any(r.get("finished") for r in runs) and any(not r.get("finished") for r in runs):
            break
        assert time.time() < deadline and first.poll() is None, procs.output("first")[1]
        time.sleep(0.5)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    finished_before = {r["trial_id"] for r in _executions(tuner_dir) if r.get("finished")}
    interrupted = {r["trial_id"] for r in _executions(tuner_dir) if not r.get("finished")}
    assert finished_before and interrupted and not (finished_before & interrupted)
    assert runner.load_cached("Tuner", fp) is None

    second = procs.start("second", *command)  # the same command again
    assert procs.wait(second, timeout=600) == 0, procs.output("second")[1][-3000:]
    with open(os.path.join(tuner_dir, "trials.json")) as f:
        trials = json.load(f)
    assert len(trials) == 3 and all(t["status"] == "COMPLETED" for t in trials)
    runs = _executions(tuner_dir)
    for trial_id in finished_before:  # not run again
        assert len([r for r in runs if r["trial_id"] == trial_id]) == 1
    for trial_id in interrupted:  # run again, to completion
        again = [r for r in runs if r["trial_id"] == trial_id]
        assert len(again) == 2 and sum(bool(r.get("finished")) for r in again) == 1
    assert {r["trial_id"] for r in runs} == {t["trial_id"] for t in trials}
    cached = runner.load_cached("Tuner", fp)
    assert cached is not None and cached.properties["tuned"] is True


@pytest.mark.slow
def test_bayesian_search_within_a_time_budget(tmp_path, examples_for):
    from lstm_math.components.tuner import run_tuner

    config = load_config("smoke", [UNITS_AND_REVERSAL, "tuner.algorithm=bayesian",
                                   "tuner.max_trials=4", "tuner.max_seconds=1"])
    result = run_tuner(config.tuner, TrialSettings.of(config.trainer), examples_for("smoke"),
                       coverage_of(config), str(tmp_path / "out"))
    # The first trial takes longer than the budget: no second one starts.
    assert [t["status"] for t in result["trials"]] == ["COMPLETED"]
    assert len(_executions(tmp_path / "out")) == 1


@pytest.mark.slow
def test_hyperband_search_continues_the_best_trials(tmp_path, examples_for):
    from lstm_math.components.tuner import run_tuner

    config = load_config("smoke", [UNITS_AND_REVERSAL, "tuner.algorithm=hyperband",
                                   "tuner.epochs=2", "tuner.hyperband_factor=2",
                                   "tuner.max_trials=3"])
    result = run_tuner(config.tuner, TrialSettings.of(config.trainer), examples_for("smoke"),
                       coverage_of(config), str(tmp_path / "out"))
    trials = result["trials"]
    assert len(trials) == 3 and all(t["status"] == "COMPLETED" for t in trials)
    # Hyperband's later rounds train a promising trial's weights further.
    continued = [t for t in trials if "tuner/trial_id" in t["hyperparameters"]]
    assert continued and all(t["hyperparameters"]["tuner/epochs"] == 2 for t in continued)
