"""``cluster.launcher=containers``: what the launcher starts (each worker's command,
environment, network and mounts, TF_CONFIG as ``lstm-math pod`` makes it) and how it watches
(a dead worker named with its exit code, restarts of tuner workers, cleanup, timeouts),
against a fake container engine. The real thing runs in tests/test_containers.py (slow)."""

import json
import os

import pytest

from lstm_math.pipeline import k8s
from lstm_math.config import ConfigError, load_config
from lstm_math.pipeline.container_launcher import ContainerLauncher
from lstm_math.pipeline.step_errors import StepTimeout, StepUsageError, WorkerFailed

ARGS = ["--config", "smoke"]


class FakeEngine:
    """Scripted states: ``script[name]`` is a list of (status, code) returned in turn (the
    last one repeats)."""

    def __init__(self, script):
        self.script = {k: list(v) for k, v in script.items()}
        self.started, self.removed, self.networks = [], [], []

    def ensure_network(self, name):
        self.networks.append(name)

    def start(self, name, image, args, env, network, mounts):
        self.started.append({"name": name, "image": image, "args": args, "env": env,
                             "network": network, "mounts": mounts})

    def states(self, names):
        out = {}
        for n in names:
            seq = self.script.get(n, [("running", 0)])
            out[n] = seq.pop(0) if len(seq) > 1 else seq[0]
        return out

    def logs(self, name, tail=None):
        return f"log of {name}\nTraceback ...\nMemoryError\n"

    def remove(self, name):
        self.removed.append(name)


class Ctx:
    def __init__(self, root, step):
        from lstm_math.pipeline.pipeline import Artifact

        self.output_dir = os.path.join(root, step, "fp0123456789abc")
        os.makedirs(self.output_dir)
        examples = os.path.join(root, "ExampleGen", "e")
        self.inputs = {"ExampleGen": Artifact("ExampleGen", examples, "e",
                                              {"examples_dir": examples}),
                       "Tuner": Artifact("Tuner", "/u", "u", {"best": {"encoder_units": 8}})}


def _launcher(tmp_path, engine, *overrides):
    clock = iter(range(0, 10 ** 6, 10))
    config = load_config("smoke", ["cluster.launcher=containers", "cluster.train_workers=2",
                                   f"runtime.pipeline_root={tmp_path}",
                                   "cluster.image=localhost/lstm-math:t",
                                   "cluster.network=lm-net", "cluster.start_timeout_s=60",
                                   *overrides])
    return ContainerLauncher(config, ARGS, log_dir=str(tmp_path / "logs"), engine=engine,
                             sleep=lambda s: None, clock=lambda: next(clock))


def test_training_workers_get_their_tf_config_from_lstm_math_pod(tmp_path):
    prefix = "lstm-math-fp01234567"
    engine = FakeEngine({f"{prefix}-train-{i}": [("running", 0), ("exited", 0)]
                         for i in range(2)})
    result_line = json.dumps({"epochs": 1})
    engine.logs = lambda name, tail=None: f"noise\n{result_line}\n"
    with open(os.path.join(tmp_path, "history.json"), "w") as f:
        f.write("[]")
    ctx = Ctx(str(tmp_path), "Trainer")
    out = _launcher(tmp_path, engine).train(ctx)
    assert engine.networks == ["lm-net"]
    names = [s["name"] for s in engine.started]
    assert names == [f"{prefix}-train-0", f"{prefix}-train-1"]
    for i, s in enumerate(engine.started):
        assert s["image"] == "localhost/lstm-math:t" and s["network"] == "lm-net"
        assert s["mounts"] == [str(tmp_path)]  # the pipeline root, at the same path
        assert s["args"][:3] == ["pod", "--", "train"]
        assert s["args"][s["args"].index("--output") + 1] == ctx.output_dir
        tf_config = json.loads(k8s.pod_environment(s["env"])["TF_CONFIG"])
        assert tf_config == {"cluster": {"worker": [f"{prefix}-train-0:12345",
                                                    f"{prefix}-train-1:12345"]},
                             "task": {"type": "worker", "index": i}}
    assert oct(os.stat(ctx.output_dir).st_mode & 0o777) == "0o777"  # the image's user writes
    assert out["workers"] == 2 and out["epochs"] == 1 and out["containers"] == names
    assert sorted(engine.removed) == sorted(names)
    assert sorted(os.listdir(tmp_path / "logs")) == [f"{n}.log" for n in names]


