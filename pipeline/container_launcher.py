"""Launches the distributed Trainer / Tuner of a step as containers of the project's image.

Used by ``lstm-math step Trainer|Tuner`` with ``cluster.launcher=containers``: the step
(on the host, or wherever the container engine's CLI works) starts its workers with
``cluster.engine`` (``podman`` or ``docker``) on the user-defined network
``cluster.network`` (created if missing; containers find each other by name through the
engine's DNS, not over the host's loopback), watches them, and writes the step's artifact
like any other step. The same commands as on Kubernetes run in the containers:

* Trainer: ``cluster.train_workers`` containers ``<prefix>-<key>-train-<i>``, each
  ``lstm-math pod -- train ...`` with ``JOB_COMPLETION_INDEX=<i>`` and every worker's
  address in ``LSTM_MATH_TF_CLUSTER``, so ``lstm-math pod`` makes its ``TF_CONFIG`` exactly
  as in an Indexed Job. A worker that exits non-zero (killed, out of memory, crashed) fails
  the step naming it, with its exit code and the last lines of its log; the other workers
  are stopped. Rerunning the step resumes from the last epoch's checkpoint.
* Tuner: a chief container ``<prefix>-<key>-tuner-chief`` (the oracle on
  ``cluster.oracle_port``) and ``cluster.tuner_workers`` worker containers
  (``KERASTUNER_TUNER_ID=worker-<i>`` from ``lstm-math pod``). A dead worker is started again
  under the same id (the chief hands it its trial back) up to ``cluster.worker_restarts``
  times; then, or when the chief dies, the step fails naming it.

A local pipeline root is mounted at the same absolute path in every container (so every
path the step passes means the same inside); the step's output directory is made writable
for the image's user (uid 1000), who need not be the user running the step. A URL root (``gs://``...) is mounted nowhere. Every wait is bounded by
``cluster.start_timeout_s`` / ``cluster.step_timeout_s``; containers are removed when the
step ends, their logs kept in the step's ``--log-dir``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import tempfile
import time

from lstm_math.pipeline import k8s
from lstm_math.pipeline.step_errors import (StepError, StepUsageError, WorkerFailed,
                                            check_deadlines)

log = logging.getLogger("lstm_math.step")


def _how(code: int) -> str:
    if code > 128:
        try:
            return f"was killed by {signal.Signals(code - 128).name} (exit code {code})"
        except ValueError:
            pass
    return f"exited with status {code}"


def _last_json(text: str) -> dict:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return {}


def network_resolves_names(inspect_output: str, name: str) -> bool:
    """Whether ``<engine> network inspect`` describes a network whose containers resolve each
    other's names: podman says so in ``dns_enabled``; Docker's user-defined networks always
    do, its default ``bridge`` (and ``host``, ``none``) do not. Output that cannot be read is
    given the benefit of the doubt."""
    try:
        info = json.loads(inspect_output)
    except ValueError:
        return True
    info = info[0] if isinstance(info, list) and info else info
    if not isinstance(info, dict):
        return True
    if "dns_enabled" in info:  # podman
        return bool(info["dns_enabled"])
    return info.get("Name", name) not in ("bridge", "host", "none")


class Engine:
    """The few container-engine CLI calls the launcher makes (podman or docker)."""

    def __init__(self, cli: str):
        self.cli = cli

    def _run(self, *args, check: bool = True, timeout: float = 120) -> str:
        try:
            done = subprocess.run([self.cli, *args], capture_output=True, text=True,
                                  timeout=timeout)
        except FileNotFoundError:
            raise StepError(f"cluster.engine={self.cli}: no such command on PATH") from None
        if check and done.returncode != 0:
            raise StepError(f"{self.cli} {args[0]} failed: {done.stderr.strip()[-500:]}")
        return done.stdout

    def _inspect_network(self, name: str) -> str | None:
        try:
            done = subprocess.run([self.cli, "network", "inspect", name],
                                  capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            raise StepError(f"cluster.engine={self.cli}: no such command on PATH") from None
        return done.stdout if done.returncode == 0 else None

    def ensure_network(self, name: str) -> None:
        """The network the workers share, created if missing. Its containers must find each
        other by name (TF_CONFIG and the tuner's oracle address are container names): a
        network whose engine gives it no DNS fails here, in one line, not as workers that
        wait for each other until the step's timeout."""
        found, created = self._inspect_network(name), False
        if found is None:
            self._run("network", "create", name)
            found, created = self._inspect_network(name) or "", True
        if network_resolves_names(found, name):
            if created:
                log.info("created container network %s", name)
            return
        if created:  # nothing left behind by a step that cannot run
            self._run("network", "rm", name, check=False)
        if os.path.basename(self.cli) != "podman":
            hint = (f"name a user-defined network ({self.cli} network create NAME): the "
                    "default bridge has no DNS")
        else:
            hint = ("give podman its DNS plugin (with the CNI backend Debian's "
                    "golang-github-containernetworking-plugin-dnsname, with netavark "
                    "aardvark-dns)")
            if not created:
                hint += (f", then remove the network (podman network rm {name}) so that the "
                         "step creates it again with DNS")
        raise StepUsageError(f"cluster.network={name}: the {self.cli} network does not "
                             "resolve container names, so the workers cannot reach each "
                             f"other; {hint}")

    def start(self, name: str, image: str, args: list, env: dict, network: str,
              mounts: list) -> None:
        self.remove(name)  # a container left by a previous, failed launch
        cmd = ["run", "-d", "--name", name, "--hostname", name, "--network", network]
        for host_path in mounts:
            cmd += ["-v", f"{host_path}:{host_path}"]
        for key, value in env.items():
            cmd += ["-e", f"{key}={value}"]
        self._run(*cmd, image, "lstm-math", *args, timeout=300)

    def states(self, names: list) -> dict:
        """name -> (status, exit code); a container that is gone is ('missing', -1)."""
        out = {n: ("missing", -1) for n in names}
        text = self._run("inspect", "--format", "{{.Name}} {{.State.Status}} "
                         "{{.State.ExitCode}}", *names, check=False)
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3:
                out[parts[0].lstrip("/")] = (parts[1], int(parts[2]))
        return out

    def logs(self, name: str, tail: int | None = None) -> str:
        args = ["logs", *(["--tail", str(tail)] if tail else []), name]
        done = subprocess.run([self.cli, *args], capture_output=True, text=True,
                              errors="replace", timeout=120)
        return done.stdout + done.stderr

    def remove(self, name: str) -> None:
        subprocess.run([self.cli, "rm", "-f", "-t", "5", name], capture_output=True,
                       timeout=120)


class _Worker:
    def __init__(self, name: str, role: str, args: list, env: dict, restarts: int = 0):
        self.name, self.role, self.args, self.env = name, role, args, env
        self.restarts_left = restarts


class ContainerLauncher:
    def __init__(self, config, config_args: list, log_dir: str | None = None, engine=None,
                 sleep=time.sleep, clock=time.monotonic):
        self.config = config
        self.c = config.cluster
        self.config_args = list(config_args)
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="lstm-math-step-")
        os.makedirs(self.log_dir, exist_ok=True)
        self.engine = engine or Engine(self.c.engine)
        self.sleep, self.clock = sleep, clock
        root = config.runtime.pipeline_root
        self.mounts = [] if "://" in root else [os.path.abspath(root)]

    @staticmethod
    def _path(p: str) -> str:
        return p if "://" in p else os.path.abspath(p)

    def _name(self, ctx, what: str) -> str:
        key = os.path.basename(ctx.output_dir.rstrip("/"))[:10]
        return f"{self.c.name_prefix}-{key}-{what}"

    def _writable(self, directory: str) -> None:
        """The containers run as the image's user, not necessarily the step's: they write
        the step's output directory (checkpoints, the model, the tuner's trials)."""
        if "://" not in directory:
            os.makedirs(directory, exist_ok=True)
            os.chmod(directory, 0o777)

    def _start(self, w: _Worker) -> None:
        self.engine.start(w.name, self.c.image, w.args, w.env, self.c.network, self.mounts)
        log.info("started %s (container %s on network %s)", w.role, w.name, self.c.network)

    def _save_log(self, w: _Worker) -> str:
        text = self.engine.logs(w.name)
        with open(os.path.join(self.log_dir, f"{w.name}.log"), "a") as f:
            f.write(text)
        return text

    def _failure(self, what: str, w: _Worker, code: int, rest: str) -> WorkerFailed:
        tail = "\n".join("    " + ln for ln in self.engine.logs(w.name, 8).splitlines())
        return WorkerFailed(f"{what}: {w.role} (container {w.name}) {_how(code)}; {rest}. "
                            f"Last lines of its log:\n{tail}")

    def _base_env(self) -> dict:
        return {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}

    def _check_time(self, what: str, workers: list, states: dict, started: float) -> None:
        late = next((w for w in workers
                     if states[w.name][0] in ("created", "configured", "initialized")), None)
        check_deadlines(what, self.clock() - started, self.c,
                        late and f"{late.role} (container {late.name}) not running",
                        stopped="every container")

    # -- Trainer ------------------------------------------------------------------------
    def train(self, ctx) -> dict:
        import tensorflow as tf

        n = self.c.train_workers
        self.engine.ensure_network(self.c.network)  # first: a network without DNS fails fast
        examples = self._path(ctx.inputs["ExampleGen"].properties["examples_dir"])
        output = self._path(ctx.output_dir)
        self._writable(output)
        hparams = os.path.join(output, "input_hparams.json")
        with tf.io.gfile.GFile(hparams, "w") as f:
            f.write(json.dumps(ctx.inputs["Tuner"].properties["best"], indent=2))
        names = [self._name(ctx, f"train-{i}") for i in range(n)]
        addresses = [f"{name}:{self.c.train_port}" for name in names]
        args = ["pod", "--", "train", *self.config_args, "--examples", examples, "--output",
                output, "--hparams", hparams]
        workers = [_Worker(names[i], f"training worker {i}", args,
                           {**self._base_env(), k8s.CLUSTER_ENV: json.dumps(
                               {"worker": addresses}), k8s.INDEX_ENV: str(i)})
                   for i in range(n)]
        log.info("Trainer: MultiWorkerMirroredStrategy over %d containers of %s on network "
                 "%s: %s", n, self.c.image, self.c.network, addresses)
        started = self.clock()
        try:
            for w in workers:
                self._start(w)
            while True:
                states = self.engine.states(names)
                for w in workers:
                    status, code = states[w.name]
                    if status == "missing":
                        raise WorkerFailed(f"Trainer: {w.role} (container {w.name}) "
                                           "disappeared; stopped the other workers")
                    if status in ("exited", "stopped", "dead") and code != 0:
                        raise self._failure("Trainer", w, code, "stopped the other workers")
                if all(states[n_][0] == "exited" for n_ in names):
                    break
                self._check_time("Trainer", workers, states, started)
                self.sleep(self.c.poll_interval_s)
            result = _last_json(self._save_log(workers[0]))
            for w in workers[1:]:
                self._save_log(w)
        except BaseException:
            for w in workers:
                self._save_log(w)
            raise
        finally:
            for w in workers:
                self.engine.remove(w.name)
        return {**result, "model_dir": ctx.output_dir,
                "strategy": "MultiWorkerMirroredStrategy", "workers": n,
                "worker_addresses": addresses, "containers": names}

    # -- Tuner --------------------------------------------------------------------------
    def tune(self, ctx) -> dict:
        from lstm_math.components.tuner import read_results

        n = self.c.tuner_workers
        self.engine.ensure_network(self.c.network)
        io = ["--examples", self._path(ctx.inputs["ExampleGen"].properties["examples_dir"]),
              "--output", self._path(ctx.output_dir)]
        self._writable(self._path(ctx.output_dir))
        port = self.c.oracle_port
        chief = _Worker(self._name(ctx, "tuner-chief"), "the tuner chief",
                        ["tune", *self.config_args, "--role", "chief", "--oracle",
                         f"0.0.0.0:{port}", *io], self._base_env())
        workers = [_Worker(self._name(ctx, f"tuner-worker-{i}"), f"tuner worker-{i}", [
            "pod", "--", "tune", *self.config_args, "--role", "worker", "--oracle",
            f"{chief.name}:{port}", "--chief-timeout", str(int(self.c.worker_timeout_s)), *io],
            {**self._base_env(), k8s.TUNER_WORKER_ENV: "1", k8s.INDEX_ENV: str(i)},
            restarts=self.c.worker_restarts) for i in range(n)]
        everyone = [chief, *workers]
        log.info("Tuner: keras-tuner chief %s:%d + %d worker containers on network %s",
                 chief.name, port, n, self.c.network)
        started = self.clock()
        chief_done_at = None
        try:
            for w in everyone:  # workers wait for the chief (up to worker_timeout_s)
                self._start(w)
            while True:
                states = self.engine.states([w.name for w in everyone])
                status, code = states[chief.name]
                if status == "missing" or (status in ("exited", "stopped", "dead")
                                           and code != 0):
                    raise self._failure("Tuner", chief, code, "stopped the workers")
                if status == "exited" and chief_done_at is None:
                    chief_done_at = self.clock()
                for w in workers:
                    wstatus, wcode = states[w.name]
                    if chief_done_at is not None or wstatus not in ("exited", "stopped",
                                                                    "dead") or wcode == 0:
                        continue
                    if w.restarts_left <= 0:
                        raise self._failure("Tuner", w, wcode,
                                            f"no restarts left (cluster.worker_restarts="
                                            f"{self.c.worker_restarts}); stopped the chief "
                                            "and the other workers")
                    w.restarts_left -= 1
                    log.warning("Tuner: %s (container %s) %s; starting it again with the "
                                "same id (the chief hands it its unfinished trial back; %d "
                                "restart(s) left)", w.role, w.name, _how(wcode),
                                w.restarts_left)
                    self._save_log(w)
                    self._start(w)
                if chief_done_at is not None and (
                        all(states[w.name][0] == "exited" for w in workers)
                        or self.clock() - chief_done_at > min(30.0, self.c.worker_timeout_s)):
                    break
                self._check_time("Tuner", everyone, states, started)
                self.sleep(self.c.poll_interval_s)
            result = _last_json(self._save_log(chief))
            for w in workers:
                self._save_log(w)
        except BaseException:
            for w in everyone:
                self._save_log(w)
            raise
        finally:
            for w in everyone:
                self.engine.remove(w.name)
        best, trials = read_results(ctx.output_dir)
        return {**{k: v for k, v in result.items() if k not in ("best", "trials")},
                "best": best, "trials": trials, "tuned": True, "role": "chief",
                "workers": n, "containers": [w.name for w in everyone]}
