"""The serving signature in-process: plain TF graph vs XLA-compiled decoder, side by side.

    python benchmarks/signature_benchmark.py --trainer-dir artifacts/Trainer/<fingerprint>
    python benchmarks/signature_benchmark.py        # an untrained default-size model

Both functions come from ``components.signature.build_serving_function`` (what the Exporter
exports, ``exporter.jit_compile`` false / true) over the same model. For each batch size:
ms per call and equations/s of each, their ratio, and whether the answers agree row for
row. Cells alternate (plain, XLA, plain, XLA, ...) and each figure is the median of
``--rounds``, so load from other processes hits both sides alike.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from components.signature import build_serving_function  # noqa: E402

log = logging.getLogger("signature_benchmark")
EQUATIONS = ["31 + 87", "7 + 6", "999 + 1", "0 + 0", "123 + 456", "5+5", " 12 +  30 ",
             "31 + x"]


def load_model(trainer_dir):
    if trainer_dir:
        from components.trainer import load_trained
        return load_trained(trainer_dir)
    from components.trainer import compile_model, model_coverage
    from pipeline.config import coverage_of, load_config

    config = load_config("default")
    hp = config.trainer.model
    coverage = model_coverage(coverage_of(config), hp)
    return compile_model(hp, coverage, 10), coverage


def time_calls(fn, batch, seconds):
    fn(batch)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(batch)
        calls += 1
    return (time.perf_counter() - start) / calls


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trainer-dir", help="a Trainer output directory (model.keras)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 64, 256, 1024])
    parser.add_argument("--seconds", type=float, default=1.0, help="per cell and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)

    model, coverage = load_model(args.trainer_dir)
    functions = {"plain": build_serving_function(model, coverage, jit_compile=False),
                 "xla": build_serving_function(model, coverage, jit_compile=True)}
    rows = []
    for size in args.batch_sizes:
        batch = tf.constant([EQUATIONS[i % len(EQUATIONS)] for i in range(size)])
        answers = {name: fn(batch) for name, fn in functions.items()}  # traces, compiles
        same = all(np.array_equal(answers["plain"][k].numpy(), answers["xla"][k].numpy())
                   for k in ("result", "valid", "error"))
        times = {name: [] for name in functions}
        for r in range(args.rounds):
            for name, fn in functions.items():
                times[name].append(time_calls(fn, batch, args.seconds))
            log.info("batch %d: round %d/%d done", size, r + 1, args.rounds)
        plain, xla = (statistics.median(times[n]) for n in ("plain", "xla"))
        rows.append((size, plain, xla, same))

    print("\n| batch | plain ms/call | plain eq/s | XLA ms/call | XLA eq/s | XLA speed-up | "
          "same answers |")
    print("|------:|--------------:|-----------:|------------:|---------:|-------------:|"
          ":------------:|")
    for size, plain, xla, same in rows:
        print(f"| {size:5d} | {plain * 1e3:13.2f} | {size / plain:10,.0f} | {xla * 1e3:11.2f} "
              f"| {size / xla:8,.0f} | {plain / xla:11.2f}x | {'yes' if same else 'NO'} |")
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
