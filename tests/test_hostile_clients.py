"""The model server against hostile clients (issue 13), replayed on 127.0.0.1.

Every case of the issue: one huge request locking everyone out (REST and gRPC, client gone,
deadline passed), HTTP desync through unread bodies and lenient Content-Length, unbounded
header memory and connections, version directory names that wedged the poller, failed
versions taking the serving window, a half-copied version, the listener during shutdown,
deep JSON, a body-less slow client, and the client's messages. Every loop is bounded in
count and time; the tiny fixture model (tests/serving_fixtures.py) is served.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import shutil
import socket
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from lstm_math.serving.client import GrpcClient, PredictError, RestClient, add_predict_arguments, \
    predict_rest, run_predict
from lstm_math.serving.server import ModelServer

try:
    from serving_fixtures import copy_version, push_version
except ImportError:  # tests/ importable as a package
    from tests.serving_fixtures import copy_version, push_version

NAME = "lstm_math"
ROW_LIMIT = 2048
BATCH = 64
STATUS_REQUEST = b"GET /v1/models/lstm_math HTTP/1.1\r\nHost: x\r\n\r\n"


# ---------------------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_base(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("hostile_models"))
    push_version(base, 1)
    return base


@pytest.fixture(scope="module")
def server(model_base):
    with ModelServer(model_base, NAME, rest_port=0, grpc_port=0, poll_seconds=5,
                     max_batch_size=BATCH, max_request_rows=ROW_LIMIT,
                     max_connections=48) as srv:
        yield srv


class SlowModel:
    """Make every batch of the served version take ``seconds`` longer (restored on exit)."""

    def __init__(self, server, seconds):
        self.batcher = server.manager._latest.batcher
        self.seconds = seconds

    def __enter__(self):
        fast = self.fast = self.batcher.run_fn
        seconds = self.seconds

        def slow(rows):
            time.sleep(seconds)
            return fast(rows)

        self.batcher.run_fn = slow
        return self

    def __exit__(self, *exc):
        self.batcher.run_fn = self.fast


def exchange(port, data, wait=1.5, send_after=None, expect=None):
    """Send raw bytes on one connection; read until the server closes it or ``wait`` passes
    without data (only 0.3 s once ``expect`` responses are in, to catch any extra one).
    Returns (bytes read, whether the server closed the connection)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        sock.sendall(data)
        if send_after is not None:
            time.sleep(0.1)
            sock.sendall(send_after)
        sock.settimeout(wait)
        out, closed = b"", False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            out += chunk
            if expect is not None and out.count(b"HTTP/1.") >= expect:
                sock.settimeout(0.3)
        return out, closed
    finally:
        sock.close()


def statuses(raw: bytes):
    """The status codes of the HTTP responses in ``raw`` (Content-Length framed)."""
    codes = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        assert sep, raw[:200]
        lines = head.split(b"\r\n")
        assert lines[0].startswith(b"HTTP/1."), lines[0]
        codes.append(int(lines[0].split()[1]))
        length = 0
        for line in lines[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == b"content-length":
                length = int(value)
        is_head = False
        raw = rest[length:] if not is_head else rest
    return codes


def timed_predict(port, equations, timeout=30):
    start = time.monotonic()
    rows = predict_rest(equations, port=port, timeout=timeout)
    return time.monotonic() - start, rows


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# ---------------------------------------------------------------------------------------
# 1. one request must not lock everyone out
# ---------------------------------------------------------------------------------------
def test_rest_million_empty_strings_refused_fast(server):
    body = b'{"instances": [' + b",".join([b'""'] * 1_000_000) + b"]}"  # ~3 MB < 4 MiB
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    try:
        conn.request("POST", f"/v1/models/{NAME}:predict", body=body)
        resp = conn.getresponse()
        payload = json.loads(resp.read())
    finally:
        conn.close()
    assert resp.status == 400 and "limit" in payload["error"], payload
    assert time.monotonic() - start < 10
    assert timed_predict(server.rest_port, ["1 + 1"])[1][0]["result"] == "2"


def test_grpc_two_million_empty_strings_refused(server):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = NAME
    tensor = request.inputs["equation"]
    tensor.dtype = tf.string.as_datatype_enum
    tensor.tensor_shape.dim.add().size = 1_900_000
    tensor.string_val.extend([b""] * 1_900_000)  # ~3.8 MB < 4 MiB
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request, timeout=20)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "limit" in info.value.details()


def test_large_request_is_split_and_others_are_served_meanwhile(server):
    """A request at the row limit runs as ROW_LIMIT / BATCH batches; single-equation
    requests from other clients get into the next batch instead of waiting for all."""
    big = [f"{i % 1000} + 1" for i in range(ROW_LIMIT)]
    result, latencies = {}, []
    with SlowModel(server, 0.03):  # 32 batches: about 1 s for the big request
        thread = threading.Thread(target=lambda: result.setdefault(
            "rows", predict_rest(big, port=server.rest_port, timeout=60)))
        thread.start()
        time.sleep(0.15)
        with RestClient(port=server.rest_port) as client:
            for _ in range(10):
                start = time.monotonic()
                assert client.predict(["2 + 2"])[0]["result"] == "4"
                latencies.append(time.monotonic() - start)
        still_running = thread.is_alive()
        thread.join(60)
    assert [r["result"] for r in result["rows"]] == [str(i % 1000 + 1) for i in range(ROW_LIMIT)]
    assert still_running, "the big request finished before the small ones: nothing measured"
    assert max(latencies) < 0.5, latencies  # about one batch, not the whole big request


