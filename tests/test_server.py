"""The TF Serving-compatible model server (serving/server/) and its clients.

A contract-conforming stand-in model (tests/serving_fixtures.py) is served, and the server is
called the way TF Serving is called: plain HTTP against the REST API and the official
``tensorflow_serving.apis`` gRPC stubs. Every server binds 127.0.0.1 on free ports; every
request loop is bounded in count and time.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

import grpc
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from lstm_math.serving.batching import Batcher
from lstm_math.serving.client import GrpcClient, RestClient, predict_grpc, predict_rest
from lstm_math.serving.server import ModelServer
from tests.helpers import cli_in_fresh_python

try:
    from serving_fixtures import copy_version, push_version
except ImportError:  # tests/ importable as a package
    from tests.serving_fixtures import copy_version, push_version

NAME = "lstm_math"
HOSTILE = [
    "", " ", "+", "31 +", "+ 87", "31 87", "1 + 2 + 3", "31 + x", "x", "\x00", "1\x00 + 2",
    "'; DROP TABLE models; --", "{{7*7}}", "${jndi:ldap://127.0.0.1/a}", "../../etc/passwd",
    "<script>alert(1)</script>", "😀 + 1", "١٢ + ٣", "1e3 + 1", "-1 + 2", "0x10 + 1",
    "1.5 + 2", "99999999999999999999999999999 + 1", "1000 + 1", "7 * 6", "7 / 0", "3 - 5",
    "1" * 5000, "1 + " + "9" * 3000, "\ud800 + 1",
]


# ---------------------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_base(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("serving_models"))
    push_version(base, 1)
    # Ignored by the server: not an integer, and an integer without saved_model.pb.
    os.makedirs(os.path.join(base, NAME, "not-a-version"))
    os.makedirs(os.path.join(base, NAME, "77"))
    return base


@pytest.fixture(scope="module")
def server(model_base):
    with ModelServer(model_base, NAME, rest_port=0, grpc_port=0, poll_seconds=0.2,
                     max_request_bytes=256 * 1024) as srv:
        yield srv


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def model_stub(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    yield model_service_pb2_grpc.ModelServiceStub(channel)
    channel.close()


def http_call(port, method, path, body=None, headers=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        try:
            payload = json.loads(data)
        except ValueError:
            payload = data.decode("utf-8", "replace")
        return resp.status, payload
    finally:
        conn.close()


def predict_request(equations, name=NAME, version=None, dtype=types_pb2.DT_STRING):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = "serving_default"
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["equation"].CopyFrom(tf.make_tensor_proto(equations, dtype=dtype))
    return request


def decode_outputs(response):
    return {k: tf.make_ndarray(v).tolist() for k, v in response.outputs.items()}


# ---------------------------------------------------------------------------------------
# REST
# ---------------------------------------------------------------------------------------
def test_rest_row_format(server):
    status, body = http_call(server.rest_port, "POST", f"/v1/models/{NAME}:predict",
                             {"instances": ["31 + 87", "31+87", " 31  + 87 ", "31 + x"]})
    assert status == 200, body
    preds = body["predictions"]
    assert [p["result"] for p in preds] == ["118", "118", "118", ""]
    assert [p["valid"] for p in preds] == [True, True, True, False]
    assert preds[0] == {"result": "118", "valid": True, "error": "", "confidence": 0.999,
                        "trusted": True}
    assert preds[3]["error"] == "unknown character 'x'" and preds[3]["confidence"] == 0.0
    assert preds[3]["trusted"] is False


def test_rest_row_format_objects_and_signature_name(server):
    status, body = http_call(server.rest_port, "POST", f"/v1/models/{NAME}/versions/1:predict",
                             {"signature_name": "serving_default",
                              "instances": [{"equation": "1 + 2"}, {"equation": "998 + 1"}]})
    assert status == 200, body
    assert [p["result"] for p in body["predictions"]] == ["3", "999"]


def test_rest_columnar_format(server):
    for inputs in (["2 + 2", "7 * 6"], {"equation": ["2 + 2", "7 * 6"]}):
        status, body = http_call(server.rest_port, "POST", f"/v1/models/{NAME}:predict",
                                 {"inputs": inputs})
        assert status == 200, body
        assert body["outputs"] == {"result": ["4", ""], "valid": [True, False],
                                   "error": ["", "operator not trained: '*'"],
                                   "confidence": [0.999, 0.0], "trusted": [True, False]}


def test_rest_b64_and_empty_batch(server):
    status, body = http_call(server.rest_port, "POST", f"/v1/models/{NAME}:predict",
                             {"instances": [{"b64": "MSArIDE="}]})  # "1 + 1"
    assert status == 200 and body["predictions"][0]["result"] == "2"
    status, body = http_call(server.rest_port, "POST", f"/v1/models/{NAME}:predict",
                             {"instances": []})
    assert status == 200 and body == {"predictions": []}


def test_rest_status_and_metadata(server):
    expected = {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}
    assert http_call(server.rest_port, "GET", f"/v1/models/{NAME}") == (200, expected)
    assert http_call(server.rest_port, "GET", f"/v1/models/{NAME}/versions/1") == (200, expected)
    status, meta = http_call(server.rest_port, "GET", f"/v1/models/{NAME}/metadata")
    assert status == 200
    assert meta["model_spec"] == {"name": NAME, "signature_name": "", "version": "1"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    assert sig["inputs"]["equation"]["dtype"] == "DT_STRING"
    assert sig["inputs"]["equation"]["tensor_shape"]["dim"][0]["size"] == "-1"
    assert {k: v["dtype"] for k, v in sig["outputs"].items()} == {
        "result": "DT_STRING", "valid": "DT_BOOL", "error": "DT_STRING",
        "confidence": "DT_FLOAT", "trusted": "DT_BOOL"}
    status, meta = http_call(server.rest_port, "GET", f"/v1/models/{NAME}/versions/1/metadata")
    assert status == 200 and meta["model_spec"]["version"] == "1"


@pytest.mark.parametrize("method,path,body,status", [
    ("POST", "/v1/models/nope:predict", {"instances": ["1 + 1"]}, 404),
    ("POST", f"/v1/models/{NAME}/versions/9:predict", {"instances": ["1 + 1"]}, 404),
    ("GET", "/v1/models/nope", None, 404),
    ("GET", f"/v1/models/{NAME}/versions/9", None, 404),
    ("GET", f"/v1/models/{NAME}/versions/77", None, 404),  # no saved_model.pb: ignored
    ("GET", f"/v1/models/{NAME}/versions/9/metadata", None, 404),
    ("GET", "/v2/whatever", None, 404),
    ("GET", "/", None, 404),
    ("POST", f"/v1/models/{NAME}:explode", {"instances": []}, 404),
    ("GET", f"/v1/models/{NAME}:predict", None, 405),
    ("PUT", f"/v1/models/{NAME}:predict", {"instances": []}, 405),
    ("POST", f"/v1/models/{NAME}", {}, 405),
    ("DELETE", f"/v1/models/{NAME}/metadata", None, 405),
    ("POST", f"/v1/models/{NAME}:predict", "{not json", 400),
    ("POST", f"/v1/models/{NAME}:predict", "", 400),
    ("POST", f"/v1/models/{NAME}:predict", "[1, 2]", 400),
    ("POST", f"/v1/models/{NAME}:predict", {"instances": [1, 2]}, 400),
    ("POST", f"/v1/models/{NAME}:predict", {"instances": [["1 + 1"]]}, 400),
    ("POST", f"/v1/models/{NAME}:predict", {"instances": [None]}, 400),
    ("POST", f"/v1/models/{NAME}:predict", {"instances": "1 + 1"}, 400),
    ("POST", f"/v1/models/{NAME}:predict", {"instances": [{"x": "1 + 1"}]}, 400),
    ("POST", f"/v1/models/{NAME}:predict", {"inputs": {"x": ["1 + 1"]}}, 400),
    ("POST", f"/v1/models/{NAME}:predict", {"inputs": {"equation": [3.5]}}, 400),
    ("POST", f"/v1/models/{NAME}:predict", {"inputs": ["1"], "instances": ["1"]}, 400),
    ("POST", f"/v1/models/{NAME}:predict", {"equation": ["1 + 1"]}, 400),
    ("POST", f"/v1/models/{NAME}:predict", {"instances": [{"b64": "***"}]}, 400),
    ("POST", f"/v1/models/{NAME}:predict",
     {"signature_name": "other", "instances": ["1 + 1"]}, 400),
    ("POST", f"/v1/models/{NAME}:classify", {"examples": []}, 400),
])
def test_rest_errors(server, method, path, body, status):
    got, payload = http_call(server.rest_port, method, path, body)
    assert got == status, payload
    assert isinstance(payload, dict) and isinstance(payload.get("error"), str) and payload["error"]


def test_rest_error_keeps_connection_usable(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    try:
        for body, status in [(b'{"instances": ["1 + 1"]}', 404), (b"{bad", 400),
                             (b'{"instances": ["1 + 1"]}', 200)]:
            path = f"/v1/models/{NAME}:predict" if status != 404 else "/v1/models/x:predict"
            conn.request("POST", path, body=body)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == status
    finally:
        conn.close()


def test_rest_oversized_body_is_413(server):
    big = {"instances": ["1 + 1"] * 40000}  # ~400 KB > the 256 KiB limit of this server
    status, payload = http_call(server.rest_port, "POST", f"/v1/models/{NAME}:predict", big)
    assert status == 413 and "limit" in payload["error"]
    # No Content-Length at all is refused too, and the server stays healthy.
    assert http_call(server.rest_port, "GET", f"/v1/models/{NAME}")[0] == 200


def test_rest_hostile_equations_answered_per_row(server):
    good = ["31 + 87", "0 + 0", "999 + 999", "5+5", "  12 +   30\n"]
    mixed = [x for pair in zip(HOSTILE, good * 10) for x in pair]
    status, body = http_call(server.rest_port, "POST", f"/v1/models/{NAME}:predict",
                             {"instances": mixed})
    assert status == 200, body
    preds = body["predictions"]
    assert len(preds) == len(mixed)
    answers = {"31 + 87": "118", "0 + 0": "0", "999 + 999": "1998", "5+5": "10",
               "  12 +   30\n": "42"}
    for eq, p in zip(mixed, preds):
        if eq in answers:
            assert p == {"result": answers[eq], "valid": True, "error": "",
                         "confidence": 0.999, "trusted": True}, eq
        else:
            assert p["valid"] is False and p["result"] == "" and p["error"], eq
            assert p["confidence"] == 0.0


def test_prometheus_metrics(server):
    predict_rest(["1 + 1"], port=server.rest_port)
    status, text = http_call(server.rest_port, "GET", "/monitoring/prometheus/metrics")
    assert status == 200
    assert 'lstm_math_serving_requests_total{api="rest",code="200",endpoint="predict"}' in text
    assert "lstm_math_serving_request_latency_seconds_bucket" in text
    assert "lstm_math_serving_batch_size_bucket" in text


# ---------------------------------------------------------------------------------------
# gRPC, official stubs
# ---------------------------------------------------------------------------------------
def test_grpc_predict(server, stub):
    response = stub.Predict(predict_request(["31 + 87", "31 + x", "1000 + 1"]), timeout=30)
    assert response.model_spec.name == NAME
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"
    out = decode_outputs(response)
    assert out["result"] == [b"118", b"", b""]
    assert out["valid"] == [True, False, False]
    assert out["error"][1] == b"unknown character 'x'"
    assert out["error"][2] == b"operand out of the trained range 0..999"
    assert out["confidence"][0] == pytest.approx(0.999) and out["confidence"][1:] == [0, 0]
    assert out["trusted"] == [True, False, False]
    for key, dtype in [("result", types_pb2.DT_STRING), ("valid", types_pb2.DT_BOOL),
                       ("error", types_pb2.DT_STRING), ("confidence", types_pb2.DT_FLOAT),
                       ("trusted", types_pb2.DT_BOOL)]:
        assert response.outputs[key].dtype == dtype
        assert [d.size for d in response.outputs[key].tensor_shape.dim] == [3]


def test_grpc_output_filter_and_version(server, stub):
    request = predict_request(["2 + 3"], version=1)
    request.output_filter.append("result")
    response = stub.Predict(request, timeout=30)
    assert list(response.outputs) == ["result"]
    assert tf.make_ndarray(response.outputs["result"]).tolist() == [b"5"]


def test_grpc_hostile_equations(server, stub):
    raw = [e.encode("utf-8", "surrogatepass") for e in HOSTILE] + [b"\xff\xfe + 1", b"2 + 2"]
    out = decode_outputs(stub.Predict(predict_request(raw), timeout=30))
    assert out["valid"] == [False] * (len(raw) - 1) + [True]
    assert out["result"][-1] == b"4"
    assert all(out["error"][:-1]) and not any(out["result"][:-1])


@pytest.mark.parametrize("mutate,code", [
    (lambda r: setattr(r.model_spec, "name", "nope"), grpc.StatusCode.NOT_FOUND),
    (lambda r: r.model_spec.version.__setattr__("value", 9), grpc.StatusCode.NOT_FOUND),
    (lambda r: setattr(r.model_spec, "version_label", "stable"), grpc.StatusCode.NOT_FOUND),
    (lambda r: r.inputs["equation"].CopyFrom(tf.make_tensor_proto([1.0, 2.0])),
     grpc.StatusCode.INVALID_ARGUMENT),
    (lambda r: r.inputs["equation"].CopyFrom(tf.make_tensor_proto([[b"1 + 1"]])),
     grpc.StatusCode.INVALID_ARGUMENT),
    (lambda r: r.inputs["other"].CopyFrom(tf.make_tensor_proto([b"1 + 1"])),
     grpc.StatusCode.INVALID_ARGUMENT),
    (lambda r: r.output_filter.append("nope"), grpc.StatusCode.INVALID_ARGUMENT),
    (lambda r: setattr(r.model_spec, "signature_name", "other"),
     grpc.StatusCode.FAILED_PRECONDITION),
])
def test_grpc_errors(server, stub, mutate, code):
    request = predict_request(["1 + 1"])
    mutate(request)
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=30)
    assert info.value.code() == code
    assert info.value.details()


def test_grpc_oversized_message_refused(server, stub):
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(predict_request(["1 + 1"] * 60000), timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_grpc_metadata(server, stub):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = NAME
    request.metadata_field.append("signature_def")
    response = stub.GetModelMetadata(request, timeout=30)
    assert response.model_spec.version.value == 1
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(sig_map)
    sig = sig_map.signature_def["serving_default"]
    assert sig.inputs["equation"].dtype == types_pb2.DT_STRING
    assert set(sig.outputs) == {"result", "valid", "error", "confidence", "trusted"}
    bad = get_model_metadata_pb2.GetModelMetadataRequest()
    bad.model_spec.name = NAME
    with pytest.raises(grpc.RpcError) as info:
        stub.GetModelMetadata(bad, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad.model_spec.name = "nope"
    bad.metadata_field.append("signature_def")
    with pytest.raises(grpc.RpcError) as info:
        stub.GetModelMetadata(bad, timeout=30)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_grpc_model_status(server, model_stub):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = NAME
    response = model_stub.GetModelStatus(request, timeout=30)
    [status] = response.model_version_status
    assert status.version == 1
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert status.status.error_code == 0
    request.model_spec.version.value = 5
    with pytest.raises(grpc.RpcError) as info:
        model_stub.GetModelStatus(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_client_functions(server):
    rows = predict_grpc(["31 + 87", "31 + x"], port=server.grpc_port)
    assert rows[0] == {"equation": "31 + 87", "result": "118", "valid": True, "error": "",
                       "confidence": 0.999, "trusted": True}
    assert rows[1]["valid"] is False and rows[1]["error"] == "unknown character 'x'"
    assert predict_rest(["31 + 87", "31 + x"], port=server.rest_port) == rows


def test_predict_cli(server, model_base, capsys):
    import argparse
    from lstm_math.serving.client import add_predict_arguments, run_predict
    parser = add_predict_arguments(argparse.ArgumentParser())
    for extra in (["--via", "rest", "--rest-port", str(server.rest_port)],
                  ["--via", "grpc", "--grpc-port", str(server.grpc_port)],
                  ["--saved-model", model_base]):
        assert run_predict(parser.parse_args(["31 + 87", "31 + x"] + extra)) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines == ["31 + 87 = 118", "31 + x  invalid: unknown character 'x'"], extra
    assert run_predict(parser.parse_args(["1 + 1", "--json", "--rest-port",
                                          str(server.rest_port)])) == 0
    assert json.loads(capsys.readouterr().out)[0]["result"] == "2"
    assert run_predict(parser.parse_args(["1 + 1", "--model-name", "nope", "--rest-port",
                                          str(server.rest_port)])) == 1


# ---------------------------------------------------------------------------------------
# `trusted`: an exported model's wrong answer below its threshold, over REST and gRPC
# ---------------------------------------------------------------------------------------
ORACLE_COVERAGE = dict(operators=["+", "-"], max_input_length=5, max_result_length=3,
                       reverse_output=True)
# As an Evaluator report gives them (confidence.<op>.threshold).
ORACLE_METRICS = {"exact_match": 0.99, "confidence": {"+": {"threshold": 0.9},
                                                     "-": {"threshold": 0.9}}}


@pytest.fixture(scope="module")
def oracle_server(tmp_path_factory):
    """The Exporter's SavedModel of an oracle that answers '7 + b' wrong (confidence
    0.6 per character) and everything else right (0.99 per character)."""
    from lstm_math.components.exporter import export_saved_model
    from tests.helpers import OracleModel, make_coverage

    base = tmp_path_factory.mktemp("oracle_models")
    coverage = make_coverage(**ORACLE_COVERAGE)
    export_saved_model(OracleModel(coverage), coverage, ORACLE_METRICS,
                       str(base / NAME / "1"))
    with ModelServer(str(base), NAME, rest_port=0, grpc_port=0, poll_seconds=0.2) as srv:
        yield srv, str(base)


def test_wrong_answer_below_its_threshold_is_untrusted_over_rest_and_grpc(oracle_server,
                                                                          capsys):
    srv, base = oracle_server
    equations = ["31 + 87", "7 + 5", "50 - 8", "7 + x"]
    want = [("118", True, True), ("112", True, False), ("42", True, True), ("", False, False)]
    status, body = http_call(srv.rest_port, "POST", f"/v1/models/{NAME}:predict",
                             {"instances": equations})
    assert status == 200, body
    assert [(p["result"], p["valid"], p["trusted"]) for p in body["predictions"]] == want
    assert body["predictions"][1]["confidence"] < 0.9 <= body["predictions"][0]["confidence"]
    status, body = http_call(srv.rest_port, "POST", f"/v1/models/{NAME}:predict",
                             {"inputs": {"equation": equations}})
    assert status == 200, body
    assert body["outputs"]["trusted"] == [t for _, _, t in want]
    assert body["outputs"]["result"] == [r for r, _, _ in want]
    channel = grpc.insecure_channel(f"127.0.0.1:{srv.grpc_port}")
    try:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            predict_request(equations), timeout=30)
    finally:
        channel.close()
    assert response.outputs["trusted"].dtype == types_pb2.DT_BOOL
    assert decode_outputs(response)["trusted"] == [t for _, _, t in want]
    assert [r["trusted"] for r in predict_grpc(equations, port=srv.grpc_port)] == \
        [t for _, _, t in want]

    # `lstm-math predict` marks the unsure answer and says so in its exit status
    import argparse
    from lstm_math.serving.client import EXIT_UNSURE, add_predict_arguments, run_predict
    parser = add_predict_arguments(argparse.ArgumentParser())
    for extra, why in ((["--via", "rest", "--rest-port", str(srv.rest_port)],
                        "below the model's trust threshold"),
                       (["--via", "grpc", "--grpc-port", str(srv.grpc_port)],
                        "below the model's trust threshold"),
                       (["--saved-model", base], "< 0.900")):
        assert run_predict(parser.parse_args(["31 + 87", "7 + 5"] + extra)) == EXIT_UNSURE
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == "31 + 87 = 118", extra
        assert lines[1].startswith("7 + 5 = 112?  (unsure: confidence 0.130") and why in lines[1]
        assert run_predict(parser.parse_args(["31 + 87", "7 + x"] + extra)) == 0
        capsys.readouterr()


# ---------------------------------------------------------------------------------------
# concurrency, batching
# ---------------------------------------------------------------------------------------
def _hammer(clients, seconds, equations=("31 + 87", "2 + 2", "31 + x")):
    """Each client calls predict in a loop for ``seconds`` (bounded); returns (calls, errors)."""
    errors, calls = [], [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(client):
        n = 0
        while time.monotonic() < deadline and n < 5000:
            try:
                rows = client.predict(list(equations))
                assert [r["result"] for r in rows] == ["118", "4", ""], rows
            except Exception as exc:  # noqa: BLE001 - collected and asserted on
                with lock:
                    errors.append(repr(exc))
            n += 1
        with lock:
            calls[0] += n

    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    return calls[0], errors


def test_eight_concurrent_clients(server):
    clients = [GrpcClient(port=server.grpc_port) if i % 2 else RestClient(port=server.rest_port)
               for i in range(8)]
    try:
        calls, errors = _hammer(clients, 2.0)
    finally:
        for c in clients:
            c.close()
    assert errors == []
    assert calls >= 8


def test_batching_merges_concurrent_requests(model_base):
    with ModelServer(model_base, NAME, rest_port=None, grpc_port=0, poll_seconds=5,
                     batch_timeout_micros=50_000, adaptive_batch_timeout=False,
                     num_batch_threads=1, max_batch_size=64) as srv:
        barrier = threading.Barrier(8)
        results, errors = [], []

        def one(i):
            with GrpcClient(port=srv.grpc_port) as c:
                c.predict(["0 + 0"])  # connect first, so the requests below arrive together
                barrier.wait(timeout=30)
                try:
                    results.append(c.predict([f"{i} + 1"])[0]["result"])
                except Exception as exc:  # noqa: BLE001
                    errors.append(repr(exc))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        before = srv.metrics.counter("batches_total")
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        batches = srv.metrics.counter("batches_total") - before
        rows = srv.metrics.counter("batched_rows_total")
        assert errors == [] and sorted(results) == sorted(str(i + 1) for i in range(8))
        assert batches < 8, f"8 concurrent requests ran as {batches} batches"
        assert srv.metrics.histogram("batch_size")["max_bucket"] >= 2
        assert rows == 16


def test_batching_disabled_and_large_request_split(model_base):
    with ModelServer(model_base, NAME, rest_port=0, grpc_port=None, enable_batching=False,
                     poll_seconds=5) as srv:
        rows = predict_rest([f"{i} + 1" for i in range(300)], port=srv.rest_port)
        assert [r["result"] for r in rows] == [str(i + 1) for i in range(300)]
    with ModelServer(model_base, NAME, rest_port=0, grpc_port=None, max_batch_size=16,
                     poll_seconds=5) as srv:
        rows = predict_rest([f"{i} + 1" for i in range(300)], port=srv.rest_port)
        assert [r["result"] for r in rows] == [str(i + 1) for i in range(300)]
        assert srv.metrics.histogram("batch_size")["max_bucket"] <= 16


def test_batcher_unit():
    sizes = []

    def run(rows):
        sizes.append(len(rows))
        time.sleep(0.01)
        return {"x": __import__("numpy").array(rows, dtype=object)}

    batcher = Batcher(run, max_batch_size=8, batch_timeout_micros=100_000, adaptive=True)
    try:
        assert batcher.run([b"a"])["x"].tolist() == [b"a"]  # alone: no wait for the timeout
        out = {}
        threads = [threading.Thread(target=lambda i=i: out.__setitem__(
            i, batcher.run([b"%d" % i, b"x"])["x"].tolist())) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert all(out[i] == [b"%d" % i, b"x"] for i in range(10))
        assert max(sizes) <= 8 and sum(sizes) == 21 and len(sizes) < 11
        assert batcher.run([b"%d" % i for i in range(20)])["x"].tolist() == \
            [b"%d" % i for i in range(20)]
    finally:
        batcher.close()


def test_batcher_waits_for_more_only_while_clients_are_concurrent():
    """After a batch that merged several requests the next batch waits (up to the timeout)
    until it holds as many requests again; after a lone request's batch it does not wait."""
    import numpy as np
    batches, gate, started = [], threading.Event(), threading.Event()

    def run(rows):
        if rows == [b"r0"]:
            started.set()
            gate.wait(10)
        batches.append(list(rows))
        return {"x": np.array(rows, dtype=object)}

    timeout_s = 3.0
    batcher = Batcher(run, max_batch_size=8, batch_timeout_micros=int(timeout_s * 1e6),
                      adaptive=True)
    submitted = []  # rows queued, in order (seen after Batcher.submit returns)
    submit = batcher.submit

    def counting_submit(rows, *args, **kwargs):
        result = submit(rows, *args, **kwargs)
        submitted.extend(rows)
        return result

    batcher.submit = counting_submit

    def background(row):
        thread = threading.Thread(target=batcher.run, args=([row],))
        thread.start()
        return thread

    def wait_for(condition):
        deadline = time.monotonic() + 10
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert condition()

    try:
        first = background(b"r0")
        assert started.wait(10)  # the batch thread is busy with r0 alone
        merged = [background(b"r1"), background(b"r2")]
        wait_for(lambda: batcher.queued_rows == 2)
        gate.set()
        for t in [first] + merged:
            t.join(10)
        assert batches[-1] == [b"r1", b"r2"]  # a batch of two requests: clients are about
        late = [background(b"r3")]
        # r3 queued and taken into the next batch, which waits for a second request
        wait_for(lambda: b"r3" in submitted and batcher.queued_rows == 0)
        assert batches[-1] == [b"r1", b"r2"]
        start = time.monotonic()
        late.append(background(b"r4"))  # arrives while that batch waits
        for t in late:
            t.join(10)
        assert batches[-1] == [b"r3", b"r4"]
        # as many requests as last time: it runs at once instead of waiting out the timeout
        assert time.monotonic() - start < timeout_s / 2
        batcher.run([b"r5"])  # alone, after a merged batch: may wait once
        start = time.monotonic()
        batcher.run([b"r6"])  # alone after a lone batch: no wait
        assert time.monotonic() - start < timeout_s / 2
        assert batches[-2:] == [[b"r5"], [b"r6"]]
    finally:
        gate.set()
        batcher.close()


