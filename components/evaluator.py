"""Evaluator: where the model is right and wrong, and the blessing that gates a push.

The candidate is evaluated through ``components.signature.build_serving_function`` (the very
function that is exported), the currently pushed model through its SavedModel signature,
on the same test examples, so what is measured is what is served.

Outputs (under the component's output directory):
  metrics.json        whole-answer exact match on the test split: overall, per operator,
                      per operand-length bucket ('1x3': one-digit a, three-digit b), per
                      result length; error sizes |answer - truth| as a histogram; the worst
                      errors (input, answer, truth, confidence); and, when the operand
                      space is small enough, the exhaustive evaluation of every equation,
                      with exact match separately for equations seen in training and never
                      seen
  blessing.json       blessed or not, with the reasons (absolute threshold; no regression
                      against the pushed model by more than the margin)
  report.md           the same figures as Markdown tables, for people
  error_map_<op>.png  the post's error map: the (a, b) plane of each two-operand operator,
                      correct and wrong answers marked
  error_sizes.png     the histogram of error sizes
  logs/               TensorBoard: the PNGs as images, the report as text
"""

from __future__ import annotations

import collections
import io
import json
import logging
import os
import time

import numpy as np
import tensorflow as tf

from components import data as data_lib
from components import equations as eq
from serving import contract

log = logging.getLogger(__name__)

OPERATOR_NAMES = {"+": "plus", "-": "minus", "*": "times", "/": "divide"}
# Error-size histogram buckets (|answer - truth|), then the two kinds of non-answer.
SIZE_BUCKETS = ("1", "2-9", "10-99", "100-999", "1000-9999", ">=10000")
NOT_A_NUMBER = "not a number"
NO_ANSWER = "no answer (row invalid)"


# --------------------------------------------------------------------------------------
# Running a strings-in/strings-out function over many equations.


def predict(serve_fn, texts, batch_size: int):
    """Calls ``serve_fn(equation=...)`` batch by batch.

    Returns (answers: list[str], valid: bool array, confidence: float32 array).
    """
    answers: list[str] = []
    valid = []
    confidence = []
    for start in range(0, len(texts), batch_size):
        out = serve_fn(equation=tf.constant(texts[start:start + batch_size], dtype=tf.string))
        answers.extend(a.decode() for a in out["result"].numpy())
        valid.append(out["valid"].numpy())
        confidence.append(out["confidence"].numpy())
    if not answers:
        return [], np.zeros([0], bool), np.zeros([0], np.float32)
    return answers, np.concatenate(valid), np.concatenate(confidence)


def read_split(examples_dir: str, split: str, max_examples: int = 0, batch_size: int = 4096):
    """(texts, truths, operator tags) of one split, in file order."""
    texts, truths, tags = [], [], []
    for batch in data_lib.features_dataset(examples_dir, split, batch_size):
        texts.extend(t.decode() for t in batch["equation"].numpy())
        truths.extend(t.decode() for t in batch["result"].numpy())
        tags.extend(t.decode() for t in batch["operator"].numpy())
        if max_examples and len(texts) >= max_examples:
            del texts[max_examples:], truths[max_examples:], tags[max_examples:]
            break
    return texts, truths, tags


# --------------------------------------------------------------------------------------
# Turning answers into tables.


def error_size_bucket(answer: str, truth: str, valid: bool = True) -> str | None:
    """The histogram bucket of a wrong answer (None when the answer is right)."""
    if valid and answer == truth:
        return None
    if not valid:
        return NO_ANSWER
    try:
        size = abs(int(answer) - int(truth))
    except ValueError:
        return NOT_A_NUMBER
    if size == 0:  # e.g. '007' for '7': a wrong string with the right value
        return NOT_A_NUMBER
    for bucket, upper in zip(SIZE_BUCKETS, (1, 9, 99, 999, 9999)):
        if size <= upper:
            return bucket
    return SIZE_BUCKETS[-1]


def _one_wrong_digit(answer: str, truth: str) -> bool:
    return len(answer) == len(truth) and sum(x != y for x, y in zip(answer, truth)) == 1