def test_rest_client_gone_drops_its_rows(server):
    body = json.dumps({"instances": ["1 + 1"] * ROW_LIMIT}).encode()
    dropped0 = server.metrics.counter("dropped_rows_total")
    rows0 = server.metrics.counter("batched_rows_total")
    with SlowModel(server, 0.05):  # 32 batches: 1.6 s if all ran
        sock = socket.create_connection(("127.0.0.1", server.rest_port), timeout=5)
        sock.sendall(f"POST /v1/models/{NAME}:predict HTTP/1.1\r\nHost: x\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(0.3)
        sock.close()  # the client hangs up
        deadline = time.monotonic() + 10
        while server.metrics.counter("dropped_rows_total") == dropped0 \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        # others are served at once
        elapsed, rows = timed_predict(server.rest_port, ["3 + 4"])
    assert rows[0]["result"] == "7" and elapsed < 1.0
    assert server.metrics.counter("dropped_rows_total") > dropped0
    assert server.metrics.counter("batched_rows_total") - rows0 < ROW_LIMIT
    assert server.manager._latest.batcher.queued_rows == 0


def test_grpc_deadline_drops_rows_and_others_are_served(server):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = NAME
    request.inputs["equation"].CopyFrom(tf.make_tensor_proto([b"1 + 1"] * ROW_LIMIT))
    dropped0 = server.metrics.counter("dropped_rows_total")
    rows0 = server.metrics.counter("batched_rows_total")
    with SlowModel(server, 0.05), grpc.insecure_channel(
            f"127.0.0.1:{server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        stub.Predict(predict_pb2.PredictRequest(model_spec=request.model_spec,
                                                inputs={"equation": tf.make_tensor_proto(
                                                    [b"1 + 1"])}), timeout=10)  # connect
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request, timeout=0.2)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        elapsed, rows = timed_predict(server.rest_port, ["5 + 5"])
        assert rows[0]["result"] == "10" and elapsed < 1.0
        deadline = time.monotonic() + 5
        while server.manager._latest.batcher.queued_rows and time.monotonic() < deadline:
            time.sleep(0.05)
    assert server.metrics.counter("dropped_rows_total") > dropped0
    assert server.metrics.counter("batched_rows_total") - rows0 < ROW_LIMIT
    assert server.manager._latest.batcher.queued_rows == 0


def test_queue_bounded_in_rows(model_base):
    with ModelServer(model_base, NAME, rest_port=0, grpc_port=None, poll_seconds=30,
                     max_batch_size=16, max_enqueued_batches=4, max_request_rows=64) as srv:
        codes = []
        with SlowModel(srv, 0.2):
            def big():
                try:
                    predict_rest(["1 + 1"] * 64, port=srv.rest_port, timeout=30)
                    codes.append(200)
                except PredictError as exc:
                    codes.append(exc.code)

            threads = [threading.Thread(target=big) for _ in range(3)]
            for t in threads:
                t.start()
                time.sleep(0.05)
            for t in threads:
                t.join(30)
        assert 429 in codes and 200 in codes, codes


# ---------------------------------------------------------------------------------------
# 2. HTTP desync
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,path", [
    ("GET", f"/v1/models/{NAME}"), ("HEAD", f"/v1/models/{NAME}"),
    ("GET", f"/v1/models/{NAME}/metadata"), ("GET", "/monitoring/prometheus/metrics"),
    ("POST", "/nowhere"), ("PUT", f"/v1/models/{NAME}:predict"),
    ("GET", f"/v1/models/{NAME}/versions/99"), ("POST", f"/v1/models/{NAME}:explode"),
    ("POST", f"/v1/models/{NAME}/labels/stable:predict"),
])
def test_body_with_any_request_is_not_a_second_request(server, method, path):
    smuggled = STATUS_REQUEST
    head = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(smuggled)}\r\n\r\n"
            .encode())
    raw, _ = exchange(server.rest_port, head + smuggled, expect=1)
    if method == "HEAD":
        assert raw.count(b"HTTP/1.1 ") == 1, raw
    else:
        assert len(statuses(raw)) == 1, raw
    # and a real second request on the same connection is still answered, once
    raw, _ = exchange(server.rest_port, head + smuggled, send_after=STATUS_REQUEST, expect=2)
    if method != "HEAD":
        assert len(statuses(raw)) == 2 and statuses(raw)[1] == 200, raw


@pytest.mark.parametrize("framing", [
    b"Content-Length: +24", b"Content-Length: 2_4", b"Content-Length: 0x18",
    b"Content-Length: -1", b"Content-Length: 24\r\nContent-Length: 25",
    b"Content-Length: 24\r\nTransfer-Encoding: chunked", b"Transfer-Encoding: chunked, identity",
])
def test_lenient_framing_is_refused_and_closes(server, framing, caplog):
    body = b'{"instances":["1+1"]}   ' + STATUS_REQUEST
    raw, closed = exchange(server.rest_port, b"POST /v1/models/lstm_math:predict HTTP/1.1\r\n"
                           b"Host: x\r\n" + framing + b"\r\n\r\n" + body)
    assert statuses(raw) == [400] and closed, raw
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("codings,status", [
    (b"gzip, chunked", 501), (b"deflate,chunked", 501), (b"x-rot13, chunked", 501),
    (b"gzip\r\nTransfer-Encoding: chunked", 400),  # two header lines: aiohttp's own 400
])
def test_transfer_codings_other_than_chunked_are_refused_not_misread(server, codings, status,
                                                                     caplog):
    import gzip

    payload = gzip.compress(b'{"instances":["1+1"]}')
    chunked = b"%x\r\n" % len(payload) + payload + b"\r\n0\r\n\r\n"
    raw, closed = exchange(server.rest_port, b"POST /v1/models/lstm_math:predict HTTP/1.1\r\n"
                           b"Host: x\r\nTransfer-Encoding: " + codings + b"\r\n\r\n" + chunked)
    assert statuses(raw) == [status] and closed, raw
    assert status == 400 or b"Unsupported Transfer-Encoding" in raw
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # the coding clients should use is still served
    raw, _ = exchange(server.rest_port, b"POST /v1/models/lstm_math:predict HTTP/1.1\r\n"
                      b"Host: x\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n"
                      b"Connection: close\r\n\r\n" % len(payload) + payload)
    assert statuses(raw) == [200], raw


