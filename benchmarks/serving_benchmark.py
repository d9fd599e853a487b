"""Load test of the local model server (serving/server), REST and gRPC, batching on/off.

Each server runs as ``python -m lstm_math.serving.server`` in its own process on 127.0.0.1, from this
source tree or from others given with ``--servers`` (so an older implementation is measured
beside the current one in the same run, on the same machine); the load comes from one or
more other processes (``--client-processes``; one thread per concurrent client, each with
its own keep-alive connection / gRPC channel and a pre-built request), or, with
``--load-generator h2load``, from nghttp2's C load generator (``apt-get install
nghttp2-client``): one connection per client, one request in flight on each, HTTP/2 with
gRPC framing or HTTP/1.1 keep-alive. On a small machine the load generator shares the
cores with the server, and the Python clients spend 0.1-0.3 ms of CPU per request; h2load
spends a fraction of that, so it shows more of what the server itself can answer. Every
cell is bounded in time.

    python benchmarks/serving_benchmark.py                 # the test fixture model
    python benchmarks/serving_benchmark.py --model-base serving_models --seconds 5
    git archive b7d1057 serving | tar -x -C /tmp/old-serving
    python benchmarks/serving_benchmark.py --servers old=/tmp/old-serving new=.
    python benchmarks/serving_benchmark.py --servers a=. b=. --server-args "b=--batch-timeout-micros 2000"
    python benchmarks/serving_benchmark.py --load-generator h2load --concurrency 32 --batch-sizes 1

For each cell: requests/s, equations/s, p50/p99 latency, errors, the ratio of
equations/s to calling the ``serving_default`` signature in-process (one thread) on batches
of the same size, and the CPU time each process (server, load generator) spent per request:
on a small machine their sum bounds requests/s, since both share the cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as a script from anywhere: make the repo's packages importable
    sys.path.insert(0, ROOT)

EQUATIONS = ["31 + 87", "7 + 6", "999 + 1", "0 + 0", "123 + 456", "5+5", " 12 +  30 ",
             "31 + x"]


def _batch(size):
    return [EQUATIONS[i % len(EQUATIONS)] for i in range(size)]


# ---------------------------------------------------------------------------------------
# load-generating worker process
# ---------------------------------------------------------------------------------------
def _client_thread(api, port, batch_size, deadline, warmup_until, out):
    import http.client
    import json
    latencies, errors, requests = [], 0, 0
    equations = _batch(batch_size)
    if api == "grpc":
        from lstm_math.serving.client import GrpcClient
        client = GrpcClient(port=port)
        request = client.make_request(equations)
        call = lambda: client.stub.Predict(request, timeout=30)  # noqa: E731
        close = client.close
    else:
        body = json.dumps({"instances": equations}).encode()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        path = "/v1/models/lstm_math:predict"

        def call():
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {data[:200]!r}")
        close = conn.close
    n = 0
    while n < 1_000_000:
        start = time.perf_counter()
        if start >= deadline:
            break
        n += 1
        try:
            call()
            ok = True
        except Exception:  # noqa: BLE001 - counted
            ok = False
            if api == "rest":
                conn.close()
        end = time.perf_counter()
        if start >= warmup_until:
            requests += 1
            if ok:
                latencies.append(end - start)
            else:
                errors += 1
    close()
    out.append((requests, errors, latencies, n))


def _worker(conn):
    import threading
    import grpc  # noqa: F401 - import everything before the first timed cell
    from lstm_math.serving.client import GrpcClient
    GrpcClient(port=1).make_request(["1 + 1"])
    conn.send("ready")
    while True:
        cell = conn.recv()
        if cell is None:
            return
        api, port, concurrency, batch_size, seconds, warmup, start = cell
        time.sleep(max(0.0, start - time.time()))
        out = []
        cpu0 = time.process_time()
        now = time.perf_counter()
        warmup_until = now + warmup
        deadline = warmup_until + seconds
        threads = [threading.Thread(target=_client_thread,
                                    args=(api, port, batch_size, deadline, warmup_until, out))
                   for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + warmup + 120)
        requests = sum(o[0] for o in out)
        errors = sum(o[1] for o in out) + (concurrency - len(out))
        latencies = sorted(x for o in out for x in o[2])
        sent = sum(o[3] for o in out)  # warm-up included
        conn.send((requests, errors, latencies, seconds, sent, time.process_time() - cpu0))


def _percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[index]


# ---------------------------------------------------------------------------------------
# h2load (nghttp2's load generator)
# ---------------------------------------------------------------------------------------
PREDICT_PATH = "/v1/models/{name}:predict"
GRPC_PREDICT_PATH = "/tensorflow.serving.PredictionService/Predict"


def _h2load_request(api, batch_size, model_name, directory):
    """Write the request body h2load sends: a gRPC-framed PredictRequest (1-byte flag,
    4-byte big-endian length, the proto) or the REST JSON body. Returns (path, args)."""
    import json
    equations = _batch(batch_size)
    path = os.path.join(directory, f"{api}-{batch_size}.body")
    if api == "grpc":
        from lstm_math.serving.client import GrpcClient
        client = GrpcClient(port=1, model_name=model_name)
        request = client.make_request(equations)
        client.close()
        payload = request.SerializeToString()
        body = b"\x00" + len(payload).to_bytes(4, "big") + payload
        headers = ["content-type: application/grpc", "te: trailers"]
        url_path = GRPC_PREDICT_PATH
        extra = []
    else:
        body = json.dumps({"instances": equations}).encode()
        headers = ["content-type: application/json"]
        url_path = PREDICT_PATH.format(name=model_name)
        extra = ["--h1"]
    with open(path, "wb") as f:
        f.write(body)
    args = extra + [a for h in headers for a in ("-H", h)] + ["-d", path]
    return url_path, args


def parse_h2load(text):
    """The counts in h2load's summary: requests done / succeeded / failed / errored /
    timeout and the HTTP status classes. A missing line is a RuntimeError naming it."""
    import re
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
    c = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if not m or not c:
        raise RuntimeError("h2load printed no 'requests:' / 'status codes:' summary:\n"
                           + text[-2000:])
    keys = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")
    out = dict(zip(keys, map(int, m.groups())))
    out.update(zip(("2xx", "3xx", "4xx", "5xx"), map(int, c.groups())))
    return out


def _h2load_latencies(log_path):
    """Per-request latencies (seconds) of h2load's --log-file (start us, status, duration us)."""
    latencies = []
    with open(log_path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                latencies.append(int(parts[2]) / 1e6)
    return sorted(latencies)


def _run_h2load_cell(port, api, concurrency, batch_size, args):
    import resource
    import subprocess
    directory = tempfile.mkdtemp(prefix="lstm_math_h2load_")
    try:
        url_path, request_args = _h2load_request(api, batch_size, args.model_name, directory)
        log_path = os.path.join(directory, "requests.log")
        cmd = (["h2load", "-c", str(concurrency), "-m", "1", "-t", "1",
                "-D", f"{int(round(args.seconds * 1000))}ms",
                "--warm-up-time", f"{int(round(args.warmup * 1000))}ms",
                "--log-file", log_path] + request_args
               + [f"http://127.0.0.1:{port}{url_path}"])
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=args.seconds + args.warmup + 120)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise RuntimeError(f"h2load failed ({proc.returncode}):\n{proc.stdout[-2000:]}"
                               f"{proc.stderr[-2000:]}")
        counts = parse_h2load(proc.stdout)
        latencies = _h2load_latencies(log_path)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    errors = counts["failed"] + counts["errored"] + counts["timeout"] + counts["4xx"] \
        + counts["5xx"] + counts["3xx"]
    # h2load counts the measured period only; the warm-up sent about as many per second
    sent = int(counts["done"] * (args.seconds + args.warmup) / args.seconds)
    return counts["done"], errors, latencies, args.seconds, sent, cpu


