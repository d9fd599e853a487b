"""A TF Serving-compatible model server for the lstm-math SavedModels (DESIGN.md section 4).

It serves ``<model_base>/<model_name>/<version>/saved_model.pb`` over

* REST, following TF Serving's REST API: ``POST /v1/models/NAME[/versions/N]:predict``
  (row ``instances`` and columnar ``inputs`` formats), ``GET /v1/models/NAME[/versions/N]``
  (status) and ``GET /v1/models/NAME[/versions/N]/metadata``; Prometheus metrics at
  ``GET /monitoring/prometheus/metrics``;
* gRPC, with the official ``tensorflow.serving`` services: ``PredictionService.Predict`` /
  ``GetModelMetadata`` and ``ModelService.GetModelStatus``.

The highest numeric version is served; the model directory is polled and a newly pushed
version is loaded in the background and swapped in once fully loaded (the old one keeps
serving until then and finishes its in-flight requests). The latest ``num_versions`` are
kept loaded, so ``/versions/N`` reaches them. Concurrent requests are merged into batches
(:mod:`serving.batching`). Only tensorflow, grpcio and the serving protos are needed.

Run it with ``python -m serving.server --model-base DIR`` or ``lstm-math serve``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import concurrent.futures
import contextlib
import http.server
import json
import logging
import os
import re
import signal
import socket
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from serving.contract import DEFAULT_MODEL_NAME, LARGEST_BUCKET, WARMUP_FILE
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, status_pb2)

try:  # the package is normally imported as ``serving``; keep ``python serving/server.py`` working
    from serving.batching import Batcher, BatcherClosedError, QueueFullError
    from serving.metrics import BATCH_SIZE_BUCKETS, Metrics
except ImportError:  # pragma: no cover - only when run as a plain script
    from batching import Batcher, BatcherClosedError, QueueFullError  # type: ignore
    from metrics import BATCH_SIZE_BUCKETS, Metrics  # type: ignore

logger = logging.getLogger("lstm_math.serving")
# TF Serving's SavedModel warm-up file, and the most records it replays.
MAX_WARMUP_REQUESTS = 1000

DEFAULT_SIGNATURE = "serving_default"
DEFAULT_REST_PORT = 8501
DEFAULT_GRPC_PORT = 8500
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_BATCH_SIZE = LARGEST_BUCKET  # the largest XLA bucket of the exported decoder
DEFAULT_BATCH_TIMEOUT_MICROS = 1000
DEFAULT_POLL_SECONDS = 1.0
PREDICT_METHOD = "tensorflow/serving/predict"
_ERROR_CODES = status_pb2.StatusProto.DESCRIPTOR.fields_by_name["error_code"].enum_type


# ---------------------------------------------------------------------------------------
# Errors, carrying a gRPC status code (the REST layer maps it to an HTTP status)
# ---------------------------------------------------------------------------------------
class ServingError(Exception):
    code = grpc.StatusCode.INTERNAL
    http_status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(ServingError):
    code = grpc.StatusCode.NOT_FOUND
    http_status = 404


class InvalidArgument(ServingError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400


class FailedPrecondition(ServingError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 400


class Unavailable(ServingError):
    code = grpc.StatusCode.UNAVAILABLE
    http_status = 503


class ResourceExhausted(ServingError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429


# ---------------------------------------------------------------------------------------
# One loaded version
# ---------------------------------------------------------------------------------------
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
        self.warmup_requests = self._replay_warmup() if model_warmup else 0
        self._lock = threading.Lock()
        self._refs = 0
        self._idle = threading.Condition(self._lock)
        self.batcher: Optional[Batcher] = None
        if batching is not None:
            self.batcher = Batcher(self._run, on_batch=self._on_batch,
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

    def predict(self, rows: Sequence[bytes], incoming=None) -> Dict[str, np.ndarray]:
        if not rows:
            return self._run([])
        try:
            if incoming is not None:
                return incoming.run(rows)
            if self.batcher is not None:
                return self.batcher.run(rows)
            start = time.perf_counter()
            outputs = self._run(list(rows))
            self._on_batch(len(rows), time.perf_counter() - start)
            return outputs
        except QueueFullError as exc:
            raise ResourceExhausted(str(exc)) from exc
        except BatcherClosedError as exc:
            raise Unavailable(str(exc)) from exc
        except tf.errors.InvalidArgumentError as exc:
            raise InvalidArgument(exc.message) from exc

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


# ---------------------------------------------------------------------------------------
# Versions on disk -> loaded servables
# ---------------------------------------------------------------------------------------
_MAX_LOAD_ATTEMPTS = 3


class ModelManager:
    """Keeps the latest ``num_versions`` versions of one model loaded; polls for new ones."""

    def __init__(self, model_base: str, model_name: str = DEFAULT_MODEL_NAME,
                 num_versions: int = 2, poll_seconds: float = DEFAULT_POLL_SECONDS,
                 batching: Optional[Dict[str, Any]] = None, metrics: Optional[Metrics] = None,
                 model_warmup: bool = True):
        self.model_base = model_base
        self.model_warmup = model_warmup
        self.model_name = model_name
        self.model_dir = os.path.join(model_base, model_name)
        self.num_versions = max(1, int(num_versions))
        self.poll_seconds = float(poll_seconds)
        self.batching = batching
        self.metrics = metrics or Metrics()
        self._lock = threading.Lock()
        self._servables: Dict[int, Servable] = {}
        self._latest: Optional[Servable] = None
        self._loading: Optional[int] = None
        self._failures: Dict[int, Tuple[int, str]] = {}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._available = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self.poll_once()
        if self._latest is None:
            logger.warning("no servable version of '%s' under %s yet; waiting for one",
                           self.model_name, self.model_dir)
        self._thread = threading.Thread(target=self._poll_loop, name="model-poller",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, self.poll_seconds * 2))
        with self._lock:
            servables = list(self._servables.values())
            self._servables.clear()
            self._latest = None
        for s in servables:
            s.retire(timeout=5.0)

    def wait_available(self, timeout: float) -> bool:
        return self._available.wait(timeout)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - a bad poll must not kill the poller
                logger.exception("polling %s failed", self.model_dir)

    # -- polling -----------------------------------------------------------------------
    def versions_on_disk(self) -> List[int]:
        try:
            entries = tf.io.gfile.listdir(self.model_dir)
        except (tf.errors.NotFoundError, OSError):
            return []
        versions = []
        for entry in entries:
            entry = entry.rstrip("/")
            if not entry.isdigit() or int(entry) <= 0:
                continue
            path = os.path.join(self.model_dir, entry)
            if (tf.io.gfile.exists(os.path.join(path, "saved_model.pb"))
                    or tf.io.gfile.exists(os.path.join(path, "saved_model.pbtxt"))):
                versions.append(int(entry))
        return sorted(set(versions), reverse=True)

    def poll_once(self) -> None:
        on_disk = self.versions_on_disk()
        wanted = on_disk[:self.num_versions]
        for version in wanted:  # highest first, so a new latest is served as soon as possible
            if self._stop.is_set():
                return
            with self._lock:
                if version in self._servables:
                    continue
                attempts, _ = self._failures.get(version, (0, ""))
                if attempts >= _MAX_LOAD_ATTEMPTS:
                    continue
                self._loading = version
            path = os.path.join(self.model_dir, str(version))
            try:
                logger.info("loading %s version %d from %s", self.model_name, version, path)
                servable = Servable(self.model_name, version, path, self.batching, self.metrics,
                                    model_warmup=self.model_warmup)
            except Exception as exc:  # noqa: BLE001 - record it, keep serving what we have
                with self._lock:
                    self._loading = None
                    attempts, _ = self._failures.get(version, (0, ""))
                    self._failures[version] = (attempts + 1, f"{type(exc).__name__}: {exc}")
                logger.error("loading %s version %d failed (attempt %d): %s", self.model_name,
                             version, attempts + 1, exc)
                self.metrics.inc("model_load_total", model=self.model_name, status="error")
                continue
            with self._lock:
                self._loading = None
                self._failures.pop(version, None)
                self._servables[version] = servable
                self._latest = self._servables[max(self._servables)]
            self._available.set()
            self.metrics.inc("model_load_total", model=self.model_name, status="ok")
            logger.info("%s version %d is AVAILABLE (loaded in %.2fs); serving version %d",
                        self.model_name, version, servable.load_seconds, self._latest.version)
        # Unload versions that are no longer wanted, but never the last available one.
        retired = []
        with self._lock:
            keep = [v for v in self._servables if v in wanted]
            for version in list(self._servables):
                if version not in wanted and keep:
                    retired.append(self._servables.pop(version))
            self._latest = self._servables[max(self._servables)] if self._servables else None
            for version in list(self._failures):
                if version not in on_disk:
                    self._failures.pop(version)
            loaded = sorted(self._servables)
        self.metrics.set("model_versions_loaded", len(loaded), model=self.model_name)
        if self._latest is not None:
            self.metrics.set("model_latest_version", self._latest.version, model=self.model_name)
        for servable in retired:
            threading.Thread(target=servable.retire, name=f"retire-{servable.version}",
                             daemon=True).start()

    # -- lookup ------------------------------------------------------------------------
    def _check_name(self, name: str) -> None:
        if name != self.model_name:
            raise NotFound(f"Servable not found for request: Latest({name})")

    @contextlib.contextmanager
    def acquire(self, name: str, version: Optional[int] = None) -> Iterator[Servable]:
        """The servable for ``name`` (latest, or a specific loaded version), ref-counted."""
        self._check_name(name)
        with self._lock:
            if version is None:
                servable = self._latest
                if servable is None:
                    raise NotFound(f"Servable not found for request: Latest({name})")
            else:
                servable = self._servables.get(version)
                if servable is None:
                    raise NotFound(f"Servable not found for request: Specific({name}, {version})")
            servable.acquire()
        try:
            yield servable
        finally:
            servable.release()

    def status(self, name: str, version: Optional[int] = None) -> List[Dict[str, Any]]:
        """TF Serving's ModelVersionStatus entries: {version, state, error_code, message}."""
        self._check_name(name)
        rows: Dict[int, Dict[str, Any]] = {}
        with self._lock:
            for v in self._servables:
                rows[v] = {"version": v, "state": "AVAILABLE", "error_code": "OK", "message": ""}
            if self._loading is not None:
                rows[self._loading] = {"version": self._loading, "state": "LOADING",
                                       "error_code": "OK", "message": ""}
            for v, (_, message) in self._failures.items():
                rows.setdefault(v, {"version": v, "state": "END", "error_code": "UNKNOWN",
                                    "message": message})
        if version is not None:
            if version not in rows:
                raise NotFound(f"Could not find version {version} of model {name}")
            return [rows[version]]
        if not rows:
            raise NotFound(f"Could not find any versions of model {name}")
        return [rows[v] for v in sorted(rows, reverse=True)]

    @property
    def loaded_versions(self) -> List[int]:
        with self._lock:
            return sorted(self._servables)