# ---------------------------------------------------------------------------------------
# hot swap of a newly pushed version; graceful shutdown
# ---------------------------------------------------------------------------------------
def test_new_version_is_served_without_errors(tmp_path, model_base):
    base = str(tmp_path)
    copy_version(os.path.join(model_base, NAME, "1"), base, 1)
    with ModelServer(base, NAME, rest_port=0, grpc_port=0, poll_seconds=0.1) as srv:
        seen, errors = set(), []
        answered = [0]  # calls answered, all clients together
        lock = threading.Lock()
        stop = threading.Event()

        def grpc_loop():
            with GrpcClient(port=srv.grpc_port) as c:
                for _ in range(5000):
                    if stop.is_set():
                        return
                    try:
                        response = c.predict_raw(["1 + 2"])
                        seen.add(response.model_spec.version.value)
                        assert tf.make_ndarray(response.outputs["result"]).tolist() == [b"3"]
                        with lock:
                            answered[0] += 1
                    except Exception as exc:  # noqa: BLE001
                        errors.append(repr(exc))

        def rest_loop():
            with RestClient(port=srv.rest_port) as c:
                for _ in range(5000):
                    if stop.is_set():
                        return
                    try:
                        row = c.predict(["1 + 2"])[0]
                        assert row["result"] == "3" and row["confidence"] in (0.999, 0.5)
                        with lock:
                            answered[0] += 1
                    except Exception as exc:  # noqa: BLE001
                        errors.append(repr(exc))

        def wait_for(condition, seconds=30):
            deadline = time.monotonic() + seconds
            while not condition() and time.monotonic() < deadline and not errors:
                time.sleep(0.05)

        threads = [threading.Thread(target=f) for f in (grpc_loop, grpc_loop, rest_loop,
                                                        rest_loop)]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: 1 in seen and answered[0] >= 20)  # traffic on version 1
            push_version(base, 2, confidence=0.5)  # written elsewhere, renamed into place
            wait_for(lambda: 2 in seen)
            after = answered[0]
            wait_for(lambda: answered[0] >= after + 20)  # and traffic goes on after the swap
            assert answered[0] >= after + 20 or errors
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        assert errors == []
        assert seen == {1, 2}
        assert predict_rest(["1 + 1"], port=srv.rest_port)[0]["confidence"] == 0.5
        # latest-2 policy: version 1 stays reachable by number
        assert predict_rest(["1 + 1"], port=srv.rest_port, version=1)[0]["confidence"] == 0.999
        status, body = http_call(srv.rest_port, "GET", f"/v1/models/{NAME}")
        assert [s["version"] for s in body["model_version_status"]] == ["2", "1"]

        copy_version(os.path.join(base, NAME, "2"), base, 3)
        deadline = time.monotonic() + 30
        while srv.manager.loaded_versions != [2, 3] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.manager.loaded_versions == [2, 3]
        assert http_call(srv.rest_port, "POST", f"/v1/models/{NAME}/versions/1:predict",
                         {"instances": ["1 + 1"]})[0] == 404