# ---------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------
def _fixture_model_base():
    path = os.path.join(ROOT, "tests", "serving_fixtures.py")
    spec = importlib.util.spec_from_file_location("serving_fixtures", path)
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    base = tempfile.mkdtemp(prefix="lstm_math_bench_")
    fixtures.push_version(base, 1)
    return base


def _in_process_rate(model_base, model_name, batch_size, seconds):
    import tensorflow as tf
    from lstm_math.serving.client import resolve_saved_model
    fn = tf.saved_model.load(resolve_saved_model(model_base, model_name)).signatures[
        "serving_default"]
    equations = [e.encode() for e in _batch(batch_size)]
    for _ in range(20):
        fn(equation=tf.constant(equations))
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds and n < 1_000_000:
        out = fn(equation=tf.constant(equations))
        {k: v.numpy() for k, v in out.items()}
        n += 1
    return n * batch_size / (time.perf_counter() - start)


def metric_samples(text):
    """(name, labels, value) of every sample in Prometheus text (prometheus_client's parser)."""
    from prometheus_client.parser import text_string_to_metric_families
    return [(sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text) for sample in family.samples]


def _metric_sum(samples, name):
    """Sum of the samples of one metric (all label sets), from :func:`metric_samples`."""
    return sum(value for sample, _, value in samples if sample == name)


