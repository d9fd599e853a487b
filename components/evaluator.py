"""Evaluator: whole-answer exact match on the test split, and the blessing that gates a push.

The candidate is evaluated through ``serving.signature.build_serving_function`` (the very
function that is exported), the currently pushed model through its SavedModel signature,
on the same test examples. Blessed when the candidate meets the absolute threshold and is
not worse than the pushed model by more than the margin (the first push: threshold only).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import time

import tensorflow as tf

from components import data as data_lib

log = logging.getLogger(__name__)


def evaluate_fn(serve_fn, examples_dir: str, batch_size: int, max_examples: int = 0) -> dict:
    """Exact match of a strings-in/strings-out function over the test split."""
    totals = collections.Counter()
    right = collections.Counter()
    errors = []
    seen = 0
    started = time.time()
    for batch in data_lib.features_dataset(examples_dir, "test", batch_size):
        if max_examples and seen >= max_examples:
            break
        equations = batch["equation"]
        out = serve_fn(equation=equations)
        answers = out["result"].numpy()
        truths = batch["result"].numpy()
        operators = batch["operator"].numpy()
        texts = equations.numpy()
        for text, answer, truth, op in zip(texts, answers, truths, operators):
            op = op.decode()
            a, b = text.decode().split(" ")[0], text.decode().split(" ")[-1]
            bucket = f"{len(a)}x{len(b)}"
            ok = answer == truth
            for key in ("overall", f"operator/{op}", f"operand_digits/{bucket}"):
                totals[key] += 1
                right[key] += int(ok)
            if not ok and len(errors) < 50:
                errors.append({"equation": text.decode(), "answer": answer.decode(),
                               "truth": truth.decode()})
        seen += len(texts)
    if not totals:
        raise ValueError(f"the test split under {examples_dir} is empty")
    exact = {k: right[k] / totals[k] for k in totals}
    log.info("Evaluator: %d examples in %.1fs, exact match %.5f", totals["overall"],
             time.time() - started, exact["overall"])
    return {
        "exact_match": exact["overall"],
        "count": totals["overall"],
        "wrong": totals["overall"] - right["overall"],
        "per_operator": {k.split("/", 1)[1]: v for k, v in sorted(exact.items())
                         if k.startswith("operator/")},
        "per_operand_digits": {k.split("/", 1)[1]: v for k, v in sorted(exact.items())
                               if k.startswith("operand_digits/")},
        "counts": dict(sorted(totals.items())),
        "errors": errors,
    }


def latest_pushed(serving_base: str, model_name: str) -> tuple[int, str] | None:
    base = os.path.join(serving_base, model_name)
    if not tf.io.gfile.isdir(base):
        return None
    versions = [int(v.rstrip("/")) for v in tf.io.gfile.listdir(base) if v.rstrip("/").isdigit()]
    versions = [v for v in versions
                if tf.io.gfile.exists(os.path.join(base, str(v), "saved_model.pb"))]
    if not versions:
        return None
    version = max(versions)
    return version, os.path.join(base, str(version))


def bless(candidate: float, threshold: float, baseline: float | None, margin: float) -> dict:
    reasons = []
    ok = True
    if candidate >= threshold:
        reasons.append(f"exact match {candidate:.5f} meets the threshold {threshold}")
    else:
        ok = False
        reasons.append(f"exact match {candidate:.5f} is below the threshold {threshold}")
    if baseline is None:
        reasons.append("no pushed model to compare with: judged on the threshold alone")
    elif candidate >= baseline - margin:
        reasons.append(f"not worse than the pushed model ({baseline:.5f}) by more than {margin}")
    else:
        ok = False
        reasons.append(f"regression: {candidate:.5f} vs the pushed model's {baseline:.5f} "
                       f"(allowed margin {margin})")
    return {"blessed": ok, "reasons": reasons}


def run_evaluator(config, model_dir: str, examples_dir: str, output_dir: str) -> dict:
    from components.trainer import load_trained
    from serving.signature import build_serving_function

    e = config.evaluator
    tf.io.gfile.makedirs(output_dir)
    model, coverage = load_trained(model_dir)
    serve = build_serving_function(model, coverage)
    metrics = evaluate_fn(serve, examples_dir, e.batch_size, e.max_examples)

    baseline = None
    pushed = latest_pushed(config.pusher.serving_base, config.pusher.model_name)
    if pushed is not None:
        version, path = pushed
        log.info("Evaluator: comparing with the pushed model version %d at %s", version, path)
        loaded = tf.saved_model.load(path)
        baseline_metrics = evaluate_fn(loaded.signatures["serving_default"], examples_dir,
                                       e.batch_size, e.max_examples)
        baseline = {"version": version, "path": path,
                    "exact_match": baseline_metrics["exact_match"]}
        metrics["baseline"] = baseline
    blessing = bless(metrics["exact_match"], e.threshold,
                     baseline["exact_match"] if baseline else None, e.regression_margin)
    blessing["candidate_exact_match"] = metrics["exact_match"]
    blessing["baseline"] = baseline
    with tf.io.gfile.GFile(os.path.join(output_dir, "metrics.json"), "w") as f:
        f.write(json.dumps(metrics, indent=2))
    with tf.io.gfile.GFile(os.path.join(output_dir, "blessing.json"), "w") as f:
        f.write(json.dumps(blessing, indent=2))
    log.info("Evaluator: %s: %s", "BLESSED" if blessing["blessed"] else "NOT blessed",
             "; ".join(blessing["reasons"]))
    return {"metrics": metrics, "blessing": blessing}