# ---------------------------------------------------------------------------------------
# Tensors <-> protos / JSON
# ---------------------------------------------------------------------------------------
def _fill_tensor_proto(proto: tensor_pb2.TensorProto, arr: np.ndarray) -> None:
    """Write ``arr`` into ``proto`` (like tf.make_tensor_proto, without its overhead)."""
    for size in arr.shape:
        proto.tensor_shape.dim.add().size = size
    kind = arr.dtype.kind
    flat = arr.ravel().tolist()
    if kind in "OS":
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(flat)
    elif kind == "U":
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(s.encode("utf-8") for s in flat)
    elif arr.dtype == np.bool_:
        proto.dtype = types_pb2.DT_BOOL
        proto.bool_val.extend(flat)
    elif arr.dtype == np.float32:
        proto.dtype = types_pb2.DT_FLOAT
        proto.float_val.extend(flat)
    elif arr.dtype == np.float64:
        proto.dtype = types_pb2.DT_DOUBLE
        proto.double_val.extend(flat)
    elif arr.dtype == np.int32:
        proto.dtype = types_pb2.DT_INT32
        proto.int_val.extend(flat)
    elif arr.dtype == np.int64:
        proto.dtype = types_pb2.DT_INT64
        proto.int64_val.extend(flat)
    else:
        proto.Clear()
        proto.CopyFrom(tf.make_tensor_proto(arr))


