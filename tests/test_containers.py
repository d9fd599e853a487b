"""The project's image, built and run for real (slow; podman, see scripts/container_env.py).

* The Dockerfile builds on a local Debian base (no registry needed) and runs as uid 1000.
* The smoke pipeline's steps, each ``lstm-math step NAME`` in a new container of the image
  (``--network=none``, the pipeline root on a volume), wired only by the URIs the steps
  report, as a Kubeflow task sequence would be: same fingerprints as ``lstm-math run`` in
  one process on the host, and the pushed model passes the serving contract.
* ``lstm-math serve`` in a container answers the official TF Serving gRPC client and REST
  from the host (ports published on 127.0.0.1 only) and stops cleanly on ``podman stop``.

Where podman, runc or the base image cannot be had, every test here skips with one line
saying why (``scripts/container_env.py setup`` as root installs and builds everything).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
import time
import uuid

import pytest

from tests.helpers import REPO, check_served_contract, free_ports, lstm_math

# The first test also builds the image (minutes when setup.py changed).
pytestmark = [pytest.mark.slow, pytest.mark.containers, pytest.mark.timeout(3600)]
log = logging.getLogger("test_containers")

IMAGE = "localhost/lstm-math:test"
STEPS = ("ExampleGen", "DataValidation", "Tuner", "Trainer", "Evaluator", "Exporter",
         "InfraValidator", "Pusher")


def _container_env():
    spec = importlib.util.spec_from_file_location(
        "container_env", os.path.join(REPO, "scripts", "container_env.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Engine:
    """podman with this setup's config; every container it starts is named and removed."""

    def __init__(self, ce, state: dict):
        self.ce, self.state = ce, state
        self.env = ce.engine_env(state["state_dir"])
        self.prefix = f"lmtest-{uuid.uuid4().hex[:6]}"
        self.started: list[str] = []

    def name(self, what: str) -> str:
        name = f"{self.prefix}-{what.lower()}"
        self.started.append(name)
        return name

    def podman(self, *args, check=True, timeout=600, **kw):
        return self.ce.podman(list(args), env=self.env, check=check, timeout=timeout, **kw)

    def run(self, name: str, args: list, timeout: float = 1200) -> subprocess.CompletedProcess:
        """``podman run --rm --name NAME ARGS``; a container past ``timeout`` is removed."""
        try:
            return self.podman("run", "--rm", "--name", name, *args, check=False,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            self.podman("rm", "-f", "-t", "0", name, check=False)
            raise

    def service(self) -> str:
        """The Docker API socket (podman system service), stopped at cleanup."""
        sock, _pid = self.ce.start_service(self.state["state_dir"], self.env)
        self.service_started = True
        return sock

    def cleanup(self) -> None:
        for name in self.started:
            self.podman("rm", "-f", "-t", "0", name, check=False, timeout=120)
        if getattr(self, "service_started", False):
            self.ce.stop_service(self.state["state_dir"])


@pytest.fixture(scope="module")
def engine():
    ce = _container_env()
    try:
        state = ce.setup(image=IMAGE, install=False)
    except ce.Unavailable as e:
        pytest.skip(f"containers unavailable here: {e}")
    log.info("image %s: %.2f GB, build %.1fs", IMAGE, state["size_bytes"] / 1e9,
             state["build_s"])
    eng = Engine(ce, state)
    yield eng
    eng.cleanup()


def _volume(path) -> str:
    """A directory the image's user (uid 1000) can write."""
    os.makedirs(path, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(path, 1000, 1000)
    else:
        os.chmod(path, 0o777)
    return str(path)


def test_image_runs_as_uid_1000_with_the_cli(engine):
    who = engine.run(engine.name("id"), ["--network=none", IMAGE, "id", "-u"], timeout=120)
    assert who.returncode == 0 and who.stdout.strip() == "1000", who.stderr
    helped = engine.run(engine.name("help"), ["--network=none", IMAGE], timeout=300)
    assert helped.returncode == 0 and "lstm-math" in helped.stdout, helped.stderr[-2000:]
    presets = engine.run(engine.name("presets"), ["--network=none", IMAGE, "python", "-c",
                         "import importlib.resources as r; print(sorted(p.name for p in "
                         "r.files('lstm_math.pipeline').joinpath('configs').iterdir()))"], timeout=120)
    assert "smoke.yaml" in presets.stdout, presets.stderr[-2000:]


@pytest.fixture(scope="module")
def container_steps(engine, tmp_path_factory):
    """The smoke pipeline, each step a new container; returns outputs, times, paths."""
    from lstm_math.pipeline.config import load_config
    from lstm_math.pipeline.pipeline import create_pipeline

    base = _volume(tmp_path_factory.mktemp("container-steps"))
    nodes = {n.name: n for n in create_pipeline(load_config("smoke", [])).nodes}
    assert tuple(nodes) == STEPS
    outputs, times = {}, {}
    started = time.monotonic()
    for name in STEPS:
        if name == "Pusher" and not outputs["Evaluator"]["blessed"]:
            break
        # The volume at the same path inside as outside (as KFP's DockerRunner and the
        # containers launcher mount it): artifacts record absolute paths.
        cmd = ["--network=none", "-v", f"{base}:{base}", "-w", base, IMAGE,
               "lstm-math", "step", name, "--config", "smoke", "--pipeline-root",
               f"{base}/root", "--serving-base", f"{base}/serving", "--outputs-json",
               f"{base}/out/{name}.json"]
        for upstream in nodes[name].inputs:  # the URIs the upstream steps reported
            cmd += ["--input", f"{upstream}={outputs[upstream]['uri']}"]
        t0 = time.monotonic()
        done = engine.run(engine.name(name), cmd)
        times[name] = time.monotonic() - t0
        assert done.returncode == 0, f"{name} exited {done.returncode}:\n{done.stderr[-4000:]}"
        with open(os.path.join(base, "out", f"{name}.json")) as f:
            outputs[name] = json.load(f)
        # the same JSON is the step's last stdout line
        assert json.loads(done.stdout.strip().splitlines()[-1])["uri"] == outputs[name]["uri"]
        log.info("container step %s: %.1fs (%.1fs inside the step) -> %s", name, times[name],
                 outputs[name]["seconds"], outputs[name]["uri"])
    return {"base": base, "outputs": outputs, "times": times,
            "seconds": time.monotonic() - started}


def test_smoke_steps_as_containers_match_one_process_and_push_a_working_model(
        container_steps, tmp_path, capsys):
    outputs, base = container_steps["outputs"], container_steps["base"]
    assert list(outputs) == list(STEPS), "the Evaluator did not bless the smoke model"
    for name, out in outputs.items():
        assert out["component"] == name and not out["cached"]
        assert out["uri"] == os.path.join(base, "root", name, out["fingerprint"])
        assert os.stat(os.path.join(out["uri"], "artifact.json")).st_uid == 1000
    push = outputs["Pusher"]
    assert push["pushed"] and push["version"] == 1
    version_dir = os.path.join(base, "serving", "lstm_math", "1")
    assert os.stat(os.path.join(version_dir, "saved_model.pb")).st_uid == 1000
    check_served_contract(version_dir, str(tmp_path))

    # The same pipeline in one process on the host: same fingerprints, timed side by side.
    host = tmp_path / "host"
    t0 = time.monotonic()
    lstm_math("run", "--config", "smoke", "--pipeline-root", str(host / "root"),
              "--serving-base", str(host / "serving"), timeout=1800)
    one_process = time.monotonic() - t0
    steps_total = container_steps["seconds"]
    inside = sum(o["seconds"] for o in outputs.values())
    with capsys.disabled():
        print(f"\n  smoke steps as {len(outputs)} containers: {steps_total:.1f}s "
              f"({inside:.1f}s inside the steps); `lstm-math run --config smoke` in one "
              f"process: {one_process:.1f}s; ratio {steps_total / one_process:.2f}")
        for name, out in outputs.items():
            print(f"    {name:>14}: container {container_steps['times'][name]:6.1f}s, "
                  f"step {out['seconds']:6.1f}s")
    # Same artifacts: every fingerprint but the Pusher's (its destination, the serving
    # base, is part of what it does).
    for name, out in outputs.items():
        if name != "Pusher":
            assert os.listdir(host / "root" / name) == [out["fingerprint"]], name


def test_a_bad_input_uri_fails_the_step_container_with_exit_2(engine, container_steps):
    base = container_steps["base"]
    done = engine.run(engine.name("badinput"), [
        "--network=none", "-v", f"{base}:{base}", IMAGE, "lstm-math", "step", "Trainer",
        "--config", "smoke", "--pipeline-root", f"{base}/root",
        "--input", f"ExampleGen={base}/root/ExampleGen/nope",
        "--input", f"Tuner={container_steps['outputs']['Tuner']['uri']}"], timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"no complete artifact at {base}/root/ExampleGen/nope" in done.stderr


# --------------------------------------------------------------------------------------
# Serving from the image.


def _wait_ready(rest_port: int, container: str, engine, timeout: float = 300) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{rest_port}/v1/models/lstm_math"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                status = json.load(r)["model_version_status"]
                if any(v["state"] == "AVAILABLE" for v in status):
                    return
        except (OSError, ValueError, KeyError):
            pass
        state = engine.podman("inspect", "-f", "{{.State.Status}}", container,
                              check=False).stdout.strip()
        assert state == "running", engine.podman("logs", container, check=False).stderr[-3000:]
        assert time.monotonic() < deadline, f"no AVAILABLE version after {timeout}s"
        time.sleep(1)


def test_serve_from_the_image_answers_grpc_and_rest_and_stops_cleanly(engine,
                                                                      container_steps):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    import urllib.request

    serving = os.path.join(container_steps["base"], "serving")
    rest, grpc_port = free_ports(2)
    name = engine.name("serve")
    engine.podman("run", "-d", "--name", name, "-v", f"{serving}:/models:ro",
                  "-p", f"127.0.0.1:{rest}:8501", "-p", f"127.0.0.1:{grpc_port}:8500",
                  IMAGE, "lstm-math", "serve", "--model-base", "/models", "--host", "0.0.0.0")
    try:
        _wait_ready(rest, name, engine)
        # The official TF Serving client (tensorflow-serving-api's PredictionService stub).
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "lstm_math"
            request.model_spec.signature_name = "serving_default"
            request.inputs["equation"].CopyFrom(tf.make_tensor_proto(["12+7", "31 + x"]))
            reply = stub.Predict(request, timeout=60)
        assert reply.model_spec.version.value == 1
        assert tf.make_ndarray(reply.outputs["valid"]).tolist() == [True, False]
        assert "unknown character 'x'" in tf.make_ndarray(reply.outputs["error"])[1].decode()
        body = json.dumps({"instances": ["12+7", ""]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{rest}/v1/models/lstm_math:predict",
                                     data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            preds = json.load(r)["predictions"]
        assert [p["valid"] for p in preds] == [True, False]
        # the gRPC answer and the REST answer agree on the shared row
        assert preds[0]["result"] == tf.make_ndarray(reply.outputs["result"])[0].decode()
        # published on the loopback only
        ports = engine.podman("port", name).stdout
        assert f"127.0.0.1:{rest}" in ports and "0.0.0.0" not in ports
        t0 = time.monotonic()
        engine.podman("stop", "-t", "30", name, timeout=120)
        stop_seconds = time.monotonic() - t0
        code = engine.podman("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
        logs = engine.podman("logs", name).stderr  # the server logs to stderr
        assert code == "0", logs[-3000:]
        tail = logs.strip().splitlines()[-5:]
        assert "received SIGTERM" in logs and any(ln.rstrip().endswith("stopped")
                                                  for ln in tail), logs[-2000:]
        assert stop_seconds < 30, "podman stop had to SIGKILL the server"
    finally:
        engine.podman("rm", "-f", "-t", "0", name, check=False)


# --------------------------------------------------------------------------------------
# The Kubeflow definition on containers: KFP's local DockerRunner against podman's socket.


def test_kfp_definition_runs_in_the_image_with_kfp_docker_runner(engine, tmp_path,
                                                                 monkeypatch, capsys):
    pytest.importorskip("kfp")
    pytest.importorskip("docker", reason="KFP's DockerRunner needs the docker package")
    from kfp import local

    from lstm_math.pipeline.kfp_pipeline import build_pipeline
    from lstm_math.serving import contract

    sock = engine.service()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    # KFP mounts its root at the same path in every task container; the image's user
    # writes there.
    kfp_root = _volume(tmp_path / "kfp")
    monkeypatch.chdir(kfp_root)
    old_umask = os.umask(0)  # KFP creates task directories on the host; uid 1000 writes
    try:
        local.init(runner=local.DockerRunner(network_mode="none"), pipeline_root=kfp_root)
        root, serving = os.path.join(kfp_root, "root"), os.path.join(kfp_root, "serving")
        fn = build_pipeline(image=IMAGE, config_name="smoke", launcher="local",
                            tuner_trials=2)
        t0 = time.monotonic()
        task = fn(config="smoke", pipeline_root=root, serving_base=serving,
                  beam_args=["--direct_num_workers=1"])
        seconds = time.monotonic() - t0
    finally:
        os.umask(old_umask)
    assert contract.versions(os.path.join(serving, "lstm_math"), complete_only=True) == [1]
    for step in STEPS:
        (fp,) = os.listdir(os.path.join(root, step))
        art = os.path.join(root, step, fp, "artifact.json")
        assert json.load(open(art))["component"] == step
        assert os.stat(art).st_uid == 1000  # written inside the image, by its user
    with capsys.disabled():
        print(f"\n  KFP DockerRunner: 8 tasks of {IMAGE} via {sock}: {seconds:.1f}s "
              f"(pipeline outputs: {sorted(task.outputs) if hasattr(task, 'outputs') else '-'})")


# --------------------------------------------------------------------------------------
# Multi-worker training and distributed tuning across containers (cluster.launcher=containers).


def _host_step(engine, root, name, inputs, *overrides, log_dir=None, no_cache=False):
    cmd = [sys.executable, "-m", "lstm_math.pipeline.cli", "step", name, "--config", "smoke",
           "--pipeline-root", str(root), "--set", "cluster.launcher=containers",
           "--set", f"cluster.image={IMAGE}", "--set", f"cluster.network={engine.prefix}-net",
           "--set", f"cluster.name_prefix={engine.prefix}", "--set",
           "cluster.poll_interval_s=0.5"]
    for o in overrides:
        cmd += ["--set", o]
    for upstream, uri in inputs.items():
        cmd += ["--input", f"{upstream}={uri}"]
    if log_dir:
        cmd += ["--log-dir", str(log_dir)]
    if no_cache:
        cmd.append("--no-cache")
    env = dict(engine.env, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _logs(engine, name: str) -> str:
    done = engine.podman("logs", name, check=False)
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def multiworker(engine, container_steps):
    """A pipeline root on the host with the container run's ExampleGen and Tuner outputs."""
    outs = container_steps["outputs"]
    uris = {k: outs[k]["uri"] for k in ("ExampleGen", "DataValidation", "Tuner")}
    yield {"root": os.path.join(container_steps["base"], "root"), "uris": uris}
    engine.podman("network", "rm", "-f", f"{engine.prefix}-net", check=False)


def test_two_training_containers_killed_one_fails_the_step_then_rerun_resumes(
        engine, multiworker, tmp_path, capsys):
    inputs = {"ExampleGen": multiworker["uris"]["ExampleGen"],
              "Tuner": multiworker["uris"]["Tuner"]}
    overrides = ("cluster.train_workers=2", "trainer.epochs=3", "trainer.steps_per_epoch=150")
    proc = _host_step(engine, multiworker["root"], "Trainer", inputs, *overrides,
                      log_dir=tmp_path / "logs1")
    worker1 = None
    try:
        deadline = time.monotonic() + 900
        lines = []
        while worker1 is None:  # the step names its containers as it starts them
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "".join(lines)
            lines.append(line)
            if "started training worker 1 (container " in line:
                worker1 = line.split("(container ")[1].split()[0]
        # wait for the first epoch's checkpoint, then kill worker 1's container
        while "epoch 1/3" not in _logs(engine, worker1):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(1)
        tf_config = _logs(engine, worker1)
        engine.podman("kill", worker1)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = "".join(lines) + err
    assert proc.returncode == 4, err[-4000:]
    assert f"Trainer: training worker 1 (container {worker1}) was killed by SIGKILL" in err
    assert "stopped the other workers" in err
    # lstm-math pod made worker 1's TF_CONFIG from its index, the addresses are container
    # names on the engine's network
    assert '"task": {"type": "worker", "index": 1}' in tf_config
    assert f"{engine.prefix}-" in tf_config and "127.0.0.1" not in tf_config
    # every container of the step is gone
    left = engine.podman("ps", "-a", "--format", "{{.Names}}").stdout
    assert worker1 not in left

    rerun = _host_step(engine, multiworker["root"], "Trainer", inputs, *overrides,
                       log_dir=tmp_path / "logs2")
    out, err2 = rerun.communicate(timeout=1800)
    assert rerun.returncode == 0, err2[-4000:]
    result = json.loads(out.strip().splitlines()[-1])
    props = json.load(open(os.path.join(result["uri"], "artifact.json")))["properties"]
    assert props["strategy"] == "MultiWorkerMirroredStrategy" and props["workers"] == 2
    logs = "".join(open(os.path.join(tmp_path / "logs2", f)).read()
                   for f in os.listdir(tmp_path / "logs2"))
    # the kill came after epoch 1's checkpoint (maybe after epoch 2's too)
    assert re.search(r"Trainer: resumed from \S+ after epoch [12] ", logs), logs[-3000:]
    assert "MultiWorkerMirroredStrategy (2 workers from TF_CONFIG)" in logs
    with capsys.disabled():
        print(f"\n  2 training containers: killed {worker1} -> exit 4 naming it; rerun resumed "
              f"after epoch 1 and finished ({props.get('epochs')} epochs)")


def test_tuner_chief_and_two_worker_containers(engine, multiworker, tmp_path):
    inputs = {"ExampleGen": multiworker["uris"]["ExampleGen"],
              "DataValidation": multiworker["uris"]["DataValidation"]}
    proc = _host_step(engine, multiworker["root"], "Tuner", inputs,
                      "cluster.tuner_workers=2", "tuner.max_trials=2",
                      log_dir=tmp_path / "logs", no_cache=True)
    out, err = proc.communicate(timeout=1800)
    assert proc.returncode == 0, err[-4000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert not result["cached"]
    props = json.load(open(os.path.join(result["uri"], "artifact.json")))["properties"]
    assert props["workers"] == 2 and props["role"] == "chief"
    assert len(props["trials"]) == 2
    assert {t["tuner_id"] for t in props["trials"]} <= {"worker-0", "worker-1"}
    worker_logs = [f for f in os.listdir(tmp_path / "logs") if "tuner-worker" in f]
    assert len(worker_logs) == 2
    for f in worker_logs:
        assert "chief says done" in open(tmp_path / "logs" / f).read()
