"""DataValidation: checks the generated shards before anything trains on them.

Fails (DataValidationError, naming the check) on: an empty split, leakage (an equation in
two splits), characters outside the tokenizer's vocabulary, a result longer than the
model's output length, a stored result that disagrees with integer arithmetic, or an
unreadable shard. Writes ``validation.json`` with the figures.
"""

from __future__ import annotations

import json
import logging
import os

import tensorflow as tf

from components import data as data_lib
from components import equations as eq
from components.tokenizer import CHARACTERS

log = logging.getLogger(__name__)


class DataValidationError(ValueError):
    pass


def run_data_validation(examples_dir: str, coverage: dict, output_dir: str,
                        recompute_every: int = 1) -> dict:
    vocabulary = set(CHARACTERS) | {" "}
    seen: dict[str, str] = {}
    counts = {}
    problems = []
    recomputed = 0
    for split in eq.SPLITS:
        n = 0
        try:
            for batch in data_lib.features_dataset(examples_dir, split, 4096):
                for text, result in zip(batch["equation"].numpy(), batch["result"].numpy()):
                    text, result = text.decode(), result.decode()
                    n += 1
                    other = seen.setdefault(text, split)
                    if other != split:
                        problems.append(f"leakage: {text!r} is in {other} and {split}")
                    if not set(text) <= vocabulary or not set(result) <= vocabulary:
                        problems.append(f"characters outside the vocabulary in {text!r} = {result!r}")
                    if len(result) > coverage["max_result_length"]:
                        problems.append(f"result {result!r} of {text!r} is longer than the model's "
                                        f"output length {coverage['max_result_length']}")
                    if n % recompute_every == 0:
                        recomputed += 1
                        truth = str(eq.parse(text).result)
                        if truth != result:
                            problems.append(f"stored result {result!r} for {text!r} != {truth}")
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            problems.append(f"shard corruption in split {split}: {e.message.splitlines()[0]}")
        counts[split] = n
        if n == 0:
            problems.append(f"split {split!r} is empty")
        if len(problems) > 20:
            break
    report = {"passed": not problems, "counts": counts, "leakage": sum("leakage" in p for p in problems),
              "recomputed": recomputed, "problems": problems[:20]}
    tf.io.gfile.makedirs(output_dir)
    with tf.io.gfile.GFile(os.path.join(output_dir, "validation.json"), "w") as f:
        f.write(json.dumps(report, indent=2))
    if problems:
        raise DataValidationError("data validation failed:\n  " + "\n  ".join(problems[:20]))
    log.info("DataValidation: passed: %s, leakage 0, %d results recomputed", counts, recomputed)
    return report