def _json_values(arr: np.ndarray) -> list:
    """A JSON-ready list for ``arr`` (strings decoded as UTF-8, float32 at float32 precision)."""
    kind = arr.dtype.kind
    if kind in "OS":
        def dec(x):
            if isinstance(x, list):
                return [dec(y) for y in x]
            return x.decode("utf-8", "replace") if isinstance(x, bytes) else x
        return dec(arr.tolist())
    if arr.dtype == np.float32 or arr.dtype == np.float16:
        if arr.ndim == 1:
            # shortest repr that round-trips in float32: 0.999, not 0.9990000128746033
            return [float(str(x)) for x in arr.astype(np.float32)]
        return arr.tolist()
    return arr.tolist()


def _signature_defs_json(sig_map: get_model_metadata_pb2.SignatureDefMap) -> Dict[str, Any]:
    return json_format.MessageToDict(sig_map, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def _status_json(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"model_version_status": [
        {"version": str(r["version"]), "state": r["state"],
         "status": {"error_code": r["error_code"], "error_message": r["message"]}}
        for r in rows]}


def _decode_json_string(value: Any, what: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidArgument(f"Unable to base64 decode {what}: {exc}") from exc
    kind = type(value).__name__
    kind = {"int": "Number", "float": "Number", "bool": "Bool", "NoneType": "Null",
            "list": "Array", "dict": "Object"}.get(kind, kind)
    raise InvalidArgument(f"JSON Value: {json.dumps(value)[:80]} Type: {kind} "
                          f"is not of expected type: string ({what})")


def parse_predict_json(body: Any, input_key: str) -> Tuple[List[bytes], bool, Optional[str]]:
    """Rows, whether the row format was used, and signature_name, from a predict body."""
    if not isinstance(body, dict):
        raise InvalidArgument("Request body must be a JSON object")
    signature_name = body.get("signature_name")
    if signature_name is not None and not isinstance(signature_name, str):
        raise InvalidArgument("'signature_name' must be a string")
    unknown = set(body) - {"instances", "inputs", "signature_name"}
    if unknown:
        raise InvalidArgument(f"Unknown key(s) in request: {sorted(unknown)}")
    if ("instances" in body) == ("inputs" in body):
        raise InvalidArgument("Missing 'inputs' or 'instances' key" if "instances" not in body
                              else "Request can have only one of 'inputs' or 'instances' keys")
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list):
            raise InvalidArgument("'instances' must be a JSON array")
        rows = []
        for i, item in enumerate(instances):
            if isinstance(item, dict) and set(item) != {"b64"}:
                if set(item) != {input_key}:
                    raise InvalidArgument(
                        f"instances[{i}] has key(s) {sorted(item)}; expected '{input_key}'")
                item = item[input_key]
            rows.append(_decode_json_string(item, f"instances[{i}]"))
        return rows, True, signature_name
    inputs = body["inputs"]
    if isinstance(inputs, dict) and set(inputs) != {"b64"}:
        if set(inputs) != {input_key}:
            raise InvalidArgument(f"'inputs' has key(s) {sorted(inputs)}; expected '{input_key}'")
        inputs = inputs[input_key]
    if not isinstance(inputs, list):
        raise InvalidArgument(f"'{input_key}' must be a 1-D array of strings [batch]")
    return [_decode_json_string(v, f"inputs[{i}]") for i, v in enumerate(inputs)], False, \
        signature_name


def format_predict_json(outputs: Dict[str, np.ndarray], row_format: bool,
                        keys: Sequence[str]) -> Dict[str, Any]:
    columns = {k: _json_values(outputs[k]) for k in keys}
    if row_format:
        if len(keys) == 1:
            return {"predictions": columns[keys[0]]}
        n = len(next(iter(columns.values()))) if columns else 0
        return {"predictions": [{k: columns[k][i] for k in keys} for i in range(n)]}
    if len(keys) == 1:
        return {"outputs": columns[keys[0]]}
    return {"outputs": columns}


# ---------------------------------------------------------------------------------------
# REST
# ---------------------------------------------------------------------------------------
_MODEL_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?::(?P<verb>[A-Za-z]+)|/(?P<meta>metadata))?/?$")
_METRICS_PATH = "/monitoring/prometheus/metrics"