def summarize(texts, truths, answers, valid, confidence, tags, num_worst: int = 20) -> dict:
    """Exact match overall / per operator / per operand-length bucket / per result length,
    the error-size histogram and the worst errors."""
    totals = collections.Counter()
    right = collections.Counter()
    sizes = collections.Counter()
    one_digit = 0
    wrong_rows = []
    for i, (text, truth, answer, tag) in enumerate(zip(texts, truths, answers, tags)):
        ok = bool(valid[i]) and answer == truth
        bucket = "x".join(str(len(part)) for part in text.split(" ")[::2])
        keys = ("overall", "operator/" + tag, "operand_digits/" + bucket,
                "result_length/" + str(len(truth)))
        for key in keys:
            totals[key] += 1
            right[key] += ok
        if not ok:
            size = error_size_bucket(answer, truth, bool(valid[i]))
            sizes[size] += 1
            one_digit += _one_wrong_digit(answer, truth)
            wrong_rows.append(i)
    if not totals:
        raise ValueError("nothing to evaluate: no equations")

    def table(prefix):
        keys = [k for k in totals if k.startswith(prefix + "/")]
        keys.sort(key=lambda k: (len(k), k))
        return {k.split("/", 1)[1]: {"exact_match": right[k] / totals[k], "count": totals[k],
                                     "wrong": totals[k] - right[k]} for k in keys}

    def magnitude(i):
        try:
            return abs(int(answers[i]) - int(truths[i]))
        except ValueError:
            return float("inf")  # no answer or not a number: worse than any number

    worst = sorted(wrong_rows, key=lambda i: (-magnitude(i), -float(confidence[i]), texts[i]))
    return {
        "exact_match": right["overall"] / totals["overall"],
        "count": totals["overall"],
        "wrong": totals["overall"] - right["overall"],
        "per_operator": table("operator"),
        "per_operand_digits": table("operand_digits"),
        "per_result_length": table("result_length"),
        "error_sizes": {b: sizes[b] for b in SIZE_BUCKETS + (NOT_A_NUMBER, NO_ANSWER)},
        "one_wrong_digit": one_digit,
        "worst_errors": [
            {"equation": texts[i], "answer": answers[i], "truth": truths[i],
             "error_size": (None if magnitude(i) == float("inf") else magnitude(i)),
             "confidence": round(float(confidence[i]), 5), "valid": bool(valid[i])}
            for i in worst[:num_worst]
        ],
    }


def evaluate_fn(serve_fn, examples_dir: str, batch_size: int, max_examples: int = 0,
                num_worst: int = 20) -> dict:
    """Exact match of a strings-in/strings-out function over the test split."""
    started = time.time()
    texts, truths, tags = read_split(examples_dir, "test", max_examples)
    if not texts:
        raise ValueError(f"the test split under {examples_dir} is empty")
    answers, valid, confidence = predict(serve_fn, texts, batch_size)
    metrics = summarize(texts, truths, answers, valid, confidence, tags, num_worst)
    metrics["seconds"] = round(time.time() - started, 2)
    log.info("Evaluator: %d test examples in %.1fs, exact match %.5f", metrics["count"],
             metrics["seconds"], metrics["exact_match"])
    # What the error map needs; not written to metrics.json.
    metrics["_rows"] = {"texts": texts, "answers": answers, "truths": truths, "valid": valid}
    return metrics


# --------------------------------------------------------------------------------------
# Exhaustive mode: every equation of the operand space.


def space_of(coverage: dict) -> eq.EquationSpace:
    return eq.EquationSpace(tuple(coverage["operators"]), int(coverage["operand_min"]),
                            int(coverage["operand_max"]), int(coverage["num_operands"]))


