"""The REST front end's connections: :class:`LimitedTCPSite` caps the open connections (at the
cap a new connection evicts the one that made no progress for longest, idle, still sending
its headers, stalled in its body or not reading its response, and gets a 503 only when all
are busy), and each connection's handler puts a deadline on the request headers (from
their first byte) and on writing its responses. The requests themselves are
:mod:`lstm_math.serving.server.rest_api`'s.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Optional

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

try:  # what aiohttp queues for a request it could not parse (answered 400, then closed)
    from aiohttp.web_protocol import _ErrInfo
except ImportError:  # pragma: no cover - another aiohttp: such a request is not detected
    class _ErrInfo:  # type: ignore[no-redef]
        pass


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
    """aiohttp's connection handler with deadlines on what the client controls (aiohttp
    itself only closes a connection that sent nothing for its keep-alive timeout, and has
    no send timeout):

    * the request headers, from their first byte to their end, a pipelined request's
      too: bytes of a next request that arrive with the end of the previous one start its
      deadline (it is answered 408 once the requests before it are);
    * writing: a response that cannot be written because the client does not read it
      (the transport's buffer stays above its high-water mark) for ``write_timeout``, or
      that is still unsent that long after the connection was closed, aborts the
      connection.

    It also records a body being read and a write stalled, for eviction."""

    __slots__ = ("body_since", "write_paused_since", "_header_timeout", "_header_timer",
                 "_header_count", "_on_header_timeout", "_write_timeout", "_write_timer",
                 "_on_write_timeout", "_socket", "_last_payload")

    def __init__(self, manager, *, header_timeout: float = 0.0,
                 on_header_timeout: Optional[Callable[[], None]] = None,
                 write_timeout: float = 0.0,
                 on_write_timeout: Optional[Callable[[], None]] = None, **kwargs):
        # set before aiohttp's __init__, which calls force_close()
        self.body_since: Optional[float] = None  # loop time of a body read's last progress
        self.write_paused_since: Optional[float] = None  # since when writing is paused
        self._header_timeout = header_timeout
        self._header_timer = None
        self._header_count = 0
        self._on_header_timeout = on_header_timeout
        self._write_timeout = write_timeout
        self._write_timer = None
        self._on_write_timeout = on_write_timeout
        self._socket = None  # the transport (aiohttp drops its reference when it closes)
        self._last_payload = None  # the body of the latest request parsed
        super().__init__(manager, **kwargs)

    def connection_made(self, transport) -> None:
        self._socket = transport
        super().connection_made(transport)

    # -- the header deadline --------------------------------------------------------------
    def _note_latest(self) -> bool:
        """Remember the latest request parsed; whether it was an unparsable one."""
        if self._messages:
            message, self._last_payload = self._messages[-1]
            return isinstance(message, _ErrInfo)
        return False

    def _in_body(self) -> bool:
        return self._last_payload is not None and not self._last_payload.is_eof()

    def data_received(self, data: bytes) -> None:
        if (self._header_timeout <= 0 or not data or self._upgraded
                or self._payload_parser is not None):
            super().data_received(data)
            self._note_latest()
            return
        # Is the parser left holding the start of a request's headers? (llhttp keeps no
        # buffer to ask.) The last byte before any trailing CR / LF is fed on its own: if
        # it neither ends a request's headers nor belongs to a body, it is a byte of an
        # unfinished request head. Empty lines between requests (which llhttp skips) are
        # not the start of one.
        head = data.rstrip(b"\r\n")
        line_ends = data[len(head):]
        pending = None  # unknown: only empty lines arrived
        if head:
            if len(head) > 1:
                super().data_received(head[:-1])
                if self._note_latest() or self._force_close or self._close:
                    return  # unparsable (the connection closes after the 400), or closing
            in_body, count = self._in_body(), self._request_count
            super().data_received(head[-1:])
            self._note_latest()
            pending = not (in_body or self._request_count != count or self._in_body()
                           or self._buffer_paused)  # parsing paused (queue full): unknown
        if line_ends:
            count = self._request_count
            super().data_received(line_ends)
            self._note_latest()
            if self._request_count != count or self._in_body():
                pending = False  # they ended a request's headers
        if not pending or self.transport is None or self._force_close or self._close:
            return
        if self._header_timer is None or self._header_count != self._request_count:
            # the first bytes of this request's headers: its deadline starts now
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_count = self._request_count
            self._header_timer = self._loop.call_later(self._header_timeout,
                                                       self._headers_expired)

    def _headers_expired(self) -> None:
        self._header_timer = None
        if self._request_count != self._header_count or self.transport is None:
            return  # the headers were completed in time, or the connection is closed
        if self._waiter is None or self._waiter.done():
            # requests before this one are still being answered: 408 right after them
            self._header_timer = self._loop.call_later(min(1.0, self._header_timeout),
                                                       self._headers_expired)
            return
        if self._on_header_timeout is not None:
            self._on_header_timeout()
        self.transport.write(_HEADER_TIMEOUT_RESPONSE)
        self.force_close()

    # -- the write deadline ---------------------------------------------------------------
    def pause_writing(self) -> None:
        super().pause_writing()
        self.write_paused_since = self._loop.time()
        self._arm_write_timer()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.write_paused_since = None
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        self._flush_within_deadline()

    def _arm_write_timer(self) -> None:
        if self._write_timeout > 0 and self._write_timer is None:
            self._write_timer = self._loop.call_later(self._write_timeout,
                                                      self._write_expired)

    def _flush_within_deadline(self) -> None:
        """A closed connection still holding unsent bytes gets the write deadline to send
        them (asyncio would keep it open until they are)."""
        transport = self._socket
        if (transport is not None and transport.is_closing()
                and transport.get_write_buffer_size() > 0):
            self._arm_write_timer()

    def _write_expired(self) -> None:
        self._write_timer = None
        transport = self._socket
        if transport is None:
            return
        if self.write_paused_since is None and not (
                transport.is_closing() and transport.get_write_buffer_size() > 0):
            return
        if self._on_write_timeout is not None:
            self._on_write_timeout()
        self.force_close()
        transport.abort()

    def force_close(self) -> None:
        super().force_close()
        self._flush_within_deadline()

    async def start(self) -> None:
        try:
            await super().start()
        finally:  # aiohttp closes the transport when the connection is done
            self._flush_within_deadline()

    def evict(self) -> None:
        """Close the connection to make room for another; at once if it is not reading
        what it was sent (a graceful close would wait for that to be sent)."""
        transport = self._socket
        self.force_close()
        if transport is not None and (self.write_paused_since is not None
                                      or transport.get_write_buffer_size() > 0):
            transport.abort()

    def connection_lost(self, exc) -> None:
        for timer in (self._header_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._write_timer = None
        self._socket = None
        self.write_paused_since = None
        super().connection_lost(exc)


_HEADER_TIMEOUT_BODY = b'{"error": "request headers not received in time"}'
_HEADER_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                            b"Connection: close\r\nContent-Length: "
                            + str(len(_HEADER_TIMEOUT_BODY)).encode() + b"\r\n\r\n"
                            + _HEADER_TIMEOUT_BODY)


def _idle_since(handler) -> Optional[float]:
    """Since when an open connection has made no progress, if it is evictable: a response
    it does not read (writing paused, since then), no request being handled or queued on
    it (kept alive, or still sending its headers: since its last response or its start),
    or a request waiting for its body (since the body's last bytes); None when it is
    busy."""
    paused = getattr(handler, "write_paused_since", None)
    if paused is not None:
        return paused
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
    (no request in progress: kept alive, or still sending its headers; a request whose body
    is still arriving; or a response the client does not read); only when every connection is busy is the new one answered 503
    and closed. So idle or slow connections cannot lock clients out, and the number of
    connections (and their buffers) stays bounded. Connections get :class:`ConnectionHandler`, with
    ``header_timeout`` and ``write_timeout``.
    """

    def __init__(self, runner: web.BaseRunner, host: str, port: int, max_connections: int,
                 on_refused=None, on_evicted=None, header_timeout: float = 0.0,
                 on_header_timeout=None, write_timeout: float = 0.0,
                 on_write_timeout=None, **kwargs):
        super().__init__(runner, host, port, **kwargs)
        self._max_connections = max(1, int(max_connections))
        self._on_refused = on_refused
        self._on_evicted = on_evicted
        self._header_timeout = float(header_timeout)
        self._on_header_timeout = on_header_timeout
        self._write_timeout = float(write_timeout)
        self._on_write_timeout = on_write_timeout

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        limit, on_refused, on_evicted = (self._max_connections, self._on_refused,
                                         self._on_evicted)
        closing: set = set()
        handler_kwargs = dict(server._kwargs, header_timeout=self._header_timeout,
                              on_header_timeout=self._on_header_timeout,
                              write_timeout=self._write_timeout,
                              on_write_timeout=self._on_write_timeout)

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
                victim.evict()
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
