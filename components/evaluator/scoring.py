"""Scoring: running a strings-in/strings-out function over equations and turning its
answers into tables (exact match per operator, operand count, operand-length bucket, result
length and small operands; error sizes; the worst errors; how well ``confidence`` separates
right from wrong answers)."""

from __future__ import annotations

import collections
import logging
import time
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from lstm_math.components import data as data_lib
from lstm_math.components.equations import OPERATOR_TAGS, operator_pattern, operator_tag
from lstm_math.serving.contract import WORKING_OUTPUT

if TYPE_CHECKING:
    from lstm_math.config import Coverage

log = logging.getLogger(__name__)

# Error-size histogram buckets (|answer - truth|), then the two kinds of non-answer.
SIZE_BUCKETS = ("1", "2-9", "10-99", "100-999", "1000-9999", ">=10000")
NOT_A_NUMBER = "not a number"
NO_ANSWER = "no answer (row invalid)"
# Small operands: every operand below the bound ('< 10' holds '3 + 4', not '3 + 40').
SMALL_OPERAND_BOUNDS = (10, 100)
# The share of right answers a client's confidence threshold should keep.
KEEP_RIGHT = 0.999


# --------------------------------------------------------------------------------------
# Running a strings-in/strings-out function over many equations.


PROGRESS_EVERY_S = 15.0


def predict(serve_fn, texts, batch_size: int, extras: dict | None = None,
            what: str = "equations"):
    """Calls ``serve_fn(equation=...)`` batch by batch, logging progress (``what``: how the
    log line names the rows) every ``PROGRESS_EVERY_S`` seconds.

    Returns (answers: list[str], valid: bool array, confidence: float32 array);
    ``extras``: a dict that gets the ``working`` output's rows (list[str]) when the
    function has one.
    """
    answers: list[str] = []
    valid = []
    confidence = []
    started = last = time.monotonic()
    for start in range(0, len(texts), batch_size):
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_S:
            last = now
            rate = start / max(now - started, 1e-9)
            log.info("Evaluator: %s: %d of %d answered (%.0f/s, about %.0fs left)", what,
                     start, len(texts), rate, (len(texts) - start) / max(rate, 1e-9))
        out = serve_fn(equation=tf.constant(texts[start:start + batch_size], dtype=tf.string))
        answers.extend(a.decode() for a in out["result"].numpy())
        valid.append(out["valid"].numpy())
        confidence.append(out["confidence"].numpy())
        if extras is not None and WORKING_OUTPUT in out:
            extras.setdefault(WORKING_OUTPUT, []).extend(
                w.decode() for w in out[WORKING_OUTPUT].numpy())
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
# Confidence: does it separate right answers from wrong ones?


def auroc(right_scores, wrong_scores) -> float | None:
    """P(a right answer's confidence > a wrong one's), ties counting half (Mann-Whitney U).
    1.0: every wrong answer is less confident than every right one; 0.5: no information."""
    right_scores = np.asarray(right_scores, np.float64)
    wrong_scores = np.asarray(wrong_scores, np.float64)
    if not len(right_scores) or not len(wrong_scores):
        return None
    values = np.concatenate([right_scores, wrong_scores])
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse.reshape(-1)]  # average ranks, 1-based
    n = len(right_scores)
    u = ranks[:n].sum() - n * (n + 1) / 2.0
    return float(u / (n * len(wrong_scores)))


def confidence_quality(right_scores, wrong_scores, keep: float = KEEP_RIGHT) -> dict:
    """AUROC, and the threshold a client would use: the highest confidence that still
    keeps ``keep`` of the right answers (answers below it are refused), with the share of
    wrong answers it catches (below it) and of right answers it refuses."""
    right_scores = np.sort(np.asarray(right_scores, np.float64))
    wrong_scores = np.asarray(wrong_scores, np.float64)
    out = {"right": int(len(right_scores)), "wrong": int(len(wrong_scores)),
           "auroc": auroc(right_scores, wrong_scores), "keep_right": keep,
           "threshold": None, "wrong_below_threshold": None, "right_below_threshold": None}
    if len(right_scores):
        dropped = int(np.floor((1.0 - keep) * len(right_scores) + 1e-9))
        threshold = float(right_scores[dropped])
        out["threshold"] = threshold
        out["right_below_threshold"] = float(np.mean(right_scores < threshold))
        if len(wrong_scores):
            out["wrong_below_threshold"] = float(np.mean(wrong_scores < threshold))
    return out


def trust_cell(right_trusted, wrong_trusted, threshold: float | None = None) -> dict:
    """What ``trusted`` did on some answers, given whether each right and each wrong one
    was trusted: the share of the wrong answers it catches (not trusted) and the share of
    the right answers it gives up (not trusted either)."""
    right_trusted = np.asarray(right_trusted, bool)
    wrong_trusted = np.asarray(wrong_trusted, bool)
    return {"threshold": threshold, "right": int(len(right_trusted)),
            "wrong": int(len(wrong_trusted)),
            "wrong_caught": (float(np.mean(~wrong_trusted)) if len(wrong_trusted) else None),
            "right_given_up": (float(np.mean(~right_trusted)) if len(right_trusted)
                               else None),
            "wrong_trusted": int(wrong_trusted.sum()),
            "right_given_up_count": int((~right_trusted).sum())}


