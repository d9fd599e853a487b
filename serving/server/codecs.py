"""Request and response codecs: TF Serving's REST JSON and TensorProtos <-> numpy rows."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from lstm_math.serving.server.errors import InvalidArgument


def fill_tensor_proto(proto: tensor_pb2.TensorProto, arr: np.ndarray) -> None:
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


def json_values(arr: np.ndarray) -> list:
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


def signature_defs_json(sig_map: get_model_metadata_pb2.SignatureDefMap) -> Dict[str, Any]:
    return json_format.MessageToDict(sig_map, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def status_json(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"model_version_status": [
        {"version": str(r["version"]), "state": r["state"],
         "status": {"error_code": r["error_code"], "error_message": r["message"]}}
        for r in rows]}


def decode_json_string(value: Any, what: str) -> bytes:
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
    if isinstance(value, (list, dict)):
        shown = "[...]" if isinstance(value, list) else "{...}"
    else:
        shown = json.dumps(value)[:80]
    raise InvalidArgument(f"JSON Value: {shown} Type: {kind} "
                          f"is not of expected type: string ({what})")


def check_rows(count: int, max_rows: Optional[int]) -> None:
    """InvalidArgument when a request holds more than ``max_rows`` rows (None: no limit)."""
    if max_rows is not None and count > max_rows:
        raise InvalidArgument(f"The request has {count} rows; the limit is {max_rows} rows "
                              f"per request (split it, or raise --max-request-rows)")


def parse_predict_json(body: Any, input_key: str, max_rows: Optional[int] = None
                       ) -> Tuple[List[bytes], bool, Optional[str]]:
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
        check_rows(len(instances), max_rows)
        rows = []
        for i, item in enumerate(instances):
            if isinstance(item, dict) and set(item) != {"b64"}:
                if set(item) != {input_key}:
                    raise InvalidArgument(
                        f"instances[{i}] has key(s) {sorted(item)}; expected '{input_key}'")
                item = item[input_key]
            rows.append(decode_json_string(item, f"instances[{i}]"))
        return rows, True, signature_name
    inputs = body["inputs"]
    if isinstance(inputs, dict) and set(inputs) != {"b64"}:
        if set(inputs) != {input_key}:
            raise InvalidArgument(f"'inputs' has key(s) {sorted(inputs)}; expected '{input_key}'")
        inputs = inputs[input_key]
    if not isinstance(inputs, list):
        raise InvalidArgument(f"'{input_key}' must be a 1-D array of strings [batch]")
    check_rows(len(inputs), max_rows)
    return [decode_json_string(v, f"inputs[{i}]") for i, v in enumerate(inputs)], False, \
        signature_name


def format_predict_json(outputs: Dict[str, np.ndarray], row_format: bool,
                        keys: Sequence[str]) -> Dict[str, Any]:
    columns = {k: json_values(outputs[k]) for k in keys}
    if row_format:
        if len(keys) == 1:
            return {"predictions": columns[keys[0]]}
        n = len(next(iter(columns.values()))) if columns else 0
        return {"predictions": [{k: columns[k][i] for k in keys} for i in range(n)]}
    if len(keys) == 1:
        return {"outputs": columns[keys[0]]}
    return {"outputs": columns}
