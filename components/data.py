"""tf.data input: TFRecord shards -> batched, tokenized (encoder ids, decoder ids) -> targets.

list files (``tf.io.gfile``: local paths, ``gs://``, ...) -> shuffle files -> parallel
interleave of TFRecord readers -> optional cache -> repeat -> shuffle -> batch (any short
draws appended to each batch) -> batched ``parse_example`` + the in-graph tokenizer
(components.tokenizer, the same functions the serving signature uses) -> prefetch, all
AUTOTUNEd. Batching before parsing matters: per-example parsing is ~25x slower on a 2-core
machine and would starve training (benchmarks/trainer_benchmark.py measures the input rate
against training's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import tensorflow as tf

from lstm_math.components import answer_formats, tokenizer
from lstm_math.components.example_layout import (FEATURES, NoShardsError, read_stats,  # noqa: F401
                                       shard_files)
from lstm_math.config.training import short_draws

if TYPE_CHECKING:
    from lstm_math.config import Coverage


def raw_dataset(examples_dir: str, split: str, shuffle_files: bool = False, seed: int = 0):
    """Serialized tf.train.Example records of one split."""
    stats = read_stats(examples_dir)
    files = shard_files(examples_dir, split)
    compression = "GZIP" if stats["compression"] == "GZIP" else ""
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_files:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    return ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
        cycle_length=min(len(files), 8),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=not shuffle_files,
    )


def parse_batch(serialized: tf.Tensor) -> dict:
    return tf.io.parse_example(serialized, FEATURES)


def to_model_inputs(features: dict, coverage: Coverage, with_operator: bool = False):
    """Parsed batch -> ((encoder ids, decoder input ids), decoder target ids)
    [, operator index (components.metrics.OPERATOR_TAGS) when ``with_operator``]."""
    encoder_ids = tokenizer.encode_for_model(features["equation"], coverage)
    decoder_in, decoder_out = tokenizer.encode_results(
        features["result"], coverage.max_result_length, coverage.reverse_output,
        coverage.output_format,
        features["working"] if answer_formats.formats_of(coverage) else None,
    )
    if with_operator:
        from lstm_math.components.metrics import operator_index

        return (encoder_ids, decoder_in), decoder_out, operator_index(features["operator"])
    return (encoder_ids, decoder_in), decoder_out


def training_dataset(
    examples_dir: str,
    split: str,
    coverage: Coverage,
    batch_size: int,
    shuffle_buffer: int = 0,
    cache: bool = False,
    repeat: bool = False,
    seed: int = 0,
    drop_remainder: bool = False,
    with_operator: bool = False,
    short_share: float = 0.0,
    short_max_chars: int = 5,
    short_max_digits: int = 0,
) -> tf.data.Dataset:
    """Batches of ((encoder ids, decoder inputs), targets[, operator index]).

    ``batch_size`` is the global batch (a tf.distribute strategy splits it over replicas);
    ``cache`` keeps the serialized records in memory after the first pass (small datasets);
    ``with_operator`` adds each example's operator index for per-operator metrics;
    ``short_share`` > 0 (with ``repeat``): ``short_draws(short_share, batch_size)`` records
    of every batch (that share, rounded, at least one) are drawn again from the split's
    equations of at most ``short_max_chars`` characters (whitespace removed), or with
    ``short_max_digits`` > 0 those whose every operand has at most that many digits, after
    the rest.
    """
    ds = raw_dataset(examples_dir, split, shuffle_files=shuffle_buffer > 0, seed=seed)
    if cache:
        ds = ds.cache()
    if repeat:
        ds = ds.repeat()
    if shuffle_buffer > 0:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if short_share > 0:
        if not repeat:
            raise ValueError("short_share needs repeat=True (the short records are repeated)")
        n_short = short_draws(short_share, batch_size)
        if n_short >= batch_size:
            raise ValueError(f"short_share {short_share} leaves no record of the split in a "
                             f"batch of {batch_size}")
        short = short_records(examples_dir, split, short_max_chars, short_max_digits)
        # Shuffled, then repeated: every pass over the short equations draws each once.
        short = short.cache().shuffle(4096, seed=seed, reshuffle_each_iteration=True).repeat()
        # Composed batch by batch, not record by record (sample_from_datasets): a fixed
        # count per batch, and the input pipeline no slower than without short draws
        # (per-record sampling cost 3x the pipeline's time on one core).
        ds = tf.data.Dataset.zip((ds.batch(batch_size - n_short, drop_remainder=True),
                                  short.batch(n_short, drop_remainder=True)))
        ds = ds.map(lambda rest, drawn: tf.concat([rest, drawn], axis=0))
    else:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    # Not converted by AutoGraph (no tensor-dependent Python control flow): seconds saved
    # at the start of every training and evaluation.
    to_inputs = tf.autograph.experimental.do_not_convert(
        lambda s: to_model_inputs(parse_batch(s), coverage, with_operator))
    ds = ds.map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    # Records, not files, are split between workers: any shard count works with any cluster.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def short_records(examples_dir: str, split: str, max_chars: int,
                  max_digits: int = 0) -> tf.data.Dataset:
    """Serialized records of the split whose equation has at most ``max_chars`` characters
    (whitespace removed), or with ``max_digits`` > 0 whose every operand has at most that
    many digits; in file order; one pass over the split, parsed in batches."""
    too_long = f".*[0-9]{{{max_digits + 1}}}.*"  # a run of more digits: a wider operand

    def keep(serialized):
        equations = tf.io.parse_example(serialized, {"equation": FEATURES["equation"]})
        compact = tokenizer.compact(equations["equation"])
        if max_digits > 0:
            short = tf.logical_not(tf.strings.regex_full_match(compact, too_long))
        else:
            short = tf.strings.length(compact) <= max_chars
        return tf.data.Dataset.from_tensor_slices(tf.boolean_mask(serialized, short))

    return raw_dataset(examples_dir, split).batch(4096).flat_map(keep)


def features_dataset(examples_dir: str, split: str, batch_size: int) -> tf.data.Dataset:
    """Parsed feature dicts (equation, result, operator), in file order."""
    ds = raw_dataset(examples_dir, split).batch(batch_size)
    return ds.map(parse_batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