def trust_figures(right_scores, wrong_scores, threshold: float | None) -> dict:
    """``trust_cell`` for a threshold: trusted is confidence >= ``threshold`` (compared in
    float32, as the serving graph does); no threshold: nothing is trusted."""
    limit = np.float32(np.inf if threshold is None else threshold)
    return trust_cell(np.asarray(right_scores, np.float32) >= limit,
                      np.asarray(wrong_scores, np.float32) >= limit, threshold)


def trust_thresholds(metrics: dict) -> dict:
    """Slice tag -> the trust threshold an Evaluator report gives it (the confidence that
    keeps ``KEEP_RIGHT`` of that slice's right answers on the test split); what the
    Exporter bakes into ``serving_default``'s ``trusted``. Empty for a report without
    confidence figures."""
    return {tag: q["threshold"] for tag, q in (metrics or {}).get("confidence", {}).items()
            if tag != "overall" and q.get("threshold") is not None}


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


_TAG_ORDER = {tag: i for i, tag in enumerate(OPERATOR_TAGS)}


def _sort_key(key: str):
    """Operators as + - * / mixed; '2x10' after '2x3'; '<10' before '<100'; numbers as
    numbers; patterns ('a + b * c') by their operators in + - * / order."""
    if key in _TAG_ORDER:
        return (0, [_TAG_ORDER[key]], key)
    if key.startswith("a "):
        return (1, [_TAG_ORDER[op] for op in key.split(" ")[1::2]], key)
    parts = key.replace("<", "").split("x")
    return (len(parts), [int(p) if p.isdigit() else p for p in parts], key)


