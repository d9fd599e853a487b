"""ExampleGen: an Apache Beam job that generates equations into sharded TFRecords.

Design (no global shuffle, unique by construction, deterministic):
  * the equation space is indexed (components.sampling.EquationSpace) and walked in the
    order of a seeded bijection (KeyedPermutation), so the first ``num_examples`` positions
    are distinct equations, drawn without materialising the space anywhere (``sampling:
    stratified`` does the same per operand digit-length stratum, see sampling.Sampler);
  * those positions are cut into ``num_shards`` contiguous blocks; each block is one Beam
    element, and its worker writes shard ``i`` of every split itself;
  * a worker handles its block in chunks, vectorized: numpy decodes the positions and
    evaluates (int64 where it cannot overflow, exact Python ints beyond), and the
    tf.train.Example records are encoded in bulk (``example_records.encode_examples``), so
    the per-equation Python left is one hash (the split) and one ``TFRecordWriter.write``;
  * the split of an equation is a stable hash of its canonical text (an equation of
    single-digit operands always trains: sampling.always_trains), so no equation can be
    in two splits whatever the runner or the number of workers;
  * files are written under a temporary name and renamed, so a retried bundle is harmless.

The same config gives byte-identical shards on any runner (DirectRunner in-process or
multi-process, PortableRunner, Flink, Spark, Dataflow): nothing depends on bundle order.
"""

from __future__ import annotations

import html
import json
import logging
import os
import time

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions

from lstm_math.components import equations as eq
from lstm_math.components import sampling
from lstm_math.components import answer_formats
from lstm_math.components.example_layout import REPORT_FILE, STATS_FILE, shard_name
from lstm_math.components.example_records import encode_examples

log = logging.getLogger(__name__)


def sampler_of(data) -> sampling.Sampler:
    return sampling.Sampler(data.space(), data.seed, data.num_examples, data.exhaustive,
                      getattr(data, "sampling", "uniform"))


def sample_size(data) -> int:
    space = data.space()
    return space.size if data.exhaustive else min(data.num_examples, space.size)