class _RestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small JSON answers must not wait for delayed ACKs
    timeout = 120  # seconds an idle keep-alive connection is kept
    server_version = "lstm-math-serving"
    sys_version = ""
    server: "_RestHTTPServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("rest %s - %s", self.address_string(), format % args)

    # -- responses ---------------------------------------------------------------------
    def _send(self, status: int, payload: bytes, content_type: str = "application/json",
              extra: Sequence[Tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for k, v in extra:
            self.send_header(k, v)
        if self.server.owner.draining:
            self.send_header("Connection", "close")
            self.close_connection = True
        if self.command != "HEAD":
            # one write for headers + body (end_headers would write the headers alone)
            self._headers_buffer.append(b"\r\n")
            self._headers_buffer.append(payload)
            self.flush_headers()
        else:
            self.end_headers()

    def _send_json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
                   .encode("utf-8"))

    def _send_error(self, status: int, message: str, extra=()) -> None:
        self._send(status, json.dumps({"error": message}).encode("utf-8"), extra=extra)

    # -- dispatch ----------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        owner = self.server.owner
        owner._enter()
        self._body_consumed = False
        start = time.perf_counter()
        endpoint, status = "unknown", 500
        try:
            endpoint, status = self._route(method)
        except ServingError as exc:
            status = exc.http_status
            if not self._body_consumed:
                self._drain_body()
            self._send_error(status, exc.message)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - report, never kill the connection thread
            logger.exception("REST %s %s failed", method, self.path)
            status = 500
            self._send_error(500, f"Internal error: {type(exc).__name__}: {exc}")
        finally:
            owner.metrics.inc("requests_total", api="rest", endpoint=endpoint,
                              code=str(status))
            owner.metrics.observe("request_latency_seconds", time.perf_counter() - start,
                                  api="rest", endpoint=endpoint)
            owner._leave()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise _HttpError(411, "Chunked request bodies are not supported; send "
                                  "Content-Length")
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            raise _HttpError(411, "Content-Length required")
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise _HttpError(400, f"Invalid Content-Length: {length_text!r}") from None
        limit = self.server.owner.max_request_bytes
        if length > limit:
            # Do not read (or wait for) the oversized body: answer and drop the connection.
            self.close_connection = True
            raise _HttpError(413, f"Request body of {length} bytes exceeds the limit of "
                                  f"{limit} bytes", close=True)
        self._body_consumed = True
        return self.rfile.read(length) if length else b""

    def _route(self, method: str) -> Tuple[str, int]:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        if path == _METRICS_PATH:
            if method not in ("GET", "HEAD"):
                return self._method_not_allowed("metrics", "GET")
            self._send(200, owner.metrics.render().encode("utf-8"),
                       "text/plain; version=0.0.4; charset=utf-8")
            return "metrics", 200
        m = _MODEL_PATH.match(path)
        if m is None:
            self._drain_body()
            self._send_error(404, f"Malformed request: {method} {path}")
            return "unknown", 404
        name, version_text, label = m.group("name"), m.group("version"), m.group("label")
        verb, meta = m.group("verb"), m.group("meta")
        version = None
        if version_text is not None:
            if not version_text.isdigit():
                self._drain_body()
                self._send_error(404, f"Malformed request: {method} {path}")
                return "unknown", 404
            version = int(version_text)
        if label is not None:
            self._drain_body()
            raise NotFound(f"Unrecognized servable version label: {label}")
        if verb is not None:
            if verb not in ("predict", "classify", "regress"):
                self._drain_body()
                self._send_error(404, f"Malformed request: {method} {path}")
                return "unknown", 404
            if method != "POST":
                return self._method_not_allowed(verb, "POST")
            if verb != "predict":
                self._drain_body()
                raise InvalidArgument(f"'{verb}' is not supported by this model: its "
                                      f"'{DEFAULT_SIGNATURE}' signature is a predict signature")
            return self._predict(name, version)
        endpoint = "metadata" if meta else "status"
        if method not in ("GET", "HEAD"):
            return self._method_not_allowed(endpoint, "GET")
        if meta:
            with owner.manager.acquire(name, version) as servable:
                self._send_json(200, {
                    "model_spec": {"name": name, "signature_name": "",
                                   "version": str(servable.version)},
                    "metadata": {"signature_def": _signature_defs_json(servable.signature_defs)},
                })
            return endpoint, 200
        self._send_json(200, _status_json(owner.manager.status(name, version)))
        return endpoint, 200

    def _drain_body(self) -> None:
        if getattr(self, "_body_consumed", False):
            return
        self._body_consumed = True
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and 0 < int(length) <= self.server.owner.max_request_bytes:
            self.rfile.read(int(length))
        elif length and length != "0":
            self.close_connection = True

    def _method_not_allowed(self, endpoint: str, allowed: str) -> Tuple[str, int]:
        self._drain_body()
        self._send_error(405, f"Method {self.command} not allowed for {self.path}; use "
                              f"{allowed}", extra=[("Allow", allowed)])
        return endpoint, 405

    def _predict(self, name: str, version: Optional[int]) -> Tuple[str, int]:
        owner = self.server.owner
        try:
            with owner.manager.acquire(name, version) as servable:
                with servable.incoming() as incoming:
                    raw = self._read_body()
                    try:
                        body = json.loads(raw)
                    except (ValueError, UnicodeDecodeError) as exc:
                        raise InvalidArgument(f"JSON Parse error: {exc}") from exc
                    rows, row_format, signature_name = parse_predict_json(body,
                                                                          servable.input_key)
                    if signature_name not in (None, "", DEFAULT_SIGNATURE):
                        raise FailedPrecondition(
                            f"Serving signature name: \"{signature_name}\" not found in "
                            f"signature def")
                    outputs = servable.predict(
                        rows, incoming if servable.batcher is not None else None)
                response = format_predict_json(outputs, row_format, servable.output_keys)
                owner.metrics.inc("predict_rows_total", len(rows), api="rest", model=name)
        except _HttpError as exc:
            self._send_error(exc.status, exc.message)
            return "predict", exc.status
        self._send_json(200, response)
        return "predict", 200


class _HttpError(Exception):
    def __init__(self, status: int, message: str, close: bool = False):
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


class _RestHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, owner: "ModelServer"):
        self.owner = owner
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._conns: set = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _RestHandler)

    def process_request(self, request, client_address):
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_idle_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):
        logger.debug("REST connection error from %s", client_address, exc_info=True)


