"""TF Serving's REST API on aiohttp's low-level HTTP server.

``POST /v1/models/NAME[/versions/N|/labels/L]:predict`` (row ``instances`` and columnar
``inputs``), ``GET /v1/models/NAME[/versions/N]`` (status), ``GET .../metadata``, and
Prometheus metrics at ``GET /monitoring/prometheus/metrics``.

HTTP/1.1 parsing is aiohttp's (llhttp, strict): a malformed or ambiguous ``Content-Length``
is a 400 and closes the connection; a body that a handler does not read is discarded by
aiohttp before the next request on the connection (or the connection is closed), so a
body cannot be taken for the next request. Header lines and the number of headers are
bounded, and so is the number of open connections (:class:`LimitedTCPSite`): at the cap a
new connection evicts the longest-idle one, and gets a 503 only when all are busy. A handler whose client disconnects is cancelled
(``handler_cancellation``), which drops the request's rows that did not run yet.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import TYPE_CHECKING, Any, Optional, Tuple

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from lstm_math.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from lstm_math.serving.server.codecs import format_predict_json, parse_predict_json, signature_defs_json, \
    status_json
from lstm_math.serving.server.errors import FailedPrecondition, InvalidArgument, NotFound, ServingError
from lstm_math.serving.server.models import DEFAULT_SIGNATURE

if TYPE_CHECKING:  # pragma: no cover
    from lstm_math.serving.server.app import ModelServer

logger = logging.getLogger("lstm_math.serving")

MODEL_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?::(?P<verb>[A-Za-z]+)|/(?P<meta>metadata))?/?$")
METRICS_PATH = "/monitoring/prometheus/metrics"
JSON = "application/json"
# HTTP/1.1 parser limits: one header line, and the number of header lines
MAX_LINE_SIZE = 8190
MAX_FIELD_SIZE = 8190
MAX_HEADERS = 64
KEEPALIVE_SECONDS = 120.0


class _ParseErrorsAtDebug(logging.Filter):
    """aiohttp logs a malformed request (bad Content-Length, header too long, ...) with a
    traceback; it already answered 400 and closed the connection, so one debug line is
    enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            if http_logger.isEnabledFor(logging.DEBUG):
                http_logger.debug("refused a malformed request: %s",
                                  str(exc).strip().splitlines()[:2])
            return False
        return True


http_logger = logging.getLogger("lstm_math.serving.http")
http_logger.addFilter(_ParseErrorsAtDebug())


class HttpError(Exception):
    def __init__(self, status: int, message: str, close: bool = False):
        super().__init__(message)
        self.status, self.message, self.close = status, message, close


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _error(status: int, message: str, headers=None) -> web.Response:
    return web.Response(status=status, body=json.dumps({"error": message}).encode("utf-8"),
                        content_type=JSON, headers=headers)


