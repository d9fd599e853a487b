"""InfraValidator: load the exported SavedModel in a fresh process and send it canaries.

Checks: the signature's exact inputs and outputs; canary equations (known answers, from
integer arithmetic) come back valid with well-formed answers, and exact at least at the
evaluator's threshold less a tolerance; hostile inputs come back invalid with a reason,
an empty result and zero confidence; an empty batch works; latency is recorded. The
process imports no project code. When ``tensorflow_model_server`` is on PATH that is
reported (driving it is the InfraValidator's next step; see the README).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys

import tensorflow as tf

from components import equations as eq

log = logging.getLogger(__name__)

CANARY_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "serving", "canary_check.py")
EXPECTED_INPUTS = {"equation": ["string", [None]]}
EXPECTED_OUTPUTS = {
    "result": ["string", [None]],
    "valid": ["bool", [None]],
    "error": ["string", [None]],
    "confidence": ["float32", [None]],
}
HOSTILE = ["", "   ", "31 +", "+ 87", "31 ++ 87", "3 1 + 87", "31 x 87", "abc", "31 + 87 = 118",
           "１２ + 3", "\u0000", "9" * 500 + " + 1", "-5 + 3", "1.5 + 2"]


def canaries(coverage: dict, count: int = 24, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    space = eq.EquationSpace(tuple(coverage["operators"]), coverage["operand_min"],
                             coverage["operand_max"], coverage["num_operands"])
    out = []
    for _ in range(count):
        e = space.equation_at(rng.randrange(space.size))
        spaced = e.text if rng.random() < 0.5 else e.text.replace(" ", "")
        out.append((spaced, str(e.result)))
    return out


def hostile_for(coverage: dict) -> list[str]:
    rows = list(HOSTILE)
    rows.append(f"{coverage['operand_max'] + 1} {coverage['operators'][0]} 1")
    missing = [op for op in eq.OPERATORS if op not in coverage["operators"]]
    if missing:
        rows.append(f"1 {missing[0]} 2")
    if "/" in coverage["operators"]:
        rows.append(" / ".join(["1"] + ["0"] * (coverage["num_operands"] - 1)))
    rows.append(" + ".join(["1"] * (coverage["num_operands"] + 1)))
    return rows


def run_infra_validator(saved_model_dir: str, coverage: dict, threshold: float, output_dir: str,
                        tolerance: float = 0.05, timeout_s: int = 300) -> dict:
    tf.io.gfile.makedirs(output_dir)
    good = canaries(coverage)
    bad = hostile_for(coverage)
    request = {"equations": [g[0] for g in good] + bad}
    proc = subprocess.run(
        [sys.executable, "-I", CANARY_SCRIPT, saved_model_dir],
        input=json.dumps(request), capture_output=True, text=True, timeout=timeout_s,
    )
    problems = []
    report = {}
    if proc.returncode != 0:
        problems.append(f"the SavedModel failed in a fresh process: {proc.stderr[-2000:]}")
    else:
        report = json.loads(proc.stdout)
        if report["inputs"] != EXPECTED_INPUTS:
            problems.append(f"signature inputs {report['inputs']} != {EXPECTED_INPUTS}")
        if report["outputs"] != EXPECTED_OUTPUTS:
            problems.append(f"signature outputs {report['outputs']} != {EXPECTED_OUTPUTS}")
        rows = report["rows"]
        right = 0
        for (text, truth), row in zip(good, rows[: len(good)]):
            if not row["valid"] or row["error"]:
                problems.append(f"canary {text!r} came back invalid: {row['error']!r}")
            if not 0.0 <= row["confidence"] <= 1.0:
                problems.append(f"canary {text!r}: confidence {row['confidence']} not in [0, 1]")
            right += row["result"] == truth
        accuracy = right / len(good)
        # A wrong or malformed answer is the Evaluator's business; here it is only counted.
        report["canary_malformed_answers"] = sum(
            not re.fullmatch(r"-?\d+", row["result"]) for row in rows[: len(good)])
        report["canary_exact_match"] = accuracy
        if accuracy < threshold - tolerance:
            problems.append(f"canary exact match {accuracy:.3f} < threshold {threshold} - "
                            f"tolerance {tolerance}")
        for row in rows[len(good):]:
            if row["valid"] or not row["error"] or row["result"] or row["confidence"] != 0.0:
                problems.append(f"hostile input {row['equation']!r} was not rejected: {row}")
        if not report["empty_batch_ok"]:
            problems.append("an empty batch did not return empty outputs")
        if report["imported_project_code"]:
            problems.append("loading the model imported project code")
    checks = ["fresh-process SavedModel load", "signature names and dtypes", "canary answers",
              "hostile inputs rejected per row", "empty batch", "latency recorded"]
    model_server = shutil.which("tensorflow_model_server")
    if model_server:
        checks.append(f"tensorflow_model_server found at {model_server} (not driven yet)")
    else:
        checks.append("tensorflow_model_server not on PATH: TF Serving binary check skipped")
    result = {"passed": not problems, "problems": problems, "checks": checks, "report": report}
    with tf.io.gfile.GFile(os.path.join(output_dir, "infra_blessing.json"), "w") as f:
        f.write(json.dumps(result, indent=2))
    if problems:
        log.error("InfraValidator: FAILED:\n  %s", "\n  ".join(problems))
    else:
        log.info("InfraValidator: passed (%s); canary exact match %.3f, single-request p50 "
                 "%.1f ms, %.0f equations/s at batch 256", "; ".join(checks),
                 report["canary_exact_match"], report["single_p50_ms"],
                 report["batch256_equations_per_second"])
    return result
