"""The server: one :class:`ModelManager` behind the REST front end (aiohttp, on an asyncio
event loop in a background thread) and the gRPC one (grpcio's threaded server). The model
itself runs in the batcher's threads, never on the event loop.

Shutdown closes both listeners first (new connections are refused at once), then lets the
in-flight requests finish within the grace period, closes the remaining connections and
unloads the model.
"""

from __future__ import annotations

import asyncio
import gc
import concurrent.futures
import logging
import threading
import time
from typing import Optional

import grpc
from aiohttp import web

from serving.contract import DEFAULT_MODEL_NAME, LARGEST_BUCKET
from serving.metrics import BATCH_SIZE_BUCKETS, Metrics
from serving.server.grpc_api import add_services
from serving.server.models import DEFAULT_POLL_SECONDS, ModelManager
from serving.server.rest_api import LimitedTCPSite, RestApi

logger = logging.getLogger("lstm_math.serving")

DEFAULT_REST_PORT = 8501
DEFAULT_GRPC_PORT = 8500
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_BATCH_SIZE = LARGEST_BUCKET  # the largest XLA bucket of the exported decoder
DEFAULT_BATCH_TIMEOUT_MICROS = 1000
# Most rows in one request: 16 full batches. Larger requests are refused (400 /
# INVALID_ARGUMENT) instead of holding the model for seconds.
DEFAULT_MAX_REQUEST_ROWS = 16 * DEFAULT_MAX_BATCH_SIZE
DEFAULT_MAX_ENQUEUED_BATCHES = 100
DEFAULT_MAX_CONNECTIONS = 1024  # REST connections open at once
DEFAULT_GRPC_WORKERS = 64  # RPCs handled at once; more wait in grpcio's queue


