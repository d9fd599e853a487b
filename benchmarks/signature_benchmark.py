"""The exported serving signature: plain TF graph vs XLA-compiled decoder, under both loaders.

    python benchmarks/signature_benchmark.py --trainer-dir artifacts/Trainer/<fingerprint>
    python benchmarks/signature_benchmark.py        # an untrained default-size model
    python benchmarks/signature_benchmark.py --trainer-dir <+ Trainer> --versus <* Trainer> ...

The model is exported twice by the Exporter (``exporter.jit_compile`` false / true), and
each export is called through both loaders: the TF2 object loader (``tf.saved_model.load``,
what ``lstm-math serve`` uses) and the loader TF Serving uses (the MetaGraph in a graph-mode
``tf.compat.v1.Session``, variables restored by the SaverDef, the signature called by its
tensor names). For each batch size: ms per call and equations/s of each of the four, and
whether all four agree row for row. Cells alternate and each figure is the median of
``--rounds``, so load from other processes hits every column alike.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


log = logging.getLogger("signature_benchmark")
EQUATIONS = ["31 + 87", "7 + 6", "999 + 1", "0 + 0", "123 + 456", "5+5", " 12 +  30 ",
             "31 + x"]


def load_model(trainer_dir):
    if trainer_dir:
        from lstm_math.components.trainer import load_trained
        return load_trained(trainer_dir)
    from lstm_math.components.trainer import compile_model, model_coverage
    from lstm_math.config import coverage_of, load_config

    config = load_config("default")
    hp = config.trainer.model
    coverage = model_coverage(coverage_of(config), hp)
    return compile_model(hp, coverage, 10), coverage


def sample_equations(coverage, n: int, seed: int = 0) -> list[bytes]:  # a Coverage
    """``n`` equations of a model's own task: its operators (one per equation, or as many as
    its operand count allows), operands uniform over its range, no division by zero."""
    import random

    rng = random.Random(seed)
    low, high = coverage.operand_min, coverage.operand_max
    operators = list(coverage.operators)
    count = coverage.num_operands
    out = []
    for _ in range(n):
        ops = [rng.choice(operators) for _ in range(count - 1)]
        values = [rng.randint(low, high) for _ in range(count)]
        for i, op in enumerate(ops):
            if op == "/" and values[i + 1] == 0:
                values[i + 1] = max(1, low)
        text = str(values[0]) + "".join(f" {op} {v}" for op, v in zip(ops, values[1:]))
        out.append(text.encode())
    return out


def versus(args) -> int:
    """Trained models side by side, each on equations of its own task: ms per call under
    both loaders of the exported signature (``exporter.jit_compile`` as exported by default),
    cells alternating, and the cost of a row of each of the others relative to the first."""
    from lstm_math.components.exporter import export_saved_model

    dirs = {"A": args.trainer_dir}
    dirs.update({chr(ord("B") + i): path for i, path in enumerate(args.versus)})
    models = {key: load_model(path) for key, path in dirs.items()}
    workdir = tempfile.mkdtemp(prefix="signature-benchmark-")
    functions, batches = {}, {}
    try:
        for key, (model, coverage) in models.items():
            path = export_saved_model(model, coverage, {}, os.path.join(workdir, key),
                                      jit_compile=True)
            objects = tf.saved_model.load(path).signatures["serving_default"]
            functions[(key, "object")] = lambda b, f=objects: {
                k: v.numpy() for k, v in f(equation=tf.constant(b)).items()}
            functions[(key, "session")] = SessionSignature(path)
            batches[key] = sample_equations(coverage, max(args.batch_sizes))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = []
    for size in args.batch_sizes:
        for (key, _), fn in functions.items():
            fn(batches[key][:size])  # traces, compiles
        times = {name: [] for name in functions}
        for r in range(args.rounds):
            for (key, loader), fn in functions.items():
                times[(key, loader)].append(time_calls(fn, batches[key][:size], args.seconds))
            log.info("batch %d: round %d/%d done", size, r + 1, args.rounds)
        rows.append((size, {n: statistics.median(t) for n, t in times.items()}))
    print()
    for key, (_, coverage) in models.items():
        print(f"{key}: {'/'.join(coverage.operators)} ({coverage.num_operands} operands) "
              f"({dirs[key]})")
    others = [key for key in models if key != "A"]
    header, rule = "| batch |", "|------:|"
    for loader in ("object", "session"):
        header += f" A {loader} ms |" + "".join(
            f" {k} {loader} ms | {k}/A {loader} |" for k in others)
        rule += "---:|" * (1 + 2 * len(others))
    print(header)
    print(rule)
    for size, t in rows:
        cells = ""
        for loader in ("object", "session"):
            base = t[("A", loader)]
            cells += f" {base * 1e3:.2f} |" + "".join(
                f" {t[(k, loader)] * 1e3:.2f} | {t[(k, loader)] / base:.2f}x |" for k in others)
        print(f"| {size} |{cells}")
    return 0


def time_calls(fn, batch, seconds):
    fn(batch)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(batch)
        calls += 1
    return (time.perf_counter() - start) / calls


class SessionSignature:
    """``serving_default`` as TF Serving runs it: a graph-mode Session over the MetaGraph."""

    def __init__(self, export_dir):
        self.session = tf.compat.v1.Session(graph=tf.Graph())
        meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], export_dir)
        sig = meta.signature_def["serving_default"]
        self.feed = sig.inputs["equation"].name
        self.fetch = {k: v.name for k, v in sig.outputs.items()}

    def __call__(self, batch):
        return self.session.run(self.fetch, {self.feed: batch})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trainer-dir", help="a Trainer output directory (model.keras)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 64, 256, 1024])
    parser.add_argument("--seconds", type=float, default=1.0, help="per cell and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--versus", metavar="TRAINER_DIR", nargs="+",
                        help="one or more other Trainer output directories: the models side "
                             "by side, each on its own task's equations, and each one's cost "
                             "per call relative to the first (--trainer-dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    if args.versus:
        if not args.trainer_dir:
            parser.error("--versus needs --trainer-dir (the model to compare with)")
        return versus(args)

    from lstm_math.components.exporter import export_saved_model

    model, coverage = load_model(args.trainer_dir)
    workdir = tempfile.mkdtemp(prefix="signature-benchmark-")
    functions = {}
    try:
        for jit in (False, True):
            kind = "XLA" if jit else "plain"
            path = export_saved_model(model, coverage, {}, os.path.join(workdir, kind),
                                      jit_compile=jit)
            objects = tf.saved_model.load(path).signatures["serving_default"]
            functions[f"object {kind}"] = lambda b, f=objects: {
                k: v.numpy() for k, v in f(equation=tf.constant(b)).items()}
            functions[f"session {kind}"] = SessionSignature(path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # both loaders hold what they need
    rows = []
    for size in args.batch_sizes:
        batch = [EQUATIONS[i % len(EQUATIONS)].encode() for i in range(size)]
        answers = {name: fn(batch) for name, fn in functions.items()}  # traces, compiles
        first = answers["object plain"]
        same = all(np.array_equal(first[k], a[k]) for a in answers.values()
                   for k in ("result", "valid", "error"))
        times = {name: [] for name in functions}
        for r in range(args.rounds):
            for name, fn in functions.items():
                times[name].append(time_calls(fn, batch, args.seconds))
            log.info("batch %d: round %d/%d done", size, r + 1, args.rounds)
        rows.append((size, {n: statistics.median(t) for n, t in times.items()}, same))

    names = list(functions)
    print("\n| batch | " + " | ".join(f"{n} ms (eq/s)" for n in names)
          + " | XLA speed-up (object, session) | same answers |")
    print("|------:|" + "---:|" * len(names) + "---:|:---:|")
    for size, t, same in rows:
        cells = " | ".join(f"{t[n] * 1e3:.2f} ({size / t[n]:,.0f})" for n in names)
        print(f"| {size} | {cells} | {t['object plain'] / t['object XLA']:.2f}x, "
              f"{t['session plain'] / t['session XLA']:.2f}x | {'yes' if same else 'NO'} |")
    return 0 if all(r[2] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
