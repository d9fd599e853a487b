"""Clients for the lstm-math model: REST, gRPC (official TF Serving stubs), or in-process.

``lstm-math predict "31 + 87" "1 + 9" [--via rest|grpc|saved-model]`` prints one line per
equation, an answer the model does not vouch for (``trusted`` false: its confidence is below
the model's trust threshold for that operator) marked unsure::

    31 + 87 = 118
    263 + 109 = 373?  (unsure: confidence 0.703 < 0.989)
    31 + x  invalid: unknown character 'x'

and exits with status 3 when any answer is unsure (0 when every answer is trusted or the
row is invalid, 1 on errors, 2 on usage errors).

The functions return one dict per equation: ``{"equation", "result", "valid", "error",
"confidence", "trusted"}``. They work against this repo's server (``lstm_math.serving.server``)
and against the real ``tensorflow_model_server`` alike.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

from lstm_math.serving.contract import (DEFAULT_MODEL_NAME, OUTPUT_KEYS, TRUSTED_KEY,
                                        WORKING_OUTPUT, latest_version)

# Read too where a model has it (a model that writes its working; REST returns every output).
EXTRA_OUTPUT_KEYS = (WORKING_OUTPUT,)


class PredictError(RuntimeError):
    """The server answered with an error (HTTP status / gRPC code in ``code``)."""

    def __init__(self, message: str, code: Any = None):
        super().__init__(message)
        self.code = code


class ConnectError(PredictError, ConnectionError):
    """The server could not be reached, or closed the connection without an answer (an
    ``OSError`` too, as before)."""


def _rows(equations: Sequence[str], columns: Dict[str, Sequence[Any]]) -> List[Dict[str, Any]]:
    out = []
    for i, eq in enumerate(equations):
        row: Dict[str, Any] = {"equation": eq}
        for k, values in columns.items():
            v = values[i]
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            row[k] = v
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------
# REST
# ---------------------------------------------------------------------------------------
class RestClient:
    """A keep-alive HTTP/1.1 connection to ``/v1/models/NAME[/versions/N]:predict``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8501,
                 model_name: str = DEFAULT_MODEL_NAME, version: Optional[int] = None,
                 timeout: float = 30.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.path = f"/v1/models/{model_name}"
        if version is not None:
            self.path += f"/versions/{int(version)}"
        self._conn: Optional[http.client.HTTPConnection] = None

    def _where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def request(self, method: str, path: str, body: Optional[bytes] = None):
        """Send one request (reconnecting once if the kept-alive connection dropped).

        Raises :class:`PredictError` (code None) when the server cannot be reached or its
        answer is not HTTP."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port,
                                                        timeout=self.timeout)
            try:
                try:
                    self._conn.request(method, path, body=body, headers=headers)
                except (BrokenPipeError, ConnectionResetError):
                    # The server may have refused the body (413) and closed: read its answer.
                    if body is None or attempt:
                        raise
                    try:
                        resp = self._conn.getresponse()
                    except (OSError, http.client.HTTPException):
                        raise ConnectionResetError("the server closed the connection while "
                                                   "the request was being sent") from None
                    data = resp.read()
                    self.close()
                    return resp.status, data
                resp = self._conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest) as exc:
                self.close()
                if attempt:
                    raise ConnectError(f"{self._where()}: the connection was closed: "
                                       f"{exc}") from None
            except ConnectionRefusedError:
                self.close()
                raise ConnectError(f"cannot connect to {self._where()}: connection refused "
                                   f"(is the server running?)") from None
            except TimeoutError:
                self.close()
                raise ConnectError(f"{self._where()}: no answer within {self.timeout:g}s") \
                    from None
            except OSError as exc:
                self.close()
                raise ConnectError(f"cannot reach {self._where()}: {exc}") from None
            except http.client.HTTPException as exc:
                self.close()
                raise PredictError(f"{self._where()} answered something that is not "
                                   f"HTTP/1.1: {type(exc).__name__}: {exc}") from None
        raise AssertionError("unreachable")

    def predict_raw(self, equations: Sequence[str]) -> Dict[str, Any]:
        body = json.dumps({"instances": list(equations)}).encode("utf-8")
        status, data = self.request("POST", self.path + ":predict", body)
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError):
            payload = None
        if status != 200:
            if isinstance(payload, dict) and "error" in payload:
                message = payload["error"]
            else:
                message = data[:200].decode("utf-8", "replace") or "(no body)"
            if status == 413:
                message = f"the request is too large for the server: {message}"
            raise PredictError(f"HTTP {status}: {message}", status)
        if not isinstance(payload, dict):
            raise PredictError(f"malformed response from {self._where()}: not a JSON object: "
                               f"{data[:120]!r}", status)
        return payload

    def predict(self, equations: Sequence[str]) -> List[Dict[str, Any]]:
        preds = self.predict_raw(equations).get("predictions")
        if (not isinstance(preds, list) or len(preds) != len(equations)
                or not all(isinstance(p, dict) for p in preds)):
            raise PredictError(f"malformed response from {self._where()}: expected "
                               f"'predictions' with {len(equations)} objects", 200)
        return [dict({"equation": eq}, **p) for eq, p in zip(equations, preds)]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "RestClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def predict_rest(equations: Sequence[str], host: str = "127.0.0.1", port: int = 8501,
                 model_name: str = DEFAULT_MODEL_NAME, version: Optional[int] = None,
                 timeout: float = 30.0) -> List[Dict[str, Any]]:
    """One REST predict call (row format); raises :class:`PredictError` on HTTP errors."""
    with RestClient(host, port, model_name, version, timeout) as client:
        return client.predict(equations)


# ---------------------------------------------------------------------------------------
# gRPC
# ---------------------------------------------------------------------------------------
class GrpcClient:
    """``tensorflow.serving.PredictionService`` through the official stub, one channel."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8500,
                 model_name: str = DEFAULT_MODEL_NAME, version: Optional[int] = None,
                 timeout: float = 30.0, max_message_bytes: int = 64 * 1024 * 1024):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc
        self._grpc = grpc
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.target = target
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes)])
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model_name, self.version, self.timeout = model_name, version, timeout

    def make_request(self, equations: Sequence[str]):
        from tensorflow.core.framework import types_pb2
        from tensorflow_serving.apis import predict_pb2
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = "serving_default"
        if self.version is not None:
            request.model_spec.version.value = int(self.version)
        tensor = request.inputs["equation"]
        tensor.dtype = types_pb2.DT_STRING
        tensor.tensor_shape.dim.add().size = len(equations)
        tensor.string_val.extend(e.encode("utf-8") if isinstance(e, str) else e
                                 for e in equations)
        return request

    def predict_raw(self, equations: Sequence[str]):
        try:
            return self.stub.Predict(self.make_request(equations), timeout=self.timeout)
        except self._grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            name = code.name if code is not None else "UNKNOWN"
            details = exc.details() if hasattr(exc, "details") else str(exc)
            if code == self._grpc.StatusCode.UNAVAILABLE:
                details = f"cannot reach {self.target}: {details}"
            raise PredictError(f"gRPC {name}: {details}", code) from None

    def predict(self, equations: Sequence[str]) -> List[Dict[str, Any]]:
        response = self.predict_raw(equations)
        try:
            columns = {k: _tensor_values(response.outputs[k])
                       for k in OUTPUT_KEYS + EXTRA_OUTPUT_KEYS if k in response.outputs}
        except Exception as exc:  # noqa: BLE001 - any decoding failure is a bad answer
            raise PredictError(f"malformed response from {self.target}: {exc}") from None
        if not columns or any(len(v) != len(equations) for v in columns.values()):
            raise PredictError(f"malformed response from {self.target}: expected outputs "
                               f"for {len(equations)} equations")
        return _rows(equations, columns)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "GrpcClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _tensor_values(proto) -> list:
    """Values of a 1-D TensorProto, reading the typed *_val fields (no TF import needed)."""
    if proto.string_val:
        return list(proto.string_val)
    if proto.bool_val:
        return [bool(v) for v in proto.bool_val]
    if proto.float_val:
        return [float(f"{v:.7g}") for v in proto.float_val]
    if proto.tensor_content or not proto.tensor_shape.dim or proto.tensor_shape.dim[0].size:
        import tensorflow as tf
        return tf.make_ndarray(proto).tolist()
    return []


