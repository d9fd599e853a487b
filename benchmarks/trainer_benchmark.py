"""Trainer input pipeline and training throughput, measured side by side in one run.

    python benchmarks/trainer_benchmark.py                      # generates 0..999 addition data
    python benchmarks/trainer_benchmark.py --examples DIR --steps 60 --rounds 3

(a) the tf.data input pipeline alone (TFRecord shards -> batched parse -> in-graph
    tokenizer, examples/s) against the rate at which training consumes examples: the
    ratio must stay well above 1 or the input starves training.
(b) training throughput of the same model, same batch, same training loop, fed by tf.data
    from the TFRecords vs fed from in-memory numpy arrays (the post's way; both through
    the Trainer's custom loop, and once more through Keras ``fit``). Target: >= 0.95.

Cells alternate (A, B, A, B, ...) and each figure is the median of ``--rounds``, so load
from other processes on the machine hits both sides alike.
"""

from __future__ import annotations

import argparse
import logging
import os
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

from lstm_math.components import data as data_lib  # noqa: E402
from lstm_math.components.trainer import TrainLoop, compile_model, model_coverage  # noqa: E402
from lstm_math.config import coverage_of, load_config  # noqa: E402

log = logging.getLogger("trainer_benchmark")


def _rate(fn, examples: int) -> float:
    start = time.perf_counter()
    fn()
    return examples / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", help="an ExampleGen output (default: generate one)")
    parser.add_argument("--config", default="default", help="config preset for the model")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--steps", type=int, default=40, help="training steps per cell")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(force=True, level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    config = load_config(args.config, ["task.data.num_examples=30000"] + args.overrides)
    if args.examples:
        examples = args.examples
    else:
        from lstm_math.components.example_gen import run_example_gen

        examples = os.path.join(tempfile.mkdtemp(prefix="trainer_benchmark_"), "examples")
        run_example_gen(config.task.data, examples)
    t = config.trainer
    hparams = config.trainer.model
    coverage = model_coverage(coverage_of(config), hparams)
    batch = t.batch_size
    steps = args.steps
    strategy = tf.distribute.get_strategy()

    def pipeline():
        return data_lib.training_dataset(
            examples, "train", coverage, batch, shuffle_buffer=t.shuffle_buffer, cache=True,
            repeat=True, seed=1, drop_remainder=True, with_operator=True)

    # In-memory numpy arrays holding the same tokenized training split.
    enc, dec, tgt, ops = [], [], [], []
    for (e, d), y, o in data_lib.training_dataset(examples, "train", coverage, 4096,
                                                  with_operator=True):
        enc.append(e.numpy()), dec.append(d.numpy()), tgt.append(y.numpy()), ops.append(o.numpy())
    arrays = tuple(np.concatenate(a) for a in (enc, dec, tgt, ops))
    n = len(arrays[0])
    log.info("%d training examples in memory; batch %d; %d steps per cell; %s", n, batch,
             steps, hparams)

    def numpy_dataset():
        (e, d, y, o) = arrays
        ds = tf.data.Dataset.from_tensor_slices(((e, d), y, o)).shuffle(n, seed=1).repeat()
        return ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    model = compile_model(hparams, coverage, 10_000, t.optimizer)
    model.optimizer.build(model.trainable_variables)
    loop = TrainLoop(model, strategy)
    tfdata_iter = iter(pipeline())
    numpy_iter = iter(numpy_dataset())
    input_iter = iter(pipeline())
    spl = min(t.steps_per_loop, steps)
    # Warm-up: trace the training function, fill caches and prefetch buffers.
    loop.train_steps(tfdata_iter, spl, spl)
    loop.train_steps(numpy_iter, spl, spl)
    for _ in range(steps * 2):
        next(input_iter)

    def consume_input():
        for _ in range(steps * 4):
            next(input_iter)

    # Keras fit: numpy arrays (the post's way) vs the TFRecord tf.data pipeline.
    fit_model = compile_model(hparams, coverage, 10_000, t.optimizer)
    (e, d, y, _) = arrays
    fit_ds = pipeline().map(lambda x, yy, o: (x, yy))
    fit_model.fit((e, d), y, batch_size=batch, epochs=1, steps_per_epoch=spl, verbose=0)
    fit_model.fit(fit_ds, epochs=1, steps_per_epoch=spl, verbose=0)
    rows = {k: [] for k in ("input", "loop_tfdata", "loop_numpy", "fit_tfdata", "fit_numpy")}
    for r in range(args.rounds):
        rows["input"].append(_rate(consume_input, steps * 4 * batch))
        rows["loop_tfdata"].append(_rate(lambda: loop.train_steps(tfdata_iter, steps, spl),
                                         steps * batch))
        rows["loop_numpy"].append(_rate(lambda: loop.train_steps(numpy_iter, steps, spl),
                                        steps * batch))
        rows["fit_numpy"].append(_rate(lambda: fit_model.fit(
            (e, d), y, batch_size=batch, epochs=1, steps_per_epoch=steps, verbose=0),
            steps * batch))
        rows["fit_tfdata"].append(_rate(lambda: fit_model.fit(
            fit_ds, epochs=1, steps_per_epoch=steps, verbose=0), steps * batch))
        log.info("round %d/%d: %s", r + 1, args.rounds,
                 ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in rows.items()))
    med = {k: statistics.median(v) for k, v in rows.items()}
    print()
    print(f"{'cell':<44}{'examples/s (median of ' + str(args.rounds) + ')':>28}")
    print(f"{'(a) input pipeline alone (TFRecords -> ids)':<44}{med['input']:>28.0f}")
    print(f"{'    training consumes (custom loop, tf.data)':<44}{med['loop_tfdata']:>28.0f}")
    print(f"{'(b) custom loop fed by in-memory numpy':<44}{med['loop_numpy']:>28.0f}")
    print(f"{'    Keras fit, tf.data from TFRecords':<44}{med['fit_tfdata']:>28.0f}")
    print(f"{'    Keras fit, numpy arrays (the post)':<44}{med['fit_numpy']:>28.0f}")
    print()
    print(f"(a) input rate / training rate:                 "
          f"{med['input'] / med['loop_tfdata']:.1f}x  (must stay > 1)")
    print(f"(b) custom loop, tf.data / numpy:               "
          f"{med['loop_tfdata'] / med['loop_numpy']:.3f}  (target >= 0.95)")
    print(f"(b) Keras fit, tf.data / numpy:                 "
          f"{med['fit_tfdata'] / med['fit_numpy']:.3f}  (target >= 0.95)")
    print(f"    custom loop / Keras fit (both tf.data):     "
          f"{med['loop_tfdata'] / med['fit_tfdata']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
