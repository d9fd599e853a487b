"""The Evaluator component: runs scoring, exhaustive mode, pictures, report and blessing.

The candidate is evaluated through ``lstm_math.components.signature.build_serving_function`` (the very
function that is exported), the currently pushed model through its SavedModel signature,
on the same test examples, so what is measured is what is served.

Outputs (under the component's output directory):
  metrics.json        whole-answer exact match on the test split: overall, per operator
                      ('mixed' for three or more operands), per operand count, per
                      operand-length bucket ('1x3': one-digit a, three-digit b), the same
                      per operator, per result length, small operands (every operand < 10,
                      < 100); how well ``confidence`` separates right from wrong answers
                      (AUROC, and the threshold that keeps 99.9% of the right answers with
                      the share of wrong answers below it), overall and per operator; error
                      sizes |answer - truth| as a histogram; the worst errors (input,
                      answer, truth, confidence); the hardware it ran on; and, when the
                      operand space is small enough, the exhaustive evaluation of every
                      equation, with exact match separately for equations seen in training
                      and never seen; every equation whose operands are all single-digit
                      (``small_operands_all``, evaluated whole for any space); what the
                      served ``trusted`` does (``trust``: the share of wrong answers it
                      catches and of right answers it gives up, per operator)
  blessing.json       blessed or not, with the reasons (absolute threshold, overall and
                      per operator slice, every equation of single-digit operands; no
                      regression against the pushed model by more than the margin) and
                      ``judged_against``: the served model compared with (serving base,
                      model name, version, content digest; version null when none), which
                      the Pusher checks is still the latest
  report.md           the same figures as Markdown tables, for people
  error_map_<op>.png  the post's error map: the (a, b) plane of each operator (from the
                      two-operand equations), correct and wrong answers marked
  error_sizes.png     the histogram of error sizes
  logs/               TensorBoard: the PNGs as images, the report as text
"""

from __future__ import annotations

import json
import logging
import os
import platform

import tensorflow as tf

from lstm_math.components.baseline import describe, version_dir
from lstm_math.components.evaluator.blessing import bless
from lstm_math.components.evaluator.exhaustive import evaluate_exhaustive, evaluate_small_operands
from lstm_math.components.evaluator.plots import error_map_pngs, error_size_png
from lstm_math.components.evaluator.report import report_markdown
from lstm_math.components.evaluator.scoring import (evaluate_fn, trust_thresholds,
                                                    uniform_estimate)
from lstm_math.components.evaluator.working import working_errors
from lstm_math.config import Coverage

log = logging.getLogger(__name__)

OPERATOR_NAMES = {"+": "plus", "-": "minus", "*": "times", "/": "divide"}


# --------------------------------------------------------------------------------------
# The component.


