"""DataValidation: checks the generated shards before anything trains on them.

Fails (DataValidationError, whose message names every failed check) on:

  * an empty split, or a split whose record count differs from stats.json;
  * a missing shard, or shard corruption (an unreadable or unparsable record);
  * leakage: an equation in a split sampling.split_of does not assign it to, or the same
    equation in two splits; duplicates inside a split;
  * characters outside the tokenizer's vocabulary;
  * an equation longer than the model's input length, or a result longer than its output
    length;
  * a sampled recomputation (integer arithmetic on the parsed equation) that disagrees
    with the stored result. Every record is recomputed up to ``max_recompute`` records per
    split; beyond that an evenly spread, deterministic sample of that size.

Memory is O(records x 8 bytes) (64-bit hashes for the leakage and duplicate checks), so
10^7 equations validate in well under a gigabyte. Writes ``validation.json``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import math
import os
import re
import zlib

import numpy as np
import tensorflow as tf

from lstm_math.components import answer_formats
from lstm_math.components import data as data_lib
from lstm_math.components import equations as eq
from lstm_math.components import sampling
from lstm_math.components.example_layout import shard_name
from lstm_math.components.tokenizer import CHARACTERS
from lstm_math.config import Coverage

log = logging.getLogger(__name__)

MAX_PROBLEMS = 20
_EQUATION_RE = "[" + re.escape("".join(CHARACTERS)) + " ]*"
_RESULT_RE = "[" + re.escape("".join(CHARACTERS)) + "]*"


class DataValidationError(ValueError):
    pass


def _hash64(texts: list[bytes]) -> np.ndarray:
    blake = hashlib.blake2b
    return np.frombuffer(b"".join(blake(t, digest_size=8).digest() for t in texts), dtype=">u8")


def _gzip_cut_short(path: str) -> str | None:
    """Why a GZIP shard is unreadable to its end (None when it is whole). TensorFlow's
    reader stops quietly at some cut points of a truncated GZIP stream, so the stream is
    checked to its end-of-stream marker here."""
    try:
        with tf.io.gfile.GFile(path, "rb") as raw, gzip.GzipFile(fileobj=raw) as stream:
            while stream.read(1 << 20):
                pass
    except (EOFError, OSError, zlib.error) as e:
        return f"the GZIP stream is cut short or damaged ({e})"
    return None


def run_data_validation(examples_dir: str, coverage: Coverage, output_dir: str,
                        recompute_every: int = 1, max_recompute: int = 20_000,
                        batch_size: int = 4096) -> dict:
    problems: list[str] = []
    tally: dict[str, int] = {}

    def problem(kind: str, message: str) -> None:
        tally[kind] = tally.get(kind, 0) + 1
        if len(problems) < MAX_PROBLEMS:
            problems.append(message)

    try:
        stats = data_lib.read_stats(examples_dir)
    except (tf.errors.NotFoundError, json.JSONDecodeError) as e:
        raise DataValidationError(f"data validation failed: cannot read stats.json under "
                                  f"{examples_dir}: {e}") from e
    fractions = stats.get("split_fractions")
    fractions = [fractions[s] for s in sampling.SPLITS] if fractions else None
    counts, hashes, recomputed = {}, {}, 0
    formats = answer_formats.formats_of(coverage)
    for si, split in enumerate(sampling.SPLITS):
        expected_count = stats["splits"].get(split, {}).get("count")
        names = {os.path.basename(f) for f in tf.io.gfile.glob(os.path.join(
            examples_dir, f"{split}-*"))}
        for i in range(stats["num_shards"]):
            name = shard_name(split, i, stats["num_shards"], stats["compression"])
            if name not in names:
                problem("corruption", f"shard corruption in split {split}: {name} is missing")
            elif stats["compression"] == "GZIP":
                cut = _gzip_cut_short(os.path.join(examples_dir, name))
                if cut:
                    problem("corruption", f"shard corruption in split {split}: {name}: {cut}")
        every = max(recompute_every, math.ceil((expected_count or 0) / max(1, max_recompute)), 1)
        n = 0
        split_hashes = []
        try:
            for batch in data_lib.features_dataset(examples_dir, split, batch_size):
                texts_t, results_t = batch["equation"], batch["result"]
                texts = texts_t.numpy().tolist()
                results = results_t.numpy().tolist()
                bad_chars = ~(tf.strings.regex_full_match(texts_t, _EQUATION_RE)
                              & tf.strings.regex_full_match(results_t, _RESULT_RE)).numpy()
                for i in np.flatnonzero(bad_chars).tolist():
                    problem("vocabulary", f"characters outside the vocabulary in "
                                          f"{texts[i]!r} = {results[i]!r} ({split})")
                too_long = (tf.strings.length(results_t) > coverage.max_result_length).numpy()
                for i in np.flatnonzero(too_long).tolist():
                    problem("result_length", f"result {results[i].decode()!r} of "
                            f"{texts[i].decode()!r} is longer than the model's output length "
                            f"{coverage.max_result_length}")
                input_len = tf.strings.length(tf.strings.regex_replace(texts_t, r"\s+", ""))
                for i in np.flatnonzero((input_len > coverage.max_input_length).numpy()):
                    problem("input_length", f"equation {texts[int(i)].decode()!r} is longer than "
                            f"the model's input length {coverage.max_input_length}")
                if fractions is not None:
                    assigned = sampling.split_indices(texts, fractions)
                    for i in np.flatnonzero(assigned != si).tolist():
                        problem("leakage", f"leakage: {texts[i].decode()!r} is in {split} but its "
                                f"split function assigns it to {sampling.SPLITS[assigned[i]]}")
                split_hashes.append(_hash64(texts))
                for i in range((-n) % every, len(texts), every):
                    recomputed += 1
                    text, stored = texts[i].decode(errors="replace"), results[i].decode(
                        errors="replace")
                    try:
                        parsed = eq.parse(text)
                        truth = str(parsed.result)
                    except eq.EquationError as e:
                        problem("recompute", f"stored equation {text!r} ({split}) does not "
                                             f"evaluate: {e.reason}")
                        continue
                    if truth != stored:
                        problem("recompute", f"stored result {stored!r} for {text!r} ({split}) "
                                             f"!= {truth} (recomputed with integer arithmetic)")
                    fmt = formats.get(parsed.tag)
                    if fmt is not None:  # the working the model is trained to write
                        want = answer_formats.working(fmt, parsed.operands, parsed.operators,
                                                      coverage.operand_max)
                        got = batch["working"][i].numpy().decode(errors="replace")
                        if got != want:
                            problem("working", f"stored working {got!r} for {text!r} ({split}) "
                                               f"!= {want!r} ({fmt}, recomputed)")
                n += len(texts)
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            problem("corruption", f"shard corruption in split {split}: "
                                  f"{e.message.splitlines()[0]}")
        except data_lib.NoShardsError as e:
            problem("corruption", f"shard corruption in split {split}: {e}")
        counts[split] = n
        hashes[split] = np.concatenate(split_hashes) if split_hashes else np.zeros(0, ">u8")
        if n == 0:
            problem("empty", f"split {split!r} is empty")
        elif expected_count is not None and n != expected_count:
            problem("count", f"split {split!r} has {n} records but stats.json says "
                             f"{expected_count}")
        unique = np.unique(hashes[split])
        if len(unique) != n:
            problem("duplicates", f"{n - len(unique)} duplicate equations in split {split!r}")
        hashes[split] = unique
    for a in range(len(sampling.SPLITS)):
        for b in range(a + 1, len(sampling.SPLITS)):
            both = np.intersect1d(hashes[sampling.SPLITS[a]], hashes[sampling.SPLITS[b]]).size
            if both:
                problem("leakage", f"leakage: {both} equations are in both {sampling.SPLITS[a]} "
                                   f"and {sampling.SPLITS[b]}")
    report = {"passed": not tally, "counts": counts, "leakage": tally.get("leakage", 0),
              "problem_counts": tally, "recomputed": recomputed, "problems": problems}
    tf.io.gfile.makedirs(output_dir)
    with tf.io.gfile.GFile(os.path.join(output_dir, "validation.json"), "w") as f:
        f.write(json.dumps(report, indent=2))
    if tally:
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(tally.items()))
        raise DataValidationError(f"data validation failed ({summary}):\n  "
                                  + "\n  ".join(problems))
    log.info("DataValidation: passed: %s, leakage 0, duplicates 0, %d results recomputed",
             counts, recomputed)
    return report
