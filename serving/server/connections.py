"""The REST front end's connections: :class:`LimitedTCPSite` caps the open connections (at the
cap a new connection evicts the one that made no progress for longest, idle, still sending
its headers or stalled in its body, and gets a 503 only when all are busy), and each
connection's handler puts a deadline on the request headers (from their first byte). The
requests themselves are :mod:`lstm_math.serving.server.rest_api`'s.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Optional

from aiohttp import web
from aiohttp.web_protocol import RequestHandler


class _Refuse(asyncio.Protocol):
    """A connection over the limit: a 503, then close (no request is read)."""

    BODY = b'{"error": "too many connections; retry later"}'
    RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                b"Connection: close\r\nRetry-After: 1\r\nContent-Length: "
                + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)

    def connection_made(self, transport) -> None:
        transport.write(self.RESPONSE)
        transport.close()


class ConnectionHandler(RequestHandler):
    """aiohttp's connection handler with a deadline on the request headers (from their
    first byte to their end; aiohttp itself only closes a connection that sent nothing
    for its keep-alive timeout) and a record of a body being read, for eviction."""

    __slots__ = ("body_since", "_header_timeout", "_header_timer", "_header_count",
                 "_on_header_timeout")

    def __init__(self, manager, *, header_timeout: float = 0.0,
                 on_header_timeout: Optional[Callable[[], None]] = None, **kwargs):
        super().__init__(manager, **kwargs)
        self.body_since: Optional[float] = None  # loop time of a body read's last progress
        self._header_timeout = header_timeout
        self._header_timer = None
        self._header_count = 0
        self._on_header_timeout = on_header_timeout

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # bytes arrived while no complete request is waiting: a request's headers began
        if (self._header_timeout > 0 and self._header_timer is None and data
                and self._waiter is not None and not self._waiter.done()
                and self.transport is not None):
            self._header_count = self._request_count
            self._header_timer = self._loop.call_later(self._header_timeout,
                                                       self._headers_expired)

    def _headers_expired(self) -> None:
        self._header_timer = None
        if (self._request_count == self._header_count and self._waiter is not None
                and not self._waiter.done() and self.transport is not None):
            if self._on_header_timeout is not None:
                self._on_header_timeout()
            self.transport.write(_HEADER_TIMEOUT_RESPONSE)
            self.force_close()

    def connection_lost(self, exc) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)


_HEADER_TIMEOUT_BODY = b'{"error": "request headers not received in time"}'
_HEADER_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                            b"Connection: close\r\nContent-Length: "
                            + str(len(_HEADER_TIMEOUT_BODY)).encode() + b"\r\n\r\n"
                            + _HEADER_TIMEOUT_BODY)


def _idle_since(handler) -> Optional[float]:
    """Since when an open connection has made no progress, if it is evictable: no request
    being handled or queued on it (kept alive, or still sending its headers: since its
    last response or its start), or a request waiting for its body (since the body's last
    bytes); None when it is busy."""
    if getattr(handler, "_request_in_progress", True):
        since = getattr(handler, "body_since", None)
        if since is None or getattr(handler, "_messages", None):
            return None
        return since
    if getattr(handler, "_messages", None):
        return None
    return (getattr(handler, "_next_keepalive_close_time", 0.0)
            - getattr(handler, "_keepalive_timeout", 0.0))


class LimitedTCPSite(web.TCPSite):
    """``TCPSite`` with a cap on open connections.

    At the cap, a new connection evicts the connection that has made no progress for longest
    (no request in progress: kept alive, or still sending its headers; or a request whose
    body is still arriving); only when every connection is busy is the new one answered 503
    and closed. So idle or slow connections cannot lock clients out, and the number of
    connections (and their buffers) stays bounded. Connections get :class:`ConnectionHandler`, with
    ``header_timeout``.
    """

    def __init__(self, runner: web.BaseRunner, host: str, port: int, max_connections: int,
                 on_refused=None, on_evicted=None, header_timeout: float = 0.0,
                 on_header_timeout=None, **kwargs):
        super().__init__(runner, host, port, **kwargs)
        self._max_connections = max(1, int(max_connections))
        self._on_refused = on_refused
        self._on_evicted = on_evicted
        self._header_timeout = float(header_timeout)
        self._on_header_timeout = on_header_timeout

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        limit, on_refused, on_evicted = (self._max_connections, self._on_refused,
                                         self._on_evicted)
        closing: set = set()
        handler_kwargs = dict(server._kwargs, header_timeout=self._header_timeout,
                              on_header_timeout=self._on_header_timeout)

        def new_handler():
            return ConnectionHandler(server, loop=loop, **handler_kwargs)

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
            return new_handler()

        self._server = await loop.create_server(factory, self._host, self._port,
                                                backlog=self._backlog,
                                                reuse_address=self._reuse_address)
        self._bound_port = self._server.sockets[0].getsockname()[1]

    @property
    def port(self) -> int:
        return self._bound_port
