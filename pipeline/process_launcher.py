"""The distributed Trainer and Tuner steps' workers as local processes on 127.0.0.1
(``cluster.launcher=processes``, the local rehearsal of a cluster): what they start, and how
they are watched. What a distributed step does (which workers, restarts, exit codes) is
described in ``pipeline/steps.py``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from lstm_math.pipeline.step_errors import StepTimeout, WorkerFailed

log = logging.getLogger("lstm_math.step")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _how(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _tail(path: str, lines: int = 8) -> str:
    try:
        with open(path, errors="replace") as f:
            text = f.read().splitlines()
    except OSError:
        return ""
    return "\n".join("    " + ln for ln in text[-lines:])


class _Proc:
    def __init__(self, name: str, args: list, env: dict, log_path: str, port: int | None,
                 restarts: int = 0):
        self.name, self.args, self.env, self.log_path = name, args, env, log_path
        self.port, self.restarts_left = port, restarts
        self.popen: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "a") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "lstm_math.pipeline.cli", *self.args], env=self.env,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        log.info("started %s (pid %d%s, log %s)", self.name, self.popen.pid,
                 f", 127.0.0.1:{self.port}" if self.port else "", self.log_path)

    def poll(self):
        return self.popen.poll() if self.popen else None

    def stop(self, grace: float = 5.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=30)
        except ProcessLookupError:
            pass

    def last_json(self) -> dict:
        """The last JSON object the process printed (its result line)."""
        with open(self.log_path, errors="replace") as f:
            text = f.read()
        start = text.rfind("\n{")
        for candidate in (text[start + 1:] if start >= 0 else "",
                          *reversed(text.splitlines())):
            try:
                value = json.loads(candidate)
                if isinstance(value, dict):
                    return value
            except ValueError:
                continue
        return {}


class ProcessLauncher:
    """Workers as local processes on 127.0.0.1 (the local rehearsal of a cluster)."""

    def __init__(self, config, config_args: list, log_dir: str | None = None):
        self.config = config
        self.c = config.cluster
        self.config_args = list(config_args)
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="lstm-math-step-")
        os.makedirs(self.log_dir, exist_ok=True)
        # workers run in this step's working directory (relative paths mean the same
        # place to every process), with the installed package
        self.env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        for var in ("TF_CONFIG", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT",
                    "KERASTUNER_TUNER_ID"):
            self.env.pop(var, None)

    # -- Trainer ------------------------------------------------------------------------
    def train(self, ctx) -> dict:
        import tensorflow as tf

        n = self.c.train_workers
        examples = ctx.inputs["ExampleGen"].properties["examples_dir"]
        hparams_path = os.path.join(ctx.output_dir, "input_hparams.json")
        with tf.io.gfile.GFile(hparams_path, "w") as f:
            f.write(json.dumps(ctx.inputs["Tuner"].properties["best"], indent=2))
        ports = [free_port() for _ in range(n)]
        cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
        from lstm_math.pipeline.k8s import tf_config_for

        procs = []
        for i in range(n):
            args = ["train", *self.config_args, "--examples", examples, "--output",
                    ctx.output_dir, "--hparams", hparams_path]
            env = dict(self.env, TF_CONFIG=tf_config_for(cluster, i))
            procs.append(_Proc(f"training worker {i}", args, env,
                               os.path.join(self.log_dir, f"train-worker-{i}.log"), ports[i]))
        log.info("Trainer: MultiWorkerMirroredStrategy over %d worker processes %s", n,
                 cluster["worker"])
        self._supervise_all(procs, what="Trainer")
        result = procs[0].last_json()
        return {**result, "model_dir": ctx.output_dir, "strategy": "MultiWorkerMirroredStrategy",
                "workers": n, "worker_addresses": cluster["worker"]}

    def _supervise_all(self, procs: list, what: str) -> None:
        """Starts every process; done when all exit 0; the first failure stops the rest."""
        started = time.monotonic()
        for p in procs:
            p.start()
        waiting_for_port = {p.name for p in procs if p.port}
        try:
            while True:
                codes = [p.poll() for p in procs]
                for p, code in zip(procs, codes):
                    if code not in (None, 0):
                        raise WorkerFailed(
                            f"{what}: {p.name} (pid {p.popen.pid}) {_how(code)}; stopped the "
                            f"other workers. Last lines of {p.log_path}:\n{_tail(p.log_path)}")
                if all(code == 0 for code in codes):
                    return
                elapsed = time.monotonic() - started
                for p in procs:
                    if p.name in waiting_for_port and p.poll() is None and _listening(p.port):
                        waiting_for_port.discard(p.name)
                if waiting_for_port and elapsed > self.c.start_timeout_s:
                    name = sorted(waiting_for_port)[0]
                    raise StepTimeout(f"{what}: {name} did not listen on its port within "
                                      f"cluster.start_timeout_s={self.c.start_timeout_s:.0f}s")
                if elapsed > self.c.step_timeout_s:
                    raise StepTimeout(f"{what}: not finished after cluster.step_timeout_s="
                                      f"{self.c.step_timeout_s:.0f}s; stopped every worker")
                time.sleep(self.c.poll_interval_s)
        finally:
            for p in procs:
                p.stop()

    # -- Tuner --------------------------------------------------------------------------
    def tune(self, ctx) -> dict:
        from lstm_math.components.tuner import read_results

        n = self.c.tuner_workers
        examples = ctx.inputs["ExampleGen"].properties["examples_dir"]
        io = ["--examples", examples, "--output", ctx.output_dir]
        port = free_port()
        chief = _Proc("tuner chief", ["tune", *self.config_args, "--role", "chief", "--oracle",
                                      f"127.0.0.1:{port}", *io], self.env,
                      os.path.join(self.log_dir, "tuner-chief.log"), port)
        workers = [_Proc(f"tuner worker-{i}", [
            "tune", *self.config_args, "--role", "worker", "--oracle", f"127.0.0.1:{port}",
            "--tuner-id", f"worker-{i}", "--chief-timeout", str(self.c.worker_timeout_s), *io],
            self.env, os.path.join(self.log_dir, f"tuner-worker-{i}.log"), None,
            restarts=self.c.worker_restarts) for i in range(n)]
        log.info("Tuner: keras-tuner chief on 127.0.0.1:%d + %d workers", port, n)
        started = time.monotonic()
        chief.start()
        try:
            while not _listening(port):
                if chief.poll() is not None:
                    if chief.poll() == 0:  # every trial already ran: nothing to serve
                        break
                    raise WorkerFailed(f"Tuner: the tuner chief {_how(chief.poll())} before "
                                       f"serving. Last lines of {chief.log_path}:\n"
                                       f"{_tail(chief.log_path)}")
                if time.monotonic() - started > self.c.start_timeout_s:
                    raise StepTimeout("Tuner: the tuner chief did not listen within "
                                      f"cluster.start_timeout_s={self.c.start_timeout_s:.0f}s")
                time.sleep(min(0.5, self.c.poll_interval_s))
            for w in workers:
                w.start()
            chief_done_at = None
            while True:
                code = chief.poll()
                if code not in (None, 0):
                    raise WorkerFailed(f"Tuner: the tuner chief (pid {chief.popen.pid}) "
                                       f"{_how(code)}; stopped the workers. Last lines of "
                                       f"{chief.log_path}:\n{_tail(chief.log_path)}")
                for w in workers:
                    wc = w.poll()
                    if wc in (None, 0) or (chief_done_at is not None):
                        continue
                    if w.restarts_left > 0:
                        w.restarts_left -= 1
                        log.warning("Tuner: %s (pid %d) %s; restarting it with the same id "
                                    "(the chief hands it its unfinished trial back; %d restart(s) "
                                    "left)", w.name, w.popen.pid, _how(wc), w.restarts_left)
                        w.start()
                    else:
                        raise WorkerFailed(
                            f"Tuner: {w.name} (pid {w.popen.pid}) {_how(wc)} and has no "
                            f"restarts left (cluster.worker_restarts="
                            f"{self.c.worker_restarts}); stopped the chief and the other "
                            f"workers. Last lines of {w.log_path}:\n{_tail(w.log_path)}")
                if code == 0:
                    chief_done_at = chief_done_at or time.monotonic()
                    if all(w.poll() is not None for w in workers) or (
                            time.monotonic() - chief_done_at > min(30.0,
                                                                   self.c.worker_timeout_s)):
                        break
                if time.monotonic() - started > self.c.step_timeout_s:
                    raise StepTimeout(f"Tuner: not finished after cluster.step_timeout_s="
                                      f"{self.c.step_timeout_s:.0f}s; stopped chief and workers")
                time.sleep(self.c.poll_interval_s)
        finally:
            for p in (*workers, chief):
                p.stop()
        best, trials = read_results(ctx.output_dir)
        result = chief.last_json()
        return {**{k: v for k, v in result.items() if k not in ("best", "trials")},
                "best": best, "trials": trials, "tuned": True, "role": "chief",
                "workers": n}
