"""Beam's portability framework on this machine: ``lstm-math generate`` as a cluster runs it.

This is how a cluster runs the job, all on localhost: a Beam job service in one process
(``apache_beam.runners.portability.local_job_service_main``), an external SDK worker pool
in another (``apache_beam.runners.worker.worker_pool_main``, with this Python first on
PATH so that the workers import the installed package), and the pipeline submitted with

    --runner=PortableRunner --job_endpoint=localhost:P
    --environment_type=EXTERNAL --environment_config=localhost:Q

``portable_services()`` is a context manager that starts both, yields those Beam
arguments and stops both (``lstm-math rehearse``, ``scripts/portable_local.py generate``,
the tests and the benchmark use it). Both services bind 127.0.0.1 only (Beam's own mains
bind every interface; ``python -m lstm_math.pipeline.portable_local serve job|pool ...``,
how ``portable_services`` starts them, runs them with loopback-only binding). Part of the
installed package: nothing here reads the source checkout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import runpy
import signal
import socket
import subprocess
import sys
import tempfile
import time

log = logging.getLogger("lstm_math.portable_local")

SERVICES = {
    "job": "apache_beam.runners.portability.local_job_service_main",
    "pool": "apache_beam.runners.worker.worker_pool_main",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, log_path: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            with open(log_path, errors="replace") as f:
                tail = f.read()[-3000:]
            raise RuntimeError(f"service exited with {proc.returncode} before listening on "
                               f"port {port}:\n{tail}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s "
                       f"(log: {log_path})")


def _stop(proc: subprocess.Popen) -> None:
    """Stops a service and the SDK workers it started (its own process group)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # workers left behind in the group, if any


@contextlib.contextmanager
def portable_services(job_port: int = 0, pool_port: int = 0, log_dir: str | None = None,
                      timeout: float = 120):
    """Starts a job service and an external worker pool; yields the Beam arguments. Both run
    in this process's working directory, as the SDK workers they start do: a relative
    output path means the same directory to the job and to the workers."""
    job_port = job_port or free_port()
    pool_port = pool_port or free_port()
    log_dir = log_dir or tempfile.mkdtemp(prefix="lstm-math-portable-")
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    procs = []
    try:
        for kind, port in (("pool", pool_port), ("job", job_port)):
            flag = "--service_port" if kind == "pool" else "--port"
            log_path = os.path.join(log_dir, f"{kind}.log")
            with open(log_path, "w") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "lstm_math.pipeline.portable_local", "serve", kind,
                     f"{flag}={port}"],
                    stdout=out, stderr=subprocess.STDOUT, env=env,
                    start_new_session=True)
            procs.append(proc)
            _wait_for_port(port, proc, log_path, timeout)
            log.info("portable: %s service on 127.0.0.1:%d (pid %d, log %s)", kind, port,
                     proc.pid, log_path)
        yield [
            "--runner=PortableRunner",
            f"--job_endpoint=localhost:{job_port}",
            "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{pool_port}",
        ]
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _serve(kind: str, argv: list[str]) -> None:
    """Runs Beam's own service main, binding 127.0.0.1 instead of every interface."""
    import grpc._server

    original = grpc._server._Server.add_insecure_port

    def loopback(self, address):
        for wildcard in ("[::]:", "0.0.0.0:"):
            if address.startswith(wildcard):
                address = "127.0.0.1:" + address[len(wildcard):]
        return original(self, address)

    grpc._server._Server.add_insecure_port = loopback
    sys.argv = [SERVICES[kind]] + argv
    runpy.run_module(SERVICES[kind], run_name="__main__", alter_sys=True)


def main(argv: list[str]) -> int:
    """``serve job|pool ARGS``: one of the two services (started by ``portable_services``)."""
    if argv[:1] == ["serve"] and len(argv) >= 2 and argv[1] in SERVICES:
        _serve(argv[1], argv[2:])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