class ModelServer:
    """REST + gRPC front ends over one :class:`ModelManager`.

    ``rest_port`` / ``grpc_port``: 0 picks a free port (read ``.rest_port`` / ``.grpc_port``
    after ``start()``); ``None`` disables that front end. Usable as a context manager.
    """

    def __init__(self, model_base: str, model_name: str = DEFAULT_MODEL_NAME,
                 host: str = "127.0.0.1", rest_port: Optional[int] = DEFAULT_REST_PORT,
                 grpc_port: Optional[int] = DEFAULT_GRPC_PORT, enable_batching: bool = True,
                 max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
                 batch_timeout_micros: int = DEFAULT_BATCH_TIMEOUT_MICROS,
                 num_batch_threads: int = 0,
                 max_enqueued_batches: int = DEFAULT_MAX_ENQUEUED_BATCHES,
                 adaptive_batch_timeout: bool = True, poll_seconds: float = DEFAULT_POLL_SECONDS,
                 num_versions: int = 2, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 grpc_max_workers: int = DEFAULT_GRPC_WORKERS,
                 metrics: Optional[Metrics] = None, model_warmup: bool = True,
                 max_request_rows: Optional[int] = DEFAULT_MAX_REQUEST_ROWS,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS):
        self.host = host
        self.model_name = model_name
        self.max_request_bytes = int(max_request_bytes)
        self.max_request_rows = int(max_request_rows) if max_request_rows else None
        self.max_connections = int(max_connections)
        self.metrics = metrics or Metrics()
        self._describe_metrics()
        batching = None
        if enable_batching:
            queue_rows = max(1, int(max_enqueued_batches)) * int(max_batch_size)
            batching = dict(max_batch_size=max_batch_size,
                            batch_timeout_micros=batch_timeout_micros,
                            num_batch_threads=num_batch_threads or 1,
                            # a request within the row limit always fits an empty queue
                            max_enqueued_rows=max(queue_rows, self.max_request_rows or 0),
                            adaptive=adaptive_batch_timeout)
        self.batching = batching
        self.manager = ModelManager(model_base, model_name, num_versions=num_versions,
                                    poll_seconds=poll_seconds, batching=batching,
                                    metrics=self.metrics, model_warmup=model_warmup)
        self._rest_port_req = rest_port
        self._grpc_port_req = grpc_port
        self._grpc_max_workers = int(grpc_max_workers)
        self.rest_port: Optional[int] = None
        self.grpc_port: Optional[int] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_thread: Optional[threading.Thread] = None
        self._runner: Optional[web.BaseRunner] = None
        self._site: Optional[LimitedTCPSite] = None
        self._grpc: Optional[grpc.Server] = None
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self.draining = False
        self._started = False
        self._stopped = threading.Event()

    def _describe_metrics(self) -> None:
        m = self.metrics
        m.describe("requests_total", "Requests by api (rest|grpc), endpoint and status code.")
        m.describe("request_latency_seconds", "Request latency in seconds.")
        m.describe("predict_rows_total", "Equations answered.")
        m.describe("batches_total", "Batches run through the signature.")
        m.describe("batched_rows_total", "Rows in all batches.")
        m.describe("batch_size", "Rows per batch run through the signature.",
                   buckets=BATCH_SIZE_BUCKETS)
        m.describe("batch_run_seconds", "Time to run one batch through the signature.")
        m.describe("dropped_rows_total", "Rows dropped before they ran: their client went "
                                         "away or their deadline passed.")
        m.describe("refused_connections_total", "REST connections refused: too many open, "
                                                "all busy.")
        m.describe("evicted_connections_total", "Idle REST connections closed to make room "
                                                "for a new one.")
        m.describe("model_load_total", "Version loads by status.")
        m.describe("model_versions_loaded", "Versions loaded.")
        m.describe("model_latest_version", "The version served by default.")

    # in-flight accounting for graceful shutdown (called on the event loop)
    def _enter(self) -> None:
        with self._inflight_lock:
            self._inflight += 1

    def _leave(self) -> None:
        with self._inflight_lock:
            self._inflight -= 1

    @staticmethod
    def _grpc_address(host: str, port: int) -> str:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _run_loop(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        ready.set()
        self._loop.run_forever()

    def _submit(self, coro, timeout: Optional[float]):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> "ModelServer":
        if self._started:
            return self
        self.manager.start()
        try:
            self._start_grpc()
        except BaseException:
            self._started = True
            self.stop(grace=0)
            raise
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._loop_thread = threading.Thread(target=self._run_loop, args=(ready,),
                                             name="serving-io", daemon=True)
        self._loop_thread.start()
        ready.wait()
        try:
            self._submit(self._astart(), 60)
        except BaseException:
            self._started = True
            self.stop(grace=0)
            raise
        self._started = True
        # The loaded model and TensorFlow are millions of long-lived objects: keep the
        # cyclic garbage collector from walking them on every full collection (pauses of
        # 100 ms and more under load).
        gc.freeze()
        return self

    def _start_grpc(self) -> None:
        if self._grpc_port_req is None:
            return
        options = [("grpc.max_receive_message_length", self.max_request_bytes),
                   ("grpc.max_send_message_length", 64 * 1024 * 1024),
                   ("grpc.so_reuseport", 0)]
        self._grpc = grpc.server(
            concurrent.futures.ThreadPoolExecutor(max_workers=self._grpc_max_workers,
                                                  thread_name_prefix="grpc"),
            options=options)
        add_services(self._grpc, self)
        port = self._grpc.add_insecure_port(self._grpc_address(self.host, self._grpc_port_req))
        if not port:
            raise OSError(f"could not bind gRPC to {self.host}:{self._grpc_port_req}")
        self.grpc_port = port
        self._grpc.start()
        logger.info("gRPC listening on %s", self._grpc_address(self.host, port))

    async def _astart(self) -> None:
        if self._rest_port_req is not None:
            self._runner = web.ServerRunner(RestApi(self).make_server(), shutdown_timeout=5.0)
            await self._runner.setup()
            self._site = LimitedTCPSite(
                self._runner, self.host, self._rest_port_req, self.max_connections,
                on_refused=lambda: self.metrics.inc("refused_connections_total"),
                on_evicted=lambda: self.metrics.inc("evicted_connections_total"),
                backlog=128, reuse_address=True)
            await self._site.start()
            self.rest_port = self._site.port
            logger.info("REST listening on http://%s:%d",
                        f"[{self.host}]" if ":" in self.host else self.host, self.rest_port)

    async def _astop(self, grace: float) -> None:
        # 1. stop accepting: close both listeners, so new connections are refused at once
        if self._site is not None:
            await self._site.stop()
        grpc_stopped = None
        if self._grpc is not None:  # closes its listener now; in-flight RPCs get ``grace``
            grpc_stopped = self._grpc.stop(grace)
        # 2. drain: in-flight requests finish, bounded by the grace period
        deadline = time.monotonic() + grace
        while self._inflight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        # 3. close what is left
        if self._runner is not None:
            await self._runner.cleanup()
        if grpc_stopped is not None:
            await asyncio.get_running_loop().run_in_executor(
                None, grpc_stopped.wait, max(0.0, deadline - time.monotonic()) + 1.0)

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish (bounded by ``grace``), unload."""
        if not self._started or self._stopped.is_set():
            return
        self.draining = True
        logger.info("stopping: draining in-flight requests (grace %.1fs)", grace)
        if self._loop is not None:
            try:
                self._submit(self._astop(grace), grace + 30)
            except Exception:  # noqa: BLE001 - still unload and stop the loop
                logger.exception("stopping the front ends failed")
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join(10)
            if not self._loop.is_running():
                self._loop.close()
        elif self._grpc is not None:
            self._grpc.stop(grace).wait(grace + 1.0)
        self.manager.stop()
        self._stopped.set()
        logger.info("stopped")

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until ``stop()`` has completed (from another thread)."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