def test_a_killed_training_container_fails_the_step_naming_it(tmp_path):
    prefix = "lstm-math-fp01234567"
    engine = FakeEngine({f"{prefix}-train-0": [("running", 0)],
                         f"{prefix}-train-1": [("running", 0), ("exited", 137)]})
    with pytest.raises(WorkerFailed) as e:
        _launcher(tmp_path, engine).train(Ctx(str(tmp_path), "Trainer"))
    assert str(e.value).startswith(
        f"Trainer: training worker 1 (container {prefix}-train-1) was killed by SIGKILL "
        "(exit code 137); stopped the other workers. Last lines of its log:")
    assert "MemoryError" in str(e.value)
    assert e.value.exit_code == 4
    assert sorted(engine.removed) == [f"{prefix}-train-0", f"{prefix}-train-1"]


def test_a_container_that_never_runs_times_out(tmp_path):
    prefix = "lstm-math-fp01234567"
    engine = FakeEngine({f"{prefix}-train-1": [("created", 0)]})
    with pytest.raises(StepTimeout, match=r"training worker 1 \(container .*-train-1\) not "
                                          r"running after cluster.start_timeout_s=60s"):
        _launcher(tmp_path, engine).train(Ctx(str(tmp_path), "Trainer"))
    assert len(engine.removed) == 2


def test_tuner_worker_restarted_with_its_id_then_fails_beyond_its_restarts(tmp_path):
    prefix = "lstm-math-fp01234567"
    engine = FakeEngine({f"{prefix}-tuner-worker-1": [("running", 0), ("exited", 1),
                                                      ("running", 0), ("exited", 1)]})
    with pytest.raises(WorkerFailed) as e:
        _launcher(tmp_path, engine, "cluster.tuner_workers=2",
                  "cluster.worker_restarts=1").tune(Ctx(str(tmp_path), "Tuner"))
    assert str(e.value).startswith(
        f"Tuner: tuner worker-1 (container {prefix}-tuner-worker-1) exited with status 1; no "
        "restarts left (cluster.worker_restarts=1)")
    starts = [s["name"] for s in engine.started]
    assert starts.count(f"{prefix}-tuner-worker-1") == 2  # started again once, same name
    chief = engine.started[0]
    assert chief["name"] == f"{prefix}-tuner-chief"
    assert chief["args"][:5] == ["tune", *ARGS, "--role", "chief"]
    worker = engine.started[2]
    assert worker["args"][worker["args"].index("--oracle") + 1] == f"{prefix}-tuner-chief:8000"
    assert k8s.pod_environment(worker["env"]) == {"KERASTUNER_TUNER_ID": "worker-1"}
    assert set(engine.removed) == {f"{prefix}-tuner-chief", f"{prefix}-tuner-worker-0",
                                   f"{prefix}-tuner-worker-1"}


def test_a_dead_tuner_chief_fails_the_step(tmp_path):
    prefix = "lstm-math-fp01234567"
    engine = FakeEngine({f"{prefix}-tuner-chief": [("running", 0), ("exited", 139)]})
    with pytest.raises(WorkerFailed, match=r"Tuner: the tuner chief \(container .*-tuner-chief\)"
                                           r" was killed by SIGSEGV \(exit code 139\); stopped "
                                           r"the workers"):
        _launcher(tmp_path, engine, "cluster.tuner_workers=1").tune(Ctx(str(tmp_path),
                                                                        "Tuner"))


@pytest.mark.parametrize("override, field", [("cluster.engine=rkt", "cluster.engine"),
                                             ("cluster.network=My_Net", "cluster.network"),
                                             ("cluster.launcher=docker", "cluster.launcher")])
def test_bad_container_settings_name_the_field(override, field):
    with pytest.raises(ConfigError, match=field):
        load_config("smoke", [override])


# --------------------------------------------------------------------------------------
# The shared network must resolve container names: the real Engine against a scripted CLI.

