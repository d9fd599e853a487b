"""Fair server-side batching of concurrent requests, after TF Serving's batching parameters.

Requests are queued whole; one or more batch threads build each batch of at most
``max_batch_size`` rows: the oldest request gets its fair share of the batch if it does not
fit whole, then every queued request that fits whole is taken whole (arrival order), and
what is left is shared equally among the requests that did not fit. So a large request is
split across batches (TF Serving's ``enable_large_batch_splitting``) and cannot monopolise
the model: a single-row request that arrives while a large one is queued runs in the next
batch; and equal requests still complete in arrival order, as with a FIFO.

* The queue is bounded in rows (``max_enqueued_rows``): a request that does not fit is
  refused with :class:`QueueFullError`, whether or not the queue is empty.
* Cancellation: a request carries an optional monotonic deadline and can be cancelled (its
  client went away); its rows that have not run yet are dropped before they reach the
  model, and it completes with :class:`RequestCancelledError` / :class:`DeadlineExceededError`.
* Adaptive wait (default): a batch thread only waits (up to the timeout) for more rows
  while some other request has announced itself (``incoming()``) but not yet been queued,
  or while the batch holds fewer requests than the previous one merged (concurrent clients
  are about: their next requests are on their way; once they are all in, it runs), so a
  lone request is not delayed by the timeout. With ``adaptive=False`` the batcher always
  waits up to the timeout, exactly like TF Serving.

``run(rows)`` blocks the calling thread; ``await run_async(rows)`` suits an asyncio server
(the handler's cancellation cancels the request's queued rows).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

logger = logging.getLogger("lstm_math.serving.batching")

RunFn = Callable[[List[bytes]], Dict[str, np.ndarray]]
Outputs = Dict[str, np.ndarray]


class QueueFullError(RuntimeError):
    """The batch queue has no room for the request's rows."""


class BatcherClosedError(RuntimeError):
    """The batcher was closed (model unloaded, server stopping)."""


class RequestCancelledError(RuntimeError):
    """The request was cancelled (its client went away) before all its rows ran."""


class DeadlineExceededError(RuntimeError):
    """The request's deadline passed before all its rows ran."""


class _Request:
    """One queued request: its rows, how far they have been scheduled, its output parts."""

    __slots__ = ("rows", "n", "taken", "done_rows", "parts", "deadline", "cancelled",
                 "finished", "callback")

    def __init__(self, rows: List[bytes], deadline: Optional[float],
                 callback: Callable[[Optional[Outputs], Optional[BaseException]], None]):
        self.rows = rows
        self.n = len(rows)
        self.taken = 0          # rows handed to batches so far
        self.done_rows = 0      # rows computed so far
        self.parts: List[Tuple[int, Outputs]] = []
        self.deadline = deadline
        self.cancelled = False
        self.finished = False
        self.callback = callback


class Handle:
    """What ``submit`` returns: ``cancel()`` drops the request's rows that did not run yet."""

    __slots__ = ("_batcher", "_request")

    def __init__(self, batcher: "Batcher", request: _Request):
        self._batcher, self._request = batcher, request

    def cancel(self) -> None:
        self._batcher._cancel(self._request)


class _Incoming:
    """Context manager returned by :meth:`Batcher.incoming`."""

    __slots__ = ("_batcher", "_open")

    def __init__(self, batcher: "Batcher"):
        self._batcher = batcher
        self._open = False

    def __enter__(self) -> "_Incoming":
        self._batcher._announce(+1)
        self._open = True
        return self

    def release(self) -> None:
        if self._open:
            self._open = False
            self._batcher._announce(-1)

    async def run_async(self, rows: Sequence[bytes], deadline: Optional[float] = None
                        ) -> Outputs:
        return await self._batcher.run_async(rows, deadline, _incoming=self)

    def __exit__(self, *exc) -> None:
        self.release()