def plan_blocks(data) -> list[tuple[int, int, int]]:
    """(shard index, start, stop) positions of the sample for each shard."""
    total = sample_size(data)
    shards = max(1, min(data.num_shards, total))
    if total < 2**52:
        edges = [round(i * total / shards) for i in range(shards + 1)]
    else:  # beyond float precision
        edges = [i * total // shards for i in range(shards + 1)]
    return [(i, edges[i], edges[i + 1]) for i in range(shards)]


def _empty_split_stats() -> dict:
    return {
        "count": 0,
        "per_operator": {},
        "per_operand_digits": {},
        "result_length": {},
        "result_min": None,
        "result_max": None,
    }


def _bump(table: dict, key: str, n: int = 1) -> None:
    table[key] = table.get(key, 0) + n


def _count_into(table: dict, keys: np.ndarray, names) -> None:
    uniq, counts = np.unique(keys, return_counts=True)
    for key, count in zip(uniq.tolist(), counts.tolist()):
        _bump(table, names(key), int(count))


# Sub-blocks bound the memory of a worker whatever the shard size.
CHUNK = 50_000


def block_workings(block: sampling.Block, answer_format: dict, high: int) -> list[bytes] | None:
    """The working of each row of a block whose operator tag has a working format
    (components.answer_formats, the one definition); b'' for the others; None when the
    task has no such format."""
    formats = {tag.encode(): fmt for tag, fmt in (answer_format or {}).items()
               if fmt != answer_formats.DIRECT}
    if not formats:
        return None
    out = []
    for tag, row, ops, k in zip(block.tags(), block.operands.tolist(), block.op_codes.tolist(),
                                block.operand_counts().tolist()):
        fmt = formats.get(tag)
        out.append(b"" if fmt is None else answer_formats.working(
            fmt, row[:k], [eq.OPERATORS[c] for c in ops[:k - 1]], high).encode())
    return out


def generate_records(sampler: sampling.Sampler, start: int, stop: int, fractions,
                     chunk: int = CHUNK, answer_format: dict | None = None):
    """Yields (split index array, serialized records, block, stats per split) by chunks."""
    k = sampler.space.num_operands
    tag_names = list(eq.OPERATOR_TAGS)
    for lo in range(start, stop, chunk):
        hi = min(stop, lo + chunk)
        block = sampler.block(lo, hi)
        texts = block.texts()
        results = sampling.int_bytes(block.results)
        # [n, k] digits per operand, 0 where a row has fewer operands (left out of records)
        digits = block.operand_digits()
        tags = block.tags()
        records = encode_examples(texts, results, tags, digits,
                                  block_workings(block, answer_format, sampler.space.high))
        splits = sampling.split_indices(texts, fractions)
        result_len = np.fromiter(map(len, results), np.int64, len(results))
        tag_ids = np.where(block.operand_counts() == 2,
                           block.op_codes[:, 0] if k > 1 else 0, len(eq.OPERATORS))
        digit_code = np.zeros(len(block), np.int64)
        for j in range(k):
            digit_code = digit_code * 1000 + digits[:, j]
        stats = {}
        for si, split in enumerate(sampling.SPLITS):
            mask = splits == si
            st = _empty_split_stats()
            st["count"] = int(mask.sum())
            if st["count"]:
                _count_into(st["per_operator"], tag_ids[mask], lambda t: tag_names[t])
                _count_into(st["per_operand_digits"], digit_code[mask], lambda c: "x".join(
                    str(d) for d in (c // 1000 ** (k - 1 - j) % 1000 for j in range(k)) if d))
                _count_into(st["result_length"], result_len[mask], str)
                values = block.results[mask]
                st["result_min"] = int(values.min())
                st["result_max"] = int(values.max())
            stats[split] = st
        yield splits, records, block, stats


class WriteBlock(beam.DoFn):
    """Generates one block of equations and writes shard ``i`` of each split; emits stats."""

    def __init__(self, data: dict, output_dir: str):
        self._data = data
        self._output_dir = output_dir

    def setup(self):
        from lstm_math.config import DataConfig

        self.data = DataConfig(**self._data)
        self.sampler = sampler_of(self.data)
        self.fractions = [self.data.split_fractions[s] for s in sampling.SPLITS]
        self.num_shards = len(plan_blocks(self.data))

    def process(self, block):
        index, start, stop = block
        options = tf.io.TFRecordOptions(
            compression_type="GZIP" if self.data.compression == "GZIP" else ""
        )
        finals = {s: os.path.join(self._output_dir, shard_name(s, index, self.num_shards,
                                                               self.data.compression))
                  for s in sampling.SPLITS}
        temps = {s: f"{finals[s]}.tmp-{os.getpid()}-{id(self)}" for s in sampling.SPLITS}
        writers = {s: tf.io.TFRecordWriter(temps[s], options) for s in sampling.SPLITS}
        merged = MergeStats()
        stats = merged.create_accumulator()
        try:
            for splits, records, _, chunk_stats in generate_records(
                    self.sampler, start, stop, self.fractions,
                    answer_format=self.data.answer_format):
                for si, split in enumerate(sampling.SPLITS):
                    write = writers[split].write
                    for i in np.flatnonzero(splits == si).tolist():
                        write(records[i])
                stats = merged.add_input(stats, chunk_stats)
        finally:
            for w in writers.values():
                w.close()
        for s in sampling.SPLITS:
            tf.io.gfile.rename(temps[s], finals[s], overwrite=True)
        yield stats


class MergeStats(beam.CombineFn):
    def create_accumulator(self):
        return {s: _empty_split_stats() for s in sampling.SPLITS}

    def add_input(self, acc, stats):
        for split, st in stats.items():
            a = acc[split]
            a["count"] += st["count"]
            for key in ("per_operator", "per_operand_digits", "result_length"):
                for k, v in st[key].items():
                    _bump(a[key], k, v)
            for key, fn in (("result_min", min), ("result_max", max)):
                if st[key] is not None:
                    a[key] = st[key] if a[key] is None else fn(a[key], st[key])
        return acc

    def merge_accumulators(self, accumulators):
        out = self.create_accumulator()
        for acc in accumulators:
            self.add_input(out, acc)
        return out

    def extract_output(self, acc):
        return acc


def _digit_key(key: str):
    return tuple(int(p) for p in key.split("x"))


def _sorted_stats(stats: dict) -> dict:
    out = {}
    for split, st in stats.items():
        st = dict(st)
        st["per_operator"] = dict(sorted(st["per_operator"].items()))
        st["per_operand_digits"] = dict(sorted(st["per_operand_digits"].items(),
                                               key=lambda kv: _digit_key(kv[0])))
        st["result_length"] = dict(sorted(st["result_length"].items(), key=lambda kv: int(kv[0])))
        out[split] = st
    return out


def _sampling_text(stats: dict) -> str:
    return "every equation" if stats.get("exhaustive") else f"{stats['sampling']} sampling"


def _operand_count_text(stats: dict) -> str:
    fewest = stats.get("min_operands", stats["num_operands"])
    return (str(stats["num_operands"]) if fewest == stats["num_operands"]
            else f"{fewest} to {stats['num_operands']}")


def summary_text(stats: dict) -> str:
    """A human-readable summary of stats.json (logged at the end of the job)."""
    splits = stats["splits"]
    total = sum(splits[s]["count"] for s in sampling.SPLITS)
    lines = [
        f"{total} equations ({_sampling_text(stats)} of a space of {stats['space_size']}, "
        f"operators {' '.join(stats['operators'])}, {_operand_count_text(stats)} operands in "
        f"[{stats['operand_range'][0]}, {stats['operand_range'][1]}]), {stats['num_shards']} "
        f"shards, {stats['compression']}, duplicates dropped: {stats['duplicates_dropped']}",
        f"  {'split':<11}{'count':>10}{'share':>8}{'min':>14}{'max':>14}  operators",
    ]
    for s in sampling.SPLITS:
        st = splits[s]
        ops = " ".join(f"{k}:{v}" for k, v in st["per_operator"].items())
        share = st["count"] / total if total else 0.0
        lines.append(f"  {s:<11}{st['count']:>10}{share:>8.1%}{str(st['result_min']):>14}"
                     f"{str(st['result_max']):>14}  {ops}")
    train = splits["train"]
    if train["count"]:
        lines.append("  train operand digits: " + ", ".join(
            f"{k}:{v / train['count']:.1%}" for k, v in train["per_operand_digits"].items()))
        lines.append("  train result lengths: " + ", ".join(
            f"{k}:{v}" for k, v in train["result_length"].items()))
    return "\n".join(lines)


def _bars(table: dict) -> str:
    top = max(table.values(), default=1) or 1
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td class=n>{v}</td>"
        f"<td><div class=bar style='width:{300 * v / top:.0f}px'></div></td></tr>"
        for k, v in table.items())
    return f"<table>{rows}</table>"


def report_html(stats: dict) -> str:
    """A small self-contained HTML report with the numbers of stats.json as bar charts."""
    parts = [
        "<!doctype html><meta charset=utf-8><title>lstm-math data</title><style>"
        "body{font-family:sans-serif;margin:2em}td{padding:1px 8px}.n{text-align:right}"
        ".bar{background:#4a7fb5;height:12px}section{display:inline-block;vertical-align:top;"
        "margin-right:2em}</style>",
        f"<h1>lstm-math generated data</h1><pre>{html.escape(summary_text(stats))}</pre>",
    ]
    for split in sampling.SPLITS:
        st = stats["splits"][split]
        parts.append(f"<h2>{split}: {st['count']} equations, results "
                     f"{st['result_min']} .. {st['result_max']}</h2>")
        for key, title in (("per_operator", "operator"),
                           ("per_operand_digits", "operand digit lengths"),
                           ("result_length", "result length (characters)")):
            parts.append(f"<section><h3>{title}</h3>{_bars(st[key])}</section>")
    return "\n".join(parts)


def run_example_gen(data, output_dir: str, beam_args: list[str] | None = None) -> dict:
    """Runs the Beam job; returns the stats written to ``<output_dir>/stats.json``.

    Also writes ``stats.html`` (the same numbers as bar charts) and logs a summary.
    """
    import dataclasses

    tf.io.gfile.makedirs(output_dir)
    blocks = plan_blocks(data)
    started = time.time()
    log.info("ExampleGen: %d equations in %d shards -> %s (beam args: %s)",
             blocks[-1][2], len(blocks), output_dir, " ".join(beam_args or []) or "none")
    # Shards of an earlier run with another shard count would be mixed with the new ones.
    for name in tf.io.gfile.listdir(output_dir):
        if any(name.startswith(f"{s}-") for s in sampling.SPLITS) and ".tfrecord" in name:
            tf.io.gfile.remove(os.path.join(output_dir, name))
    stats_dir = os.path.join(output_dir, ".stats")
    options = PipelineOptions(beam_args or [])
    with beam.Pipeline(options=options) as p:
        (
            p
            | "Blocks" >> beam.Create(blocks)
            | "Spread" >> beam.Reshuffle()
            | "GenerateAndWrite" >> beam.ParDo(WriteBlock(dataclasses.asdict(data), output_dir))
            | "MergeStats" >> beam.CombineGlobally(MergeStats())
            | "StatsJson" >> beam.Map(lambda s: json.dumps(_sorted_stats(s)))
            | "WriteStats" >> beam.io.WriteToText(os.path.join(stats_dir, "stats"),
                                                  shard_name_template="")
        )
    with tf.io.gfile.GFile(os.path.join(stats_dir, "stats")) as f:
        splits = json.loads(f.read())
    tf.io.gfile.rmtree(stats_dir)
    sampler = sampler_of(data)
    stats = {
        "num_shards": len(blocks),
        "compression": data.compression,
        "operators": list(data.operators),
        "operand_range": [data.operand_min, data.operand_max],
        "num_operands": data.num_operands,
        "min_operands": sampler.space.operand_counts[0],
        "sampling": sampler.sampling,
        "exhaustive": bool(data.exhaustive),
        "seed": data.seed,
        "split_fractions": {s: data.split_fractions[s] for s in sampling.SPLITS},
        "space_size": sampler.space.size,
        # Unique by construction: the sample is the image of positions under a bijection.
        "duplicates_dropped": 0,
        "splits": splits,
    }
    with tf.io.gfile.GFile(os.path.join(output_dir, STATS_FILE), "w") as f:
        f.write(json.dumps(stats, indent=2))
    with tf.io.gfile.GFile(os.path.join(output_dir, REPORT_FILE), "w") as f:
        f.write(report_html(stats))
    log.info("ExampleGen: done in %.1fs -> %s\n%s", time.time() - started,
             os.path.join(output_dir, STATS_FILE), summary_text(stats))
    return stats