# ---------------------------------------------------------------------------------------
# 3. header memory and connections are bounded
# ---------------------------------------------------------------------------------------
def test_huge_headers_are_refused_and_memory_stays_bounded(server):
    line = b"X-Pad-%d: " + b"a" * 65_000 + b"\r\n"
    before = rss_mb()

    def abuse():
        sock = socket.create_connection(("127.0.0.1", server.rest_port), timeout=5)
        try:
            sock.sendall(b"GET /v1/models/lstm_math HTTP/1.1\r\nHost: x\r\n")
            for i in range(95):
                sock.sendall(line % i)
        except OSError:
            pass  # refused and closed: expected
        finally:
            sock.close()

    threads = [threading.Thread(target=abuse) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    growth = rss_mb() - before
    assert growth < 100, f"RSS grew by {growth:.0f} MB"
    raw, closed = exchange(server.rest_port, b"GET /v1/models/lstm_math HTTP/1.1\r\nHost: x\r\n"
                           + b"".join(b"X-%d: a\r\n" % i for i in range(500)) + b"\r\n")
    assert statuses(raw)[0] in (400, 431) and closed
    assert timed_predict(server.rest_port, ["1 + 1"])[1][0]["result"] == "2"


def test_connections_are_capped(model_base):
    """At the cap, idle connections (kept alive, or never sending a request) make room for a
    new one; only when all are busy is a new connection refused with a 503."""
    with ModelServer(model_base, NAME, rest_port=0, grpc_port=None, poll_seconds=30,
                     max_connections=8) as srv:
        idle = [socket.create_connection(("127.0.0.1", srv.rest_port), timeout=5)
                for _ in range(8)]
        try:
            idle[-1].sendall(b"GET /v1/models/lstm_math HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            time.sleep(0.2)
            raw, _ = exchange(srv.rest_port, STATUS_REQUEST, expect=1)
            assert statuses(raw) == [200]
            assert srv.metrics.counter("evicted_connections_total") >= 1
        finally:
            for s in idle:
                s.close()
        # every connection busy (a slow model): the next one is refused
        results = []
        with SlowModel(srv, 1.0):
            def call():
                try:
                    predict_rest(["1 + 1"], port=srv.rest_port, timeout=30)
                    results.append(200)
                except PredictError as exc:
                    results.append(exc.code)

            threads = [threading.Thread(target=call) for _ in range(8)]
            for t in threads:
                t.start()
            time.sleep(0.4)
            raw, closed = exchange(srv.rest_port, STATUS_REQUEST, expect=1)
            assert statuses(raw) == [503] and closed
            for t in threads:
                t.join(30)
        assert results == [200] * 8
        assert srv.metrics.counter("refused_connections_total") >= 1
        raw, _ = exchange(srv.rest_port, STATUS_REQUEST, expect=1)
        assert statuses(raw) == [200]


# ---------------------------------------------------------------------------------------
# 4, 5, 6. versions: bad names, failed versions, half-copied versions
# ---------------------------------------------------------------------------------------
def _wait(predicate, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_bad_version_names_do_not_wedge_the_poller(model_base, tmp_path, caplog):
    base = str(tmp_path)
    good = os.path.join(model_base, NAME, "1")
    copy_version(good, base, 1)
    for bad in ("²", "٣", "+3", "0", "007x", "9223372036854775808", "99999999999999999999",
                " 5", "5 "):
        shutil.copytree(good, os.path.join(base, NAME, bad))
    caplog.set_level(logging.WARNING)
    with ModelServer(base, NAME, rest_port=0, grpc_port=0, poll_seconds=0.1) as srv:
        assert srv.manager.loaded_versions == [1]
        push_version(base, 2)
        assert _wait(lambda: srv.manager.loaded_versions == [1, 2])
        time.sleep(0.5)  # several more polls
        with grpc.insecure_channel(f"127.0.0.1:{srv.grpc_port}") as channel:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = NAME
            request.inputs["equation"].CopyFrom(tf.make_tensor_proto([b"1 + 1"]))
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                request, timeout=10)
            assert response.model_spec.version.value == 2
            status_request = get_model_status_pb2.GetModelStatusRequest()
            status_request.model_spec.name = NAME
            status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
                status_request, timeout=10)
            assert [s.version for s in status.model_version_status] == [2, 1]
    warnings = [r.getMessage() for r in caplog.records if "not a version" in r.getMessage()]
    assert len(warnings) == 9, warnings  # one per name, not one per poll
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def _corrupt_version(base, version):
    path = os.path.join(base, NAME, str(version))
    os.makedirs(path)
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(b"\x08\x01not a SavedModel")
    return path


def _states(port):
    status = predict_status(port)
    return {int(s["version"]): (s["state"], s["status"]["error_code"])
            for s in status["model_version_status"]}


def predict_status(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", f"/v1/models/{NAME}")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def test_failed_version_never_displaces_a_good_one(model_base, tmp_path):
    base = str(tmp_path)
    good = os.path.join(model_base, NAME, "1")
    copy_version(good, base, 1)
    with ModelServer(base, NAME, rest_port=0, grpc_port=None, poll_seconds=0.1,
                     num_versions=1) as srv:
        bad = _corrupt_version(base, 2)
        assert _wait(lambda: 2 in _states(srv.rest_port))
        time.sleep(0.5)
        assert _states(srv.rest_port) == {1: ("AVAILABLE", "OK"), 2: ("END", "UNKNOWN")}
        assert predict_rest(["1 + 1"], port=srv.rest_port, version=1)[0]["result"] == "2"
        # the failed version is retried once its files change (here: fixed in place)
        shutil.rmtree(bad)
        shutil.copytree(good, bad)
        assert _wait(lambda: srv.manager.loaded_versions == [2])
        assert _states(srv.rest_port) == {2: ("AVAILABLE", "OK")}


def test_deleted_version_is_unloaded_while_failed_ones_wait(model_base, tmp_path):
    base = str(tmp_path)
    good = os.path.join(model_base, NAME, "1")
    copy_version(good, base, 1)
    copy_version(good, base, 2)
    with ModelServer(base, NAME, rest_port=0, grpc_port=None, poll_seconds=0.1,
                     num_versions=2) as srv:
        assert srv.manager.loaded_versions == [1, 2]
        _corrupt_version(base, 3)
        _corrupt_version(base, 4)
        assert _wait(lambda: {3, 4} <= set(_states(srv.rest_port)))
        assert srv.manager.loaded_versions == [1, 2]
        shutil.rmtree(os.path.join(base, NAME, "2"))
        assert _wait(lambda: srv.manager.loaded_versions == [1])
        states = _states(srv.rest_port)
        assert states[1] == ("AVAILABLE", "OK") and 2 not in states
        assert states[3][0] == states[4][0] == "END"
        assert predict_rest(["1 + 1"], port=srv.rest_port)[0]["result"] == "2"


def test_half_copied_version_is_loaded_once_complete(model_base, tmp_path):
    base = str(tmp_path)
    good = os.path.join(model_base, NAME, "1")
    copy_version(good, base, 1)
    with ModelServer(base, NAME, rest_port=0, grpc_port=None, poll_seconds=0.1) as srv:
        target = os.path.join(base, NAME, "2")
        os.makedirs(target)  # a non-atomic copy: saved_model.pb first, the variables later
        shutil.copy(os.path.join(good, "saved_model.pb"), target)
        assert _wait(lambda: _states(srv.rest_port).get(2, ("", ""))[0] == "END")
        time.sleep(0.6)  # several polls: it stays failed, and version 1 serves
        assert srv.manager.loaded_versions == [1]
        for entry in os.listdir(good):
            src = os.path.join(good, entry)
            if os.path.isdir(src):
                shutil.copytree(src, os.path.join(target, entry))
        assert _wait(lambda: srv.manager.loaded_versions == [1, 2])


# ---------------------------------------------------------------------------------------
# 6. shutdown, deep JSON, slow body-less client, the client's messages
# ---------------------------------------------------------------------------------------
def test_shutdown_refuses_new_connections_at_once(model_base):
    srv = ModelServer(model_base, NAME, rest_port=0, grpc_port=0, poll_seconds=30).start()
    port, grpc_port = srv.rest_port, srv.grpc_port
    result = {}

    def grpc_predict(equation):
        with GrpcClient(port=grpc_port, timeout=30) as client:
            return tf.make_ndarray(client.predict_raw([equation]).outputs["result"]).tolist()

    with SlowModel(srv, 1.5):
        threads = [threading.Thread(target=lambda: result.setdefault(
                       "rows", predict_rest(["4 + 4"], port=port, timeout=30))),
                   threading.Thread(target=lambda: result.setdefault(
                       "grpc", grpc_predict("5 + 5")))]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        stopper = threading.Thread(target=srv.stop, kwargs={"grace": 10})
        stopper.start()
        time.sleep(0.3)
        for listening in (port, grpc_port):
            start = time.monotonic()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", listening), timeout=5).close()
            assert time.monotonic() - start < 1.0
        for thread in threads:
            thread.join(30)
        stopper.join(30)
    assert result["rows"][0]["result"] == "8"  # the in-flight requests finished
    assert result["grpc"] == [b"10"]


def test_deep_json_is_a_clean_400(server, caplog):
    body = b"[" * 200_000 + b"]" * 200_000
    for payload in (body, b'{"instances": ' + body + b"}"):
        conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
        try:
            conn.request("POST", f"/v1/models/{NAME}:predict", body=payload)
            resp = conn.getresponse()
            answer = json.loads(resp.read())
        finally:
            conn.close()
        assert resp.status == 400 and answer["error"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_bodyless_slow_client_does_not_delay_others(model_base):
    with ModelServer(model_base, NAME, rest_port=0, grpc_port=None, poll_seconds=30,
                     batch_timeout_micros=300_000) as srv:
        sock = socket.create_connection(("127.0.0.1", srv.rest_port), timeout=5)
        try:
            sock.sendall(f"POST /v1/models/{NAME}:predict HTTP/1.1\r\nHost: x\r\n"
                         f"Content-Length: 100\r\n\r\n".encode())  # and no body, ever
            time.sleep(0.2)
            with RestClient(port=srv.rest_port) as client:
                client.predict(["1 + 1"])
                latencies = []
                for _ in range(5):
                    start = time.monotonic()
                    client.predict(["1 + 1"])
                    latencies.append(time.monotonic() - start)
        finally:
            sock.close()
    assert max(latencies) < 0.25, latencies


def test_predict_cli_messages(model_base, capsys):
    parser = add_predict_arguments(argparse.ArgumentParser())
    with ModelServer(model_base, NAME, rest_port=0, grpc_port=None, poll_seconds=30,
                     max_request_bytes=1024) as srv:
        many = ["1 + 1"] * 2000
        assert run_predict(parser.parse_args(many + ["--rest-port", str(srv.rest_port)])) == 1
        err = capsys.readouterr().err
        assert "413" in err and "Broken pipe" not in err and "Traceback" not in err, err
        port = srv.rest_port
    assert run_predict(parser.parse_args(["1 + 1", "--rest-port", str(port)])) == 1
    err = capsys.readouterr().err
    assert "cannot connect" in err and "Traceback" not in err, err


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{\"predictions\":3}",
    b"HTTP/1.1 500 Oops\r\nContent-Length: 3\r\n\r\n[1]",
    b"SSH-2.0-OpenSSH_9.6\r\n",
    b"",
])
def test_predict_cli_on_malformed_answers(answer, capsys):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    stop = threading.Event()

    def serve():
        listener.settimeout(0.2)
        served = 0
        while served < 2 and not stop.is_set():  # the client retries a dropped connection
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            served += 1
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)
                    conn.sendall(answer)
                except OSError:
                    pass

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        parser = add_predict_arguments(argparse.ArgumentParser())
        code = run_predict(parser.parse_args(["1 + 1", "--rest-port", str(port),
                                              "--timeout", "5"]))
    finally:
        stop.set()
        thread.join(15)
        listener.close()
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and "Traceback" not in err, err


def test_fair_batches_unit():
    """Water-filling: two queued requests share a batch; the small one is not starved."""
    from lstm_math.serving.batching import Batcher
    seen = []
    gate = threading.Event()

    def run(rows):
        gate.wait(10)
        seen.append(list(rows))
        return {"x": np.array(rows, dtype=object)}

    batcher = Batcher(run, max_batch_size=8, batch_timeout_micros=0)
    try:
        out = {}
        first = threading.Thread(target=lambda: out.setdefault("a", batcher.run([b"a"])))
        first.start()
        time.sleep(0.1)  # the batch thread now blocks on the gate with [a]
        big = threading.Thread(target=lambda: out.setdefault(
            "big", batcher.run([b"%d" % i for i in range(40)])))
        big.start()
        time.sleep(0.05)
        small = threading.Thread(target=lambda: out.setdefault("s", batcher.run([b"s"])))
        small.start()
        time.sleep(0.05)
        gate.set()
        for t in (first, big, small):
            t.join(10)
        assert out["big"]["x"].tolist() == [b"%d" % i for i in range(40)]
        assert out["s"]["x"].tolist() == [b"s"]
        assert b"s" in seen[1], seen  # the batch right after [a] already holds it
        assert max(len(b) for b in seen) <= 8
    finally:
        batcher.close()


# ---------------------------------------------------------------------------------------
# 7. deadlines and limits at every stage a client controls
# ---------------------------------------------------------------------------------------
# The limits below are server arguments; _limited_kwargs drops the ones an older server
# does not take, so this file also runs against it (the before/after record).
LIMIT_ARGS = dict(header_timeout=1.0, body_timeout=2.0, body_min_rate=1000,
                  body_rate_grace=1.0, write_timeout=2.0, max_pending_body_bytes=4 * 1024 * 1024,
                  grpc_max_streams_per_connection=8, grpc_message_timeout=2.0,
                  grpc_max_connection_idle=1.0)
CAP = 16  # REST connections; the attacks below open more
GRPC_CAP = 32  # gRPC calls in progress


def _limited_kwargs(**kwargs):
    import inspect
    accepted = inspect.signature(ModelServer.__init__).parameters
    assert set(LIMIT_ARGS) >= {k for k in kwargs if k not in accepted}, kwargs
    return {k: v for k, v in kwargs.items() if k in accepted}


@pytest.fixture(scope="module")
def limited(model_base):
    with ModelServer(model_base, NAME, rest_port=0, grpc_port=0, poll_seconds=30,
                     max_batch_size=BATCH, max_request_rows=ROW_LIMIT, max_connections=CAP,
                     grpc_max_concurrent_rpcs=GRPC_CAP, **_limited_kwargs(**LIMIT_ARGS)) as srv:
        yield srv


def _open_stalled(port, n, head, body_part=b""):
    """``n`` connections that send ``head`` (and ``body_part``) and then nothing."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(head + body_part)
        socks.append(s)
    return socks


def _read_until_closed(sock, seconds):
    """What the server sends on ``sock`` until it closes it (or ``seconds`` pass)."""
    sock.settimeout(0.2)
    out, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return out, True
        if not chunk:
            return out, True
        out += chunk
    return out, False


def _predict_head(length, extra=b""):
    return (f"POST /v1/models/{NAME}:predict HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {length}\r\n".encode() + extra + b"\r\n")


def _try_predict(port, equations=("1 + 1",), timeout=10):
    try:
        return 200, predict_rest(list(equations), port=port, timeout=timeout)
    except PredictError as exc:
        return exc.code, None


def test_stalled_bodies_do_not_lock_out_rest(limited):
    """More connections than the cap each send a predict's headers and 13 of 1000 body bytes,
    then wait: they hold no model version, a new client evicts one of them and is served,
    and each is answered 408 and closed at the body deadline."""
    socks = _open_stalled(limited.rest_port, CAP + 8, _predict_head(1000),
                          b'{"instances":')
    try:
        assert _wait(lambda: len(limited._site._runner.server._connections) >= CAP, 5)
        servable = limited.manager._latest
        assert servable._refs == 0, "a request whose body has not arrived holds the version"
        code, rows = _try_predict(limited.rest_port)
        assert code == 200 and rows[0]["result"] == "2", code
        out, closed = _read_until_closed(socks[-1], 6)
        assert closed and out.startswith(b"HTTP/1.1 408"), out[:200]
    finally:
        for s in socks:
            s.close()
    assert limited.metrics.counter("timed_out_requests_total", stage="body") >= 1


def test_slow_body_below_the_minimum_rate_is_closed(limited):
    sock = socket.create_connection(("127.0.0.1", limited.rest_port), timeout=5)
    try:
        sock.sendall(_predict_head(100_000))
        start = time.monotonic()
        sock.settimeout(0.2)
        out, closed = b"", False
        while time.monotonic() - start < 6:  # 20 bytes/s, far below 1000 bytes/s
            try:
                sock.sendall(b"[" * 4)
                chunk = sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                out += chunk
            except socket.timeout:
                continue
            except OSError:
                closed = True
                break
        assert out.startswith(b"HTTP/1.1 408") or closed, out[:200]
        assert time.monotonic() - start < 4
    finally:
        sock.close()


def test_slow_headers_are_closed(limited):
    sock = socket.create_connection(("127.0.0.1", limited.rest_port), timeout=5)
    try:
        sock.sendall(b"GET /v1/models/lstm_math HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        start = time.monotonic()
        out, closed = _read_until_closed(sock, 6)
        assert closed and out.startswith(b"HTTP/1.1 408"), out[:200]
        assert time.monotonic() - start < 4
    finally:
        sock.close()


def test_pipelined_partial_request_gets_the_header_deadline(limited):
    """A complete request and the start of a second one in one packet, then silence: the
    first is answered, the second is answered 408 at the header deadline (1 s here) and
    the connection closed, not held until the keep-alive timeout; also when the first is
    still running at the deadline (the 408 follows its answer). An empty line after a
    request is no request."""
    partial = b"GET /v1/models/lstm_math HTTP/1.1\r\nX-Pad: "
    body = json.dumps({"instances": ["1 + 1"]}).encode()
    for first, slow in ((STATUS_REQUEST, 0.0), (_predict_head(len(body)) + body, 1.5)):
        sock = socket.create_connection(("127.0.0.1", limited.rest_port), timeout=5)
        try:
            with SlowModel(limited, slow):
                start = time.monotonic()
                sock.sendall(first + partial)
                out, closed = _read_until_closed(sock, 6)
            assert closed and statuses(out) == [200, 408], out[:400]
            assert time.monotonic() - start < slow + 3
        finally:
            sock.close()
    # an empty line after a request (some clients send one) starts no request
    sock = socket.create_connection(("127.0.0.1", limited.rest_port), timeout=5)
    try:
        sock.sendall(STATUS_REQUEST + b"\r\n")
        out, closed = _read_until_closed(sock, 2.5)
        assert not closed and statuses(out) == [200], out[:400]
        sock.sendall(STATUS_REQUEST)
        out, closed = _read_until_closed(sock, 1)
        assert not closed and statuses(out) == [200], out[:400]
    finally:
        sock.close()


def _never_reading(port, request, seconds=3.0, most=48):
    """A connection with a 4 KiB receive buffer that pipelines ``request`` until sending
    blocks (at most ``most`` times or ``seconds``), and never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(0.5)
    deadline = time.monotonic() + seconds
    for _ in range(most):
        if time.monotonic() > deadline:
            break
        try:
            sock.sendall(request)
        except socket.timeout:
            break
    return sock


def _server_closed(sock, seconds):
    """Whether the server closes ``sock`` within ``seconds`` (reading what it sent)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if not sock.recv(1 << 20):
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def test_clients_that_never_read_do_not_lock_out_rest(model_base):
    """Clients that pipeline large predicts and never read the answers, one connection each
    up to the cap: a new client is served at once (a connection whose answers are not read
    counts as without progress), and each of them is closed at the write deadline."""
    write_timeout = LIMIT_ARGS["write_timeout"]
    rows = json.dumps({"instances": ["1 + 1"] * 2000}).encode()
    request = _predict_head(len(rows)) + rows
    # (big batches: the answers the socket buffers take before writing blocks come fast)
    with ModelServer(model_base, NAME, rest_port=0, grpc_port=None, poll_seconds=30,
                     max_request_rows=ROW_LIMIT, max_connections=4,
                     **_limited_kwargs(**LIMIT_ARGS)) as srv:
        abusers = [_never_reading(srv.rest_port, request) for _ in range(4)]
        try:
            connections = srv._site._runner.server._connections
            assert _wait(lambda: sum(getattr(h, "write_paused_since", None) is not None
                                     for h in connections) == 4, 20), "no write paused"
            start = time.monotonic()
            code, answer = _try_predict(srv.rest_port, timeout=write_timeout + 5)
            assert code == 200 and answer[0]["result"] == "2", code
            assert time.monotonic() - start < write_timeout + 1
            assert _wait(lambda: not connections, write_timeout + 2), len(connections)
            assert all(_server_closed(s, 2) for s in abusers)
        finally:
            for s in abusers:
                s.close()
        assert srv.metrics.counter("timed_out_requests_total", stage="write") >= 1
        code, _ = _try_predict(srv.rest_port)
        assert code == 200


def test_stalled_bodies_memory_is_bounded(limited):
    """Bodies that stop just short of their end hold at most the body budget (4 MiB here,
    beyond 64 KiB each); the bodies that would exceed it are refused with a 503."""
    part = b"[" * (1024 * 1024)
    socks, answers = [], []
    try:
        for _ in range(8):  # 8 MiB in flight: twice the budget
            s = socket.create_connection(("127.0.0.1", limited.rest_port), timeout=5)
            s.sendall(_predict_head(len(part) + 100))
            try:
                s.sendall(part)
            except OSError:
                pass  # refused and closed
            socks.append(s)
        for s in socks:
            s.settimeout(0.5)
            try:
                answers.append(s.recv(200))
            except (socket.timeout, OSError):
                answers.append(b"")
        refused = [a for a in answers if a.startswith(b"HTTP/1.1 503")]
        assert refused, answers
        assert len(refused) <= 6, answers
        api = limited._site._runner.server.request_handler.__self__
        assert api.budget.used <= api.budget.capacity
    finally:
        for s in socks:
            s.close()
    assert _wait(lambda: limited._site._runner.server.request_handler.__self__.budget.used == 0,
                 10)


@pytest.mark.parametrize("encoding,body", [
    ("deflate", b"x"), ("gzip", b"x"), ("gzip", b"\x1f\x8b\x08\x00garbage-after-header"),
    ("deflate", b"x\x9c\x01\x02"),  # a truncated zlib stream
])
def test_bad_content_encoding_is_a_400(limited, caplog, encoding, body):
    """Answered at once with 400, one log line, no traceback; the connection stays usable."""
    caplog.set_level(logging.INFO, logger="lstm_math")
    head = _predict_head(len(body), f"Content-Encoding: {encoding}\r\n".encode())
    start = time.monotonic()
    raw, _ = exchange(limited.rest_port, head + body, wait=3.0, send_after=STATUS_REQUEST,
                      expect=2)
    assert statuses(raw) == [400, 200], raw[:300]
    assert time.monotonic() - start < 3
    assert b"decode" in raw
    records = [r for r in caplog.records if "decode" in r.getMessage()]
    assert len(records) == 1 and not records[0].exc_info, records
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_hung_encoded_requests_do_not_lock_out_rest(limited):
    """More connections than the cap each send a 1-byte deflate body: none stays busy."""
    body = b"x"
    socks = _open_stalled(limited.rest_port, CAP + 8,
                          _predict_head(1, b"Content-Encoding: deflate\r\n"), body)
    try:
        code, rows = _try_predict(limited.rest_port)
        assert code == 200, code
        out, _ = _read_until_closed(socks[-1], 2)
        assert out.startswith(b"HTTP/1.1 400") and b'"error"' in out, out[:200]
    finally:
        for s in socks:
            s.close()


def test_good_gzip_body_is_decoded(limited):
    import gzip
    body = gzip.compress(json.dumps({"instances": ["2 + 3"]}).encode())
    raw, _ = exchange(limited.rest_port, _predict_head(len(body), b"Content-Encoding: gzip\r\n")
                      + body, expect=1)
    assert statuses(raw) == [200] and b'"5"' in raw, raw[:300]


def test_chunked_is_case_insensitive(limited):
    body = json.dumps({"instances": ["4 + 4"]}).encode()
    head = (f"POST /v1/models/{NAME}:predict HTTP/1.1\r\nHost: x\r\n"
            f"Transfer-Encoding: Chunked\r\n\r\n").encode()
    chunked = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    raw, _ = exchange(limited.rest_port, head + chunked, expect=1)
    assert statuses(raw) == [200] and b'"8"' in raw, raw[:300]


def test_expect_100_continue_is_answered(limited):
    body = json.dumps({"instances": ["6 + 1"]}).encode()
    sock = socket.create_connection(("127.0.0.1", limited.rest_port), timeout=5)
    try:
        sock.sendall(_predict_head(len(body), b"Expect: 100-continue\r\n"))
        sock.settimeout(0.05)
        got, deadline = b"", time.monotonic() + 0.8  # curl waits 1 s before sending anyway
        while b"\r\n\r\n" not in got and time.monotonic() < deadline:
            try:
                got += sock.recv(100)
            except socket.timeout:
                continue
        assert got.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), got
        sock.sendall(body)
        out, _ = b"", None
        sock.settimeout(5)
        while b'"7"' not in out:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
        assert out.startswith(b"HTTP/1.1 200") and b'"7"' in out, out[:300]
    finally:
        sock.close()


def _rest_thread_cpu(server):
    return time.clock_gettime(time.pthread_getcpuclockid(server._rest_loop.thread.ident))


def test_huge_json_is_refused_before_parsing(limited):
    """10^6 empty lists (3 MB): refused without building them. json.loads of it alone costs
    about 0.2 s of the REST loop's CPU (holding the GIL, so both loops stall)."""
    body = b'{"instances": [' + b",".join([b"[]"] * 1_000_000) + b"]}"
    conn = http.client.HTTPConnection("127.0.0.1", limited.rest_port, timeout=30)
    try:
        conn.request("POST", f"/v1/models/{NAME}:predict", body=body)  # connect, warm up
        conn.getresponse().read()
        cpu0 = _rest_thread_cpu(limited)
        for _ in range(4):
            conn.request("POST", f"/v1/models/{NAME}:predict", body=body)
            resp = conn.getresponse()
            payload = json.loads(resp.read())
            assert resp.status == 400 and "limit" in payload["error"], payload
        per_request = (_rest_thread_cpu(limited) - cpu0) / 4
    finally:
        conn.close()
    assert per_request < 0.08, f"{per_request * 1e3:.0f} ms of REST loop CPU per refusal"


def test_rest_errors_are_labelled_by_endpoint(limited):
    m = limited.metrics
    before = {code: m.counter("requests_total", api="rest", endpoint="predict", code=code)
              for code in ("400", "404", "405")}
    conn = http.client.HTTPConnection("127.0.0.1", limited.rest_port, timeout=10)
    try:
        for method, path, body, code in (
                ("POST", f"/v1/models/{NAME}:predict", b"{not json", 400),
                ("POST", "/v1/models/nope:predict", b'{"instances": ["1 + 1"]}', 404),
                ("GET", f"/v1/models/{NAME}:predict", None, 405)):
            conn.request(method, path, body=body)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == code
    finally:
        conn.close()
    for code in ("400", "404", "405"):
        assert m.counter("requests_total", api="rest", endpoint="predict",
                         code=code) == before[code] + 1, code


def test_zero_row_requests_never_run_the_model(limited):
    servable = limited.manager._latest
    calls = []
    real = servable._run

    def recording(rows):
        calls.append(threading.current_thread().name)
        return real(rows)

    servable._run = recording
    try:
        conn = http.client.HTTPConnection("127.0.0.1", limited.rest_port, timeout=10)
        try:
            conn.request("POST", f"/v1/models/{NAME}:predict", body=b'{"instances": []}')
            resp = conn.getresponse()
            assert resp.status == 200 and json.loads(resp.read()) == {"predictions": []}
        finally:
            conn.close()
        request = predict_pb2.PredictRequest()
        request.model_spec.name = NAME
        request.inputs["equation"].CopyFrom(tf.make_tensor_proto([], dtype=tf.string))
        with grpc.insecure_channel(f"127.0.0.1:{limited.grpc_port}") as channel:
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                request, timeout=10)
        assert list(response.outputs["result"].tensor_shape.dim)[0].size == 0
    finally:
        servable._run = real
    assert calls == [], calls