def predict_grpc(equations: Sequence[str], host: str = "127.0.0.1", port: int = 8500,
                 model_name: str = DEFAULT_MODEL_NAME, version: Optional[int] = None,
                 timeout: float = 30.0) -> List[Dict[str, Any]]:
    """One gRPC Predict call; raises :class:`PredictError` with the gRPC status code."""
    with GrpcClient(host, port, model_name, version, timeout) as client:
        return client.predict(equations)


# ---------------------------------------------------------------------------------------
# In process (no server)
# ---------------------------------------------------------------------------------------
def resolve_saved_model(path: str, model_name: str = DEFAULT_MODEL_NAME,
                        quiet: bool = False) -> str:
    """A version directory, from a version dir, a model dir, or a model base
    (``quiet``: without warnings about names that are not versions)."""
    def has_pb(d: str) -> bool:
        return (os.path.isfile(os.path.join(d, "saved_model.pb"))
                or os.path.isfile(os.path.join(d, "saved_model.pbtxt")))

    if has_pb(path):
        return path
    # a model base holds <model_name>/: look there first (listing the base itself would
    # warn that '<model_name>' is not a version number)
    for candidate in (os.path.join(path, model_name), path):
        if not os.path.isdir(candidate):
            continue
        version = latest_version(candidate, quiet=quiet)
        if version is not None:
            return os.path.join(candidate, str(version))
    raise FileNotFoundError(f"no SavedModel under {path} (looked for saved_model.pb, "
                            f"<version>/ and {model_name}/<version>/)")