# ---------------------------------------------------------------------------------------
# gRPC
# ---------------------------------------------------------------------------------------
def _model_spec_version(spec) -> Optional[int]:
    if spec.HasField("version"):
        return int(spec.version.value)
    if spec.version_label:
        raise NotFound(f"Unrecognized servable version label: {spec.version_label}")
    return None


class _GrpcCall:
    """Maps ServingError to a gRPC status and records metrics for one RPC."""

    def __init__(self, owner: "ModelServer", endpoint: str, context):
        self.owner, self.endpoint, self.context = owner, endpoint, context

    def __enter__(self):
        self.start = time.perf_counter()
        self.owner._enter()
        return self

    def __exit__(self, exc_type, exc, tb):
        code = "OK"
        try:
            if exc is not None:
                if isinstance(exc, ServingError):
                    code = exc.code.name
                    self.context.abort(exc.code, exc.message)
                if isinstance(exc, Exception) and not isinstance(exc, grpc.RpcError):
                    code = "INTERNAL"
                    logger.exception("gRPC %s failed", self.endpoint, exc_info=exc)
                    self.context.abort(grpc.StatusCode.INTERNAL,
                                       f"{type(exc).__name__}: {exc}")
        finally:
            self.owner.metrics.inc("requests_total", api="grpc", endpoint=self.endpoint,
                                   code=code)
            self.owner.metrics.observe("request_latency_seconds",
                                       time.perf_counter() - self.start, api="grpc",
                                       endpoint=self.endpoint)
            self.owner._leave()
        return False


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, owner: "ModelServer"):
        self.owner = owner

    def Predict(self, request, context):  # noqa: N802 - gRPC method name
        with _GrpcCall(self.owner, "predict", context):
            spec = request.model_spec
            version = _model_spec_version(spec)
            signature_name = spec.signature_name or DEFAULT_SIGNATURE
            with self.owner.manager.acquire(spec.name, version) as servable:
                if signature_name != DEFAULT_SIGNATURE:
                    raise FailedPrecondition(f"Serving signature key \"{signature_name}\" "
                                             f"not found.")
                key = servable.input_key
                if set(request.inputs) != {key}:
                    raise InvalidArgument(
                        f"Expected input '{key}' only; got {sorted(request.inputs)}")
                tensor = request.inputs[key]
                if tensor.dtype != types_pb2.DT_STRING:
                    raise InvalidArgument(
                        f"Expects arg[0] ('{key}') to be string but "
                        f"{types_pb2.DataType.Name(tensor.dtype)} is provided")
                dims = [d.size for d in tensor.tensor_shape.dim]
                rows = list(tensor.string_val)
                if len(dims) != 1 or dims[0] != len(rows):
                    raise InvalidArgument(
                        f"input '{key}' must be a 1-D string tensor [batch]; got shape "
                        f"{dims} with {len(rows)} values")
                keys = list(request.output_filter) or servable.output_keys
                for k in keys:
                    if k not in servable.output_keys:
                        raise InvalidArgument(f"output tensor alias not found in signature: {k}")
                outputs = servable.predict(rows)
                response = predict_pb2.PredictResponse()
                response.model_spec.name = spec.name
                response.model_spec.version.value = servable.version
                response.model_spec.signature_name = signature_name
                for k in keys:
                    _fill_tensor_proto(response.outputs[k], outputs[k])
                self.owner.metrics.inc("predict_rows_total", len(rows), api="grpc",
                                       model=spec.name)
                return response

    def GetModelMetadata(self, request, context):  # noqa: N802
        with _GrpcCall(self.owner, "metadata", context):
            fields = list(request.metadata_field)
            if not fields:
                raise InvalidArgument("GetModelMetadataRequest must specify at least one "
                                      "metadata_field")
            for field in fields:
                if field != "signature_def":
                    raise InvalidArgument(f"Metadata field {field} is not supported")
            spec = request.model_spec
            with self.owner.manager.acquire(spec.name, _model_spec_version(spec)) as servable:
                response = get_model_metadata_pb2.GetModelMetadataResponse()
                response.model_spec.name = spec.name
                response.model_spec.version.value = servable.version
                response.metadata["signature_def"].Pack(servable.signature_defs)
                return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, owner: "ModelServer"):
        self.owner = owner

    def GetModelStatus(self, request, context):  # noqa: N802
        with _GrpcCall(self.owner, "status", context):
            spec = request.model_spec
            rows = self.owner.manager.status(spec.name, _model_spec_version(spec))
            response = get_model_status_pb2.GetModelStatusResponse()
            states = get_model_status_pb2.ModelVersionStatus.State
            for r in rows:
                entry = response.model_version_status.add()
                entry.version = r["version"]
                entry.state = states.Value(r["state"])
                entry.status.error_code = _ERROR_CODES.values_by_name[r["error_code"]].number
                entry.status.error_message = r["message"]
            return response