def all_equations(coverage: dict):
    """Every equation of the space: (texts, truths, tags), integer arithmetic only."""
    space = space_of(coverage)
    if int(coverage["num_operands"]) != 2:
        texts, truths, tags = [], [], []
        for i in range(space.size):
            e = space.equation_at(i)
            texts.append(e.text)
            truths.append(str(e.result))
            tags.append(e.tag)
        return texts, truths, tags
    low, high = int(coverage["operand_min"]), int(coverage["operand_max"])
    texts, truths, tags = [], [], []
    for op in coverage["operators"]:
        a, b = np.meshgrid(np.arange(low, high + 1, dtype=np.int64),
                           np.arange(max(low, 1) if op == "/" else low, high + 1, dtype=np.int64),
                           indexing="ij")
        a, b = a.ravel(), b.ravel()
        value = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                 "/": lambda: a // b}[op]()
        texts.extend(f"{x} {op} {y}" for x, y in zip(a.tolist(), b.tolist()))
        truths.extend(str(v) for v in value.tolist())
        tags.extend([op] * len(a))
    return texts, truths, tags


def evaluate_exhaustive(serve_fn, coverage: dict, examples_dir: str, split_fractions,
                        batch_size: int, num_worst: int = 20) -> dict:
    """Every equation of the space, with exact match for seen and never-seen equations.

    'Seen' means present in the training shards (what the model was actually fitted on);
    the never-seen ones are further split by ``equations.split_of``: training-split
    equations the sampler did not draw, and validation / test equations.
    """
    started = time.time()
    texts, truths, tags = all_equations(coverage)
    train_texts = set(read_split(examples_dir, "train")[0])
    answers, valid, confidence = predict(serve_fn, texts, batch_size)
    metrics = summarize(texts, truths, answers, valid, confidence, tags, num_worst)
    right = np.array([bool(v) and a == t for a, t, v in zip(answers, truths, valid)])
    groups = collections.defaultdict(list)
    fractions = [split_fractions[s] for s in eq.SPLITS]
    for i, text in enumerate(texts):
        if text in train_texts:
            groups["seen_in_training"].append(i)
        else:
            groups["never_seen"].append(i)
            split = eq.split_of(text, fractions)
            groups["never_seen/" + ("train_split_not_drawn" if split == "train" else split)
                   ].append(i)
    metrics["seen_vs_unseen"] = {
        name: {"exact_match": float(right[idx].mean()) if idx else None, "count": len(idx),
               "wrong": int(len(idx) - right[idx].sum())}
        for name, idx in sorted(groups.items())
    }
    metrics["seconds"] = round(time.time() - started, 2)
    log.info("Evaluator: exhaustive, %d equations in %.1fs (%.0f/s), exact match %.5f",
             metrics["count"], metrics["seconds"], metrics["count"] / max(metrics["seconds"], 1e-9),
             metrics["exact_match"])
    metrics["_rows"] = {"texts": texts, "answers": answers, "truths": truths, "valid": valid}
    return metrics


# --------------------------------------------------------------------------------------
# Pictures: the error map and the error-size histogram.


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    _pyplot().close(fig)
    return buf.getvalue()


def error_map_pngs(rows: dict, coverage: dict, title: str) -> dict:
    """{operator: PNG bytes}: the (a, b) plane of each two-operand operator."""
    if int(coverage["num_operands"]) != 2:
        return {}
    plt = _pyplot()
    from matplotlib.colors import ListedColormap

    low, high = int(coverage["operand_min"]), int(coverage["operand_max"])
    width = high - low + 1
    by_op = collections.defaultdict(lambda: ([], [], []))
    for text, answer, truth, ok in zip(rows["texts"], rows["answers"], rows["truths"],
                                       rows["valid"]):
        a, op, b = text.split(" ")
        xs, ys, good = by_op[op]
        xs.append(int(a))
        ys.append(int(b))
        good.append(bool(ok) and answer == truth)
    pngs = {}
    for op in coverage["operators"]:
        xs, ys, good = (np.array(v) for v in by_op[op])
        grid = np.zeros([width, width], np.int8)  # 0: not evaluated, 1: right, 2: wrong
        if len(xs):
            grid[ys - low, xs - low] = np.where(good, 1, 2)
        wrong = ~good if len(xs) else np.zeros([0], bool)
        fig, ax = plt.subplots(figsize=(7, 6.4))
        ax.imshow(grid, origin="lower", interpolation="nearest",
                  extent=(low - 0.5, high + 0.5, low - 0.5, high + 0.5),
                  cmap=ListedColormap(["white", "#9fd89f", "#d62728"]), vmin=0, vmax=2)
        if wrong.any():  # wrong answers are rare: mark them so they show at any size
            ax.scatter(xs[wrong], ys[wrong], s=9, c="#d62728", marker="x", linewidths=0.8,
                       label=f"wrong ({int(wrong.sum())})")
        ax.scatter([], [], s=20, c="#9fd89f", marker="s",
                   label=f"right ({int(good.sum()) if len(xs) else 0})")
        ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
        ax.set_xlabel("a")
        ax.set_ylabel("b")
        accuracy = float(good.mean()) if len(xs) else float("nan")
        ax.set_title(f"a {op} b: {title}, {len(xs)} equations, exact match {accuracy:.5f}",
                     fontsize=9)
        fig.tight_layout()
        pngs[op] = _png(fig)
    return pngs


