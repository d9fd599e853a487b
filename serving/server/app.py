"""The server: one :class:`ModelManager` behind the REST front end (aiohttp) and the gRPC one
(``grpc.aio``), each on its own event loop in a background thread (measured: one loop
shared by both front ends answered fewer gRPC requests per second). The gRPC loop is uvloop
where installed (see :func:`resolve_event_loop`); REST stays on asyncio's loop. The model
itself runs in the batcher's threads, never on an event loop.

Shutdown closes both listeners first (new connections are refused at once), then lets the
in-flight requests finish within the grace period, closes the remaining connections and
unloads the model.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
import threading
import time
from typing import Optional

import grpc
from aiohttp import web

from lstm_math.serving.contract import DEFAULT_MODEL_NAME
from lstm_math.serving.metrics import BATCH_SIZE_BUCKETS, Metrics
from lstm_math.serving.server.grpc_api import MessageDeadline, add_services
from lstm_math.serving.server.models import DEFAULT_POLL_SECONDS, ModelManager
from lstm_math.serving.server.connections import LimitedTCPSite
from lstm_math.serving.server.rest_api import Limits, RestApi
# the defaults live in a module without TensorFlow (the command line reads them); re-exported
from lstm_math.serving.server.defaults import (  # noqa: F401
    DEFAULT_BATCH_TIMEOUT_MICROS, DEFAULT_BODY_MIN_RATE, DEFAULT_BODY_RATE_GRACE_SECONDS,
    DEFAULT_BODY_TIMEOUT_SECONDS, DEFAULT_GRPC_KEEPALIVE_SECONDS,
    DEFAULT_GRPC_KEEPALIVE_TIMEOUT_SECONDS, DEFAULT_GRPC_MAX_CONCURRENT_RPCS,
    DEFAULT_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS, DEFAULT_GRPC_MAX_CONNECTION_AGE_SECONDS,
    DEFAULT_GRPC_MAX_CONNECTION_IDLE_SECONDS, DEFAULT_GRPC_MAX_STREAMS_PER_CONNECTION,
    DEFAULT_GRPC_MESSAGE_TIMEOUT_SECONDS, DEFAULT_GRPC_PORT, DEFAULT_HEADER_TIMEOUT_SECONDS,
    DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_ENQUEUED_BATCHES,
    DEFAULT_MAX_PENDING_BODY_BYTES, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_REQUEST_ROWS,
    DEFAULT_REST_PORT, DEFAULT_WRITE_TIMEOUT_SECONDS, EVENT_LOOPS, GRPC_BACKSTOP_FACTOR)

logger = logging.getLogger("lstm_math.serving")


class BindError(OSError):
    """A front end could not listen: ``front_end`` is ``"rest"`` or ``"grpc"``."""

    def __init__(self, front_end: str, message: str, errno: Optional[int] = None):
        super().__init__(message)
        self.front_end = front_end
        self.bind_errno = errno  # the socket's error number, where known


def resolve_event_loop(kind: str = "auto") -> str:
    """``kind`` as the loop that will run: ``uvloop`` (libuv) or ``asyncio`` (the standard
    library's); ``auto`` is uvloop where it is installed (a dependency except on Windows).

    The gRPC front end runs on it (``ModelServer(grpc_event_loop=...)``): measured with the
    serving benchmark, uvloop answered about 8-12% more single-equation gRPC requests per
    second at 32 clients (interleaved runs), with less server CPU per request. REST stays
    on asyncio's loop: uvloop gave aiohttp no measurable gain, and under the hostile header
    flood (32 connections sending 6 MB of headers each) its transient buffers peaked at
    about 170 MB against 65 MB."""
    if kind not in EVENT_LOOPS:
        raise ValueError(f"grpc_event_loop: expected one of {', '.join(EVENT_LOOPS)}, "
                         f"got {kind!r}")
    if kind == "asyncio":
        return kind
    if importlib.util.find_spec("uvloop") is not None:
        return "uvloop"
    if kind == "uvloop":
        raise ValueError("grpc_event_loop: 'uvloop' is not installed (pip install uvloop, "
                         "or use 'asyncio')")
    return "asyncio"


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A new loop of a resolved ``kind`` (``uvloop`` or ``asyncio``)."""
    if kind == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class _LoopThread:
    """An event loop (see :func:`new_event_loop`) running in a daemon thread of its own."""

    def __init__(self, name: str, kind: str):
        self.kind = kind
        self.loop = new_event_loop(kind)
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), name=name,
                                       daemon=True)
        self.thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        self.loop.run_forever()

    def submit(self, coro, timeout: Optional[float]):
        """Run ``coro`` on the loop; block until it is done (or ``timeout``)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.loop.is_running():
            self.loop.close()


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
                 grpc_max_concurrent_rpcs: int = DEFAULT_GRPC_MAX_CONCURRENT_RPCS,
                 metrics: Optional[Metrics] = None, model_warmup: bool = True,
                 max_request_rows: Optional[int] = DEFAULT_MAX_REQUEST_ROWS,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 grpc_event_loop: str = "auto",
                 header_timeout: float = DEFAULT_HEADER_TIMEOUT_SECONDS,
                 body_timeout: float = DEFAULT_BODY_TIMEOUT_SECONDS,
                 body_min_rate: float = DEFAULT_BODY_MIN_RATE,
                 body_rate_grace: float = DEFAULT_BODY_RATE_GRACE_SECONDS,
                 write_timeout: float = DEFAULT_WRITE_TIMEOUT_SECONDS,
                 max_pending_body_bytes: int = DEFAULT_MAX_PENDING_BODY_BYTES,
                 grpc_max_streams_per_connection: int = DEFAULT_GRPC_MAX_STREAMS_PER_CONNECTION,
                 grpc_message_timeout: float = DEFAULT_GRPC_MESSAGE_TIMEOUT_SECONDS,
                 grpc_max_connection_idle: float = DEFAULT_GRPC_MAX_CONNECTION_IDLE_SECONDS,
                 grpc_max_connection_age: float = DEFAULT_GRPC_MAX_CONNECTION_AGE_SECONDS,
                 grpc_max_connection_age_grace: float =
                 DEFAULT_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS,
                 grpc_keepalive: float = DEFAULT_GRPC_KEEPALIVE_SECONDS,
                 grpc_keepalive_timeout: float = DEFAULT_GRPC_KEEPALIVE_TIMEOUT_SECONDS):
        self.grpc_event_loop = resolve_event_loop(grpc_event_loop)
        self.limits = Limits(header_timeout=float(header_timeout),
                             body_timeout=float(body_timeout),
                             body_min_rate=float(body_min_rate),
                             body_rate_grace=float(body_rate_grace),
                             write_timeout=float(write_timeout),
                             max_pending_body_bytes=int(max_pending_body_bytes))
        self.grpc_max_streams_per_connection = int(grpc_max_streams_per_connection)
        self.grpc_message_timeout = float(grpc_message_timeout)
        self.grpc_max_connection_idle = float(grpc_max_connection_idle)
        self.grpc_max_connection_age = float(grpc_max_connection_age)
        self.grpc_max_connection_age_grace = float(grpc_max_connection_age_grace)
        self.grpc_keepalive = float(grpc_keepalive)
        self.grpc_keepalive_timeout = float(grpc_keepalive_timeout)
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
        self._grpc_max_rpcs = int(grpc_max_concurrent_rpcs)
        self.rest_port: Optional[int] = None
        self.grpc_port: Optional[int] = None
        self._rest_loop: Optional[_LoopThread] = None
        self._grpc_loop: Optional[_LoopThread] = None
        self._runner: Optional[web.BaseRunner] = None
        self._site: Optional[LimitedTCPSite] = None
        self._grpc: Optional[grpc.aio.Server] = None
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
        m.describe("evicted_connections_total", "REST connections without progress (idle, "
                                                "stalled in their headers or body, or not "
                                                "reading their response) closed to make "
                                                "room for a new one.")
        m.describe("timed_out_requests_total", "Requests closed at a deadline, by stage: "
                                               "headers, body, write (REST), "
                                               "grpc_message.")
        m.describe("refused_bodies_total", "REST request bodies refused (503) because the "
                                           "bodies being read at once held too many bytes.")
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

    def start(self) -> "ModelServer":
        if self._started:
            return self
        self.manager.start()
        try:
            if self._grpc_port_req is not None:
                self._grpc_loop = _LoopThread("serving-grpc", self.grpc_event_loop)
                self._grpc_loop.submit(self._astart_grpc(), 60)
            if self._rest_port_req is not None:
                self._rest_loop = _LoopThread("serving-rest", "asyncio")
                self._rest_loop.submit(self._astart_rest(), 60)
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

    def grpc_options(self) -> list:
        """The grpc core channel arguments of the gRPC server (0 leaves grpc's default)."""
        options = [("grpc.max_receive_message_length", self.max_request_bytes),
                   ("grpc.max_send_message_length", 64 * 1024 * 1024),
                   ("grpc.so_reuseport", 0)]
        ms = lambda seconds: int(round(seconds * 1000))  # noqa: E731
        for key, value in (
                ("grpc.max_concurrent_streams", self.grpc_max_streams_per_connection),
                ("grpc.max_connection_idle_ms", ms(self.grpc_max_connection_idle)),
                ("grpc.max_connection_age_ms", ms(self.grpc_max_connection_age)),
                ("grpc.max_connection_age_grace_ms", ms(self.grpc_max_connection_age_grace)),
                ("grpc.keepalive_time_ms", ms(self.grpc_keepalive)),
                ("grpc.keepalive_timeout_ms", ms(self.grpc_keepalive_timeout))):
            if value > 0:
                options.append((key, value))
        return options

    async def _astart_grpc(self) -> None:
        # grpc's own limit counts calls from their headers (waiting for a message included)
        # and answers without a metric: a backstop for memory only; the limit proper is
        # counted by MessageDeadline once a call's message has arrived
        self._grpc = grpc.aio.server(
            options=self.grpc_options(),
            maximum_concurrent_rpcs=GRPC_BACKSTOP_FACTOR * self._grpc_max_rpcs)
        add_services(self._grpc, self, MessageDeadline(self, self.grpc_message_timeout,
                                                       self._grpc_max_rpcs))
        address = self._grpc_address(self.host, self._grpc_port_req)
        try:
            port = self._grpc.add_insecure_port(address)
        except RuntimeError as exc:  # grpcio raises when the port cannot be bound
            raise BindError("grpc", f"could not bind gRPC to {address}: {exc}") from exc
        if not port:
            raise BindError("grpc", f"could not bind gRPC to {address}")
        self.grpc_port = port
        await self._grpc.start()
        logger.info("gRPC listening on %s (%s event loop)", self._grpc_address(self.host, port),
                    self._grpc_loop.kind)

    async def _astart_rest(self) -> None:
        self._runner = web.ServerRunner(RestApi(self, self.limits).make_server(),
                                        shutdown_timeout=5.0)
        await self._runner.setup()
        self._site = LimitedTCPSite(
            self._runner, self.host, self._rest_port_req, self.max_connections,
            on_refused=lambda: self.metrics.inc("refused_connections_total"),
            on_evicted=lambda: self.metrics.inc("evicted_connections_total"),
            header_timeout=self.limits.header_timeout,
            on_header_timeout=lambda: self.metrics.inc("timed_out_requests_total",
                                                       stage="headers"),
            write_timeout=self.limits.write_timeout,
            on_write_timeout=lambda: self.metrics.inc("timed_out_requests_total",
                                                      stage="write"),
            backlog=128, reuse_address=True)
        try:
            await self._site.start()
        except OSError as exc:
            raise BindError("rest", f"could not bind REST to {self.host}:"
                                    f"{self._rest_port_req}: {exc.strerror or exc}",
                            exc.errno) from exc
        self.rest_port = self._site.port
        logger.info("REST listening on http://%s:%d (%s event loop)",
                    f"[{self.host}]" if ":" in self.host else self.host, self.rest_port,
                    self._rest_loop.kind)

    async def _astop_rest(self, grace: float) -> None:
        # 1. stop accepting: new connections are refused at once
        if self._site is not None:
            await self._site.stop()
        # 2. drain: in-flight requests (REST and gRPC) finish, bounded by the grace period
        deadline = time.monotonic() + grace
        while self._inflight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        # 3. close what is left
        if self._runner is not None:
            await self._runner.cleanup()

    async def _astop_grpc(self, grace: float) -> None:
        # closes the listener now; RPCs in flight get ``grace``, then are cancelled
        if self._grpc is not None:
            await self._grpc.stop(grace)

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish (bounded by ``grace``), unload."""
        if not self._started or self._stopped.is_set():
            return
        self.draining = True
        logger.info("stopping: draining in-flight requests (grace %.1fs)", grace)
        # both front ends stop accepting and drain at the same time
        pending = []
        for loop_thread, coro in ((self._grpc_loop, self._astop_grpc),
                                  (self._rest_loop, self._astop_rest)):
            if loop_thread is not None:
                pending.append(asyncio.run_coroutine_threadsafe(coro(grace), loop_thread.loop))
        for future in pending:
            try:
                future.result(grace + 30)
            except Exception:  # noqa: BLE001 - still unload and stop the loops
                logger.exception("stopping a front end failed")
        for loop_thread in (self._grpc_loop, self._rest_loop):
            if loop_thread is not None:
                loop_thread.close()
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