def trust_thresholds(version_dir: str) -> Dict[str, float]:
    """Operator ('+', ..., 'mixed') -> the trust threshold recorded in a SavedModel's
    ``assets/metrics.json`` (what its ``trusted`` output compares with); {} if none."""
    try:
        with open(os.path.join(version_dir, "assets", "metrics.json")) as f:
            confidence = json.load(f).get("confidence") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {k: float(v["threshold"]) for k, v in confidence.items()
            if k != "overall" and isinstance(v, dict)
            and isinstance(v.get("threshold"), (int, float))}


def operator_of(equation: str) -> str:
    """The slice whose trust threshold applies to a (valid) equation: its operator, or
    'mixed' for three or more operands."""
    operators = "".join(c for c in equation if c in "+-*/")
    return operators if len(operators) == 1 else "mixed"


def predict_saved_model(equations: Sequence[str], path: str,
                        model_name: str = DEFAULT_MODEL_NAME) -> List[Dict[str, Any]]:
    """Load the SavedModel with TensorFlow and call ``serving_default`` directly."""
    import tensorflow as tf
    version_dir = resolve_saved_model(path, model_name)
    model = tf.saved_model.load(version_dir)
    fn = model.signatures["serving_default"]
    out = fn(equation=tf.constant([e.encode("utf-8") if isinstance(e, str) else e
                                   for e in equations], dtype=tf.string))
    columns = {}
    for k in OUTPUT_KEYS + EXTRA_OUTPUT_KEYS:
        if k in out:
            values = out[k].numpy().tolist()
            if k == "confidence":
                values = [float(f"{v:.7g}") for v in values]
            columns[k] = values
    rows = _rows(equations, columns)
    thresholds = trust_thresholds(version_dir)
    for row in rows:
        if row.get(TRUSTED_KEY) is False and row.get("valid"):
            limit = thresholds.get(operator_of(row["equation"]))
            if limit is not None:
                row["trust_threshold"] = limit
    return rows


