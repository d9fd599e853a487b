"""Server-side batching of concurrent requests, after TF Serving's batching parameters.

Requests are queued as *tasks* (a list of rows each). One or more batch threads take the
oldest task, merge following tasks into one batch until ``max_batch_size`` rows are
collected or ``batch_timeout_micros`` passed, call the model once, and hand each task its
slice of the outputs.

Adaptive wait (default): a batch thread only waits for more rows while some other request
has announced itself (``incoming()``) but not yet been queued, so a lone request is not
delayed by the timeout; under load, requests that arrive while a batch is being computed
queue up and are merged into the next one. With ``adaptive=False`` the batcher always
waits up to the timeout, exactly like TF Serving.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

logger = logging.getLogger("lstm_math.serving.batching")

RunFn = Callable[[List[bytes]], Dict[str, np.ndarray]]


class QueueFullError(RuntimeError):
    """The batch queue holds ``max_enqueued_batches`` full batches already."""


class BatcherClosedError(RuntimeError):
    """The batcher was closed (model unloaded, server stopping)."""


class _Task:
    __slots__ = ("rows", "done", "outputs", "error")

    def __init__(self, rows: List[bytes]):
        self.rows = rows
        self.done = threading.Event()
        self.outputs: Optional[Dict[str, np.ndarray]] = None
        self.error: Optional[BaseException] = None


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

    def run(self, rows: Sequence[bytes]) -> Dict[str, np.ndarray]:
        return self._batcher.run(rows, _incoming=self)

    def _release(self) -> None:
        if self._open:
            self._open = False
            self._batcher._announce(-1)

    def __exit__(self, *exc) -> None:
        self._release()


class Batcher:
    """Merges concurrent ``run(rows)`` calls into batched calls of ``run_fn``."""

    def __init__(self, run_fn: RunFn, max_batch_size: int = 256,
                 batch_timeout_micros: int = 1000, num_batch_threads: int = 1,
                 max_enqueued_batches: int = 100, adaptive: bool = True,
                 on_batch: Optional[Callable[[int, float], None]] = None, name: str = "batcher"):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if batch_timeout_micros < 0:
            raise ValueError("batch_timeout_micros must be >= 0")
        self.run_fn = run_fn
        self.max_batch_size = int(max_batch_size)
        self.timeout = batch_timeout_micros / 1e6
        self.max_enqueued_rows = max(1, int(max_enqueued_batches)) * self.max_batch_size
        self.adaptive = adaptive
        self.on_batch = on_batch
        self._cv = threading.Condition()
        self._queue: collections.deque[_Task] = collections.deque()
        self._queued_rows = 0
        self._incoming = 0
        self._closed = False
        self._threads = [threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
                         for i in range(max(1, int(num_batch_threads)))]
        for t in self._threads:
            t.start()

    # -- client side -------------------------------------------------------------------
    def incoming(self) -> _Incoming:
        """Announce a request that will call ``run`` soon (used by the adaptive wait)."""
        return _Incoming(self)

    def _announce(self, delta: int) -> None:
        with self._cv:
            self._incoming += delta
            if delta < 0:
                self._cv.notify_all()

    def run(self, rows: Sequence[bytes], _incoming: Optional[_Incoming] = None
            ) -> Dict[str, np.ndarray]:
        """Queue ``rows``, wait for the batch(es) holding them, return their outputs."""
        rows = list(rows)
        chunks = [rows[i:i + self.max_batch_size]
                  for i in range(0, len(rows), self.max_batch_size)] or [[]]
        tasks = [_Task(c) for c in chunks]
        with self._cv:
            if _incoming is not None:
                _incoming._open = False
                self._incoming -= 1
            if self._closed:
                raise BatcherClosedError("the model is being unloaded")
            if self._queued_rows + len(rows) > self.max_enqueued_rows and self._queue:
                raise QueueFullError("the batch queue is full; retry later")
            self._queue.extend(tasks)
            self._queued_rows += len(rows)
            self._cv.notify_all() if len(tasks) > 1 else self._cv.notify()
        for t in tasks:
            t.done.wait()
        for t in tasks:
            if t.error is not None:
                raise t.error
        if len(tasks) == 1:
            return tasks[0].outputs  # type: ignore[return-value]
        keys = tasks[0].outputs.keys()  # type: ignore[union-attr]
        return {k: np.concatenate([t.outputs[k] for t in tasks]) for k in keys}  # type: ignore

    def close(self, timeout: float = 10.0) -> None:
        """Finish queued tasks, then stop the batch threads."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)

    # -- batch threads -----------------------------------------------------------------
    def _next_batch(self) -> Optional[List[_Task]]:
        with self._cv:
            while not self._queue:
                if self._closed:
                    return None
                self._cv.wait()
            first = self._queue.popleft()
            batch = [first]
            rows = len(first.rows)
            deadline = None
            while rows < self.max_batch_size:
                if self._queue:
                    nxt = self._queue[0]
                    if rows + len(nxt.rows) > self.max_batch_size:
                        break
                    self._queue.popleft()
                    batch.append(nxt)
                    rows += len(nxt.rows)
                    continue
                if self.timeout <= 0 or self._closed:
                    break
                if self.adaptive and self._incoming <= 0:
                    break
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.timeout
                if now >= deadline:
                    break
                self._cv.wait(deadline - now)
            self._queued_rows -= rows
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            rows: List[bytes] = []
            for t in batch:
                rows.extend(t.rows)
            start = time.perf_counter()
            try:
                outputs = self.run_fn(rows)
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
                logger.warning("batch of %d rows failed: %s", len(rows), exc)
                for t in batch:
                    t.error = exc
                    t.done.set()
                continue
            elapsed = time.perf_counter() - start
            if self.on_batch is not None:
                try:
                    self.on_batch(len(rows), elapsed)
                except Exception:  # noqa: BLE001 - metrics must never fail a batch
                    logger.exception("on_batch callback failed")
            if len(batch) == 1:
                batch[0].outputs = outputs
                batch[0].done.set()
                continue
            offset = 0
            for t in batch:
                n = len(t.rows)
                t.outputs = {k: v[offset:offset + n] for k, v in outputs.items()}
                offset += n
                t.done.set()
