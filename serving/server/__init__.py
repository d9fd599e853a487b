"""A TF Serving-compatible model server for the lstm-math SavedModels (DESIGN.md section 4).

It serves ``<model_base>/<model_name>/<version>/saved_model.pb`` over

* REST, following TF Serving's REST API: ``POST /v1/models/NAME[/versions/N]:predict``
  (row ``instances`` and columnar ``inputs`` formats), ``GET /v1/models/NAME[/versions/N]``
  (status) and ``GET /v1/models/NAME[/versions/N]/metadata``; Prometheus metrics at
  ``GET /monitoring/prometheus/metrics`` (aiohttp);
* gRPC, with the official ``tensorflow.serving`` services: ``PredictionService.Predict`` /
  ``GetModelMetadata`` and ``ModelService.GetModelStatus`` (grpc.aio).

The modules, along the server's seams (none imports ``pipeline`` or ``components``):

* :mod:`~lstm_math.serving.server.errors` - errors carrying a gRPC code and an HTTP status;
* :mod:`~lstm_math.serving.server.servable` - a loaded version (``Servable``: its batcher,
  warm-up, reference count);
* :mod:`~lstm_math.serving.server.models` - the version manager (``ModelManager``: polling,
  the serving window, failed versions);
* :mod:`~lstm_math.serving.server.codecs` - REST JSON and TensorProto encoding / decoding;
* :mod:`~lstm_math.serving.server.json_limits` - refusing an oversized REST body before
  parsing it;
* :mod:`~lstm_math.serving.server.rest_api` - the REST front end on aiohttp, with
  deadlines on bodies and the body budget;
* :mod:`~lstm_math.serving.server.connections` - its connections: the connection cap
  (eviction of the least busy) and the deadline on request headers;
* :mod:`~lstm_math.serving.server.grpc_api` - the gRPC services on grpc.aio, with a deadline
  on each call's request message;
* :mod:`~lstm_math.serving.server.app` - ``ModelServer``: each front end on its own event loop (gRPC's
  on uvloop where installed), start-up and graceful shutdown;
* :mod:`~lstm_math.serving.server.command` - ``lstm-math serve`` / ``python -m lstm_math.serving.server``;
* :mod:`~lstm_math.serving.server.defaults` - the defaults and ranges of the settings, without
  TensorFlow (the command line checks its flags before loading it).
"""

import importlib

# Importing the package loads nothing heavy: ``lstm-math serve`` declares and checks its flags
# (command.py, defaults.py) before TensorFlow is imported; each name below is imported from
# its module on first use.
_EXPORTS = {
    "DEFAULT_BATCH_TIMEOUT_MICROS": "defaults", "DEFAULT_GRPC_PORT": "defaults",
    "DEFAULT_MAX_BATCH_SIZE": "defaults", "DEFAULT_MAX_CONNECTIONS": "defaults",
    "DEFAULT_MAX_ENQUEUED_BATCHES": "defaults", "DEFAULT_MAX_REQUEST_BYTES": "defaults",
    "DEFAULT_MAX_REQUEST_ROWS": "defaults", "DEFAULT_POLL_SECONDS": "defaults",
    "DEFAULT_REST_PORT": "defaults", "ModelServer": "app",
    "format_predict_json": "codecs", "parse_predict_json": "codecs",
    "add_serve_arguments": "command", "main": "command", "run_serve": "command",
    "server_from_args": "command",
    "Cancelled": "errors", "DeadlineExceeded": "errors", "FailedPrecondition": "errors",
    "InvalidArgument": "errors", "NotFound": "errors", "ResourceExhausted": "errors",
    "ServingError": "errors", "Unavailable": "errors",
    "ModelManager": "models", "DEFAULT_SIGNATURE": "servable", "Servable": "servable",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "DEFAULT_BATCH_TIMEOUT_MICROS", "DEFAULT_GRPC_PORT", "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_CONNECTIONS", "DEFAULT_MAX_ENQUEUED_BATCHES", "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_MAX_REQUEST_ROWS", "DEFAULT_POLL_SECONDS", "DEFAULT_REST_PORT",
    "DEFAULT_SIGNATURE", "Cancelled", "DeadlineExceeded", "FailedPrecondition",
    "InvalidArgument", "ModelManager", "ModelServer", "NotFound", "ResourceExhausted",
    "Servable", "ServingError", "Unavailable", "add_serve_arguments", "format_predict_json",
    "main", "parse_predict_json", "run_serve", "server_from_args",
]