def error_size_png(error_sizes: dict, title: str) -> bytes:
    plt = _pyplot()
    labels = list(error_sizes)
    counts = [error_sizes[k] for k in labels]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    bars = ax.bar(range(len(labels)), counts, color="#d62728")
    ax.bar_label(bars, fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
    ax.set_xlabel("|answer - truth|")
    ax.set_ylabel("wrong answers")
    ax.set_title(f"error sizes: {title}", fontsize=9)
    fig.tight_layout()
    return _png(fig)


# --------------------------------------------------------------------------------------
# Report tables (Markdown), for people and for TensorBoard's text tab.


def _table(title: str, rows: dict, key_name: str) -> list[str]:
    lines = [f"**{title}**", "", f"| {key_name} | exact match | count | wrong |",
             "|---|---|---|---|"]
    for key, v in rows.items():
        em = "n/a" if v["exact_match"] is None else f"{v['exact_match']:.5f}"
        lines.append(f"| {key} | {em} | {v['count']} | {v['wrong']} |")
    return lines + [""]


def report_markdown(metrics: dict) -> str:
    def section(name, m):
        lines = [f"### {name}", "",
                 f"exact match **{m['exact_match']:.5f}** on {m['count']} equations "
                 f"({m['wrong']} wrong; {m['one_wrong_digit']} of them one wrong digit)", ""]
        lines += _table("per operator", m["per_operator"], "operator")
        lines += _table("per operand length (digits of a x digits of b)",
                        m["per_operand_digits"], "digits")
        lines += _table("per result length", m["per_result_length"], "characters")
        if "seen_vs_unseen" in m:
            lines += _table("seen in training vs never seen", m["seen_vs_unseen"], "equations")
        lines += ["**error sizes** (|answer - truth| of the wrong answers)", "",
                  "| size | wrong answers |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in m["error_sizes"].items()] + [""]
        lines += ["**worst errors**", "", "| equation | answer | truth | size | confidence |",
                  "|---|---|---|---|---|"]
        for e in m["worst_errors"]:
            lines.append(f"| `{e['equation']}` | `{e['answer']}` | `{e['truth']}` | "
                         f"{e['error_size'] if e['error_size'] is not None else '-'} | "
                         f"{e['confidence']:.3f} |")
        return lines + [""]

    lines = ["## Evaluation", ""]
    lines += section("Test split", metrics)
    if metrics.get("exhaustive"):
        lines += section("Exhaustive: every equation of the operand space",
                         metrics["exhaustive"])
    elif metrics.get("exhaustive_skipped"):
        lines += [f"Exhaustive mode skipped: {metrics['exhaustive_skipped']}", ""]
    if metrics.get("baseline"):
        b = metrics["baseline"]
        lines += [f"Pushed model (version {b['version']}): exact match "
                  f"{b['exact_match']:.5f} on the same test split", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Blessing.


def latest_pushed(serving_base: str, model_name: str) -> tuple[int, str] | None:
    base = os.path.join(serving_base, model_name)
    version = contract.latest_version(base)
    return None if version is None else (version, os.path.join(base, str(version)))


# Exact match is a ratio of counts: a candidate exactly at the bar passes, whatever the
# rounding of (baseline - margin) in floating point.
_EPS = 1e-9


def bless(candidate: float, threshold: float, baseline: float | None, margin: float) -> dict:
    reasons = []
    ok = True
    if candidate >= threshold - _EPS:
        reasons.append(f"exact match {candidate:.5f} meets the threshold {threshold}")
    else:
        ok = False
        reasons.append(f"exact match {candidate:.5f} is below the threshold {threshold}")
    if baseline is None:
        reasons.append("no pushed model to compare with: judged on the threshold alone")
    elif candidate >= baseline - margin - _EPS:
        reasons.append(f"not worse than the pushed model ({baseline:.5f}) by more than {margin}")
    else:
        ok = False
        reasons.append(f"regression: {candidate:.5f} vs the pushed model's {baseline:.5f} "
                       f"(allowed margin {margin})")
    return {"blessed": ok, "reasons": reasons}


# --------------------------------------------------------------------------------------
# The component.


def _write(path: str, data, mode: str = "w") -> None:
    with tf.io.gfile.GFile(path, mode) as f:
        f.write(data)


def evaluate_model(config, model, coverage: dict, examples_dir: str, output_dir: str) -> dict:
    """Evaluates a trained model object (anything with ``greedy_decode``) and blesses it."""
    from components.signature import build_serving_function

    e = config.evaluator
    tf.io.gfile.makedirs(output_dir)
    # the function the Exporter exports, XLA or not: what is measured is what is served
    serve = build_serving_function(model, coverage, jit_compile=config.exporter.jit_compile)
    metrics = evaluate_fn(serve, examples_dir, e.batch_size, e.max_examples, e.num_worst_errors)
    test_rows = metrics.pop("_rows")

    size = space_of(coverage).size
    map_rows, map_title = test_rows, "test split"
    if e.exhaustive_max_equations and size <= e.exhaustive_max_equations:
        exhaustive = evaluate_exhaustive(serve, coverage, examples_dir,
                                         config.task.data.split_fractions,
                                         e.exhaustive_batch_size, e.num_worst_errors)
        map_rows, map_title = exhaustive.pop("_rows"), "every equation"
        metrics["exhaustive"] = exhaustive
    else:
        metrics["exhaustive"] = None
        metrics["exhaustive_skipped"] = (
            "disabled (evaluator.exhaustive_max_equations = 0)" if not e.exhaustive_max_equations
            else f"the space has {size} equations, more than "
                 f"evaluator.exhaustive_max_equations = {e.exhaustive_max_equations}")

    baseline = None
    pushed = latest_pushed(config.pusher.serving_base, config.pusher.model_name)
    if pushed is not None:
        version, path = pushed
        log.info("Evaluator: comparing with the pushed model version %d at %s", version, path)
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
    blessing = bless(metrics["exact_match"], e.threshold,
                     baseline["exact_match"] if baseline else None, e.regression_margin)
    if metrics.get("baseline_error"):
        blessing["reasons"].append("the pushed model could not be evaluated ("
                                   + metrics["baseline_error"] + ")")
    blessing["candidate_exact_match"] = metrics["exact_match"]
    blessing["baseline"] = baseline

    # Pictures: PNG files and TensorBoard images; the report as Markdown and TensorBoard text.
    pictures = {f"error_map_{OPERATOR_NAMES[op]}.png": png
                for op, png in error_map_pngs(map_rows, coverage, map_title).items()}
    sizes = (metrics["exhaustive"] or metrics)["error_sizes"]
    pictures["error_sizes.png"] = error_size_png(sizes, map_title)
    for name, png in pictures.items():
        _write(os.path.join(output_dir, name), png, "wb")
    metrics["pictures"] = sorted(pictures)
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


def run_evaluator(config, model_dir: str, examples_dir: str, output_dir: str) -> dict:
    from components.trainer import load_trained

    model, coverage = load_trained(model_dir)
    return evaluate_model(config, model, coverage, examples_dir, output_dir)
