"""Which per-answer confidence separates right from wrong answers best?

    python benchmarks/confidence_variants.py --model TRAINER_DIR --exhaustive
    python benchmarks/confidence_variants.py --model TRAINER_DIR --examples EXAMPLEGEN_DIR

Decodes the equations with the trained model's greedy decoder (the computation the serving
signature runs, XLA-compiled) and scores each answer three ways from its per-token
probabilities (tokens up to and including END):
  product   the served ``confidence``: the product of the token probabilities
  min       the least sure token
  geomean   the geometric mean (product ** (1 / tokens): no penalty for long answers)
For each: AUROC (right vs wrong) and the share of wrong answers below the threshold that
keeps 99.9% of the right ones (components.evaluator.confidence_quality), overall and per
operator. Same answers for every variant: only the score differs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from lstm_math.components import tokenizer  # noqa: E402
from lstm_math.components.evaluator import all_equations, confidence_quality, read_split  # noqa: E402
from lstm_math.components.trainer import load_trained  # noqa: E402

VARIANTS = ("product", "min", "geomean")


def score(model, coverage, texts: list[str], batch_size: int):
    """(answers, {variant: confidence array})."""
    steps = coverage.max_result_length + 1
    reverse = coverage.reverse_output

    @tf.function(jit_compile=True, reduce_retracing=True)
    def decode(ids):
        out_ids, probs = model.greedy_decode(ids, steps)
        return tf.convert_to_tensor(out_ids), tf.cast(tf.convert_to_tensor(probs), tf.float32)

    answers, scores = [], {v: [] for v in VARIANTS}
    for start in range(0, len(texts), batch_size):
        rows = tf.constant(texts[start:start + batch_size])
        ids = tokenizer.encode_equations(tokenizer.compact(rows), coverage.max_input_length)
        n = int(ids.shape[0])
        if n < batch_size:  # one XLA shape
            ids = tf.pad(ids, [[0, batch_size - n], [0, 0]])
        out_ids, probs = decode(ids)
        out_ids, probs = out_ids[:n], probs[:n]
        used = tf.sequence_mask(tokenizer.result_lengths(out_ids), steps, dtype=tf.float32)
        logp = tf.math.log(tf.maximum(probs, 1e-30)) * used
        tokens = tf.maximum(tf.reduce_sum(used, axis=1), 1.0)
        scores["product"].append(tf.exp(tf.reduce_sum(logp, axis=1)).numpy())
        scores["min"].append(tf.reduce_min(tf.where(used > 0, probs, 1.0), axis=1).numpy())
        scores["geomean"].append(tf.exp(tf.reduce_sum(logp, axis=1) / tokens).numpy())
        answers.extend(a.decode() for a in tokenizer.decode_results(out_ids, reverse).numpy())
    return answers, {v: np.concatenate(s) for v, s in scores.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a Trainer output directory")
    parser.add_argument("--examples", help="an ExampleGen output: its test split")
    parser.add_argument("--exhaustive", action="store_true",
                        help="every equation of the model's operand space instead")
    parser.add_argument("--sample", type=int, default=0,
                        help="a seeded random sample of this many of the equations")
    parser.add_argument("--add-worst", metavar="METRICS_JSON",
                        help="also score the worst errors an Evaluator listed (exhaustive "
                             "ones first): the rare wrong answers a sample would miss")
    parser.add_argument("--batch-size", type=int, default=4096)
    args = parser.parse_args(argv)
    model, coverage = load_trained(args.model)
    if args.exhaustive:
        texts, truths, tags = all_equations(coverage)
        where = "every equation of the space"
    elif args.examples:
        texts, truths, tags = read_split(args.examples, "test")
        where = "the test split"
    else:
        parser.error("--examples or --exhaustive")
    if args.sample and args.sample < len(texts):
        pick = np.sort(np.random.default_rng(0).choice(len(texts), args.sample, replace=False))
        texts, truths, tags = ([x[i] for i in pick] for x in (texts, truths, tags))
        where = f"a random sample of {args.sample} of {where}"
    if args.add_worst:
        import json

        from lstm_math.components import equations as eq

        with open(args.add_worst) as f:
            m = json.load(f)
        listed = (m.get("exhaustive") or m)["worst_errors"]
        have = set(texts)
        extra = [w["equation"] for w in listed if w["equation"] not in have]
        texts += extra
        truths += [str(eq.parse(t).result) for t in extra]
        tags += [eq.parse(t).tag for t in extra]
        where += f" + the {len(extra)} worst errors listed in {args.add_worst}"
    started = time.time()
    answers, scores = score(model, coverage, texts, args.batch_size)
    right = np.array([a == t for a, t in zip(answers, truths)])
    tags = np.array(tags, dtype=object)
    print(f"{len(texts)} equations ({where}) in {time.time() - started:.0f}s: "
          f"{int((~right).sum())} wrong answers")
    print("| operator | variant | right | wrong | AUROC | threshold (keeps 99.9% of right) "
          "| wrong answers below it |")
    print("|---|---|---|---|---|---|---|")
    for name in ["overall"] + sorted(set(tags.tolist())):
        mine = np.ones(len(tags), bool) if name == "overall" else tags == name
        for v in VARIANTS:
            q = confidence_quality(scores[v][mine & right], scores[v][mine & ~right])
            auroc = "n/a" if q["auroc"] is None else f"{q['auroc']:.4f}"
            below = ("n/a" if q["wrong_below_threshold"] is None
                     else f"{q['wrong_below_threshold']:.1%}")
            threshold = "n/a" if q["threshold"] is None else f"{q['threshold']:.4g}"
            print(f"| {name} | {v} | {q['right']} | {q['wrong']} | {auroc} | {threshold} | "
                  f"{below} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
