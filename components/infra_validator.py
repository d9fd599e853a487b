"""InfraValidator: load the exported SavedModel the way a server will, and send it canaries.

Checks, in a fresh Python process that imports nothing but TensorFlow and in which Keras
cannot be imported (``serving/canary_check.py --without-keras`` run with ``python -I``):
  * the signature's exact inputs and outputs (docs/serving-contract.md);
  * TF Serving's own way of loading: the MetaGraph in a graph-mode Session, variables
    restored by the SaverDef, the signature called by tensor names, must give the same
    answers row for row as the object loader, and replay the warm-up requests (a model TF
    Serving could not run is never pushed);
  * canary equations with known answers (integer arithmetic) come back valid, with
    well-formed answers and a confidence in [0, 1], exact at least at the evaluator's
    threshold less a tolerance; ``trusted`` is true exactly where the confidence is at or
    above the operator's trust threshold in the model's own metrics.json asset;
  * hostile inputs (a fuzzer's list: NUL bytes, invalid UTF-8, unicode digits, unary
    signs, too many operators, a megabyte of digits, ...) come back ``valid=false`` with
    the expected reason, an empty result, zero confidence and ``trusted=false``, and never
    fail the batch;
  * an empty batch gives empty outputs; a huge batch gives the same answers row for row;
  * the single-request latency p50 is within the bound;
  * the assets (coverage.json, metrics.json) are readable and describe this model;
  * no project code was imported to load and call the model.

When ``tensorflow_model_server`` is on PATH, the model is also served by it on 127.0.0.1
(free ports) and queried over REST (row and columnar predict, model status, metadata) and
gRPC (Predict, GetModelMetadata); its answers must equal the fresh process's. The report
says which checks ran.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import numpy as np
import tensorflow as tf

from lstm_math.components import equations as eq
from lstm_math.components.errors import ValidationIncomplete
from lstm_math.components.evaluator.scoring import trust_thresholds
from lstm_math.config import Coverage
from lstm_math.serving.contract import DEFAULT_MODEL_NAME, TRUSTED_KEY, WORKING_OUTPUT

log = logging.getLogger(__name__)

CANARY_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "serving", "canary_check.py")
EXPECTED_INPUTS = {"equation": ["string", [None]]}
EXPECTED_OUTPUTS = {
    "result": ["string", [None]],
    "valid": ["bool", [None]],
    "error": ["string", [None]],
    "confidence": ["float32", [None]],
    TRUSTED_KEY: ["bool", [None]],
}


def expected_outputs(coverage: Coverage) -> dict:
    """The signature's outputs for a model of this coverage: EXPECTED_OUTPUTS, plus the
    ``working`` string of a model that writes its working (components.answer_formats)."""
    from lstm_math.components.answer_formats import formats_of

    if not formats_of(coverage):
        return dict(EXPECTED_OUTPUTS)
    return {**EXPECTED_OUTPUTS, WORKING_OUTPUT: ["string", [None]]}
# (row bytes, a piece of the reason expected back). Rows that depend on what the model
# covers are added by hostile_for().
HOSTILE = [
    (b"", "empty"),
    (b" \t\n ", "empty"),
    (b"31 +", "malformed"),
    (b"+ 87", "malformed"),
    (b"+31 + 87", "malformed"),
    (b"-5 + 3", "malformed"),
    (b"31 ++ 87", "malformed"),
    (b"31 + - 87", "malformed"),
    (b"3 1 + 87", "two numbers without an operator"),
    (b"3\n1 + 87", "two numbers without an operator"),
    (b"31", "no operator"),
    (b"31 x 87", "unknown character 'x'"),
    (b"abc", "unknown character 'a'"),
    (b"31 + 87 = 118", "unknown character '='"),
    (b"1.5 + 2", "unknown character '.'"),
    (b"1e3 + 1", "unknown character 'e'"),
    (b"0x1F + 1", "unknown character 'x'"),
    (b"\x00", "unknown character U+0000"),
    (b"1\x00 + 2", "unknown character U+0000"),
    ("１２ + 3".encode(), "unknown character '１' (U+FF11)"),  # full-width digits
    ("١٢ + 3".encode(), "unknown character '١' (U+0661)"),  # Arabic-Indic digits
    ("12 ＋ 3".encode(), "unknown character '＋' (U+FF0B)"),  # full-width plus
    ("12\u00a0+ 3".encode(), "unknown character U+00A0"),  # no-break space
    ("1 + 2\u202e".encode(), "unknown character U+202E"),  # right-to-left override
    ("🙂 + 1".encode(), "unknown character '🙂' (U+1F642)"),
    ("1\u200b+ 1".encode(), "unknown character U+200B"),  # zero-width space
    ("\U000e0041 + 1".encode(), "unknown character U+E0041"),  # a tag character
    (b"\xff\xfe + 1", "unknown character U+FFFD"),  # not UTF-8: replaced, then refused
    (b"9" * 500 + b" + 1", "out of the trained range"),
    (b"9" * 2_000_000 + b" + 1", "too long"),
    (b" " * 5000 + b"1 + 1", "too long"),
    (b"+".join([b"1"] * 300), "too long"),
]


def canaries(coverage: Coverage, count: int = 24, seed: int = 0) -> list[tuple[str, str]]:
    """Equations of the covered space with their true answers, in varied spacing; taken in
    turn from each operand count the model covers (a uniform draw over a 2..3-operand space
    would be almost all three-operand)."""
    rng = random.Random(seed)
    covered = coverage.space()
    spaces = [dataclasses.replace(covered, num_operands=k, min_operands=k)
              for k in covered.operand_counts]
    spacings = [lambda t: t, lambda t: t.replace(" ", ""), lambda t: f"  {t}\t",
                lambda t: t.replace(" ", "  "), lambda t: t.replace(" ", "\n")]
    out = []
    for i in range(count):
        space = spaces[i % len(spaces)]
        e = space.equation_at(rng.randrange(space.size))
        out.append((spacings[i % len(spacings)](e.text), str(e.result)))
    return out


def hostile_for(coverage: Coverage) -> list[tuple[bytes, str]]:
    ops, n = coverage.operators, coverage.num_operands
    ones = f" {ops[0]} 1" * (n - 1)  # the rest of an equation of a covered length
    # An out-of-range operand is reported as such only in an equation that is otherwise
    # covered (a trained operator, a covered operand count); else 'not trained' / 'too short'.
    rows = [(r[:-len(b" + 1")] + ones.encode()
             if want == "out of the trained range" and r.endswith(b" + 1") else r, want)
            for r, want in HOSTILE]
    rows.append((f"{coverage.operand_max + 1}{ones}".encode(), "out of the trained range"))
    rows.append((f"{'0' * 40}{coverage.operand_max + 1}{ones}".encode(),
                 "out of the trained range"))
    missing = [op for op in eq.OPERATORS if op not in ops]
    if missing:
        rows.append((f" {ops[0]} ".join(["1"] * (n - 1)).encode() + f" {missing[0]} 2".encode(),
                     f"operator '{missing[0]}' not trained"))
    if "/" in ops:
        rows.append((" / ".join(["1"] + ["0"] * (n - 1)).encode(), "division by zero"))
    rows.append((f" {ops[0]} ".join(["1"] * (n + 1)).encode(), "too long"))
    fewest = coverage.min_operands
    if fewest > 2:
        rows.append((f" {ops[0]} ".join(["1"] * (fewest - 1)).encode(), "too short"))
    return rows


# --------------------------------------------------------------------------------------
# tensorflow_model_server, when it is installed.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(method: str, url: str, body: dict | None = None, timeout: float = 30.0):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read().decode())


def check_model_server(binary: str, saved_model_dir: str, model_name: str,
                       equations: list[str], expected: list[dict],
                       startup_timeout_s: float = 120.0) -> tuple[list[str], list[str], dict]:
    """Serves the model with ``binary`` (tensorflow_model_server's flags) on 127.0.0.1 and
    queries it over REST and gRPC. Returns (checks that ran, problems, details)."""
    checks, problems, details = [], [], {}
    base = tempfile.mkdtemp(prefix="lstm-math-infra-")
    proc = None
    log_path = os.path.join(base, "model_server.log")
    try:
        model_base = os.path.join(base, model_name)
        os.makedirs(model_base)
        shutil.copytree(saved_model_dir, os.path.join(model_base, "1"))
        grpc_port, rest_port = _free_port(), _free_port()
        cmd = [binary, f"--port={grpc_port}", f"--rest_api_port={rest_port}",
               "--rest_api_num_threads=2", f"--model_name={model_name}",
               f"--model_base_path={model_base}", "--file_system_poll_wait_seconds=1",
               "--xla_cpu_compilation_enabled=true", "--enable_model_warmup=true"]
        details["command"] = " ".join(cmd)
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        rest = f"http://127.0.0.1:{rest_port}/v1/models/{model_name}"
        deadline = time.time() + startup_timeout_s
        state = None
        while time.time() < deadline and proc.poll() is None:
            try:
                status = _http("GET", rest, timeout=5)
                state = status["model_version_status"][0]["state"]
                if state == "AVAILABLE":
                    break
            except (urllib.error.URLError, OSError, KeyError, IndexError, ValueError):
                pass
            time.sleep(0.5)
        if state != "AVAILABLE":
            problems.append(f"tensorflow_model_server did not make the model AVAILABLE within "
                            f"{startup_timeout_s:.0f}s (state {state}, exit code {proc.poll()})")
            return checks, problems, details
        checks.append("tensorflow_model_server: model status AVAILABLE over REST")

        def compare(how, rows):
            if len(rows) != len(expected):
                problems.append(f"{how}: {len(rows)} rows for {len(expected)} equations")
                return
            for text, got, want in zip(equations, rows, expected):
                same = (got.get("result") == want["result"] and got.get("valid") == want["valid"]
                        and got.get("error") == want["error"]
                        and got.get(TRUSTED_KEY) == want[TRUSTED_KEY]
                        and abs(float(got.get("confidence", -1)) - want["confidence"]) < 1e-4)
                if not same:
                    problems.append(f"{how}: {text!r} answered {got}, the SavedModel {want}")
                    return

        out = _http("POST", rest + ":predict", {"instances": equations})
        compare("REST predict (instances)", out.get("predictions", []))
        checks.append("tensorflow_model_server: REST predict, row format")
        out = _http("POST", rest + ":predict", {"inputs": {"equation": equations}})
        cols = out.get("outputs", {})
        compare("REST predict (inputs)", [
            {k: cols.get(k, [None] * len(equations))[i] for k in EXPECTED_OUTPUTS}
            for i in range(len(cols.get("result", [])))])
        checks.append("tensorflow_model_server: REST predict, columnar format")
        meta = _http("GET", rest + "/metadata")
        sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
        outputs = set(sig["outputs"]) - {WORKING_OUTPUT}  # a working model's extra output
        if set(sig["inputs"]) != set(EXPECTED_INPUTS) or outputs != set(EXPECTED_OUTPUTS):
            problems.append(f"REST metadata: signature {sorted(sig['inputs'])} -> "
                            f"{sorted(sig['outputs'])}")
        checks.append("tensorflow_model_server: REST metadata")

        import grpc
        from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = "serving_default"
            request.inputs["equation"].CopyFrom(
                tf.make_tensor_proto([e.encode() for e in equations], dtype=tf.string))
            response = stub.Predict(request, timeout=30)
            arrays = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
            rows = [{"result": arrays["result"][i].decode(), "valid": bool(arrays["valid"][i]),
                     "error": arrays["error"][i].decode(),
                     "confidence": float(arrays["confidence"][i]),
                     TRUSTED_KEY: bool(arrays[TRUSTED_KEY][i])}
                    for i in range(len(arrays.get("result", [])))]
            compare("gRPC Predict", rows)
            checks.append("tensorflow_model_server: gRPC Predict")
            meta_request = get_model_metadata_pb2.GetModelMetadataRequest()
            meta_request.model_spec.name = model_name
            meta_request.metadata_field.append("signature_def")
            meta_response = stub.GetModelMetadata(meta_request, timeout=30)
            if meta_response.model_spec.name != model_name:
                problems.append(f"gRPC GetModelMetadata answered for "
                                f"{meta_response.model_spec.name!r}")
            checks.append("tensorflow_model_server: gRPC GetModelMetadata")
    except Exception as exc:  # report it: a push must not happen on a half-checked model
        problems.append(f"tensorflow_model_server check failed: {type(exc).__name__}: {exc}")
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if problems and os.path.exists(log_path):
            with open(log_path, "rb") as f:
                details["server_log_tail"] = f.read()[-3000:].decode(errors="replace")
        shutil.rmtree(base, ignore_errors=True)
    return checks, problems, details


# --------------------------------------------------------------------------------------
# The component.


def run_with_progress(cmd: list[str], stdin_text: str, timeout_s: float, what: str,
                      every_s: float = 30.0) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, input=stdin_text, capture_output=True, text=True,
    timeout=timeout_s)``, with a progress line every ``every_s`` seconds while ``what``
    runs (a large model's load and warm-up replay take minutes); past ``timeout_s`` the
    process is killed and ``subprocess.TimeoutExpired`` raised."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    pending = stdin_text  # sent by the first communicate; a retry must not send it again
    while True:
        left = timeout_s - (time.monotonic() - started)
        try:
            if left <= 0:
                raise subprocess.TimeoutExpired(cmd, timeout_s)
            out, err = proc.communicate(input=pending, timeout=min(every_s, left))
            return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
        except subprocess.TimeoutExpired:
            pending = None
            elapsed = time.monotonic() - started
            if elapsed >= timeout_s:
                proc.kill()
                proc.communicate()
                raise subprocess.TimeoutExpired(cmd, timeout_s) from None
            log.info("InfraValidator: %s: running for %.0fs (gives up at %.0fs)", what,
                     elapsed, timeout_s)


def run_infra_validator(saved_model_dir: str, coverage: Coverage, threshold: float,
                        output_dir: str, tolerance: float = 0.05, timeout_s: int = 300,
                        num_canaries: int = 24, max_latency_ms: float = 2000.0,
                        model_name: str = DEFAULT_MODEL_NAME, huge_batch: int = 4096) -> dict:
    tf.io.gfile.makedirs(output_dir)
    good = canaries(coverage, num_canaries)
    bad = hostile_for(coverage)
    rows_in = [g[0].encode() for g in good] + [b[0] for b in bad]
    request = {"equations_b64": [base64.b64encode(r).decode() for r in rows_in],
               "huge_batch": huge_batch}
    checks = []
    problems = []
    report = {}
    try:
        proc = run_with_progress(
            [sys.executable, "-I", CANARY_SCRIPT, "--without-keras", saved_model_dir],
            json.dumps(request), timeout_s,
            "the SavedModel in a fresh process (loading, warm-up replay, canaries)")
        failed = proc.returncode != 0 and f"exit code {proc.returncode}: {proc.stderr[-2000:]}"
    except subprocess.TimeoutExpired:
        # No verdict on the model: nothing is recorded (so nothing cached); rerun, with more
        # time where the machine is slow or busy.
        raise ValidationIncomplete(
            f"InfraValidator: the SavedModel gave no answer within {timeout_s}s in a fresh "
            "process (loading, warm-up replay, canaries); nothing was recorded: rerun with a "
            "larger runtime.infra_validation_timeout_s (e.g. --set "
            f"runtime.infra_validation_timeout_s={4 * timeout_s}) on a busy or slow machine"
        ) from None
    if failed:
        problems.append(f"the SavedModel failed in a fresh process: {failed}")
    else:
        checks.append("fresh-process SavedModel load (python -I, TensorFlow only, Keras blocked)")
        report = json.loads(proc.stdout)
        if report["inputs"] != EXPECTED_INPUTS:
            problems.append(f"signature inputs {report['inputs']} != {EXPECTED_INPUTS}")
        if report["outputs"] != expected_outputs(coverage):
            problems.append(f"signature outputs {report['outputs']} != "
                            f"{expected_outputs(coverage)}")
        checks.append("signature names, dtypes and shapes")
        session = report.get("session", {})
        if session.get("error"):
            problems.append("TF Serving's loader (SaverDef restore in a graph-mode Session) "
                            f"cannot run this SavedModel: {session['error']}")
        elif session.get("mismatches"):
            first = session["mismatches"][0]
            problems.append(f"TF Serving's loader answers {len(session['mismatches'])} rows "
                            f"differently from the object loader, e.g. row {first['row']}: "
                            f"{first['session']} vs {first['object']}")
        else:
            checks.append("TF Serving's loader (tf.compat.v1 Session, SaverDef restore, "
                          "signature by tensor names): same answers row for row, "
                          f"{session.get('warmup_requests', 0)} warm-up requests replayed")
        rows = report["rows"]
        right = 0
        shipped = trust_thresholds(report.get("assets", {}).get("metrics_json"))
        for (text, truth), row in zip(good, rows[: len(good)]):
            if not row["valid"] or row["error"]:
                problems.append(f"canary {text!r} came back invalid: {row['error']!r}")
            if not 0.0 <= row["confidence"] <= 1.0:
                problems.append(f"canary {text!r}: confidence {row['confidence']} not in [0, 1]")
            limit = shipped.get(eq.parse(text).tag)
            want_trusted = bool(row["valid"]) and limit is not None and bool(
                np.float32(row["confidence"]) >= np.float32(limit))
            if row.get(TRUSTED_KEY) is not want_trusted:
                problems.append(f"canary {text!r}: trusted={row.get(TRUSTED_KEY)} but its "
                                f"confidence {row['confidence']:.6g} and the threshold "
                                f"{limit} in assets/metrics.json say {want_trusted}")
            right += row["result"] == truth
        accuracy = right / len(good)
        # A wrong answer is the Evaluator's business; here a bar well below the threshold
        # catches a model that broke in export (wrong vocabulary, reversed output, ...).
        report["canary_malformed_answers"] = sum(
            not re.fullmatch(r"-?\d+", row["result"]) for row in rows[: len(good)])
        report["canary_exact_match"] = accuracy
        if accuracy < threshold - tolerance:
            problems.append(f"canary exact match {accuracy:.3f} < threshold {threshold} - "
                            f"tolerance {tolerance}")
        checks.append(f"{len(good)} canary answers; `trusted` agrees with the thresholds in "
                      "assets/metrics.json")
        for (text, reason), row in zip(bad, rows[len(good):]):
            shown = text[:60] + (b"..." if len(text) > 60 else b"")
            if row["valid"] or row["result"] or row["confidence"] != 0.0 or row.get(TRUSTED_KEY):
                problems.append(f"hostile input {shown!r} was not rejected: valid={row['valid']} "
                                f"result={row['result']!r} confidence={row['confidence']} "
                                f"trusted={row.get(TRUSTED_KEY)}")
            elif reason not in row["error"]:
                problems.append(f"hostile input {shown!r}: reason {row['error']!r} does not "
                                f"say {reason!r}")
        checks.append(f"{len(bad)} hostile inputs rejected per row with their reasons")
        if not report["empty_batch_ok"]:
            problems.append("an empty batch did not return empty outputs")
        checks.append("empty batch")
        huge = report.get("huge_batch")
        if huge_batch:
            if not huge or not huge["same_answers_as_small_batch"] or huge["lengths"] != [huge_batch]:
                problems.append(f"a batch of {huge_batch} rows did not give the same answers: {huge}")
            checks.append(f"huge batch ({huge_batch} rows)")
        if report["single_p50_ms"] > max_latency_ms:
            problems.append(f"single-request latency p50 {report['single_p50_ms']:.1f} ms > "
                            f"{max_latency_ms} ms (pusher.infra_max_latency_ms)")
        checks.append(f"latency p50 <= {max_latency_ms} ms")
        assets = report.get("assets", {})
        if assets.get("coverage_json") != coverage.to_dict():
            problems.append(f"assets/coverage.json {assets.get('coverage_json')} does not "
                            f"describe this model ({coverage.to_dict()})")
        if not isinstance(assets.get("metrics_json"), dict):
            problems.append("assets/metrics.json is missing or not a JSON object")
        checks.append("assets coverage.json and metrics.json")
        if report["imported_project_code"]:
            problems.append(f"loading the model imported project code: "
                            f"{report['imported_project_code']}")
        if report["imported_keras"]:
            problems.append("Keras was imported although it was blocked")
        checks.append("no project code imported; Keras blocked (not importable) in that process")

        model_server = shutil.which("tensorflow_model_server")
        if model_server:
            # Rows that travel as JSON text (valid UTF-8, no NUL, not megabytes); the others
            # were checked in the fresh process above.
            texts, expected = [], []
            for raw, row in zip(rows_in, rows):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    continue
                if len(raw) <= 10_000 and "\x00" not in text:
                    texts.append(text)
                    expected.append(row)
            ran, server_problems, details = check_model_server(
                model_server, saved_model_dir, model_name, texts, expected,
                startup_timeout_s=min(120.0, timeout_s))
            checks += ran
            problems += server_problems
            report["model_server"] = {"binary": model_server, **details}
        else:
            checks.append("tensorflow_model_server not on PATH: TF Serving REST/gRPC checks "
                          "skipped")
    result = {"passed": not problems, "problems": problems, "checks": checks, "report": report}
    with tf.io.gfile.GFile(os.path.join(output_dir, "infra_blessing.json"), "w") as f:
        f.write(json.dumps(result, indent=2))
    if problems:
        log.error("InfraValidator: FAILED:\n  %s", "\n  ".join(problems))
    else:
        log.info("InfraValidator: passed; checks: %s; canary exact match %.3f, single-request "
                 "p50 %.1f ms, %.0f equations/s at batch 256", "; ".join(checks),
                 report["canary_exact_match"], report["single_p50_ms"],
                 report["batch256_equations_per_second"])
    return result