class RestApi:
    """The request handler; ``owner`` is the :class:`ModelServer`."""

    def __init__(self, owner: "ModelServer"):
        self.owner = owner

    def make_server(self) -> web.Server:
        return web.Server(self.handle, handler_cancellation=True, access_log=None,
                          logger=http_logger,
                          max_line_size=MAX_LINE_SIZE, max_field_size=MAX_FIELD_SIZE,
                          max_headers=MAX_HEADERS, keepalive_timeout=KEEPALIVE_SECONDS,
                          lingering_time=2.0)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        owner = self.owner
        owner._enter()
        start = time.perf_counter()
        endpoint, status = "unknown", 500
        response: Optional[web.Response] = None
        try:
            endpoint, response = await self._route(request)
        except ServingError as exc:
            response = _error(exc.http_status, exc.message)
        except HttpError as exc:
            response = _error(exc.status, exc.message)
            if exc.close:
                response.force_close()
        except asyncio.CancelledError:  # the client went away: nobody reads an answer
            status = 499
            raise
        except Exception as exc:  # noqa: BLE001 - report, never kill the connection
            logger.exception("REST %s %s failed", request.method, request.path)
            response = _error(500, f"Internal error: {type(exc).__name__}: {exc}")
        finally:
            if response is not None:
                status = response.status
            owner.metrics.inc("requests_total", api="rest", endpoint=endpoint,
                              code=str(status))
            owner.metrics.observe("request_latency_seconds", time.perf_counter() - start,
                                  api="rest", endpoint=endpoint)
            owner._leave()
        if owner.draining:
            response.force_close()
        return response

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        limit = self.owner.max_request_bytes
        length = request.content_length
        if length is not None and length > limit:
            # Do not read (or wait for) the oversized body: answer and drop the connection.
            raise HttpError(413, f"Request body of {length} bytes exceeds the limit of "
                                 f"{limit} bytes", close=True)
        if length is None and "chunked" not in request.headers.get("Transfer-Encoding", ""):
            return b""
        chunks, size = [], 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise HttpError(413, f"Request body exceeds the limit of {limit} bytes",
                                close=True)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _route(self, request: web.BaseRequest) -> Tuple[str, web.Response]:
        owner = self.owner
        method = request.method
        path = request.path
        if path == METRICS_PATH:
            if method not in ("GET", "HEAD"):
                return self._method_not_allowed(request, "metrics", "GET")
            return "metrics", web.Response(body=owner.metrics.render().encode("utf-8"),
                                           headers={"Content-Type": METRICS_CONTENT_TYPE})
        m = MODEL_PATH.match(path)
        if m is None:
            return "unknown", _error(404, f"Malformed request: {method} {path}")
        name, version_text, label = m.group("name"), m.group("version"), m.group("label")
        verb, meta = m.group("verb"), m.group("meta")
        version = None
        if version_text is not None:
            if not version_text.isascii() or not version_text.isdigit() \
                    or len(version_text) > 19 or int(version_text) >= 2 ** 63:
                return "unknown", _error(404, f"Malformed request: {method} {path}")
            version = int(version_text)
        if label is not None:
            raise NotFound(f"Unrecognized servable version label: {label}")
        if verb is not None:
            if verb not in ("predict", "classify", "regress"):
                return "unknown", _error(404, f"Malformed request: {method} {path}")
            if method != "POST":
                return self._method_not_allowed(request, verb, "POST")
            if verb != "predict":
                raise InvalidArgument(f"'{verb}' is not supported by this model: its "
                                      f"'{DEFAULT_SIGNATURE}' signature is a predict signature")
            return "predict", await self._predict(request, name, version)
        endpoint = "metadata" if meta else "status"
        if method not in ("GET", "HEAD"):
            return self._method_not_allowed(request, endpoint, "GET")
        if meta:
            with owner.manager.acquire(name, version) as servable:
                payload = {
                    "model_spec": {"name": name, "signature_name": "",
                                   "version": str(servable.version)},
                    "metadata": {"signature_def": signature_defs_json(servable.signature_defs)},
                }
            return endpoint, web.Response(body=_json_bytes(payload), content_type=JSON)
        payload = status_json(owner.manager.status(name, version))
        return endpoint, web.Response(body=_json_bytes(payload), content_type=JSON)

    @staticmethod
    def _method_not_allowed(request, endpoint: str, allowed: str) -> Tuple[str, web.Response]:
        return endpoint, _error(405, f"Method {request.method} not allowed for {request.path}; "
                                     f"use {allowed}", headers={"Allow": allowed})

    async def _predict(self, request: web.BaseRequest, name: str, version: Optional[int]
                       ) -> web.Response:
        owner = self.owner
        with owner.manager.acquire(name, version) as servable:
            raw = await self._read_body(request)
            with servable.incoming() as incoming:
                try:
                    body = json.loads(raw)
                except (ValueError, UnicodeDecodeError) as exc:
                    raise InvalidArgument(f"JSON Parse error: {exc}") from exc
                except RecursionError:
                    raise InvalidArgument("JSON Parse error: nested too deeply") from None
                rows, row_format, signature_name = parse_predict_json(
                    body, servable.input_key, owner.max_request_rows)
                if signature_name not in (None, "", DEFAULT_SIGNATURE):
                    raise FailedPrecondition(f"Serving signature name: \"{signature_name}\" "
                                             f"not found in signature def")
                outputs = await servable.predict_async(
                    rows, incoming if servable.batcher is not None else None)
            payload = format_predict_json(outputs, row_format, servable.output_keys)
        owner.metrics.inc("predict_rows_total", len(rows), api="rest", model=name)
        return web.Response(body=_json_bytes(payload), content_type=JSON)


class _Refuse(asyncio.Protocol):
    """A connection over the limit: a 503, then close (no request is read)."""

    BODY = b'{"error": "too many connections; retry later"}'
    RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                b"Connection: close\r\nRetry-After: 1\r\nContent-Length: "
                + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)

    def connection_made(self, transport) -> None:
        transport.write(self.RESPONSE)
        transport.close()


def _idle_since(handler) -> Optional[float]:
    """When an open connection last finished a request (or connected), if it is idle now:
    no request being handled or queued on it; None when it is busy."""
    if getattr(handler, "_request_in_progress", True) or getattr(handler, "_messages", None):
        return None
    return getattr(handler, "_next_keepalive_close_time", 0.0)


class LimitedTCPSite(web.TCPSite):
    """``TCPSite`` with a cap on open connections.

    At the cap, a new connection evicts the connection that has been idle longest (no request
    in progress: kept alive, or still sending its headers); only when every connection is
    busy is the new one answered 503 and closed. So idle or slow connections cannot lock
    clients out, and the number of connections (and their buffers) stays bounded.
    """

    def __init__(self, runner: web.BaseRunner, host: str, port: int, max_connections: int,
                 on_refused=None, on_evicted=None, **kwargs):
        super().__init__(runner, host, port, **kwargs)
        self._max_connections = max(1, int(max_connections))
        self._on_refused = on_refused
        self._on_evicted = on_evicted

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        limit, on_refused, on_evicted = (self._max_connections, self._on_refused,
                                         self._on_evicted)
        closing: set = set()

        def factory():
            open_now = [h for h in server._connections if h not in closing]
            closing.intersection_update(server._connections)
            if len(open_now) >= limit:
                idle = [(since, id(h), h) for h in open_now
                        if (since := _idle_since(h)) is not None]
                if not idle:
                    if on_refused is not None:
                        on_refused()
                    return _Refuse()
                victim = min(idle)[2]
                closing.add(victim)
                victim.force_close()
                if on_evicted is not None:
                    on_evicted()
            return server()

        self._server = await loop.create_server(factory, self._host, self._port,
                                                backlog=self._backlog,
                                                reuse_address=self._reuse_address)
        self._bound_port = self._server.sockets[0].getsockname()[1]

    @property
    def port(self) -> int:
        return self._bound_port
