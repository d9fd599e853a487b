"""One loaded SavedModel version (:class:`Servable`): its signature, its batcher, warm-up
from the SavedModel's warm-up file, and a reference count so that it is unloaded only after
its in-flight requests finish. The version manager that loads and unloads them is
:mod:`lstm_math.serving.server.models`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from lstm_math.serving import contract
from lstm_math.serving.batching import (Batcher, BatcherClosedError, DeadlineExceededError,
                              QueueFullError, RequestCancelledError)
from lstm_math.serving.contract import METHOD_NAME as PREDICT_METHOD, WARMUP_FILE
from lstm_math.serving.metrics import Metrics
from lstm_math.serving.server.errors import (Cancelled, DeadlineExceeded, InvalidArgument,
                                             ResourceExhausted, Unavailable)

logger = logging.getLogger("lstm_math.serving")
# TF Serving's SavedModel warm-up file, and the most records it replays.
MAX_WARMUP_REQUESTS = 1000
DEFAULT_SIGNATURE = contract.SIGNATURE_NAME


def _read_signature_defs(export_dir: str) -> get_model_metadata_pb2.SignatureDefMap:
    """The SignatureDefs of a SavedModel, read from saved_model.pb (what TF Serving reports)."""
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    pb_path = os.path.join(export_dir, "saved_model.pb")
    if tf.io.gfile.exists(pb_path):
        saved = saved_model_pb2.SavedModel()
        with tf.io.gfile.GFile(pb_path, "rb") as f:
            saved.ParseFromString(f.read())
        for meta_graph in saved.meta_graphs:
            if "serve" in meta_graph.meta_info_def.tags or len(saved.meta_graphs) == 1:
                for key, sig in meta_graph.signature_def.items():
                    sig_map.signature_def[key].CopyFrom(sig)
                break
    return sig_map


class Servable:
    """A loaded SavedModel version with its batcher and a reference count."""

    def __init__(self, name: str, version: int, path: str, batching: Optional[Dict[str, Any]],
                 metrics: Metrics, model_warmup: bool = True):
        self.name = name
        self.version = version
        self.path = path
        self.metrics = metrics
        start = time.perf_counter()
        self.model = tf.saved_model.load(path)
        if DEFAULT_SIGNATURE not in self.model.signatures:
            raise ValueError(f"{path} has no '{DEFAULT_SIGNATURE}' signature")
        self.fn = self.model.signatures[DEFAULT_SIGNATURE]
        self.signature_defs = _read_signature_defs(path)
        _, kwargs = self.fn.structured_input_signature
        if len(kwargs) != 1:
            raise ValueError(f"'{DEFAULT_SIGNATURE}' must take exactly one input, "
                             f"got {sorted(kwargs)}")
        (self.input_key, spec), = kwargs.items()
        if spec.dtype != tf.string:
            raise ValueError(f"input '{self.input_key}' must be tf.string, got {spec.dtype}")
        self.output_keys = sorted(self.fn.structured_outputs)
        if DEFAULT_SIGNATURE not in self.signature_defs.signature_def:
            self.signature_defs.signature_def[DEFAULT_SIGNATURE].CopyFrom(
                self._signature_def_from_function())
        # Warm up: trace/allocate before the first real request is swapped onto this version.
        self._run([b"0 + 0"])
        # the answer to a request of no rows, so such requests never run the model
        self._empty = self._run([])
        self.warmup_requests = self._replay_warmup() if model_warmup else 0
        self._lock = threading.Lock()
        self._refs = 0
        self._idle = threading.Condition(self._lock)
        self.batcher: Optional[Batcher] = None
        if batching is not None:
            self.batcher = Batcher(self._run, on_batch=self._on_batch,
                                   on_dropped=self._on_dropped,
                                   name=f"batch-{name}-{version}", **batching)
        self.load_seconds = time.perf_counter() - start

    def _signature_def_from_function(self):
        from tensorflow.core.protobuf import meta_graph_pb2
        sig = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
        _, kwargs = self.fn.structured_input_signature
        for key, spec in kwargs.items():
            info = sig.inputs[key]
            info.name = f"{spec.name or key}:0"
            info.dtype = spec.dtype.as_datatype_enum
            info.tensor_shape.CopyFrom(spec.shape.as_proto())
        for key, spec in self.fn.structured_outputs.items():
            info = sig.outputs[key]
            info.name = f"{key}:0"
            info.dtype = spec.dtype.as_datatype_enum
            info.tensor_shape.CopyFrom(spec.shape.as_proto())
        return sig

    def _replay_warmup(self) -> int:
        """Runs the SavedModel's TF Serving warm-up requests (assets.extra/
        tf_serving_warmup_requests, PredictionLog records), as tensorflow_model_server does
        before a version takes traffic: an XLA-compiled model compiles here, not on a
        client's request. Returns how many requests ran."""
        path = os.path.join(self.path, WARMUP_FILE)
        if not tf.io.gfile.exists(path):
            return 0
        from tensorflow_serving.apis import prediction_log_pb2

        start, count = time.perf_counter(), 0
        for record in tf.data.TFRecordDataset(path).take(MAX_WARMUP_REQUESTS):
            entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            inputs = entry.predict_log.request.inputs
            if entry.WhichOneof("log_type") != "predict_log" or self.input_key not in inputs:
                raise ValueError(f"{path}: warm-up record {count + 1} is not a Predict request "
                                 f"with input '{self.input_key}'")
            self._run([bytes(r) for r in tf.make_ndarray(inputs[self.input_key]).reshape(-1)])
            count += 1
        logger.info("%s version %d: %d warm-up requests replayed in %.1fs", self.name,
                    self.version, count, time.perf_counter() - start)
        return count

    def _run(self, rows: List[bytes]) -> Dict[str, np.ndarray]:
        out = self.fn(**{self.input_key: tf.constant(rows, dtype=tf.string, shape=[len(rows)])})
        return {k: v.numpy() for k, v in out.items()}

    def _on_batch(self, rows: int, seconds: float) -> None:
        self.metrics.inc("batches_total", model=self.name)
        self.metrics.inc("batched_rows_total", rows, model=self.name)
        self.metrics.observe("batch_size", rows, model=self.name)
        self.metrics.observe("batch_run_seconds", seconds, model=self.name)

    def _on_dropped(self, rows: int, reason: str) -> None:
        self.metrics.inc("dropped_rows_total", rows, model=self.name, reason=reason)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except QueueFullError as exc:
            raise ResourceExhausted(str(exc)) from exc
        except BatcherClosedError as exc:
            raise Unavailable(str(exc)) from exc
        except DeadlineExceededError as exc:
            raise DeadlineExceeded(str(exc)) from exc
        except RequestCancelledError as exc:
            raise Cancelled(str(exc)) from exc
        except tf.errors.InvalidArgumentError as exc:
            raise InvalidArgument(exc.message) from exc

    async def predict_async(self, rows: Sequence[bytes], incoming=None,
                            deadline: Optional[float] = None) -> Dict[str, np.ndarray]:
        """Run ``rows`` (through the batcher when there is one) for the asyncio front ends:
        the event loop never runs the model, and cancelling the awaiting task (client gone)
        drops the rows that did not run yet."""
        if not rows:
            return {k: v.copy() for k, v in self._empty.items()}
        with self._errors():
            if incoming is not None:
                return await incoming.run_async(rows, deadline)
            if self.batcher is not None:
                return await self.batcher.run_async(rows, deadline)
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceededError("the request's deadline passed before it ran")
            loop = asyncio.get_running_loop()
            start = time.perf_counter()
            outputs = await loop.run_in_executor(None, self._run, list(rows))
            self._on_batch(len(rows), time.perf_counter() - start)
            return outputs

    def incoming(self):
        """Announce a request to the batcher's adaptive wait (a no-op without batching)."""
        return self.batcher.incoming() if self.batcher is not None else contextlib.nullcontext()

    # reference counting, so an unloaded version finishes its in-flight requests
    def acquire(self) -> None:
        with self._lock:
            self._refs += 1

    def release(self) -> None:
        with self._lock:
            self._refs -= 1
            if self._refs == 0:
                self._idle.notify_all()

    def retire(self, timeout: float = 60.0) -> None:
        """Wait (bounded) until no request uses this version, then stop its batcher."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._refs > 0 and time.monotonic() < deadline:
                self._idle.wait(max(0.0, deadline - time.monotonic()))
        if self.batcher is not None:
            self.batcher.close()
        logger.info("unloaded %s version %d", self.name, self.version)