# -- gRPC ------------------------------------------------------------------------------


def _one_predict(port, equation=b"1 + 1", timeout=10):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = NAME
    request.inputs["equation"].CopyFrom(tf.make_tensor_proto([equation]))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            stub.Predict(request, timeout=timeout)
            return "OK"
        except grpc.RpcError as exc:
            return exc.code().name


def test_grpc_calls_without_a_message_do_not_lock_out_others(limited):
    """One HTTP/2 connection opens more Predict calls than the server's concurrency cap and
    never sends their messages: other clients are still served; the calls end at the
    message deadline."""
    import multiprocessing

    from benchmarks.serving_benchmark import hold_grpc_calls_without_message
    before = limited.metrics.counter("timed_out_requests_total", stage="grpc_message")
    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=hold_grpc_calls_without_message,
                       args=(limited.grpc_port, GRPC_CAP + 16, ready, stop), daemon=True)
    proc.start()
    try:
        assert ready.wait(60)
        codes = [_one_predict(limited.grpc_port) for _ in range(3)]
        assert codes == ["OK"] * 3, codes
        assert _wait(lambda: limited.metrics.counter("timed_out_requests_total",
                                                     stage="grpc_message") > before, 10)
    finally:
        stop.set()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(10)


def test_grpc_idle_connection_is_closed(limited):
    """A connection that opens HTTP/2 and then makes no call is closed (GOAWAY) after the
    idle limit."""
    sock = socket.create_connection(("127.0.0.1", limited.grpc_port), timeout=5)
    try:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        out, closed = _read_until_closed(sock, 8)
        assert closed, "the idle HTTP/2 connection is still open"
        assert b"\x07" in out  # a GOAWAY frame (type 7) before the close
    finally:
        sock.close()


