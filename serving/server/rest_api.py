"""TF Serving's REST API on aiohttp's low-level HTTP server.

``POST /v1/models/NAME[/versions/N|/labels/L]:predict`` (row ``instances`` and columnar
``inputs``), ``GET /v1/models/NAME[/versions/N]`` (status), ``GET .../metadata``, and
Prometheus metrics at ``GET /monitoring/prometheus/metrics``.

HTTP/1.1 parsing is aiohttp's (llhttp, strict): a malformed or ambiguous ``Content-Length``
is a 400 and closes the connection; a body that a handler does not read is discarded by
aiohttp before the next request on the connection (or the connection is closed), so a
body cannot be taken for the next request. Header lines and the number of headers are
bounded, and so is the number of open connections
(:class:`lstm_math.serving.server.connections.LimitedTCPSite`): at the cap a new connection
evicts the one that made no progress for longest (idle, still sending its headers, stalled
in its body, or not reading its response), and gets a 503 only when all are busy. A handler
whose client disconnects is cancelled (``handler_cancellation``), which drops the request's
rows that did not run yet. aiohttp queues at most 32 pipelined requests per connection,
then stops reading it.

Every stage a client controls has a deadline (:class:`Limits`): the headers (from their
first byte, a pipelined request's too), the body (in total, and a minimum average rate
after a grace period), and the response (a client that stops reading it: the connection is
closed once the response could not be written for the write deadline); a body is read
before the request takes a model version, and the bytes of bodies being read are bounded
server-wide. aiohttp's automatic decompression is off: ``Content-Encoding`` gzip /
deflate is decoded here, bounded by the body limit, and a bad encoding is a 400.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import time
import zlib
from typing import TYPE_CHECKING, Any, Optional

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from lstm_math.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from lstm_math.serving.server.connections import ConnectionHandler
from lstm_math.serving.server.defaults import (  # noqa: F401 - re-exported
    DEFAULT_BODY_MIN_RATE, DEFAULT_BODY_RATE_GRACE_SECONDS, DEFAULT_BODY_TIMEOUT_SECONDS,
    DEFAULT_HEADER_TIMEOUT_SECONDS, DEFAULT_MAX_PENDING_BODY_BYTES,
    DEFAULT_WRITE_TIMEOUT_SECONDS)
from lstm_math.serving.server.codecs import format_predict_json, parse_predict_json, signature_defs_json, \
    status_json
from lstm_math.serving.server.errors import FailedPrecondition, InvalidArgument, NotFound, ServingError
from lstm_math.serving.server.json_limits import precheck_predict_json
from lstm_math.serving.server.servable import DEFAULT_SIGNATURE

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
# Each request body may hold this much without drawing on the server-wide budget: aiohttp
# buffers about as much per connection anyway before it stops reading the socket.
FREE_BODY_BYTES = 64 * 1024
ENCODINGS = ("identity", "gzip", "x-gzip", "deflate")


@dataclasses.dataclass(frozen=True)
class Limits:
    """Deadlines and budgets of the REST front end (``0`` turns a deadline off)."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT_SECONDS
    body_timeout: float = DEFAULT_BODY_TIMEOUT_SECONDS
    body_min_rate: float = DEFAULT_BODY_MIN_RATE
    body_rate_grace: float = DEFAULT_BODY_RATE_GRACE_SECONDS
    write_timeout: float = DEFAULT_WRITE_TIMEOUT_SECONDS
    max_pending_body_bytes: int = DEFAULT_MAX_PENDING_BODY_BYTES


class BodyBudget:
    """Bytes of request bodies held at once, server-wide (used on the event loop only)."""

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.used = 0

    def take(self, n: int) -> bool:
        if n <= 0:
            return True
        if self.used + n > self.capacity:
            return False
        self.used += n
        return True

    def release(self, n: int) -> None:
        self.used -= n


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
    def __init__(self, status: int, message: str, close: bool = False, log: bool = False,
                 headers=None):
        super().__init__(message)
        self.status, self.message, self.close = status, message, close
        self.log, self.headers = log, headers


class _Request:
    """What the handler learned about a request so far (for its metrics)."""

    __slots__ = ("endpoint", "held")

    def __init__(self):
        self.endpoint = "unknown"
        self.held = 0  # bytes drawn on the body budget


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _error(status: int, message: str, headers=None) -> web.Response:
    return web.Response(status=status, body=json.dumps({"error": message}).encode("utf-8"),
                        content_type=JSON, headers=headers)