def test_grpc_runs_on_uvloop_by_default_and_rest_on_asyncio(server):
    # uvloop is a dependency on Linux and macOS; REST stays on asyncio's loop (app.py says why)
    assert type(server._grpc_loop.loop).__module__.startswith("uvloop")
    assert type(server._rest_loop.loop).__module__.startswith("asyncio")


def test_bad_grpc_event_loop_fails_before_anything_starts(model_base):
    with pytest.raises(ValueError, match=r"^grpc_event_loop: expected one of auto, uvloop, "
                                         r"asyncio, got 'libuv'"):
        ModelServer(model_base, NAME, rest_port=0, grpc_port=0, grpc_event_loop="libuv")
    proc = subprocess.run([sys.executable, "-m", "lstm_math.serving.server", "--model-base", model_base,
                           "--grpc-event-loop", "libuv"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "--grpc-event-loop: invalid choice: 'libuv'" in proc.stderr


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (flags after --rest-port 0 --grpc-port 0, the flag named); PORT: a free port, BUSY: a port
# being listened on, MISSING: a path under the temporary directory that does not exist.
BAD_SERVE_FLAGS = [
    (["--rest-port", "70000"], "--rest-port"),
    (["--grpc-port", "-2"], "--grpc-port"),
    (["--rest-port", "PORT", "--grpc-port", "PORT"], "--grpc-port"),
    (["--rest-port", "-1", "--grpc-port", "-1"], "--grpc-port"),
    (["--rest-port", "BUSY"], "--rest-port"),
    (["--grpc-port", "BUSY"], "--grpc-port"),
    (["--host", "999.1.1.1"], "--host"),
    (["--host", ""], "--host"),
    (["--max-batch-size", "0"], "--max-batch-size"),
    (["--num-versions", "0"], "--num-versions"),
    (["--poll-seconds", "-1"], "--poll-seconds"),
    (["--poll-seconds", "0"], "--poll-seconds"),
    (["--log-level", "BOGUS"], "--log-level"),
    (["--model-name", "../x"], "--model-name"),
    (["--model-name", ".."], "--model-name"),
    (["--port-file", "MISSING/pf"], "--port-file"),
    (["--max-connections", "0"], "--max-connections"),
    (["--max-request-bytes", "-5"], "--max-request-bytes"),
    (["--max-enqueued-batches", "0"], "--max-enqueued-batches"),
    (["--num-batch-threads", "100000"], "--num-batch-threads"),
    (["--batch-timeout-micros", "-1"], "--batch-timeout-micros"),
    (["--header-timeout-seconds", "inf"], "--header-timeout-seconds"),
    (["--write-timeout-seconds", "-1"], "--write-timeout-seconds"),
    (["--body-min-rate", "nan"], "--body-min-rate"),
    (["--grpc-max-concurrent-rpcs", "0"], "--grpc-max-concurrent-rpcs"),
    (["--grpc-keepalive-seconds", "1e300"], "--grpc-keepalive-seconds"),
    (["--grace-seconds", "-1"], "--grace-seconds"),
]


@pytest.mark.parametrize("flags,flag", BAD_SERVE_FLAGS,
                         ids=[" ".join(f) for f, _ in BAD_SERVE_FLAGS])
def test_bad_serve_flag_is_one_line_exit_2_and_creates_nothing(model_base, tmp_path, flags,
                                                               flag):
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    names = {"PORT": str(free), "BUSY": str(busy.getsockname()[1]),
             "MISSING": str(tmp_path / "missing")}
    work = tmp_path / "cwd"
    work.mkdir()
    argv = ["serve", "--model-base", model_base, "--rest-port", "0", "--grpc-port", "0"]
    argv += [names.get(f, f.replace("MISSING", names["MISSING"])) for f in flags]
    try:
        proc = subprocess.run([sys.executable, "-m", "lstm_math.pipeline.cli", *argv],
                              cwd=work, capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, PYTHONPATH=REPO))
    finally:
        busy.close()
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith(f"lstm-math serve: error: {flag}: "), lines[0]
    assert proc.stdout == ""
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["cwd"]  # no port file, no logs


def test_bad_serve_flag_of_the_module_entry_point_is_one_line(model_base, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lstm_math.serving.server", "--model-base",
                           model_base, "--port-file", str(tmp_path / "no" / "pf")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"python -m lstm_math.serving.server: error: --port-file: {tmp_path}/no/pf: no such "
        f"directory {tmp_path}/no"]
    assert list(tmp_path.iterdir()) == []


def test_serve_flags_are_checked_before_tensorflow_is_imported():
    proc, rc, heavy = cli_in_fresh_python(["serve", "--model-base", ".", "--rest-port",
                                           "70000"])
    assert (rc, heavy) == (2, []), proc.stdout + proc.stderr
    assert "--rest-port: expected a port" in proc.stderr


def test_auto_event_loop_falls_back_to_asyncio_without_uvloop(monkeypatch):
    import importlib.util

    from lstm_math.serving.server.app import resolve_event_loop
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "uvloop" else real(name, *a))
    assert resolve_event_loop("auto") == "asyncio"
    with pytest.raises(ValueError, match=r"^grpc_event_loop: 'uvloop' is not installed"):
        resolve_event_loop("uvloop")