def test_grpc_malformed_message_is_invalid_argument(limited, caplog):
    with grpc.insecure_channel(f"127.0.0.1:{limited.grpc_port}") as channel:
        call = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
        with pytest.raises(grpc.RpcError) as info:
            call(b"\xff\xff\xff\xff not a proto", timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert limited.metrics.counter("requests_total", api="grpc", endpoint="predict",
                                   code="INVALID_ARGUMENT") >= 1


def test_grpc_duplicate_output_filter_is_invalid_argument(limited):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = NAME
    request.inputs["equation"].CopyFrom(tf.make_tensor_proto([b"1 + 1", b"2 + 2"]))
    request.output_filter.extend(["result", "result"])
    with grpc.insecure_channel(f"127.0.0.1:{limited.grpc_port}") as channel:
        with pytest.raises(grpc.RpcError) as info:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request,
                                                                               timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "result" in info.value.details()


@pytest.mark.parametrize("dtype", [999, -1])
def test_grpc_undefined_dtype_is_invalid_argument(limited, caplog, dtype):
    """A dtype number DataType does not define is the client's mistake: INVALID_ARGUMENT
    naming the number, no traceback."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = NAME
    tensor = request.inputs["equation"]
    tensor.dtype = dtype
    tensor.tensor_shape.dim.add(size=2)
    tensor.int_val.extend([1, 2])
    with grpc.insecure_channel(f"127.0.0.1:{limited.grpc_port}") as channel:
        with pytest.raises(grpc.RpcError) as info:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request,
                                                                               timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
    assert str(dtype) in info.value.details()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


_GRPC_BURST = r"""
import asyncio, collections, sys
import grpc
async def main(port, n, channels, request):
    chans = [grpc.aio.insecure_channel(f"127.0.0.1:{port}",  # a connection each
                                       options=[("grpc.use_local_subchannel_pool", 1)])
             for _ in range(channels)]
    async def one(i):
        call = chans[i % channels].unary_unary(
            "/tensorflow.serving.PredictionService/Predict")  # serialized bytes
        try:
            await call(request, timeout=30)
            return "OK"
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
    codes = await asyncio.gather(*[one(i) for i in range(channels)])  # connect
    codes += await asyncio.gather(*[one(i) for i in range(n)])
    print(dict(collections.Counter(codes)), flush=True)
    for c in chans:
        await c.close()
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                 bytes.fromhex(sys.argv[4])))
"""


def test_grpc_burst_over_the_cap_is_resource_exhausted_and_counted(limited):
    """A burst of calls over the concurrency cap (the model slowed down so they pile up):
    each one is OK or RESOURCE_EXHAUSTED, never CANCELLED, and the server counts every
    refusal in requests_total."""
    import ast
    import subprocess
    import sys
    m = limited.metrics
    before = m.counter("requests_total", api="grpc", endpoint="predict",
                       code="RESOURCE_EXHAUSTED")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = NAME
    request.inputs["equation"].CopyFrom(tf.make_tensor_proto([b"1 + 1"]))
    with SlowModel(limited, 0.05):
        proc = subprocess.run([sys.executable, "-c", _GRPC_BURST, str(limited.grpc_port),
                               str(GRPC_CAP * 5), "40", request.SerializeToString().hex()],
                              capture_output=True, text=True, timeout=120)
    codes = ast.literal_eval(proc.stdout.strip().splitlines()[-1])
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
    assert codes.get("RESOURCE_EXHAUSTED", 0) > 0, codes  # the burst did pass the cap
    assert m.counter("requests_total", api="grpc", endpoint="predict",
                     code="RESOURCE_EXHAUSTED") - before == codes["RESOURCE_EXHAUSTED"]
