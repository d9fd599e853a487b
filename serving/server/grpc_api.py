"""TF Serving's gRPC services: ``PredictionService.Predict`` / ``GetModelMetadata`` and
``ModelService.GetModelStatus``, as the tensorflow-serving-api stubs call them, on
``grpc.aio`` with its own event loop (measured with the serving benchmark against grpcio's
threaded server and against sharing REST's loop: more single-equation requests per second
at 32 concurrent clients and less server CPU per request; see serving/README.md).

The RPC's deadline goes with its rows into the batcher, and an RPC that ends early (client
cancelled or gone, deadline passed) cancels its handler, which drops its queued rows, so
rows nobody waits for never reach the model. A request above the per-request row limit is
INVALID_ARGUMENT before its strings are copied out of the proto.

:class:`MessageDeadline` serves each unary method as a stream-unary one, identical on the
wire: the request message must arrive within a deadline after the call's headers (grpc has
no such limit: a call whose message never comes would hold one of
``maximum_concurrent_rpcs`` for good), and it is parsed here, so a malformed message is
INVALID_ARGUMENT, counted, with no traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Optional

import grpc
from google.protobuf.message import DecodeError
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     predict_pb2, status_pb2)

from lstm_math.serving.server.codecs import check_rows, fill_tensor_proto
from lstm_math.serving.server.errors import FailedPrecondition, InvalidArgument, NotFound, ServingError
from lstm_math.serving.server.servable import DEFAULT_SIGNATURE

if TYPE_CHECKING:  # pragma: no cover
    from lstm_math.serving.server.app import ModelServer

logger = logging.getLogger("lstm_math.serving")
_ERROR_CODES = status_pb2.StatusProto.DESCRIPTOR.fields_by_name["error_code"].enum_type


def dtype_name(number: int) -> str:
    """A client's ``DataType`` as text: its name, or the number when it names no type
    (``DataType.Name`` raises ValueError on a number the enum does not define)."""
    value = types_pb2.DataType.DESCRIPTOR.values_by_number.get(number)
    return value.name if value is not None else f"undefined DataType {number}"


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


class PredictionServicer:
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
                    f"{dtype_name(tensor.dtype)} is provided")
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
            if len(set(keys)) != len(keys):
                duplicated = sorted({k for k in keys if keys.count(k) > 1})
                raise InvalidArgument(f"duplicate output tensor alias in output_filter: "
                                      f"{', '.join(duplicated)}")
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


class ModelServicer:
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


ENDPOINTS = {
    "/tensorflow.serving.PredictionService/Predict": "predict",
    "/tensorflow.serving.PredictionService/GetModelMetadata": "metadata",
    "/tensorflow.serving.ModelService/GetModelStatus": "status",
}


class MessageDeadline:
    """Serves each unary-unary method as stream-unary (the same bytes on the wire): the
    one request message must arrive within ``timeout`` seconds of the call's headers, else
    DEADLINE_EXCEEDED; an undecodable one is INVALID_ARGUMENT. Then at most ``max_calls``
    calls run at once; one more is RESOURCE_EXHAUSTED. All three are counted in
    ``requests_total`` under the method's endpoint, and logged at debug level only.

    The concurrency limit is counted here, after the message has arrived, rather than by
    grpc's ``maximum_concurrent_rpcs`` alone: that one counts a call from its headers and
    answers before reading the message, which clients bursting many calls saw about 7% of
    the time as CANCELLED, and which no metric counted. (Registered as the method handlers
    themselves rather than as a server interceptor: an interceptor costs every call an
    extra await chain.)"""

    def __init__(self, owner: "ModelServer", timeout: float, max_calls: Optional[int] = None):
        self.owner = owner
        self.timeout = float(timeout) if timeout and timeout > 0 else None
        self.max_calls = int(max_calls) if max_calls else None
        self.active = 0  # calls past their message, on the gRPC event loop

    def wrap(self, method: str, behaviour, deserialize, serialize):
        """The stream-unary handler of unary method ``method`` (its full name)."""
        endpoint = ENDPOINTS.get(method, "unknown")
        owner, timeout, limiter = self.owner, self.timeout, self

        async def refuse(context, code, message):
            owner.metrics.inc("requests_total", api="grpc", endpoint=endpoint, code=code.name)
            logger.debug("gRPC %s: %s %s", method, code.name, message)
            await context.abort(code, message)

        async def unary(request_iterator, context):
            try:
                if timeout is None:
                    raw = await context.read()
                else:
                    async with asyncio.timeout(timeout):  # no extra task, unlike wait_for
                        raw = await context.read()
            except TimeoutError:
                owner.metrics.inc("timed_out_requests_total", stage="grpc_message")
                await refuse(context, grpc.StatusCode.DEADLINE_EXCEEDED,
                             f"the request message did not arrive within {timeout:g}s of "
                             f"the call's headers")
            if raw is grpc.aio.EOF:
                await refuse(context, grpc.StatusCode.INVALID_ARGUMENT,
                             "the call ended without a request message")
            try:
                request = deserialize(raw) if deserialize is not None else raw
            except (DecodeError, ValueError, TypeError) as exc:
                await refuse(context, grpc.StatusCode.INVALID_ARGUMENT,
                             f"malformed request message: {exc}")
            del raw
            if limiter.max_calls is not None and limiter.active >= limiter.max_calls:
                await refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"Concurrent RPC limit exceeded ({limiter.max_calls} calls in "
                             f"progress); retry later")
            limiter.active += 1
            try:
                return await behaviour(request, context)
            finally:
                limiter.active -= 1

        return grpc.stream_unary_rpc_method_handler(unary, request_deserializer=None,
                                                    response_serializer=serialize)


PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"


def add_services(server: grpc.aio.Server, owner: "ModelServer",
                 deadline: Optional[MessageDeadline] = None) -> MessageDeadline:
    """Register PredictionService (Predict, GetModelMetadata) and ModelService
    (GetModelStatus), each method behind ``deadline``; other methods are UNIMPLEMENTED."""
    deadline = deadline or MessageDeadline(owner, 0)
    prediction, model = PredictionServicer(owner), ModelServicer(owner)

    def handlers(service, methods):
        return grpc.method_handlers_generic_handler(service, {
            name: deadline.wrap(f"/{service}/{name}", behaviour, request.FromString,
                                response.SerializeToString)
            for name, (behaviour, request, response) in methods.items()})

    server.add_generic_rpc_handlers((
        handlers(PREDICTION_SERVICE, {
            "Predict": (prediction.Predict, predict_pb2.PredictRequest,
                        predict_pb2.PredictResponse),
            "GetModelMetadata": (prediction.GetModelMetadata,
                                 get_model_metadata_pb2.GetModelMetadataRequest,
                                 get_model_metadata_pb2.GetModelMetadataResponse)}),
        handlers(MODEL_SERVICE, {
            "GetModelStatus": (model.GetModelStatus,
                               get_model_status_pb2.GetModelStatusRequest,
                               get_model_status_pb2.GetModelStatusResponse)}),
    ))
    return deadline
