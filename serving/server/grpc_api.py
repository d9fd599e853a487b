"""TF Serving's gRPC services: ``PredictionService.Predict`` / ``GetModelMetadata`` and
``ModelService.GetModelStatus``, as the tensorflow-serving-api stubs call them, on
``grpc.aio`` with its own event loop (measured with the serving benchmark against grpcio's
threaded server and against sharing REST's loop: more single-equation requests per second
at 32 concurrent clients and less server CPU per request; see serving/README.md).

The RPC's deadline goes with its rows into the batcher, and an RPC that ends early (client
cancelled or gone, deadline passed) cancels its handler, which drops its queued rows, so
rows nobody waits for never reach the model. A request above the per-request row limit is
INVALID_ARGUMENT before its strings are copied out of the proto.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Optional

import grpc
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, status_pb2)

from lstm_math.serving.server.codecs import check_rows, fill_tensor_proto
from lstm_math.serving.server.errors import FailedPrecondition, InvalidArgument, NotFound, ServingError
from lstm_math.serving.server.models import DEFAULT_SIGNATURE

if TYPE_CHECKING:  # pragma: no cover
    from lstm_math.serving.server.app import ModelServer

logger = logging.getLogger("lstm_math.serving")
_ERROR_CODES = status_pb2.StatusProto.DESCRIPTOR.fields_by_name["error_code"].enum_type


def model_spec_version(spec) -> Optional[int]:
    if spec.HasField("version"):
        return int(spec.version.value)
    if spec.version_label:
        raise NotFound(f"Unrecognized servable version label: {spec.version_label}")
    return None


async def _call(owner: "ModelServer", endpoint: str, context, coro):
    """Await ``coro``; map ServingError to a gRPC status; record metrics."""
    start = time.perf_counter()
    owner._enter()
    code = "OK"
    try:
        return await coro
    except ServingError as exc:
        code = exc.code.name
        await context.abort(exc.code, exc.message)
    except asyncio.CancelledError:  # the client went away or the deadline passed
        code = "CANCELLED"
        raise
    except Exception as exc:  # noqa: BLE001 - reported to the caller and the log
        if isinstance(exc, grpc.aio.AbortError):
            raise
        code = "INTERNAL"
        logger.exception("gRPC %s failed", endpoint)
        await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
    finally:
        owner.metrics.inc("requests_total", api="grpc", endpoint=endpoint, code=code)
        owner.metrics.observe("request_latency_seconds", time.perf_counter() - start,
                              api="grpc", endpoint=endpoint)
        owner._leave()


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, owner: "ModelServer"):
        self.owner = owner

    async def Predict(self, request, context):  # noqa: N802 - gRPC method name
        return await _call(self.owner, "predict", context, self._predict(request, context))

    async def _predict(self, request, context):
        owner = self.owner
        spec = request.model_spec
        version = model_spec_version(spec)
        signature_name = spec.signature_name or DEFAULT_SIGNATURE
        remaining = context.time_remaining()
        deadline = time.monotonic() + remaining if remaining is not None else None
        with owner.manager.acquire(spec.name, version) as servable:
            if signature_name != DEFAULT_SIGNATURE:
                raise FailedPrecondition(f"Serving signature key \"{signature_name}\" "
                                         f"not found.")
            key = servable.input_key
            if len(request.inputs) != 1 or key not in request.inputs:
                raise InvalidArgument(
                    f"Expected input '{key}' only; got {sorted(request.inputs)}")
            tensor = request.inputs[key]
            if tensor.dtype != types_pb2.DT_STRING:
                raise InvalidArgument(
                    f"Expects arg[0] ('{key}') to be string but "
                    f"{types_pb2.DataType.Name(tensor.dtype)} is provided")
            dims = [d.size for d in tensor.tensor_shape.dim]
            count = len(tensor.string_val)
            if len(dims) != 1 or dims[0] != count:
                raise InvalidArgument(
                    f"input '{key}' must be a 1-D string tensor [batch]; got shape "
                    f"{dims} with {count} values")
            check_rows(count, owner.max_request_rows)
            keys = list(request.output_filter) or servable.output_keys
            for k in keys:
                if k not in servable.output_keys:
                    raise InvalidArgument(f"output tensor alias not found in signature: {k}")
            rows = list(tensor.string_val)
            outputs = await servable.predict_async(rows, deadline=deadline)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = spec.name
            response.model_spec.version.value = servable.version
            response.model_spec.signature_name = signature_name
            for k in keys:
                fill_tensor_proto(response.outputs[k], outputs[k])
        owner.metrics.inc("predict_rows_total", len(rows), api="grpc", model=spec.name)
        return response

    async def GetModelMetadata(self, request, context):  # noqa: N802
        return await _call(self.owner, "metadata", context, self._metadata(request))

    async def _metadata(self, request):
        fields = list(request.metadata_field)
        if not fields:
            raise InvalidArgument("GetModelMetadataRequest must specify at least one "
                                  "metadata_field")
        for field in fields:
            if field != "signature_def":
                raise InvalidArgument(f"Metadata field {field} is not supported")
        spec = request.model_spec
        with self.owner.manager.acquire(spec.name, model_spec_version(spec)) as servable:
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = spec.name
            response.model_spec.version.value = servable.version
            response.metadata["signature_def"].Pack(servable.signature_defs)
            return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, owner: "ModelServer"):
        self.owner = owner

    async def GetModelStatus(self, request, context):  # noqa: N802
        return await _call(self.owner, "status", context, self._status(request))

    async def _status(self, request):
        spec = request.model_spec
        rows = self.owner.manager.status(spec.name, model_spec_version(spec))
        response = get_model_status_pb2.GetModelStatusResponse()
        states = get_model_status_pb2.ModelVersionStatus.State
        for r in rows:
            entry = response.model_version_status.add()
            entry.version = r["version"]
            entry.state = states.Value(r["state"])
            entry.status.error_code = _ERROR_CODES.values_by_name[r["error_code"]].number
            entry.status.error_message = r["message"]
        return response


def add_services(server: grpc.aio.Server, owner: "ModelServer") -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(owner), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(owner), server)
