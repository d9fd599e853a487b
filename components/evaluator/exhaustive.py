"""Exhaustive mode: every equation of the operand space, split into seen and never seen."""

from __future__ import annotations

import collections
import dataclasses
import logging
import time

import numpy as np

from lstm_math.components import sampling
from lstm_math.components.evaluator.scoring import predict, read_split, summarize
from lstm_math.config import Coverage

log = logging.getLogger(__name__)


def all_equations(coverage: Coverage):
    """Every equation of the space: (texts, truths, tags), integer arithmetic only.

    Two operands: the (a, b) grid of each operator, in order. Otherwise (three operands, or
    a model of several operand counts) the vectorized sampler's exhaustive block.
    """
    space = coverage.space()
    if list(space.operand_counts) != [2]:
        block = sampling.Sampler(space, seed=0, num_examples=0, exhaustive=True).block(0, space.size)
        return ([t.decode() for t in block.texts()], [r.decode() for r in
                                                      sampling.int_bytes(block.results)],
                [t.decode() for t in block.tags()])
    low, high = coverage.operand_min, coverage.operand_max
    texts, truths, tags = [], [], []
    for op in coverage.operators:
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


def evaluate_exhaustive(serve_fn, coverage: Coverage, examples_dir: str, split_fractions,
                        batch_size: int, num_worst: int = 20,
                        trust_thresholds: dict | None = None) -> dict:
    """Every equation of the space, with exact match for seen and never-seen equations.

    ``trust_thresholds`` (the test split's, as the served model ships them): its ``trust``
    table says what ``trusted`` does over every equation.

    'Seen' means present in the training shards (what the model was actually fitted on);
    the never-seen ones are further split by ``sampling.split_of``: training-split
    equations the sampler did not draw, and validation / test equations.
    """
    started = time.time()
    texts, truths, tags = all_equations(coverage)
    train_texts = set(read_split(examples_dir, "train")[0])
    extras: dict = {}
    answers, valid, confidence = predict(serve_fn, texts, batch_size, extras,
                                         what="exhaustive, every equation of the space")
    metrics = summarize(texts, truths, answers, valid, confidence, tags, num_worst,
                        thresholds=trust_thresholds)
    right = np.array([bool(v) and a == t for a, t, v in zip(answers, truths, valid)])
    groups = collections.defaultdict(list)
    fractions = [split_fractions[s] for s in sampling.SPLITS]
    for i, text in enumerate(texts):
        if text in train_texts:
            groups["seen_in_training"].append(i)
        else:
            groups["never_seen"].append(i)
            split = sampling.split_of(text, fractions)
            groups["never_seen/" + ("train_split_not_drawn" if split == "train" else split)
                   ].append(i)
    metrics["seen_vs_unseen"] = {
        name: {"exact_match": float(right[idx].mean()) if idx else None, "count": len(idx),
               "wrong": int(len(idx) - right[idx].sum())}
        for name, idx in sorted(groups.items())
    }
    metrics["seconds"] = round(time.time() - started, 2)
    metrics["evaluated_on"] = "every equation of the operand space"
    log.info("Evaluator: exhaustive (every equation of the space, no sampling), %d equations "
             "in %.1fs (%.0f/s), exact match %.5f", metrics["count"], metrics["seconds"],
             metrics["count"] / max(metrics["seconds"], 1e-9), metrics["exact_match"])
    metrics["_rows"] = {"texts": texts, "answers": answers, "truths": truths, "valid": valid,
                        "tags": tags, "workings": extras.get("working")}
    return metrics


# Single-digit operands: a slice small enough to evaluate whole for any space.
SMALL_OPERAND_BOUND = 10


def evaluate_small_operands(serve_fn, coverage: Coverage, batch_size: int,
                            trust_thresholds: dict | None = None, num_worst: int = 20,
                            bound: int = SMALL_OPERAND_BOUND) -> dict | None:
    """Every equation of the space whose operands are all below ``bound`` ('3 + 4', not
    '3 + 40'): exact match overall, per operator and per operator pattern of three or
    more operands ('a * b * c'), the wrong answers, and what ``trusted`` does on them.
    None when the space has no such equations."""
    low, high = coverage.operand_min, coverage.operand_max
    if low >= bound:
        return None
    texts, truths, tags = all_equations(
        dataclasses.replace(coverage, operand_max=min(high, bound - 1)))
    answers, valid, confidence = predict(serve_fn, texts, batch_size)
    full = summarize(texts, truths, answers, valid, confidence, tags, num_worst,
                     thresholds=trust_thresholds)
    out = {key: full[key] for key in ("exact_match", "count", "wrong", "per_operator",
                                      "per_operand_count", "per_pattern", "trust",
                                      "worst_errors")}
    out["bound"] = bound
    out["evaluated_on"] = f"every equation whose operands are all below {bound}"
    log.info("Evaluator: every equation with operands below %d: %d equations, %d wrong "
             "(exact match %.5f)%s", bound, out["count"], out["wrong"], out["exact_match"],
             "".join(f"; {e['equation']} = {e['answer']}" for e in out["worst_errors"][:5]))
    return out