class Batcher:
    """Merges concurrent requests into fair batched calls of ``run_fn``."""

    def __init__(self, run_fn: RunFn, max_batch_size: int = 256,
                 batch_timeout_micros: int = 1000, num_batch_threads: int = 1,
                 max_enqueued_batches: int = 100, adaptive: bool = True,
                 on_batch: Optional[Callable[[int, float], None]] = None,
                 name: str = "batcher", max_enqueued_rows: Optional[int] = None,
                 on_dropped: Optional[Callable[[int, str], None]] = None):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if batch_timeout_micros < 0:
            raise ValueError("batch_timeout_micros must be >= 0")
        self.run_fn = run_fn
        self.max_batch_size = int(max_batch_size)
        self.timeout = batch_timeout_micros / 1e6
        self.max_enqueued_rows = int(max_enqueued_rows) if max_enqueued_rows else \
            max(1, int(max_enqueued_batches)) * self.max_batch_size
        self.adaptive = adaptive
        self.on_batch = on_batch
        self.on_dropped = on_dropped
        self._cv = threading.Condition()
        self._queue: collections.deque[_Request] = collections.deque()
        self._queued_rows = 0  # rows queued and not yet handed to a batch
        self._incoming = 0
        self._last_requests = 1  # requests merged into the last batch
        self._closed = False
        self._threads = [threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
                         for i in range(max(1, int(num_batch_threads)))]
        for t in self._threads:
            t.start()

    # -- client side -------------------------------------------------------------------
    @property
    def queued_rows(self) -> int:
        with self._cv:
            return self._queued_rows

    def incoming(self) -> _Incoming:
        """Announce a request that will call ``run`` soon (used by the adaptive wait)."""
        return _Incoming(self)

    def _announce(self, delta: int) -> None:
        with self._cv:
            self._incoming += delta
            if delta < 0:
                self._cv.notify_all()

    def submit(self, rows: Sequence[bytes], callback, deadline: Optional[float] = None,
               _incoming: Optional[_Incoming] = None) -> Handle:
        """Queue ``rows``; ``callback(outputs, error)`` is called once, from a batch thread
        (or from this call when the request is refused)."""
        request = _Request(list(rows), deadline, callback)
        with self._cv:
            if _incoming is not None and _incoming._open:
                # announced -> queued in one step, so a waiting batch thread sees either
                # the announcement or the rows, never neither
                _incoming._open = False
                self._incoming -= 1
            if self._closed:
                raise BatcherClosedError("the model is being unloaded")
            if self._queued_rows + request.n > self.max_enqueued_rows:
                raise QueueFullError(
                    f"the batch queue is full ({self._queued_rows} of {self.max_enqueued_rows}"
                    f" rows queued; this request has {request.n}); retry later")
            if request.n == 0:
                request.finished = True
            else:
                self._queue.append(request)
                self._queued_rows += request.n
                self._cv.notify()
        if request.n == 0:
            callback(None, None)
        return Handle(self, request)

    def run(self, rows: Sequence[bytes], deadline: Optional[float] = None) -> Outputs:
        """Queue ``rows``, wait for the batches holding them, return their outputs."""
        done = threading.Event()
        result: list = [None, None]

        def callback(outputs, error):
            result[0], result[1] = outputs, error
            done.set()

        self.submit(rows, callback, deadline)
        done.wait()
        if result[1] is not None:
            raise result[1]
        return result[0] if result[0] is not None else _empty_like()

    async def run_async(self, rows: Sequence[bytes], deadline: Optional[float] = None,
                        _incoming: Optional[_Incoming] = None) -> Outputs:
        """Like ``run`` for asyncio: cancelling the awaiting task drops the queued rows."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def settle(outputs, error):
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(outputs if outputs is not None else _empty_like())

        def callback(outputs, error):
            try:
                loop.call_soon_threadsafe(settle, outputs, error)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        handle = self.submit(rows, callback, deadline, _incoming)
        try:
            return await future
        except asyncio.CancelledError:
            handle.cancel()
            raise

    def _cancel(self, request: _Request) -> None:
        with self._cv:
            if not request.finished:
                request.cancelled = True
                self._cv.notify_all()

    def close(self, timeout: float = 10.0) -> None:
        """Finish queued requests, then stop the batch threads."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)

    # -- batch threads -----------------------------------------------------------------
    def _drop_dead(self, now: float) -> List[Tuple[_Request, BaseException]]:
        """Remove cancelled / expired requests from the queue (lock held)."""
        dead = []
        for request in list(self._queue):
            if request.cancelled:
                error: Optional[BaseException] = RequestCancelledError("the request was cancelled")
            elif request.deadline is not None and now >= request.deadline:
                error = DeadlineExceededError("the request's deadline passed before it ran")
            else:
                continue
            self._queue.remove(request)
            self._queued_rows -= request.n - request.taken
            dead.append((request, error))
        return dead

    def _take(self, batch: List[Tuple[_Request, int, int]], request: _Request,
              take: int) -> None:
        """Move ``take`` rows of ``request`` into ``batch`` (lock held)."""
        start = request.taken
        request.taken += take
        self._queued_rows -= take
        if batch and batch[-1][0] is request and batch[-1][2] == start:
            batch[-1] = (request, batch[-1][1], start + take)
        else:
            batch.append((request, start, start + take))
        if request.taken >= request.n:
            self._queue.remove(request)

    def _fill(self, batch: List[Tuple[_Request, int, int]], rows: int) -> int:
        """Fill the batch from the queue (lock held):

        1. the oldest request, if it does not fit whole, gets its fair share first (so it
           always progresses);
        2. then, in arrival order, every request that fits whole is taken whole (equal
           requests complete in arrival order, as with a plain FIFO);
        3. what is left is water-filled over the requests that did not fit: each gets an
           equal share, a share a request cannot use goes to the others.
        """
        capacity = self.max_batch_size - rows
        if capacity <= 0 or not self._queue:
            return rows
        head = self._queue[0]
        if head.n - head.taken > capacity:
            take = min(max(1, self.max_batch_size // len(self._queue)), capacity)
            self._take(batch, head, take)
            capacity -= take
        for request in list(self._queue):
            remaining = request.n - request.taken
            if 0 < remaining <= capacity:
                self._take(batch, request, remaining)
                capacity -= remaining
        while capacity > 0 and self._queue:
            share = max(1, capacity // len(self._queue))
            for request in list(self._queue):
                if capacity <= 0:
                    break
                take = min(share, request.n - request.taken, capacity)
                self._take(batch, request, take)
                capacity -= take
        return self.max_batch_size - capacity

    def _next_batch(self):
        with self._cv:
            while True:
                dead = self._drop_dead(time.monotonic())
                if dead:
                    return [], dead
                if self._queue:
                    break
                if self._closed:
                    return None, []
                self._cv.wait()
            batch: List[Tuple[_Request, int, int]] = []
            rows = self._fill(batch, 0)
            deadline = None
            while rows < self.max_batch_size:
                if self._queue:
                    rows = self._fill(batch, rows)
                    continue
                if self.timeout <= 0 or self._closed:
                    break
                if (self.adaptive and self._incoming <= 0
                        and len(batch) >= self._last_requests):
                    break
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.timeout
                if now >= deadline:
                    break
                self._cv.wait(deadline - now)
                dead = self._drop_dead(time.monotonic())
                if dead:  # hand them back with what was taken so far
                    return batch, dead
            self._last_requests = len(batch)
            return batch, []

    def _finish(self, request: _Request, outputs: Optional[Outputs],
                error: Optional[BaseException]) -> None:
        with self._cv:
            if request.finished:
                return
            request.finished = True
            if error is not None and request in self._queue:
                self._queue.remove(request)
                self._queued_rows -= request.n - request.taken
        try:
            request.callback(outputs, error)
        except Exception:  # noqa: BLE001 - a waiter's failure must not kill the batch thread
            logger.exception("batch callback failed")

    def _loop(self) -> None:
        while True:
            batch, dead = self._next_batch()
            if batch is None:
                return
            for request, error in dead:
                dropped = request.n - request.done_rows
                if self.on_dropped is not None:
                    try:
                        self.on_dropped(dropped, type(error).__name__)
                    except Exception:  # noqa: BLE001
                        logger.exception("on_dropped callback failed")
                self._finish(request, None, error)
            if not batch:
                continue
            rows: List[bytes] = []
            for request, start, end in batch:
                rows.extend(request.rows[start:end])
            start_time = time.perf_counter()
            try:
                outputs = self.run_fn(rows)
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
                logger.warning("batch of %d rows failed: %s", len(rows), exc)
                for request, _, _ in batch:
                    self._finish(request, None, exc)
                continue
            elapsed = time.perf_counter() - start_time
            if self.on_batch is not None:
                try:
                    self.on_batch(len(rows), elapsed)
                except Exception:  # noqa: BLE001 - metrics must never fail a batch
                    logger.exception("on_batch callback failed")
            offset = 0
            for request, start, end in batch:
                n = end - start
                if len(batch) == 1:
                    part = outputs
                else:
                    part = {k: v[offset:offset + n] for k, v in outputs.items()}
                offset += n
                with self._cv:
                    request.parts.append((start, part))
                    request.done_rows += n
                    complete = request.done_rows >= request.n and not request.finished
                if complete:
                    if len(request.parts) == 1:
                        merged = request.parts[0][1]
                    else:
                        request.parts.sort(key=lambda p: p[0])
                        keys = request.parts[0][1].keys()
                        merged = {k: np.concatenate([p[k] for _, p in request.parts])
                                  for k in keys}
                    request.parts = []
                    self._finish(request, merged, None)


def _empty_like() -> Outputs:
    return {}