def grpc_errors(samples):
    """gRPC predict calls that ended in an error (neither OK nor CANCELLED), from the
    server's metrics (:func:`metric_samples`)."""
    return sum(value for name, labels, value in samples
               if name == "lstm_math_serving_requests_total" and labels.get("api") == "grpc"
               and labels.get("endpoint") == "predict"
               and labels.get("code") not in ("OK", "CANCELLED"))


class ServerProcess:
    """``python -m lstm_math.serving.server`` from a source tree (this one, or an older checkout) in
    its own process, so two implementations can be measured side by side in one run."""

    def __init__(self, root, model_base, model_name, batching, max_batch_size,
                 batch_timeout_micros, num_batch_threads, extra_args=()):
        import subprocess
        self.dir = tempfile.mkdtemp(prefix="lstm_math_bench_server_")
        port_file = os.path.join(self.dir, "ports.json")
        cmd = [sys.executable, "-m", "lstm_math.serving.server", "--model-base", model_base,
               "--model-name", model_name, "--rest-port", "0", "--grpc-port", "0",
               "--port-file", port_file, "--poll-seconds", "30", "--log-level", "WARNING",
               "--batch-timeout-micros", str(batch_timeout_micros)]
        if max_batch_size:
            cmd += ["--max-batch-size", str(max_batch_size)]
        if num_batch_threads:
            cmd += ["--num-batch-threads", str(num_batch_threads)]
        if batching == "off":
            cmd.append("--no-batching")
        cmd += list(extra_args)
        env = dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="2")
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                with open(os.path.join(self.dir, "server.log"), "rb") as f:
                    raise RuntimeError("the server did not start:\n"
                                       + f.read()[-3000:].decode("utf-8", "replace"))
            time.sleep(0.2)
        import json
        with open(port_file) as f:
            ports = json.load(f)
        self.rest_port, self.grpc_port = ports["rest_port"], ports["grpc_port"]

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def batches(self):
        """(batches, batched rows, gRPC predict calls that ended in an error) so far; the
        last counts errors that h2load cannot see (a gRPC status travels in the trailers of
        an HTTP 200). CANCELLED is not an error: h2load resets the calls in flight when its
        time is up."""
        import urllib.request
        url = f"http://127.0.0.1:{self.rest_port}/monitoring/prometheus/metrics"
        with urllib.request.urlopen(url, timeout=30) as resp:
            samples = metric_samples(resp.read().decode())
        return (_metric_sum(samples, "lstm_math_serving_batches_total"),
                _metric_sum(samples, "lstm_math_serving_batched_rows_total"),
                grpc_errors(samples))

    def close(self):
        import signal
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except Exception:  # noqa: BLE001
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _run_cell(workers, cell):
    """Split one cell's clients over the load processes (as evenly as they go), start them
    at the same moment, and merge what they measured."""
    api, port, concurrency, batch_size, seconds, warmup = cell
    start = time.time() + 0.5  # every process starts its clients at this wall-clock time
    shares = [concurrency // len(workers) + (i < concurrency % len(workers))
              for i in range(len(workers))]
    busy = [(w, n) for w, n in zip(workers, shares) if n]
    for w, n in busy:
        w.send((api, port, n, batch_size, seconds, warmup, start))
    results = [w.recv() for w, _ in busy]
    return (sum(r[0] for r in results), sum(r[1] for r in results),
            sorted(x for r in results for x in r[2]), seconds,
            sum(r[4] for r in results), sum(r[5] for r in results))