def hardware() -> str:
    """The machine in words, e.g. '2 CPU cores (AMD EPYC 7B13), no GPU'."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return (f"{cores} CPU {'core' if cores == 1 else 'cores'} ({model}), "
            + (f"{len(gpus)} GPU(s)" if gpus else "no GPU"))


def _write(path: str, data, mode: str = "w") -> None:
    with tf.io.gfile.GFile(path, mode) as f:
        f.write(data)


def evaluate_model(e, model, coverage: Coverage, examples_dir: str, output_dir: str, *,
                   split_fractions: dict, jit_compile: bool, judged_against: dict) -> dict:
    """Evaluates a trained model object (anything with ``greedy_decode``) under the
    ``evaluator`` section ``e`` and blesses it.

    ``split_fractions``: the data's (``task.data.split_fractions``: which equations of the
    whole space were seen in training); ``jit_compile``: the Exporter's
    (``exporter.jit_compile``), so what is measured is what is served; ``judged_against``:
    the baseline to compare with, as the pipeline resolved it before its cache check
    (``lstm_math.components.baseline.resolve_baseline``: serving base, model name, version
    and content digest; version None when no model is served)."""
    from lstm_math.components.signature import build_serving_function

    tf.io.gfile.makedirs(output_dir)
    # the function the Exporter exports, XLA or not: what is measured is what is served
    serve = build_serving_function(model, coverage, jit_compile=jit_compile)
    metrics = evaluate_fn(serve, examples_dir, e.batch_size, e.max_examples, e.num_worst_errors)
    test_rows = metrics.pop("_rows")
    metrics["uniform"] = uniform_estimate(
        test_rows["texts"], [bool(v) and a == t for a, t, v in zip(
            test_rows["answers"], test_rows["truths"], test_rows["valid"])], coverage)

    size = coverage.space().size
    map_rows, map_title = test_rows, "test split"
    if e.exhaustive_max_equations and size <= e.exhaustive_max_equations:
        exhaustive = evaluate_exhaustive(serve, coverage, examples_dir,
                                         split_fractions,
                                         e.exhaustive_batch_size, e.num_worst_errors,
                                         trust_thresholds(metrics))
        map_rows, map_title = exhaustive.pop("_rows"), "every equation"
        metrics["exhaustive"] = exhaustive
    else:
        metrics["exhaustive"] = None
        metrics["exhaustive_skipped"] = (
            "disabled (evaluator.exhaustive_max_equations = 0)" if not e.exhaustive_max_equations
            else f"the space has {size} equations, more than "
                 f"evaluator.exhaustive_max_equations = {e.exhaustive_max_equations}")

    if map_rows.get("workings") is not None:
        # where wrong answers went wrong: the first wrong step of the working, per operator
        metrics["working_errors"] = working_errors(
            map_rows["texts"], map_rows["tags"], map_rows["answers"], map_rows["truths"],
            map_rows["valid"], map_rows["workings"], coverage)
        metrics["working_errors_on"] = map_title

    metrics["small_operands_all"] = evaluate_small_operands(
        serve, coverage, e.exhaustive_batch_size, trust_thresholds(metrics), e.num_worst_errors)

    baseline = None
    path = version_dir(judged_against)
    if path is not None:
        version = judged_against["version"]
        log.info("Evaluator: comparing with the pushed model %s at %s",
                 describe(judged_against), path)
        try:
            loaded = tf.saved_model.load(path)
            baseline_metrics = evaluate_fn(loaded.signatures["serving_default"], examples_dir,
                                           e.batch_size, e.max_examples, 0)
            baseline = {"version": version, "path": path,
                        "exact_match": baseline_metrics["exact_match"]}
        except Exception as exc:  # a broken pushed model must not block its replacement
            log.warning("Evaluator: the pushed model at %s could not be evaluated: %s", path, exc)
            metrics["baseline_error"] = f"pushed version {version} at {path}: {exc}"
        metrics["baseline"] = baseline
    else:
        log.info("Evaluator: no model served at %s: judged on the thresholds alone",
                 os.path.join(judged_against["serving_base"], judged_against["model_name"]))
    blessing = bless(metrics["exact_match"], e.threshold,
                     baseline["exact_match"] if baseline else None, e.regression_margin,
                     metrics["per_operator"], e.operator_thresholds,
                     metrics["small_operands_all"], e.small_operands_threshold)
    if metrics.get("baseline_error"):
        blessing["reasons"].append("the pushed model could not be evaluated ("
                                   + metrics["baseline_error"] + ")")
    blessing["candidate_exact_match"] = metrics["exact_match"]
    blessing["baseline"] = baseline
    blessing["judged_against"] = judged_against

    # Pictures: PNG files and TensorBoard images; the report as Markdown and TensorBoard text.
    pictures = {f"error_map_{OPERATOR_NAMES[op]}.png": png
                for op, png in error_map_pngs(map_rows, coverage, map_title).items()}
    sizes = (metrics["exhaustive"] or metrics)["error_sizes"]
    pictures["error_sizes.png"] = error_size_png(sizes, map_title)
    for name, png in pictures.items():
        _write(os.path.join(output_dir, name), png, "wb")
    metrics["pictures"] = sorted(pictures)
    metrics["coverage"] = coverage.to_dict()
    metrics["hardware"] = hardware()
    report = report_markdown(metrics)
    _write(os.path.join(output_dir, "report.md"), report)
    writer = tf.summary.create_file_writer(os.path.join(output_dir, "logs"))
    with writer.as_default():
        for name, png in pictures.items():
            tf.summary.image(name[:-4], tf.image.decode_png(png, channels=4)[None], step=0)
        tf.summary.text("evaluation_report", report, step=0)
        tf.summary.scalar("exact_match", metrics["exact_match"], step=0)
    writer.close()

    _write(os.path.join(output_dir, "metrics.json"), json.dumps(metrics, indent=2))
    _write(os.path.join(output_dir, "blessing.json"), json.dumps(blessing, indent=2))
    log.info("Evaluator: %s: %s", "BLESSED" if blessing["blessed"] else "NOT blessed",
             "; ".join(blessing["reasons"]))
    log.info("Evaluator report (%s):\n%s", os.path.join(output_dir, "report.md"), report)
    return {"metrics": metrics, "blessing": blessing}


def run_evaluator(e, model_dir: str, examples_dir: str, output_dir: str, **inputs) -> dict:
    """``evaluate_model`` on the Trainer's output in ``model_dir``."""
    from lstm_math.components.trainer import load_trained

    model, coverage = load_trained(model_dir)
    return evaluate_model(e, model, coverage, examples_dir, output_dir, **inputs)