# ---------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------
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
                 num_batch_threads: int = 0, max_enqueued_batches: int = 100,
                 adaptive_batch_timeout: bool = True, poll_seconds: float = DEFAULT_POLL_SECONDS,
                 num_versions: int = 2, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 grpc_max_workers: int = 64, metrics: Optional[Metrics] = None,
                 model_warmup: bool = True):
        self.host = host
        self.model_name = model_name
        self.max_request_bytes = int(max_request_bytes)
        self.metrics = metrics or Metrics()
        self._describe_metrics()
        batching = None
        if enable_batching:
            batching = dict(max_batch_size=max_batch_size,
                            batch_timeout_micros=batch_timeout_micros,
                            num_batch_threads=num_batch_threads or 1,
                            max_enqueued_batches=max_enqueued_batches,
                            adaptive=adaptive_batch_timeout)
        self.batching = batching
        self.manager = ModelManager(model_base, model_name, num_versions=num_versions,
                                    poll_seconds=poll_seconds, batching=batching,
                                    metrics=self.metrics, model_warmup=model_warmup)
        self._rest_port_req = rest_port
        self._grpc_port_req = grpc_port
        self._grpc_max_workers = grpc_max_workers
        self.rest_port: Optional[int] = None
        self.grpc_port: Optional[int] = None
        self._rest: Optional[_RestHTTPServer] = None
        self._rest_thread: Optional[threading.Thread] = None
        self._grpc: Optional[grpc.Server] = None
        self._inflight = 0
        self._inflight_cv = threading.Condition()
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
        m.describe("model_load_total", "Version loads by status.")
        m.describe("model_versions_loaded", "Versions loaded.")
        m.describe("model_latest_version", "The version served by default.")

    # in-flight accounting for graceful shutdown
    def _enter(self) -> None:
        with self._inflight_cv:
            self._inflight += 1

    def _leave(self) -> None:
        with self._inflight_cv:
            self._inflight -= 1
            if self._inflight == 0:
                self._inflight_cv.notify_all()

    @staticmethod
    def _grpc_address(host: str, port: int) -> str:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def start(self) -> "ModelServer":
        if self._started:
            return self
        self.manager.start()
        try:
            if self._grpc_port_req is not None:
                options = [("grpc.max_receive_message_length", self.max_request_bytes),
                           ("grpc.max_send_message_length", 64 * 1024 * 1024),
                           ("grpc.so_reuseport", 0)]
                self._grpc = grpc.server(
                    concurrent.futures.ThreadPoolExecutor(max_workers=self._grpc_max_workers,
                                                          thread_name_prefix="grpc"),
                    options=options)
                prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
                    PredictionServicer(self), self._grpc)
                model_service_pb2_grpc.add_ModelServiceServicer_to_server(
                    ModelServicer(self), self._grpc)
                port = self._grpc.add_insecure_port(
                    self._grpc_address(self.host, self._grpc_port_req))
                if not port:
                    raise OSError(f"could not bind gRPC to {self.host}:{self._grpc_port_req}")
                self.grpc_port = port
                self._grpc.start()
                logger.info("gRPC listening on %s", self._grpc_address(self.host, port))
            if self._rest_port_req is not None:
                self._rest = _RestHTTPServer((self.host, self._rest_port_req), self)
                self.rest_port = self._rest.server_address[1]
                self._rest_thread = threading.Thread(
                    target=self._rest.serve_forever, kwargs={"poll_interval": 0.2},
                    name="rest-accept", daemon=True)
                self._rest_thread.start()
                logger.info("REST listening on http://%s:%d",
                            f"[{self.host}]" if ":" in self.host else self.host, self.rest_port)
        except BaseException:
            self._started = True
            self.stop(grace=0)
            raise
        self._started = True
        return self

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish (bounded by ``grace``), unload."""
        if not self._started or self._stopped.is_set():
            return
        self.draining = True
        logger.info("stopping: draining in-flight requests (grace %.1fs)", grace)
        grpc_done = self._grpc.stop(grace) if self._grpc is not None else None
        if self._rest is not None:
            self._rest.shutdown()  # stops the accept loop; handler threads keep running
        deadline = time.monotonic() + grace
        with self._inflight_cv:
            while self._inflight > 0 and time.monotonic() < deadline:
                self._inflight_cv.wait(deadline - time.monotonic())
        if self._rest is not None:
            self._rest.close_idle_connections()
            self._rest.server_close()
        if grpc_done is not None:
            grpc_done.wait(max(0.0, deadline - time.monotonic()) + 1.0)
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


# ---------------------------------------------------------------------------------------
# Command line: ``lstm-math serve`` / ``python -m serving.server``
# ---------------------------------------------------------------------------------------
def add_serve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model-base", required=True,
                        help="directory holding <model-name>/<version>/saved_model.pb")
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME,
                        help="model name in URLs and gRPC model_spec (default %(default)s)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default %(default)s; 0.0.0.0 for all)")
    parser.add_argument("--rest-port", type=int, default=DEFAULT_REST_PORT,
                        help="REST port (default %(default)s; 0 = any free port; -1 = off)")
    parser.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT,
                        help="gRPC port (default %(default)s; 0 = any free port; -1 = off)")
    parser.add_argument("--max-batch-size", type=int, default=DEFAULT_MAX_BATCH_SIZE,
                        help="most rows merged into one batch (default %(default)s)")
    parser.add_argument("--batch-timeout-micros", type=int,
                        default=DEFAULT_BATCH_TIMEOUT_MICROS,
                        help="longest wait for more rows before running a batch "
                             "(default %(default)s)")
    parser.add_argument("--num-batch-threads", type=int, default=0,
                        help="batches run in parallel (default 1: TF already spreads one batch over "
                             "all cores, and one thread merges requests best)")
    parser.add_argument("--max-enqueued-batches", type=int, default=100,
                        help="queue limit in full batches; beyond it requests are refused "
                             "(default %(default)s)")
    parser.add_argument("--strict-batch-timeout", action="store_true",
                        help="always wait the full batch timeout, like TF Serving (default: "
                             "only while other requests are arriving)")
    parser.add_argument("--no-batching", action="store_true",
                        help="run each request on its own")
    parser.add_argument("--no-model-warmup", action="store_true",
                        help="do not replay the SavedModel's assets.extra/"
                             "tf_serving_warmup_requests at load (TF Serving's "
                             "--enable_model_warmup=false)")
    parser.add_argument("--poll-seconds", type=float, default=DEFAULT_POLL_SECONDS,
                        help="how often to look for new versions (default %(default)s)")
    parser.add_argument("--num-versions", type=int, default=2,
                        help="latest versions kept loaded (default %(default)s)")
    parser.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES,
                        help="largest request body accepted (default %(default)s)")
    parser.add_argument("--grace-seconds", type=float, default=10.0,
                        help="how long shutdown waits for in-flight requests")
    parser.add_argument("--port-file",
                        help="write {\"rest_port\": N, \"grpc_port\": M} here once listening")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser


def server_from_args(args: argparse.Namespace) -> ModelServer:
    return ModelServer(
        args.model_base, model_name=args.model_name, host=args.host,
        rest_port=None if args.rest_port < 0 else args.rest_port,
        grpc_port=None if args.grpc_port < 0 else args.grpc_port,
        enable_batching=not args.no_batching, max_batch_size=args.max_batch_size,
        batch_timeout_micros=args.batch_timeout_micros,
        num_batch_threads=args.num_batch_threads,
        max_enqueued_batches=args.max_enqueued_batches,
        adaptive_batch_timeout=not args.strict_batch_timeout,
        poll_seconds=args.poll_seconds, num_versions=args.num_versions,
        max_request_bytes=args.max_request_bytes, model_warmup=not args.no_model_warmup)


def run_serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM / SIGINT, then shut down gracefully. Returns the exit status."""
    if not logging.getLogger().handlers:
        logging.basicConfig(force=True, level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:
        logging.getLogger("lstm_math").setLevel(
            getattr(logging, str(args.log_level).upper(), logging.INFO))
    stop = threading.Event()

    def _on_signal(signum, _frame):
        logger.info("received %s", signal.Signals(signum).name)
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, _on_signal)
    server = server_from_args(args)
    try:
        server.start()
    except OSError as exc:
        logger.error("could not start the server: %s", exc)
        return 1
    try:
        if args.port_file:
            tmp = args.port_file + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"rest_port": server.rest_port, "grpc_port": server.grpc_port,
                           "pid": os.getpid()}, f)
            os.replace(tmp, args.port_file)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop(grace=args.grace_seconds)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serving.server",
        description="TF Serving-compatible REST + gRPC server for lstm-math SavedModels.")
    add_serve_arguments(parser)
    return run_serve(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