def summarize(texts, truths, answers, valid, confidence, tags, num_worst: int = 20,
              thresholds: dict | None = None) -> dict:
    """Exact match overall and per operator, operand count, operand-length bucket (also per
    operator), result length, small operands and, for three or more operands, per operator
    pattern ('a + b * c'); the error-size histogram, the worst
    errors and the confidence quality (overall and per operator).

    ``trust``: what ``trusted`` does here with ``thresholds`` (slice tag -> threshold;
    default: the thresholds these answers give, as on the test split), per operator and
    overall (each row judged by its operator's threshold)."""
    totals = collections.Counter()
    right = collections.Counter()
    sizes = collections.Counter()
    one_digit = 0
    wrong_rows = []
    ok_all = np.zeros(len(texts), bool)
    for i, (text, truth, answer, tag) in enumerate(zip(texts, truths, answers, tags)):
        ok = bool(valid[i]) and answer == truth
        ok_all[i] = ok
        parts = text.split(" ")
        operands = parts[::2]
        bucket = "x".join(str(len(part)) for part in operands)
        keys = ["overall", "operator/" + tag, "operand_count/" + str(len(operands)),
                "operand_digits/" + bucket, f"operator_digits/{tag}/{bucket}",
                "result_length/" + str(len(truth))]
        largest = max(int(part) for part in operands)
        keys += [f"small_operands/<{bound}" for bound in SMALL_OPERAND_BOUNDS if largest < bound]
        if len(operands) >= 3:  # two operands: the pattern is the operator, a slice already
            keys.append("pattern/" + operator_pattern(parts[1::2]))
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

    def cell(k):
        return {"exact_match": right[k] / totals[k], "count": totals[k],
                "wrong": totals[k] - right[k]}

    def table(prefix):
        keys = [k for k in totals if k.startswith(prefix + "/")]
        keys.sort(key=lambda k: _sort_key(k.split("/", 1)[1]))
        return {k[len(prefix) + 1:]: cell(k) for k in keys}

    def magnitude(i):
        try:
            return abs(int(answers[i]) - int(truths[i]))
        except ValueError:
            return float("inf")  # no answer or not a number: worse than any number

    operator_names = list(table("operator"))
    confidence = np.asarray(confidence, np.float64)
    tags_a = np.asarray(tags, dtype=object)
    answered = np.asarray(valid, bool)  # invalid rows have no confidence to judge
    quality = {"overall": confidence_quality(confidence[ok_all & answered],
                                             confidence[~ok_all & answered])}
    for name in operator_names:
        mine = tags_a == name
        quality[name] = confidence_quality(confidence[ok_all & answered & mine],
                                           confidence[~ok_all & answered & mine])

    if thresholds is None:
        thresholds = {name: quality[name]["threshold"] for name in operator_names}
    limits = np.full(len(texts), np.inf, np.float32)
    for name in operator_names:
        if thresholds.get(name) is not None:
            limits[tags_a == name] = thresholds[name]
    # as the signature's ``trusted``: no answer read (an unreadable working) is never trusted
    has_answer = np.asarray([a != "" for a in answers], bool)
    is_trusted = answered & has_answer & (confidence.astype(np.float32) >= limits)
    right_rows, wrong_rows_mask = ok_all & answered, ~ok_all & answered
    trust = {"overall": trust_cell(is_trusted[right_rows], is_trusted[wrong_rows_mask])}
    for name in operator_names:
        mine = tags_a == name
        trust[name] = trust_cell(is_trusted[right_rows & mine],
                                 is_trusted[wrong_rows_mask & mine], thresholds.get(name))

    worst = sorted(wrong_rows, key=lambda i: (-magnitude(i), -float(confidence[i]), texts[i]))
    return {
        "exact_match": right["overall"] / totals["overall"],
        "count": totals["overall"],
        "wrong": totals["overall"] - right["overall"],
        "per_operator": table("operator"),
        "per_operand_count": table("operand_count"),
        "per_operand_digits": table("operand_digits"),
        "per_operator_operand_digits": {name: table("operator_digits/" + name)
                                        for name in operator_names},
        "per_result_length": table("result_length"),
        "per_pattern": table("pattern"),
        "small_operands": table("small_operands"),
        "confidence": quality,
        "trust": trust,
        "error_sizes": {b: sizes[b] for b in SIZE_BUCKETS + (NOT_A_NUMBER, NO_ANSWER)},
        "one_wrong_digit": one_digit,
        "worst_errors": [
            {"equation": texts[i], "answer": answers[i], "truth": truths[i],
             "error_size": (None if magnitude(i) == float("inf") else magnitude(i)),
             "confidence": round(float(confidence[i]), 5), "valid": bool(valid[i]),
             "trusted": bool(is_trusted[i])}
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
    extras: dict = {}
    answers, valid, confidence = predict(serve_fn, texts, batch_size, extras,
                                         what="the test split")
    metrics = summarize(texts, truths, answers, valid, confidence, tags, num_worst)
    metrics["seconds"] = round(time.time() - started, 2)
    metrics["evaluated_on"] = "test split" + (f" (first {max_examples})" if max_examples else "")
    log.info("Evaluator: the test split (the equations ExampleGen held out), %d equations in "
             "%.1fs, exact match %.5f", metrics["count"], metrics["seconds"],
             metrics["exact_match"])
    # What the error map needs; not written to metrics.json.
    metrics["_rows"] = {"texts": texts, "answers": answers, "truths": truths, "valid": valid,
                        "tags": tags, "workings": extras.get(WORKING_OUTPUT)}
    return metrics


# --------------------------------------------------------------------------------------
# Uniform exact match from a stratified sample.


def _stratum_size(operators: tuple, digits: tuple, low: int, high: int) -> int:
    """Equations of the space with these operators and operand digit lengths."""
    size = 1
    for position, d in enumerate(digits):
        lo = max(low, 0 if d == 1 else 10 ** (d - 1))
        if position > 0 and operators[position - 1] == "/":
            lo = max(lo, 1)
        hi = min(high, 10 ** d - 1)
        size *= max(0, hi - lo + 1)
    return size


def uniform_estimate(texts, right, coverage: Coverage) -> dict:
    """Exact match as uniform draws over the whole space would measure it.

    A stratified test split over-represents small strata ('1 + 2'); here every (operators,
    operand digit lengths) stratum present counts by its share of the space (post-
    stratification), overall, per operator tag and per operator pattern of three or more
    operands ('a + b * c'). On a uniform sample or the whole space
    this is the plain exact match up to noise.
    """
    low, high = coverage.operand_min, coverage.operand_max
    totals, rights, sizes = collections.Counter(), collections.Counter(), {}
    for text, ok in zip(texts, right):
        parts = text.split(" ")
        key = (tuple(parts[1::2]), tuple(len(p) for p in parts[::2]))
        totals[key] += 1
        rights[key] += bool(ok)
        if key not in sizes:
            sizes[key] = _stratum_size(key[0], key[1], low, high)

    def estimate(keys):
        weight = sum(sizes[k] for k in keys)
        if not weight:
            return None
        return sum(sizes[k] * rights[k] / totals[k] for k in keys) / weight

    by_tag, by_pattern = collections.defaultdict(list), collections.defaultdict(list)
    for key in totals:
        by_tag[operator_tag(key[0])].append(key)
        if len(key[0]) >= 2:
            by_pattern[operator_pattern(key[0])].append(key)
    return {"exact_match": estimate(list(totals)), "strata": len(totals),
            "per_operator": {tag: estimate(keys) for tag, keys in sorted(by_tag.items())},
            "per_pattern": {p: estimate(by_pattern[p])
                            for p in sorted(by_pattern, key=_sort_key)},
            "method": "each (operators, operand digit lengths) stratum weighted by its share "
                      "of the operand space"}