def _measure(workers, server, label, api, batching, concurrency, batch_size, args, in_process):
    port = server.grpc_port if api == "grpc" else server.rest_port
    batches0, rows0, grpc_errors0 = server.batches()
    cpu0 = server.cpu_seconds()
    if args.load_generator == "h2load":
        requests, errors, lat, seconds, sent, client_cpu = _run_h2load_cell(
            port, api, concurrency, batch_size, args)
    else:
        requests, errors, lat, seconds, sent, client_cpu = _run_cell(
            workers, (api, port, concurrency, batch_size, args.seconds, args.warmup))
    server_cpu = server.cpu_seconds() - cpu0
    batches1, rows1, grpc_errors1 = server.batches()
    if args.load_generator == "h2load":
        # over the whole cell, warm-up included: an error is never missed
        errors += int(grpc_errors1 - grpc_errors0)
    batches, brows = batches1 - batches0, rows1 - rows0
    eq_rate = (requests - errors) * batch_size / seconds
    return dict(server=label, api=api, batching=batching, conc=concurrency, batch=batch_size,
                rps=(requests - errors) / seconds, eps=eq_rate,
                p50=_percentile(lat, 0.5) * 1e3, p99=_percentile(lat, 0.99) * 1e3,
                errors=errors, ratio=eq_rate / in_process[batch_size],
                avg_batch=brows / batches if batches else 0.0,
                # CPU seconds of each process over the whole cell (warm-up included) per
                # request sent in it
                server_cpu=server_cpu * 1e3 / max(1, sent),
                client_cpu=client_cpu * 1e3 / max(1, sent))


# ---------------------------------------------------------------------------------------
# --attacks: other clients' latency and success while one client attacks the server
# ---------------------------------------------------------------------------------------
ATTACKS = ("none", "stalled-bodies", "stalled-big-bodies", "deflate-bodies", "huge-json",
           "grpc-no-message")
PREDICT_HEAD = "POST /v1/models/{name}:predict HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n"


def _keep_connections(port, count, payload, stop):
    """Keep ``count`` connections open that each sent ``payload`` and then wait; one the
    server closes is opened again (so the attack lasts as long as the cell)."""
    import selectors
    import socket
    sel = selectors.DefaultSelector()
    open_now = 0
    while not stop.is_set():
        while open_now < count and not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(payload)
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ)
                open_now += 1
            except OSError:
                time.sleep(0.05)
                break
        for key, _ in sel.select(timeout=0.1):
            try:
                data = key.fileobj.recv(65536)
            except OSError:
                data = b""
            if not data:  # closed by the server: open another
                sel.unregister(key.fileobj)
                key.fileobj.close()
                open_now -= 1
    for key in list(sel.get_map().values()):
        key.fileobj.close()


