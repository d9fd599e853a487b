"""Exhaustive mode: every equation of the operand space, split into seen and never seen."""

from __future__ import annotations

import collections
import logging
import time

import numpy as np

from lstm_math.components import equations as eq
from lstm_math.components.evaluator.scoring import predict, read_split, summarize

log = logging.getLogger(__name__)


def space_of(coverage: dict) -> eq.EquationSpace:
    n = int(coverage["num_operands"])
    return eq.EquationSpace(tuple(coverage["operators"]), int(coverage["operand_min"]),
                            int(coverage["operand_max"]), n,
                            int(coverage.get("min_operands", n)))


def all_equations(coverage: dict):
    """Every equation of the space: (texts, truths, tags), integer arithmetic only.

    Two operands: the (a, b) grid of each operator, in order. Otherwise (three operands, or
    a model of several operand counts) the vectorized sampler's exhaustive block.
    """
    space = space_of(coverage)
    if list(space.operand_counts) != [2]:
        block = eq.Sampler(space, seed=0, num_examples=0, exhaustive=True).block(0, space.size)
        return ([t.decode() for t in block.texts()], [r.decode() for r in
                                                      eq._int_bytes(block.results)],
                [t.decode() for t in block.tags()])
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
    extras: dict = {}
    answers, valid, confidence = predict(serve_fn, texts, batch_size, extras)
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
    metrics["evaluated_on"] = "every equation of the operand space"
    log.info("Evaluator: exhaustive (every equation of the space, no sampling), %d equations "
             "in %.1fs (%.0f/s), exact match %.5f", metrics["count"], metrics["seconds"],
             metrics["count"] / max(metrics["seconds"], 1e-9), metrics["exact_match"])
    metrics["_rows"] = {"texts": texts, "answers": answers, "truths": truths, "valid": valid,
                        "tags": tags, "workings": extras.get("working")}
    return metrics
