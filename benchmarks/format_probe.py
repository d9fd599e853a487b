"""Answer formats for a * b on 0..999, side by side: learning curves at equal wall time.

    python benchmarks/format_probe.py --minutes 30 --side-by-side \
        "--format direct --reverse --no-pad" "--format running_sums --step-embedding"
    python benchmarks/format_probe.py --format running_sums --step-embedding --csv rs.csv

``--side-by-side`` runs each candidate in its own process at once (niced, one TF thread
each, so that load from the rest of the machine hits them alike), the other flags shared,
and prints their curves side by side. One candidate: the project's attention seq2seq model
(components.models.AttentionSeq2Seq; optionally with a decoder step-index embedding), fresh
uniform random products every batch (optionally a share with operands of random digit
lengths), never a product of the held-out set. Every ``--eval-every`` seconds the model
decodes a fixed held-out set greedily (as the exported graph does); the final answer is read
from the working (components.answer_formats) and compared exactly. Each evaluation is a CSV
row and a log line: examples seen, minutes, exact match of the answer, of the whole working,
training loss.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

log = logging.getLogger("format_probe")

CSV_COLUMNS = ("format", "pad", "step_embedding", "examples", "minutes", "exact_match",
               "digit_accuracy", "working_exact_match", "loss")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--format", choices=("direct", "column_carry", "running_sums"),
                   default="running_sums")
    p.add_argument("--no-pad", dest="pad", action="store_false",
                   help="operands as written ('12*345') instead of zero-padded ('012*345')")
    p.add_argument("--step-embedding", action="store_true",
                   help="add a learned embedding of the decoder step index to its inputs")
    p.add_argument("--reverse", action="store_true",
                   help="direct format: the answer least significant digit first")
    p.add_argument("--high", type=int, default=999, help="operands 0..HIGH")
    p.add_argument("--minutes", type=float, default=30.0, help="training wall-time budget")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: none)")
    p.add_argument("--eval-every", type=float, default=180.0, help="seconds between evaluations")
    p.add_argument("--eval-size", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--short-share", type=float, default=0.0,
                   help="share of each batch whose operands have a uniform random digit length")
    p.add_argument("--embedding-dim", type=int, default=32)
    p.add_argument("--encoder-units", type=int, default=128)
    p.add_argument("--decoder-units", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--threads", type=int, default=1, help="TF intra- and inter-op threads")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--csv", default="", help="write the curve here")
    p.add_argument("--side-by-side", nargs="+", metavar="CANDIDATE", default=None,
                   help="candidates (each a quoted string of the flags above) trained at once, "
                        "one process each; the other flags apply to all")
    p.add_argument("--out-dir", default="format_probe_out",
                   help="--side-by-side: each candidate's CSV and log go here")
    p.add_argument("--nice", type=int, default=15, help="--side-by-side: niceness of each run")
    args = p.parse_args(argv)
    if args.high < 1:
        p.error("--high: must be at least 1")
    if not 0.0 <= args.short_share <= 1.0:
        p.error("--short-share: must be in [0, 1]")
    if (2 * args.encoder_units) % args.heads:
        p.error("--heads: must divide 2 * --encoder-units")
    if args.eval_size < 1 or args.eval_size > (args.high + 1) ** 2 // 4:
        p.error(f"--eval-size: between 1 and a quarter of the {(args.high + 1) ** 2} products "
                "(the rest are for training)")
    if args.minutes <= 0 and not args.max_steps:
        p.error("--minutes: must be positive (or give --max-steps)")
    return args


SHARED = ("high", "minutes", "max_steps", "eval_every", "eval_size", "batch_size",
          "learning_rate", "short_share", "embedding_dim", "encoder_units", "decoder_units",
          "heads", "threads", "seed")


def side_by_side(args) -> list[list[dict]]:
    """Runs every candidate at once, one niced process each; returns their curves."""
    import shlex
    import subprocess

    os.makedirs(args.out_dir, exist_ok=True)
    shared = []
    for name in SHARED:
        shared += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    procs = []
    for i, spec in enumerate(args.side_by_side):
        csv_path = os.path.join(args.out_dir, f"candidate{i}.csv")
        log_path = os.path.join(args.out_dir, f"candidate{i}.log")
        cmd = [sys.executable, os.path.abspath(__file__), *shared, *shlex.split(spec),
               "--csv", csv_path]
        log.info("candidate %d: %s (log %s)", i, spec, log_path)
        with open(log_path, "w") as out:
            procs.append((spec, csv_path, subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=lambda: os.nice(args.nice))))
    curves = []
    for spec, csv_path, proc in procs:
        code = proc.wait()
        if code:
            raise SystemExit(f"candidate {spec!r} failed (exit {code}); see {args.out_dir}")
        with open(csv_path) as f:
            curves.append(list(csv.DictReader(f)))
    for (spec, _, _), rows in zip(procs, curves):
        print(f"\n{spec}")
        print(f"{'examples':>10} {'minutes':>8} {'exact':>7} {'digits':>7} {'working':>8}")
        for r in rows:
            print(f"{int(r['examples']):>10} {float(r['minutes']):>8.1f} "
                  f"{float(r['exact_match']):>7.4f} {float(r['digit_accuracy']):>7.4f} "
                  f"{float(r['working_exact_match']):>8.4f}")
    print("\nlast evaluation of each: " + "; ".join(
        f"{spec}: exact {float(rows[-1]['exact_match']):.4f} after "
        f"{int(rows[-1]['examples']):,} examples, {float(rows[-1]['minutes']):.1f} min"
        for (spec, _, _), rows in zip(procs, curves) if rows))
    return curves


class Candidate:
    """One answer format with its input encoding: token arrays for the model."""

    def __init__(self, fmt: str, high: int, pad: bool, reverse: bool):
        from lstm_math.components import answer_formats, tokenizer

        self.fmt, self.high, self.pad, self.reverse = fmt, high, pad, reverse
        self.d = answer_formats.digits_of(high)
        self.max_answer = len(str(high * high))
        self.af = answer_formats
        self.char_id = {c: tokenizer.VOCAB.index(c) for c in tokenizer.CHARACTERS}
        self.id_char = {i: c for c, i in self.char_id.items()}
        self.input_len = 2 * self.d + 1
        self.steps = 1 + (self.max_answer if fmt == "direct"  # + END
                          else answer_formats.working_length(fmt, high))
        self.tok = tokenizer

    def working(self, a: int, b: int) -> str:
        if self.fmt == "direct":
            return str(a * b)[::-1] if self.reverse else str(a * b)
        return self.af.working(self.fmt, (a, b), ("*",), self.high)

    def encoder_ids(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.zeros((len(a), self.input_len), np.int32)
        for r, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
            text = (f"{x:0{self.d}d}*{y:0{self.d}d}" if self.pad else f"{x}*{y}")
            out[r, :len(text)] = [self.char_id[c] for c in text]
        return out

    def decoder_arrays(self, a: np.ndarray, b: np.ndarray):
        tgt = np.zeros((len(a), self.steps), np.int32)
        for r, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
            ids = [self.char_id[c] for c in self.working(x, y)] + [self.tok.END_ID]
            tgt[r, :len(ids)] = ids
        inp = np.concatenate([np.full((len(a), 1), self.tok.START_ID, np.int32), tgt[:, :-1]],
                             axis=1)
        return inp, tgt

    def decode(self, ids: np.ndarray) -> tuple[list[str], list[str]]:
        """Greedy output ids -> (final answers, workings)."""
        answers, workings = [], []
        for row in ids.tolist():
            chars = []
            for i in row:
                if i == self.tok.END_ID:
                    break
                chars.append(self.id_char.get(i, "?"))
            w = "".join(chars)
            workings.append(w)
            if self.fmt == "direct":
                answers.append(w[::-1] if self.reverse else w)
            else:
                answers.append(self.af.answer(self.fmt, w, self.high))
        return answers, workings


def build_model(args, steps: int):
    """The project's attention seq2seq model (its step embedding over ``steps`` steps when
    ``--step-embedding``)."""
    import keras

    from lstm_math.components.models import AttentionSeq2Seq

    keras.utils.set_random_seed(args.seed)
    return AttentionSeq2Seq(embedding_dim=args.embedding_dim, encoder_units=args.encoder_units,
                            decoder_units=args.decoder_units, attention_heads=args.heads,
                            step_embedding=steps if args.step_embedding else 0)


def draw(rng, n: int, high: int, short_share: float, held: np.ndarray):
    """n products (a, b) never in ``held`` ([high+1, high+1] bool): uniform, or with
    ``short_share`` of the rows drawn with a uniform random digit length per operand."""
    d = len(str(high))
    a = rng.integers(0, high + 1, n)
    b = rng.integers(0, high + 1, n)
    if short_share > 0:
        short = rng.random(n) < short_share
        for x in (a, b):
            lengths = rng.integers(1, d + 1, n)
            lo = np.where(lengths == 1, 0, 10 ** (lengths - 1))
            hi = np.minimum(10 ** lengths - 1, high)
            x[short] = (lo + (rng.random(n) * (hi - lo + 1)).astype(np.int64))[short]
    bad = held[a, b]
    while bad.any():
        a[bad] = rng.integers(0, high + 1, int(bad.sum()))
        b[bad] = rng.integers(0, high + 1, int(bad.sum()))
        bad = held[a, b]
    return a, b


def run(args) -> list[dict]:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import keras

    cand = Candidate(args.format, args.high, args.pad, args.reverse)
    model = build_model(args, cand.steps)
    optimizer = keras.optimizers.Adam(args.learning_rate, clipnorm=1.0)

    eval_rng = np.random.default_rng(12345)  # the same held-out set for every candidate
    ea = eval_rng.integers(0, args.high + 1, args.eval_size)
    eb = eval_rng.integers(0, args.high + 1, args.eval_size)
    held = np.zeros((args.high + 1, args.high + 1), bool)
    held[ea, eb] = True
    truth = [str(int(x) * int(y)) for x, y in zip(ea.tolist(), eb.tolist())]
    true_work = [cand.working(int(x), int(y)) for x, y in zip(ea.tolist(), eb.tolist())]
    eval_ids = tf.constant(cand.encoder_ids(ea, eb))

    loss_of = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)

    @tf.function
    def train_step(enc, dec_in, dec_out):
        with tf.GradientTape() as tape:
            logits = model((enc, dec_in), training=True)
            loss = loss_of(dec_out, logits)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function
    def greedy(ids):
        return model.greedy_decode(ids, cand.steps)[0]

    def evaluate():
        outs = []
        for start in range(0, args.eval_size, 500):
            outs.append(greedy(eval_ids[start:start + 500]).numpy())
        answers, workings = cand.decode(np.concatenate(outs))
        exact = float(np.mean([p == t for p, t in zip(answers, truth)]))
        work = float(np.mean([p == t for p, t in zip(workings, true_work)]))
        width = cand.max_answer  # answer digits right, aligned at the units digit
        digits = float(np.mean([[x == y for x, y in zip(p.zfill(width)[-width:],
                                                         t.zfill(width))]
                                for p, t in zip(answers, truth)]))
        return exact, work, digits

    rng = np.random.default_rng(args.seed)
    rows: list[dict] = []
    writer = None
    if args.csv:
        f = open(args.csv, "w", newline="")
        writer = csv.DictWriter(f, CSV_COLUMNS)
        writer.writeheader()
    examples, steps, losses = 0, 0, []
    train_seconds = 0.0
    next_eval = args.eval_every
    log.info("candidate %s pad=%s step_embedding=%s: input %d tokens, %d decoder steps",
             args.format, args.pad, args.step_embedding, cand.input_len, cand.steps)
    while True:
        t0 = time.monotonic()
        a, b = draw(rng, args.batch_size, args.high, args.short_share, held)
        dec_in, dec_out = cand.decoder_arrays(a, b)
        loss = train_step(tf.constant(cand.encoder_ids(a, b)), tf.constant(dec_in),
                          tf.constant(dec_out))
        losses.append(float(loss))
        train_seconds += time.monotonic() - t0
        examples += args.batch_size
        steps += 1
        done = (train_seconds >= args.minutes * 60
                or (args.max_steps and steps >= args.max_steps))
        if train_seconds >= next_eval or done:
            next_eval = train_seconds + args.eval_every
            exact, work, digits = evaluate()
            row = {"format": args.format, "pad": int(args.pad),
                   "step_embedding": int(args.step_embedding), "examples": examples,
                   "minutes": round(train_seconds / 60, 2), "exact_match": round(exact, 4),
                   "digit_accuracy": round(digits, 4), "working_exact_match": round(work, 4),
                   "loss": round(float(np.mean(losses[-50:])), 4)}
            rows.append(row)
            log.info("%s: %d examples, %.1f min: exact %.4f, answer digits %.4f, working "
                     "%.4f, loss %.4f", args.format, examples, row["minutes"], exact, digits,
                     work, row["loss"])
            if writer:
                writer.writerow(row)
                f.flush()
        if done:
            break
    if writer:
        f.close()
    return rows


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    if args.side_by_side:
        side_by_side(args)
    else:
        run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
