"""The local rehearsal of a cluster run (slow): `lstm-math rehearse --config smoke` on
127.0.0.1 (portable Beam with a job service and an external worker pool, a tuner chief + 2
workers, 2 training workers under MultiWorkerMirroredStrategy), its pushed model through the
same contract test as a single-process run; then workers killed mid-step: a training worker
(the step fails naming it, never hangs) and a tuner worker (restarted with its id and the
search completes; with no restarts left the step fails naming it)."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO, check_served_contract, lstm_math

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    base = tmp_path_factory.mktemp("rehearsal")
    root, serving = base / "root", base / "serving"
    proc = lstm_math("rehearse", "--config", "smoke", "--pipeline-root", str(root),
                     "--serving-base", str(serving), timeout=1800)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    with open(os.path.join(summary["run_dir"], "manifest.json")) as f:
        manifest = json.load(f)
    return {"root": root, "serving": serving, "manifest": manifest, "stderr": proc.stderr,
            "summary": summary}


@pytest.mark.timeout(1900)
def test_rehearsal_runs_every_step_as_a_cluster_would(rehearsal):
    m = rehearsal["manifest"]
    assert m["ok"] is True and m["pushed"] is True
    assert list(m["steps"]) == ["ExampleGen", "DataValidation", "Tuner", "Trainer",
                                "Evaluator", "Exporter", "InfraValidator", "Pusher"]
    logs = os.path.join(m["run_dir"], "logs")
    # Beam through the portability framework, services on 127.0.0.1.
    eg_log = open(os.path.join(logs, "ExampleGen.log")).read()
    assert "--runner=PortableRunner" in eg_log and "state DONE" in eg_log
    # Tuner: a chief and two workers, each ran trials; the Trainer: 2 workers.
    tuner = json.load(open(os.path.join(logs, "Tuner.outputs.json")))["properties"]
    assert tuner["workers"] == 2 and tuner["role"] == "chief"
    assert {t["tuner_id"] for t in tuner["trials"]} <= {"worker-0", "worker-1"}
    assert len(tuner["trials"]) == 2
    for i in range(2):
        assert "chief says done" in open(os.path.join(logs, "Tuner",
                                                      f"tuner-worker-{i}.log")).read()
    trainer = json.load(open(os.path.join(logs, "Trainer.outputs.json")))["properties"]
    assert trainer["strategy"] == "MultiWorkerMirroredStrategy" and trainer["workers"] == 2
    assert all(a.startswith("127.0.0.1:") for a in trainer["worker_addresses"])
    for i in range(2):
        assert "MultiWorkerMirroredStrategy (2 workers from TF_CONFIG)" in open(
            os.path.join(logs, "Trainer", f"train-worker-{i}.log")).read()
    # Progress output, one line per step.
    for i, step in enumerate(m["steps"], 1):
        assert f"[{i}/8] {step}" in rehearsal["stderr"]


@pytest.mark.timeout(1900)
def test_pushed_model_passes_the_single_process_contract_test(rehearsal, tmp_path):
    assert rehearsal["manifest"]["steps"]["Pusher"]["version"] == 1
    check_served_contract(os.path.join(str(rehearsal["serving"]), "lstm_math", "1"),
                          str(tmp_path))


def _step(rehearsal, name, *overrides, inputs=()):
    m = rehearsal["manifest"]["steps"]
    cmd = [sys.executable, "-m", "lstm_math.pipeline.cli", "step", name, "--config", "smoke",
           "--pipeline-root", str(rehearsal["root"]), "--set", "cluster.launcher=processes",
           "--set", "cluster.poll_interval_s=0.5"]
    for o in overrides:
        cmd += ["--set", o]
    for upstream in inputs:
        cmd += ["--input", f"{upstream}={m[upstream]['uri']}"]
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _kill_when(proc, started_re, ready, timeout=600):
    """Reads the step's stderr until ``started_re`` names a worker (pid, log); waits until
    its log satisfies ``ready``; SIGKILLs it. Returns (pid, stderr so far)."""
    seen, deadline = [], time.time() + timeout
    pid = log_path = None
    while pid is None:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, "step ended before starting the worker:\n" + \
            "".join(seen)
        seen.append(line)
        match = re.search(started_re + r" \(pid (\d+).*log (\S+)\)", line)
        if match:
            pid, log_path = int(match.group(1)), match.group(2)
        assert time.time() < deadline
    while not (os.path.exists(log_path) and ready(open(log_path, errors="replace").read())):
        assert proc.poll() is None and time.time() < deadline, "".join(seen)
        time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    return pid, "".join(seen)


@pytest.mark.timeout(1900)
def test_killed_training_worker_fails_the_step_naming_it(rehearsal):
    proc = _step(rehearsal, "Trainer", "cluster.train_workers=2", "trainer.epochs=4",
                 "trainer.steps_per_epoch=400", inputs=("ExampleGen", "Tuner"))
    try:
        pid, before = _kill_when(proc, "started training worker 1",
                                 lambda text: "epochs 1..4" in text)
        _, err = proc.communicate(timeout=300)  # never hangs: the launcher stops worker 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 4, before + err
    assert f"Trainer: training worker 1 (pid {pid}) was killed by SIGKILL" in err
    assert "stopped the other workers" in err
    pid0 = int(re.search(r"started training worker 0 \(pid (\d+)", before + err).group(1))
    assert not os.path.exists(f"/proc/{pid0}") or open(f"/proc/{pid0}/stat").read().split()[
        2] == "Z"


@pytest.mark.timeout(1900)
def test_killed_tuner_worker_is_restarted_with_its_id_and_the_search_completes(rehearsal):
    proc = _step(rehearsal, "Tuner", "cluster.tuner_workers=2", "cluster.worker_restarts=1",
                 "tuner.seed=11", "tuner.steps_per_trial_epoch=30",
                 inputs=("ExampleGen", "DataValidation"))
    try:
        pid, before = _kill_when(proc, "started tuner worker-1",
                                 lambda text: "Tuner[worker-1]: trial" in text)
        out, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, before + err
    assert f"tuner worker-1 (pid {pid}) was killed by SIGKILL; restarting it with the same " \
           "id" in err
    result = json.loads(out.strip().splitlines()[-1])
    trials = result["properties"]["trials"] if "properties" in result else None
    tuner_dir = result["uri"]
    rows = json.load(open(os.path.join(tuner_dir, "trials.json")))
    assert len(rows) == 2 and all(r["status"] == "COMPLETED" for r in rows), rows
    assert trials is None or len(trials) == 2


@pytest.mark.timeout(1900)
def test_killed_tuner_worker_without_restarts_fails_the_step_naming_it(rehearsal):
    proc = _step(rehearsal, "Tuner", "cluster.tuner_workers=2", "cluster.worker_restarts=0",
                 "tuner.seed=12", inputs=("ExampleGen", "DataValidation"))
    try:
        pid, before = _kill_when(proc, "started tuner worker-0",
                                 lambda text: "Tuner[worker-0]: trial" in text)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 4, before + err
    assert f"Tuner: tuner worker-0 (pid {pid}) was killed by SIGKILL and has no restarts " \
           "left (cluster.worker_restarts=0)" in err