FAKE_CLI = r'''#!{python}
import json, os, sys
state = os.path.join(os.path.dirname(os.path.abspath(__file__)), "networks.json")
nets = json.load(open(state)) if os.path.exists(state) else {{}}
with open(state + ".calls", "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\n")
args = sys.argv[1:]
if args[:2] == ["network", "inspect"]:
    if args[2] not in nets:
        sys.exit(125)
    print(json.dumps([nets[args[2]]]))
elif args[:2] == ["network", "create"]:
    nets[args[2]] = {dns}
elif args[:2] == ["network", "rm"]:
    nets.pop(args[2], None)
else:
    sys.exit(99)  # the launcher starts nothing before its network is right
json.dump(nets, open(state, "w"))
'''


def _fake_cli(tmp_path, name="podman", new_network=None, existing=None):
    """A ``podman``/``docker`` that knows networks only: ``new_network`` is what ``network
    create`` makes, ``existing`` the networks already there."""
    directory = tmp_path / "bin"
    directory.mkdir()
    cli = directory / name
    import sys
    cli.write_text(FAKE_CLI.format(python=sys.executable, dns=repr(new_network)))
    cli.chmod(0o755)
    if existing is not None:
        (directory / "networks.json").write_text(json.dumps(existing))
    return cli, lambda: (directory / "networks.json.calls").read_text().splitlines()


PODMAN_NO_DNS = {"name": "lm-net", "driver": "bridge", "dns_enabled": False}
PODMAN_DNS = {"name": "lm-net", "driver": "bridge", "dns_enabled": True}


def test_a_podman_network_without_dns_fails_the_step_before_any_container_and_is_removed(
        tmp_path):
    from lstm_math.pipeline.container_launcher import Engine

    cli, calls = _fake_cli(tmp_path, new_network=PODMAN_NO_DNS)
    launcher = _launcher(tmp_path, Engine(str(cli)))
    with pytest.raises(StepUsageError) as e:
        launcher.train(Ctx(str(tmp_path), "Trainer"))
    message = str(e.value)
    assert message.startswith("cluster.network=lm-net: the ") and "\n" not in message
    assert "does not resolve container names" in message
    assert "golang-github-containernetworking-plugin-dnsname" in message
    assert e.value.exit_code == 2
    # created, found without DNS, removed again; nothing started
    assert calls() == ["network inspect lm-net", "network create lm-net",
                       "network inspect lm-net", "network rm lm-net"]


def test_an_existing_podman_network_without_dns_is_named_and_left_alone(tmp_path):
    from lstm_math.pipeline.container_launcher import Engine

    cli, calls = _fake_cli(tmp_path, existing={"lm-net": PODMAN_NO_DNS})
    with pytest.raises(StepUsageError, match=r"cluster.network=lm-net: .* then remove the "
                                             r"network \(podman network rm lm-net\)"):
        _launcher(tmp_path, Engine(str(cli)), "cluster.tuner_workers=1").tune(
            Ctx(str(tmp_path), "Tuner"))
    assert calls() == ["network inspect lm-net"]


def test_a_network_with_dns_is_created_once_and_used(tmp_path):
    from lstm_math.pipeline.container_launcher import Engine

    cli, calls = _fake_cli(tmp_path, new_network=PODMAN_DNS)
    engine = Engine(str(cli))
    engine.ensure_network("lm-net")
    engine.ensure_network("lm-net")
    assert calls() == ["network inspect lm-net", "network create lm-net",
                       "network inspect lm-net", "network inspect lm-net"]


@pytest.mark.parametrize("inspect, resolves", [
    ([PODMAN_DNS], True), ([PODMAN_NO_DNS], False),
    ([{"Name": "lm-net", "Driver": "bridge"}], True),  # Docker: user-defined networks have DNS
    ([{"Name": "bridge", "Driver": "bridge"}], False),  # its default bridge does not
    ([{"Name": "host", "Driver": "host"}], False),
])
def test_which_networks_resolve_container_names(inspect, resolves):
    from lstm_math.pipeline.container_launcher import network_resolves_names

    assert network_resolves_names(json.dumps(inspect), "lm-net") is resolves
