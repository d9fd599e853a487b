#!/usr/bin/env python
"""ExampleGen throughput: equations per second to finished TFRecord shards, side by side.

    python benchmarks/example_gen_benchmark.py                    # 10^6 equations
    python benchmarks/example_gen_benchmark.py --num-examples 100000 \\
        --set task.data.num_operands=3 --set trainer.short_max_chars=5

Rows, all writing the same equations (same config, seed, splits, shards, compression):

  plain loop          one process, one equation at a time: its place in the sample
                      (uniform: sampling.sample_block, the block's permutation then
                      EquationSpace.equation_at; stratified: the Sampler's equations of
                      the block, the same sample ExampleGen writes), integer evaluation,
                      split_of, a tf.train.Example per record, tf.io.TFRecordWriter. The
                      straightforward way; the baseline (1.00x).
  vectorized loop     one process, no Beam: the ExampleGen block writer called directly
                      (numpy block decoding, hand-encoded records). Shows Beam's overhead.
  beam direct x1      the ExampleGen Beam job, DirectRunner in-process.
  beam direct x2      DirectRunner with 2 worker processes (multi_processing).
  beam portable       PortableRunner: local job service + external SDK worker pool
                      (lstm_math.pipeline.portable_local), as a cluster runs it.

Prints eq/s, the ratio to the plain loop and the bytes on disk, and checks that the three
Beam runs wrote byte-identical shards and the same equations as the plain loop.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import tensorflow as tf  # noqa: E402

from lstm_math.components import sampling  # noqa: E402
from lstm_math.components import example_gen, example_layout, example_records  # noqa: E402
from lstm_math.config import load_config  # noqa: E402


def plain_loop(data, out: str) -> None:
    """The fair straightforward loop: one equation, one tf.train.Example at a time."""
    space = data.space()
    permutation = sampling.KeyedPermutation(space.size, data.seed)
    sampler = example_gen.sampler_of(data)
    fractions = [data.split_fractions[s] for s in sampling.SPLITS]
    options = tf.io.TFRecordOptions(compression_type="GZIP" if data.compression == "GZIP" else "")
    blocks = example_gen.plan_blocks(data)
    for index, start, stop in blocks:
        writers = {s: tf.io.TFRecordWriter(os.path.join(out, example_layout.shard_name(
            s, index, len(blocks), data.compression)), options) for s in sampling.SPLITS}
        if sampler.sampling == "uniform":
            equations = sampling.sample_block(space, permutation, start, stop)
        else:  # a stratum at a time, as ExampleGen samples (no one-by-one form to time)
            equations = sampler.block(start, stop).equations()
        for equation in equations:
            result = equation.result
            split = sampling.split_of(equation.text, fractions)
            writers[split].write(example_records.make_example(equation, result))
        for w in writers.values():
            w.close()


def vectorized_loop(data, out: str) -> None:
    """ExampleGen's block writer without Beam, one process."""
    writer = example_gen.WriteBlock(__import__("dataclasses").asdict(data), out)
    writer.setup()
    for block in example_gen.plan_blocks(data):
        list(writer.process(block))


def shards(out: str) -> dict:
    names = sorted(n for n in os.listdir(out) if ".tfrecord" in n)
    digests = {}
    for n in names:
        with open(os.path.join(out, n), "rb") as f:
            digests[n] = hashlib.sha256(f.read()).hexdigest()
    return digests


def disk_bytes(out: str) -> int:
    return sum(os.path.getsize(os.path.join(out, n)) for n in os.listdir(out) if ".tfrecord" in n)


def equations_in(out: str, compression: str) -> list[bytes]:
    files = sorted(os.path.join(out, n) for n in os.listdir(out) if ".tfrecord" in n)
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP" if compression == "GZIP" else "")
    ds = ds.batch(8192).map(lambda s: tf.io.parse_example(
        s, {"equation": tf.io.FixedLenFeature([], tf.string)})["equation"])
    return sorted(t for batch in ds for t in batch.numpy().tolist())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="default")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--num-examples", type=int, default=1_000_000)
    parser.add_argument("--rows", default="plain,vectorized,direct1,direct2,portable",
                        help="comma-separated subset of the rows")
    parser.add_argument("--workdir", help="where shards go (default: a temporary directory)")
    args = parser.parse_args()
    logging.basicConfig(force=True, level=logging.WARNING)
    logging.getLogger("apache_beam").setLevel(logging.ERROR)

    config = load_config(args.config, args.overrides + [f"task.data.num_examples={args.num_examples}"])
    data = config.task.data
    n = example_gen.sample_size(data)
    work = args.workdir or tempfile.mkdtemp(prefix="example-gen-bench-")
    rows = args.rows.split(",")
    from lstm_math.pipeline import portable_local as portable

    runs = {
        "plain": ("plain loop (tf.train.Example)", lambda out: plain_loop(data, out)),
        "vectorized": ("vectorized loop, no Beam", lambda out: vectorized_loop(data, out)),
        "direct1": ("beam DirectRunner in-process",
                    lambda out: example_gen.run_example_gen(data, out, [])),
        "direct2": ("beam DirectRunner 2 processes", lambda out: example_gen.run_example_gen(
            data, out, ["--direct_num_workers=2", "--direct_running_mode=multi_processing"])),
        "portable": ("beam PortableRunner, worker pool", None),
    }
    results = {}
    for key in rows:
        title, fn = runs[key]
        out = os.path.join(work, key)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        if key == "portable":
            with portable.portable_services() as beam_args:
                started = time.perf_counter()  # the services are up: time the job only
                example_gen.run_example_gen(data, out, beam_args + ["--sdk_worker_parallelism=2"])
                seconds = time.perf_counter() - started
        else:
            started = time.perf_counter()
            fn(out)
            seconds = time.perf_counter() - started
        results[key] = (title, seconds, disk_bytes(out), shards(out))
        print(f"  {title}: {seconds:.1f}s", file=sys.stderr, flush=True)

    base = results.get("plain", (None, None))[1]
    print(f"\nExampleGen benchmark: {n} equations, operators {' '.join(data.operators)}, "
          f"{data.num_operands} operands in [{data.operand_min}, {data.operand_max}], "
          f"{len(example_gen.plan_blocks(data))} shards x 3 splits, {data.compression}, "
          f"{os.cpu_count()} CPUs")
    print(f"{'run':<36}{'seconds':>9}{'eq/s':>12}{'vs loop':>9}{'bytes on disk':>15}")
    for key, (title, seconds, size, _) in results.items():
        ratio = f"{base / seconds:.2f}x" if base else "-"
        print(f"{title:<36}{seconds:>9.2f}{n / seconds:>12.0f}{ratio:>9}{size:>15}")
    beam = [results[k][3] for k in ("direct1", "direct2", "portable") if k in results]
    if len(beam) > 1:
        print("Beam runs byte-identical:", "yes" if all(b == beam[0] for b in beam) else "NO")
    if "plain" in results and len(results) > 1:
        other = next(k for k in results if k != "plain")
        same = equations_in(os.path.join(work, "plain"), data.compression) == equations_in(
            os.path.join(work, other), data.compression)
        print(f"Same equations as the plain loop ({other}):", "yes" if same else "NO")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