class RestApi:
    """The request handler; ``owner`` is the :class:`ModelServer`."""

    def __init__(self, owner: "ModelServer", limits: Optional[Limits] = None):
        self.owner = owner
        self.limits = limits or Limits()
        self.budget = BodyBudget(self.limits.max_pending_body_bytes)

    def make_server(self) -> web.Server:
        return web.Server(self.handle, handler_cancellation=True, access_log=None,
                          logger=http_logger,
                          max_line_size=MAX_LINE_SIZE, max_field_size=MAX_FIELD_SIZE,
                          max_headers=MAX_HEADERS, keepalive_timeout=KEEPALIVE_SECONDS,
                          lingering_time=2.0, auto_decompress=False)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        owner = self.owner
        owner._enter()
        start = time.perf_counter()
        state = _Request()
        status = 500
        response: Optional[web.Response] = None
        try:
            response = await self._route(request, state)
        except ServingError as exc:
            response = _error(exc.http_status, exc.message)
        except HttpError as exc:
            response = _error(exc.status, exc.message, headers=exc.headers)
            if exc.log:
                http_logger.info("REST %s %s: %d %s", request.method, request.path,
                                 exc.status, exc.message)
            if exc.close:
                response.force_close()
        except asyncio.CancelledError:  # the client went away: nobody reads an answer
            status = 499
            raise
        except Exception as exc:  # noqa: BLE001 - report, never kill the connection
            logger.exception("REST %s %s failed", request.method, request.path)
            response = _error(500, f"Internal error: {type(exc).__name__}: {exc}")
        finally:
            if state.held:
                self.budget.release(state.held)
            if response is not None:
                status = response.status
            owner.metrics.inc("requests_total", api="rest", endpoint=state.endpoint,
                              code=str(status))
            owner.metrics.observe("request_latency_seconds", time.perf_counter() - start,
                                  api="rest", endpoint=state.endpoint)
            owner._leave()
        if owner.draining:
            response.force_close()
        return response

    async def _expect_continue(self, request: web.BaseRequest) -> None:
        expect = request.headers.get("Expect")
        if expect is None:
            return
        if expect.strip().lower() != "100-continue":
            raise HttpError(417, f"Unsupported Expect: {expect[:80]}", close=True)
        if request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _hold(self, state: _Request, size: int) -> None:
        """Draw the bytes of a body beyond the free allowance on the server-wide budget."""
        extra = max(0, size - FREE_BODY_BYTES) - state.held
        if extra > 0:
            if not self.budget.take(extra):
                self.owner.metrics.inc("refused_bodies_total", reason="budget")
                raise HttpError(503, "Too many request bodies in flight; retry later",
                                close=True, headers={"Retry-After": "1"})
            state.held += extra

    async def _read_body(self, request: web.BaseRequest, state: _Request) -> bytes:
        """The request body, read within the body deadlines, decoded (gzip / deflate),
        within the body limit and the server-wide budget."""
        limit = self.owner.max_request_bytes
        length = request.content_length
        if length is not None and length > limit:
            # Do not read (or wait for) the oversized body: answer and drop the connection.
            raise HttpError(413, f"Request body of {length} bytes exceeds the limit of "
                                 f"{limit} bytes", close=True)
        if not request.body_exists:
            return b""
        # aiohttp frames a body whose last transfer coding is chunked and ignores the codings
        # before it ('gzip, chunked'): refuse them rather than read coded bytes as JSON.
        codings = [c.strip().lower() for te in request.headers.getall("Transfer-Encoding", ())
                   for c in te.split(",")]
        if codings and codings != ["chunked"]:
            shown = ", ".join(codings)[:60]
            raise HttpError(501, f"Unsupported Transfer-Encoding: {shown} (only chunked; "
                                 f"compress with Content-Encoding)", close=True)
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ENCODINGS:
            raise HttpError(415, f"Unsupported Content-Encoding: {encoding[:40]} (use gzip, "
                                 f"deflate or none)", close=True)
        await self._expect_continue(request)
        content = request.content
        if content.is_eof():  # the whole body has arrived already (the common case)
            raw = await content.read()
            if len(raw) > limit:
                raise HttpError(413, f"Request body exceeds the limit of {limit} bytes",
                                close=True)
            self._hold(state, len(raw))
        else:
            raw = await self._read_arriving_body(request, state, limit)
        if encoding in ("gzip", "x-gzip", "deflate") and raw:
            raw = self._decode(raw, encoding, limit, state)
        return raw

    async def _read_arriving_body(self, request: web.BaseRequest, state: _Request,
                                  limit: int) -> bytes:
        """Read a body still arriving, within the body deadlines."""
        limits = self.limits
        loop = asyncio.get_running_loop()
        handler = request.protocol
        begin = loop.time()
        deadline = begin + limits.body_timeout if limits.body_timeout > 0 else None
        content = request.content
        chunks, size = [], 0
        try:
            while True:
                wait_until = deadline
                if limits.body_min_rate > 0:
                    # the average rate since the headers may not drop below the minimum
                    rate_until = begin + max(limits.body_rate_grace,
                                             size / limits.body_min_rate)
                    wait_until = rate_until if wait_until is None else min(wait_until,
                                                                           rate_until)
                if isinstance(handler, ConnectionHandler):
                    handler.body_since = loop.time()
                if wait_until is None:
                    chunk = await content.readany()
                else:
                    try:
                        async with asyncio.timeout_at(wait_until):
                            chunk = await content.readany()
                    except TimeoutError:
                        slow = deadline is None or wait_until < deadline
                        self.owner.metrics.inc("timed_out_requests_total", stage="body")
                        raise HttpError(408, f"Request body not received in time "
                                             f"({size} bytes in {loop.time() - begin:.1f}s; "
                                             + (f"at least {limits.body_min_rate:g} bytes/s"
                                                if slow else
                                                f"all within {limits.body_timeout:g}s")
                                             + ")", close=True, log=True) from None
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise HttpError(413, f"Request body exceeds the limit of {limit} bytes",
                                    close=True)
                self._hold(state, size)
                chunks.append(chunk)
        finally:
            if isinstance(handler, ConnectionHandler):
                handler.body_since = None
        return b"".join(chunks)

    def _decode(self, raw: bytes, encoding: str, limit: int, state: _Request) -> bytes:
        if encoding == "deflate":
            # RFC 9110 deflate is zlib-wrapped; some clients send raw deflate
            zlib_header = len(raw) >= 2 and raw[0] & 0x0F == 8 \
                and (raw[0] << 8 | raw[1]) % 31 == 0
            wbits = zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS
        else:
            wbits = 16 + zlib.MAX_WBITS
        decoder = zlib.decompressobj(wbits)
        try:
            out = decoder.decompress(raw, limit + 1)
            if len(out) > limit or decoder.unconsumed_tail:
                raise HttpError(413, f"Decoded request body exceeds the limit of {limit} "
                                     f"bytes")
            out += decoder.flush()
        except zlib.error as exc:
            raise HttpError(400, f"Could not decode the {encoding} request body: {exc}",
                            log=True) from None
        if not decoder.eof:
            raise HttpError(400, f"Could not decode the {encoding} request body: it is "
                                 f"truncated", log=True)
        if decoder.unused_data:
            raise HttpError(400, f"Could not decode the {encoding} request body: "
                                 f"{len(decoder.unused_data)} bytes after its end", log=True)
        self._hold(state, len(raw) + len(out))
        return out

    async def _route(self, request: web.BaseRequest, state: _Request) -> web.Response:
        owner = self.owner
        method = request.method
        path = request.path
        if path == METRICS_PATH:
            state.endpoint = "metrics"
            if method not in ("GET", "HEAD"):
                return self._method_not_allowed(request, "GET")
            return web.Response(body=owner.metrics.render().encode("utf-8"),
                                headers={"Content-Type": METRICS_CONTENT_TYPE})
        m = MODEL_PATH.match(path)
        if m is None:
            return _error(404, f"Malformed request: {method} {path}")
        name, version_text, label = m.group("name"), m.group("version"), m.group("label")
        verb, meta = m.group("verb"), m.group("meta")
        if verb is not None:
            if verb not in ("predict", "classify", "regress"):
                return _error(404, f"Malformed request: {method} {path}")
            state.endpoint = verb
        else:
            state.endpoint = "metadata" if meta else "status"
        version = None
        if version_text is not None:
            if not version_text.isascii() or not version_text.isdigit() \
                    or len(version_text) > 19 or int(version_text) >= 2 ** 63:
                return _error(404, f"Malformed request: {method} {path}")
            version = int(version_text)
        if label is not None:
            raise NotFound(f"Unrecognized servable version label: {label}")
        if verb is not None:
            if method != "POST":
                return self._method_not_allowed(request, "POST")
            if verb != "predict":
                raise InvalidArgument(f"'{verb}' is not supported by this model: its "
                                      f"'{DEFAULT_SIGNATURE}' signature is a predict signature")
            return await self._predict(request, name, version, state)
        if method not in ("GET", "HEAD"):
            return self._method_not_allowed(request, "GET")
        if meta:
            with owner.manager.acquire(name, version) as servable:
                payload = {
                    "model_spec": {"name": name, "signature_name": "",
                                   "version": str(servable.version)},
                    "metadata": {"signature_def": signature_defs_json(servable.signature_defs)},
                }
            return web.Response(body=_json_bytes(payload), content_type=JSON)
        payload = status_json(owner.manager.status(name, version))
        return web.Response(body=_json_bytes(payload), content_type=JSON)

    @staticmethod
    def _method_not_allowed(request, allowed: str) -> web.Response:
        return _error(405, f"Method {request.method} not allowed for {request.path}; "
                           f"use {allowed}", headers={"Allow": allowed})

    async def _predict(self, request: web.BaseRequest, name: str, version: Optional[int],
                       state: _Request) -> web.Response:
        owner = self.owner
        # The body is read (within its deadlines) before the request takes a version: a
        # slow or stalled client holds neither a version nor a place in the batcher.
        raw = await self._read_body(request, state)
        precheck_predict_json(raw, owner.max_request_rows)
        with owner.manager.acquire(name, version) as servable:
            with servable.incoming() as incoming:
                try:
                    body = json.loads(raw)
                except (ValueError, UnicodeDecodeError) as exc:
                    raise InvalidArgument(f"JSON Parse error: {exc}") from exc
                except RecursionError:
                    raise InvalidArgument("JSON Parse error: nested too deeply") from None
                del raw
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