def hold_grpc_calls_without_message(grpc_port, count, ready, stop):
    """On one HTTP/2 connection, keep ``count`` Predict calls open that never send their
    request message (one the server ends is opened again), until ``stop``; ``ready`` is set
    once they are all open. The benchmark's grpc-no-message attack, and a hostile-client
    test's."""
    import asyncio
    import grpc

    async def run():
        forever = asyncio.Event()

        async def never():
            await forever.wait()
            yield b""

        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            method = channel.stream_unary("/tensorflow.serving.PredictionService/Predict")

            async def hold():
                while not stop.is_set():
                    try:
                        await method(never(), timeout=60)
                    except grpc.aio.AioRpcError:
                        await asyncio.sleep(0.05)

            tasks = [asyncio.ensure_future(hold()) for _ in range(count)]
            await asyncio.sleep(0.5)
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.1)
            for t in tasks:
                t.cancel()
    asyncio.run(run())


def _attacker(kind, rest_port, grpc_port, model_name, ready, stop):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    head = PREDICT_HEAD.replace("{name}", model_name)
    if kind == "stalled-bodies":  # 1,030 connections, 13 of 1,000 body bytes each
        ready.set()
        _keep_connections(rest_port, 1030, (head.format(n=1000) + "\r\n").encode()
                          + b'{"instances":', stop)
    elif kind == "stalled-big-bodies":  # 300 connections stalled just under 4 MiB
        size = 4 * 1024 * 1024
        ready.set()
        _keep_connections(rest_port, 300, (head.format(n=size) + "\r\n").encode()
                          + b"[" * (size - 1024), stop)
    elif kind == "deflate-bodies":  # 1,030 connections, a 1-byte deflate body each
        ready.set()
        _keep_connections(rest_port, 1030, (head.format(n=1) + "Content-Encoding: deflate"
                                            "\r\n\r\nx").encode(), stop)
    elif kind == "huge-json":  # one client looping on 10^6 empty lists (3 MB, a 400 each)
        import http.client
        body = b'{"instances": [' + b",".join([b"[]"] * 1_000_000) + b"]}"
        ready.set()
        while not stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=30)
            try:
                while not stop.is_set():
                    conn.request("POST", f"/v1/models/{model_name}:predict", body=body)
                    conn.getresponse().read()
            except OSError:
                time.sleep(0.05)
            finally:
                conn.close()
    elif kind == "grpc-no-message":  # 1,030 Predict calls on one connection, no message
        hold_grpc_calls_without_message(grpc_port, 1030, ready, stop)
    else:
        ready.set()
        stop.wait()


def _honest_client(api, port, model_name, deadline, out):
    """One-equation requests in a loop until ``deadline``: (latencies of successes, count)."""
    import http.client
    import json
    latencies, total = [], 0
    if api == "grpc":
        from lstm_math.serving.client import GrpcClient
        client = GrpcClient(port=port, model_name=model_name)
        request = client.make_request(["1 + 1"])
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            total += 1
            try:
                client.stub.Predict(request, timeout=5)
                latencies.append(time.perf_counter() - start)
            except Exception:  # noqa: BLE001 - counted as a failure
                pass
        client.close()
    else:
        body = json.dumps({"instances": ["1 + 1"]}).encode()
        conn = None
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            total += 1
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("POST", f"/v1/models/{model_name}:predict", body=body)
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    latencies.append(time.perf_counter() - start)
                else:
                    conn.close()
                    conn = None
            except Exception:  # noqa: BLE001 - counted as a failure
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.01)
        if conn is not None:
            conn.close()
    out.append((api, sorted(latencies), total))