# ---------------------------------------------------------------------------------------
# Command line: ``lstm-math predict``
# ---------------------------------------------------------------------------------------
def is_unsure(row: Dict[str, Any]) -> bool:
    """A valid answer that the model does not vouch for (``trusted`` false)."""
    return bool(row.get("valid")) and row.get(TRUSTED_KEY) is False


def format_row(row: Dict[str, Any]) -> str:
    if not row.get("valid"):
        return (f"{row['equation']}  invalid: "
                f"{row.get('error') or 'not an equation this model covers'}")
    conf = row.get("confidence")
    answer = f"{row['equation']} = {row.get('result', '')}"
    working = f"  working: {row[WORKING_OUTPUT]}" if row.get(WORKING_OUTPUT) else ""
    if is_unsure(row):
        limit = row.get("trust_threshold")
        if isinstance(limit, float):
            digits = next((d for d in range(3, 8) if f"{conf:.{d}f}" != f"{limit:.{d}f}"), 8)
            why = f"confidence {conf:.{digits}f} < {limit:.{digits}f}"
        else:
            why = f"confidence {conf:.3f}, below the model's trust threshold"
        return f"{answer}?  (unsure: {why}){working}"
    if TRUSTED_KEY in row:
        return answer + working
    # a model without `trusted` (exported before it existed): its confidence, unjudged
    return (answer + (f"  (confidence {conf:.3f})" if isinstance(conf, (int, float)) else "")
            + working)


def add_predict_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("equations", nargs="+", metavar="EQUATION",
                        help='equations such as "31 + 87" (quote each one)')
    parser.add_argument("--via", choices=("rest", "grpc", "saved-model"),
                        help="how to reach the model (default: saved-model when --saved-model "
                             "is given, else rest)")
    parser.add_argument("--host", default="127.0.0.1", help="server host (default %(default)s)")
    parser.add_argument("--rest-port", type=int, default=8501, help="default %(default)s")
    parser.add_argument("--grpc-port", type=int, default=8500, help="default %(default)s")
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME, help="default %(default)s")
    parser.add_argument("--model-version", type=int, help="a specific version (default latest)")
    parser.add_argument("--saved-model", metavar="DIR",
                        help="a SavedModel version dir, or a model base (highest version used)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    parser.add_argument("--json", action="store_true", help="print the answers as JSON")
    parser.epilog = ("An answer the model does not vouch for (its confidence is below the "
                     "model's trust threshold for that operator) is printed with '?' and "
                     f"'unsure'; the exit status is then {EXIT_UNSURE} (0: every answer "
                     "trusted or the row invalid; 1: the model was reached but the call "
                     "failed; 2: a mistake in the command, or no server or SavedModel where "
                     "it points).")
    return parser


# Exit status of `lstm-math predict` when some answer is unsure (not trusted).
EXIT_UNSURE = 3


def run_predict(args: argparse.Namespace) -> int:
    """Answer the equations; 0 when the model answered (invalid rows included) and trusted
    every answer, ``EXIT_UNSURE`` when some answer is unsure, 1 on errors."""
    via = args.via or ("saved-model" if args.saved_model else "rest")
    try:
        if via == "rest":
            rows = predict_rest(args.equations, args.host, args.rest_port, args.model_name,
                                args.model_version, args.timeout)
        elif via == "grpc":
            rows = predict_grpc(args.equations, args.host, args.grpc_port, args.model_name,
                                args.model_version, args.timeout)
        else:
            if not args.saved_model:
                print("error: --via saved-model needs --saved-model DIR", file=sys.stderr)
                return 2
            rows = predict_saved_model(args.equations, args.saved_model, args.model_name)
    except (PredictError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for row in rows:
            print(format_row(row))
    return EXIT_UNSURE if any(is_unsure(row) for row in rows) else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lstm_math.serving.client",
                                     description="Ask the lstm-math model.")
    add_predict_arguments(parser)
    return run_predict(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
