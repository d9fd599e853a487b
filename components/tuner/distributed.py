"""keras-tuner's distributed mode: one chief serves the oracle over gRPC, workers ask it for
trials and write into the same (shared) directory; a worker that loses the chief exits."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time

from lstm_math.components.tuner import kt_internals

log = logging.getLogger(__name__)

LOST_CHIEF_EXIT = 3
ROLES = ("local", "chief", "worker")


def role_from_env() -> str:
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "local"
    return "chief" if "chief" in os.environ.get("KERASTUNER_TUNER_ID", "") else "worker"


def configure_role(role: str | None, oracle: str | None, tuner_id: str | None) -> str:
    """Sets (or, for a local search, clears) the KERASTUNER_* variables for this process's
    role; returns the role. Raises ValueError with the reason when they cannot be set."""
    role = role or role_from_env()
    if role == "local":
        for var in ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
            os.environ.pop(var, None)
        return role
    address = oracle or (f"{os.environ.get('KERASTUNER_ORACLE_IP', '')}:"
                         f"{os.environ.get('KERASTUNER_ORACLE_PORT', '')}")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--role {role} needs the chief's address: --oracle HOST:PORT (or "
                         "KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT)")
    tuner_id = "chief" if role == "chief" else (
        tuner_id or os.environ.get("KERASTUNER_TUNER_ID") or f"worker-{socket.gethostname()}")
    if role == "worker" and "chief" in tuner_id:
        raise ValueError(f"--tuner-id {tuner_id!r}: a worker's id must not contain 'chief'")
    os.environ.update(KERASTUNER_ORACLE_IP=host, KERASTUNER_ORACLE_PORT=port,
                      KERASTUNER_TUNER_ID=tuner_id)
    return role


def serve_oracle(tuner, address: str) -> None:
    """keras-tuner's chief loop (oracle_chief.start_server), polling every 0.5 s, not 20 s."""
    from concurrent import futures

    import grpc

    oracle = tuner.oracle
    tuner.save()
    servicer = kt_internals.oracle_servicer(oracle)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    kt_internals.oracle_service()[1].add_OracleServicer_to_server(servicer, server)
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
        while not kt_internals.chief_may_exit(servicer, oracle):
            time.sleep(0.5)
            if time.time() - last_note > 60:
                last_note = time.time()
                done = sum(t.status == "COMPLETED" for t in oracle.trials.values())
                log.info("Tuner chief: %d trials completed; running: %s; workers: %s", done,
                         kt_internals.running_trials(oracle),
                         kt_internals.registered_tuners(oracle))
    finally:
        server.stop(grace=2)


class ChiefWatch:
    """Worker side: exits the search when the chief is unreachable for ``timeout`` seconds.

    keras-tuner's client waits for the chief with ``wait_for_ready`` and a one-hour deadline,
    and only talks to it between trials; this thread asks the chief every few seconds.
    """

    def __init__(self, address: str, timeout: float):
        import grpc

        self.address, self.timeout = address, timeout
        self.lost = False
        self._stop = threading.Event()
        self._channel = grpc.insecure_channel(address)
        messages, service = kt_internals.oracle_service()
        self._stub = service.OracleStub(self._channel)
        self._request = messages.GetSpaceRequest()
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