def _rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def measure_attack(server, kind, model_name, seconds, clients=2):
    """Other clients' p50 and success rate (REST and gRPC, ``clients`` threads each) while
    ``kind`` runs against ``server``, and the server's RSS before and at its peak."""
    import threading
    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    rss_before = _rss_mb(server.proc.pid)
    attacker = ctx.Process(target=_attacker, args=(kind, server.rest_port, server.grpc_port,
                                                   model_name, ready, stop), daemon=True)
    attacker.start()
    try:
        ready.wait(60)
        time.sleep(2.0)  # let the attack take hold
        out, peak = [], [rss_before]
        deadline = time.perf_counter() + seconds
        threads = [threading.Thread(target=_honest_client,
                                    args=(api, server.grpc_port if api == "grpc"
                                          else server.rest_port, model_name, deadline, out))
                   for api in ("rest", "grpc") for _ in range(clients)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak.append(_rss_mb(server.proc.pid))
            time.sleep(0.2)
        for t in threads:
            t.join()
    finally:
        stop.set()
        attacker.join(30)
        if attacker.is_alive():
            attacker.terminate()
    rows = {}
    for api in ("rest", "grpc"):
        lat = sorted(x for a, ls, _ in out if a == api for x in ls)
        total = sum(n for a, _, n in out if a == api)
        rows[api] = dict(p50=_percentile(lat, 0.5) * 1e3, ok=len(lat), total=total,
                         success=len(lat) / total if total else float("nan"))
    return rows, rss_before, max(peak)


def run_attacks(args, servers, model_base):
    print("| attack | server | REST p50 ms | REST success | gRPC p50 ms | gRPC success "
          "| server RSS MB before / peak |")
    print("|---|---|---|---|---|---|---|")
    for kind in args.attacks:
        for label, root in servers:
            # a fresh server per cell: an attack's leftovers never reach the next one
            server = ServerProcess(root, model_base, args.model_name, "on", args.max_batch_size,
                                   args.batch_timeout_micros, args.num_batch_threads,
                                   args.server_args_by_label.get(label, ()))
            try:
                rows, before, peak = measure_attack(server, kind, args.model_name,
                                                    args.seconds)
            finally:
                server.close()
            r, g = rows["rest"], rows["grpc"]
            print(f"| {kind} | {label} | {r['p50']:.1f} | {r['success']:.1%} ({r['ok']}/"
                  f"{r['total']}) | {g['p50']:.1f} | {g['success']:.1%} ({g['ok']}/"
                  f"{g['total']}) | {before:.0f} / {peak:.0f} |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-base", help="serve this model base (default: build the test "
                                             "fixture model in a temp dir)")
    parser.add_argument("--model-name", default="lstm_math")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=0.3, help="unmeasured seconds per cell")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--apis", nargs="+", default=["grpc", "rest"], choices=["grpc", "rest"])
    parser.add_argument("--batching", nargs="+", default=["on"], choices=["on", "off"])
    parser.add_argument("--servers", nargs="+", default=[f"new={ROOT}"], metavar="LABEL=ROOT",
                        help="server implementations to measure, each a source tree whose "
                             "'python -m lstm_math.serving.server' is run (e.g. old=/tmp/old-serving "
                             "new=.); default: this tree")
    parser.add_argument("--max-batch-size", type=int, default=0, help="0 = the server's default")
    parser.add_argument("--batch-timeout-micros", type=int, default=1000)
    parser.add_argument("--num-batch-threads", type=int, default=0,
                        help="0 = the server's default")
    parser.add_argument("--client-processes", type=int, default=1,
                        help="load-generating processes; a cell's clients are split over "
                             "them (default %(default)s: all client threads share one "
                             "process and its GIL)")
    parser.add_argument("--load-generator", choices=["python", "h2load"], default="python",
                        help="python: the Python clients above (default); h2load: nghttp2's "
                             "C load generator, far less client CPU per request")
    parser.add_argument("--server-args", nargs="+", default=[], metavar="LABEL=ARGS",
                        help="extra 'python -m lstm_math.serving.server' flags for one server, e.g. "
                             "--servers a=. b=. --server-args 'b=--strict-batch-timeout' "
                             "(the same tree measured with two settings)")
    parser.add_argument("--attacks", nargs="+", choices=ATTACKS, metavar="ATTACK",
                        help="instead of the load table: for each attack ("
                             + ", ".join(ATTACKS) + "), other clients' one-equation p50 "
                             "and success rate (2 REST + 2 gRPC threads, --seconds long) "
                             "while it runs, and the server's RSS, for each --servers")
    args = parser.parse_args(argv)
    if args.client_processes < 1:
        parser.error("--client-processes must be >= 1")
    if args.load_generator == "h2load" and not shutil.which("h2load"):
        parser.error("--load-generator h2load: no h2load on PATH "
                     "(apt-get install nghttp2-client)")
    logging.basicConfig(force=True, level=logging.WARNING)
    import shlex
    server_args = {}
    for spec in args.server_args:
        label, sep, flags = spec.partition("=")
        if not sep:
            parser.error(f"--server-args: expected LABEL=ARGS, got {spec!r}")
        server_args[label] = shlex.split(flags)
    servers = []
    for spec in args.servers:
        label, _, root = spec.partition("=")
        if not root:
            label, root = os.path.basename(os.path.abspath(spec)), spec
        servers.append((label, os.path.abspath(root)))

    model_base = args.model_base or _fixture_model_base()
    if args.attacks:
        args.server_args_by_label = server_args
        try:
            run_attacks(args, servers, model_base)
        finally:
            if not args.model_base:
                shutil.rmtree(model_base, ignore_errors=True)
        return 0
    print(f"model base: {model_base} ({'given' if args.model_base else 'test fixture model'}); "
          f"CPUs: {os.cpu_count()}; {args.seconds:g}s per cell; load: {args.load_generator}; "
          "servers: "
          + ", ".join(f"{label}={root}" for label, root in servers), flush=True)

    in_process = {b: _in_process_rate(model_base, args.model_name, b, min(args.seconds, 2.0))
                  for b in args.batch_sizes}
    for b, rate in in_process.items():
        print(f"in-process signature call, batch {b}: {rate:,.0f} equations/s", flush=True)

    ctx = multiprocessing.get_context("spawn")
    workers, procs = [], []
    for _ in range(args.client_processes if args.load_generator == "python" else 0):
        conn, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child,), daemon=True)
        proc.start()
        workers.append(conn)
        procs.append(proc)
    for conn in workers:
        if not conn.poll(120) or conn.recv() != "ready":
            raise RuntimeError("a load worker process did not start")
    rows = []
    try:
        for batching in args.batching:
            # All implementations run at once and take turns cell by cell, so a busy
            # neighbour on a shared machine skews them alike.
            running = []
            try:
                for label, root in servers:
                    running.append((label, ServerProcess(
                        root, model_base, args.model_name, batching, args.max_batch_size,
                        args.batch_timeout_micros, args.num_batch_threads,
                        server_args.get(label, ()))))
                for api in args.apis:
                    for batch_size in args.batch_sizes:
                        for concurrency in args.concurrency:
                            for label, server in running:
                                row = _measure(workers, server, label, api, batching,
                                               concurrency, batch_size, args, in_process)
                                rows.append(row)
                                print(_format_row(row), flush=True)
            finally:
                for _, server in running:
                    server.close()
    finally:
        for conn in workers:
            conn.send(None)
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.terminate()
        if not args.model_base:
            shutil.rmtree(model_base, ignore_errors=True)
    print()
    print(_table(rows))
    return 0


HEADER = ("| server | api  | batching | conc | batch | req/s | equations/s | p50 ms | p99 ms | errors "
          "| avg server batch | vs in-process | server CPU ms/req | client CPU ms/req |")


def _format_row(r):
    return (f"| {r['server']:<6} | {r['api']:<4} | {r['batching']:<8} | {r['conc']:>4} | {r['batch']:>5} "
            f"| {r['rps']:>7,.0f} | {r['eps']:>11,.0f} | {r['p50']:>6.2f} | {r['p99']:>6.2f} "
            f"| {r['errors']:>6} | {r['avg_batch']:>16.1f} | {r['ratio']:>12.0%} "
            f"| {r['server_cpu']:>17.2f} | {r['client_cpu']:>17.2f} |")


def _table(rows):
    lines = [HEADER, "|" + "|".join("-" * (len(c)) for c in HEADER.split("|")[1:-1]) + "|"]
    lines += [_format_row(r) for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