@pytest.mark.parametrize("grpc_event_loop", ["uvloop", "asyncio"])
def test_stop_finishes_in_flight_requests(model_base, grpc_event_loop):
    srv = ModelServer(model_base, NAME, rest_port=0, grpc_port=0, poll_seconds=5,
                      grpc_event_loop=grpc_event_loop).start()
    assert type(srv._grpc_loop.loop).__module__.startswith(grpc_event_loop)
    servable = srv.manager._latest
    fast = servable.batcher.run_fn
    entered = []  # rows that reached the model

    def slow(rows):
        entered.extend(rows)
        time.sleep(0.6)  # a slow model: the requests are in flight when stop() is called
        return fast(rows)

    servable.batcher.run_fn = slow
    results = {}

    def call(kind):
        try:
            if kind == "rest":
                results[kind] = predict_rest(["4 + 4"], port=srv.rest_port)[0]["result"]
            else:
                results[kind] = predict_grpc(["4 + 4"], port=srv.grpc_port)[0]["result"]
        except Exception as exc:  # noqa: BLE001
            results[kind] = repr(exc)

    threads = [threading.Thread(target=call, args=(k,)) for k in ("rest", "grpc")]
    for t in threads:
        t.start()
    # both requests reached the server: one in the model, the other there or queued for it
    deadline = time.monotonic() + 30
    while (not entered or len(entered) + servable.batcher.queued_rows < 2) \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    assert entered and len(entered) + servable.batcher.queued_rows == 2
    srv.stop(grace=10)
    for t in threads:
        t.join(30)
    assert results == {"rest": "8", "grpc": "8"}
    with pytest.raises(OSError):
        predict_rest(["1 + 1"], port=srv.rest_port, timeout=5)


def test_sigterm_graceful_shutdown(model_base, tmp_path):
    port_file = str(tmp_path / "ports.json")
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lstm_math.serving.server", "--model-base", model_base,
             "--rest-port", "0", "--grpc-port", "0", "--port-file", port_file,
             "--poll-seconds", "5"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not os.path.exists(port_file) and time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            time.sleep(0.2)
        with open(port_file) as f:
            ports = json.load(f)
        assert predict_rest(["20 + 22"], port=ports["rest_port"])[0]["result"] == "42"
        assert predict_grpc(["20 + 22"], port=ports["grpc_port"])[0]["result"] == "42"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        log_text = log_path.read_text()
        assert "stopped" in log_text
        assert "gRPC listening on 127.0.0.1:" in log_text and "(uvloop event loop)" in log_text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
