"""The bodies of ``lstm-math generate``, ``train`` and ``tune``: each runs a pipeline node's
own function, finding and recording artifacts only through the runner's public API."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys

import tensorflow as tf

from lstm_math.config import MODEL_FILE, Coverage, PipelineConfig, coverage_of, load_config
from lstm_math.pipeline.pipeline import create_pipeline
from lstm_math.pipeline.runner import LocalRunner, NotReady, external_artifact, run_component
from lstm_math.pipeline.usage import PROG, UsageError, hparams_from_json

log = logging.getLogger("lstm_math")


def generate(config: PipelineConfig, output_dir: str) -> int:
    """ExampleGen alone into a directory; prints the record count of each split."""
    properties = run_component(config, "ExampleGen", output_dir)
    print(json.dumps(properties["counts"]))
    return 0


def read_hparams_file(path: str, config: PipelineConfig) -> dict:
    """A best_hyperparameters.json as {"model": ..., "optimizer": ...}, validated against
    the config (UsageError naming the file and the field). The older flat form (the model's
    fields, learning_rate among them) is read too."""
    try:
        with tf.io.gfile.GFile(path) as f:
            text = f.read()
    except (OSError, tf.errors.OpError, UnicodeDecodeError) as e:
        raise UsageError(f"--hparams {path}: cannot read it ({e})") from None
    return hparams_from_json(text, path, config)


def _check_examples(examples_dir: str) -> None:
    """UsageError (one line) unless ``examples_dir`` holds ExampleGen's training shards."""
    from lstm_math.components.example_layout import NoShardsError, shard_files

    try:
        shard_files(examples_dir, "train")
    except NoShardsError as e:
        raise UsageError(f"--examples: {e}") from None


def train(args, config: PipelineConfig | None = None) -> int:
    """`lstm-math train`: the Trainer node on --examples into --output (resumable). A
    mistake in the arguments raises UsageError before anything is written."""
    config = config or load_config(args.config, list(args.overrides))
    _check_examples(args.examples)
    t = config.trainer
    best = (read_hparams_file(args.hparams, config) if args.hparams else
            {"model": dataclasses.asdict(t.model), "optimizer": dataclasses.asdict(t.optimizer)})
    inputs = {
        "ExampleGen": external_artifact("ExampleGen", args.examples, {
            "examples_dir": args.examples, "coverage": coverage_of(config).to_dict()}),
        "Tuner": external_artifact("Tuner", args.hparams or "", {"best": best}),
    }
    result = run_component(config, "Trainer", args.output, inputs)
    final = result["final_metrics"]
    print(json.dumps({"epochs": result["epochs_run"],
                      "train_seconds": round(result["train_seconds"], 1),
                      "exact_match": final.get("exact_match"),
                      "val_exact_match": final.get("val_exact_match"),
                      "model": os.path.join(args.output, MODEL_FILE)}), flush=True)
    return 0


def _tuner_place(config: PipelineConfig, runner: LocalRunner):
    """(ExampleGen artifact, Tuner fingerprint and directory or None) for this config: the
    pipeline's own Tuner step when ExampleGen and DataValidation ran with this config, else
    the newest ExampleGen output covering the same task (no Tuner artifact then)."""
    pipeline = create_pipeline(config)
    try:
        place = runner.resolve(pipeline, "Tuner")
        return place.inputs["ExampleGen"], place
    except NotReady:
        pass
    try:
        return runner.resolve(pipeline, "DataValidation").inputs["ExampleGen"], None
    except NotReady:
        pass
    data_keys = ("operators", "operand_min", "operand_max", "num_operands", "min_operands",
                 "max_input_length")
    want = {k: v for k, v in Coverage.of_data(config.task.data).to_dict().items()
            if k in data_keys}
    examples = runner.latest("ExampleGen", where=lambda a: {
        k: v for k, v in a.properties.get("coverage", {}).items() if k in data_keys} == want)
    if examples is None:
        raise FileNotFoundError(
            f"no ExampleGen output for this task under {runner.root}; run `lstm-math "
            f"component ExampleGen` with this config first, or pass --examples DIR")
    log.info("Tuner: using the latest matching ExampleGen output %s", examples.uri)
    return examples, None


def tune(args, config: PipelineConfig) -> int:
    """`lstm-math tune`: returns the exit status (0 done, 2 usage, 3 worker lost the chief);
    a mistake in the arguments or the config raises UsageError before the search starts
    (a role that cannot be set returns 2, logged, as it did)."""
    from lstm_math.components.tuner import (BEST_FILE, LOST_CHIEF_EXIT, OBJECTIVE, LostChief,
                                            TrialSettings, configure_role, run_tuner)

    if not config.tuner.enabled:
        raise UsageError("tuner.enabled is false: nothing to tune (the Trainer uses "
                         "trainer.model)")
    try:
        role = configure_role(args.role, args.oracle, args.tuner_id)
    except ValueError as e:
        log.error("%s", e)
        return 2
    runner = LocalRunner(config)
    place = None
    if args.examples:
        _check_examples(args.examples)
        examples_dir, coverage = args.examples, coverage_of(config)
    else:
        try:
            examples, place = _tuner_place(config, runner)
        except FileNotFoundError as e:
            raise UsageError(str(e)) from None
        examples_dir, coverage = (examples.properties["examples_dir"],
                                  Coverage.from_dict(examples.properties["coverage"]))
    node = create_pipeline(config).node("Tuner")
    output_dir = args.output or (place.output_dir if place else runner.scratch_dir(
        "Tuner", {"config": runner.config_payload(node), "examples": examples_dir},
        prefix="tune"))
    log.info("Tuner %s: examples %s -> %s", role, examples_dir, output_dir)
    try:
        result = run_tuner(config.tuner, TrialSettings.of(config.trainer), examples_dir,
                           coverage, output_dir, chief_timeout=args.chief_timeout,
                           strategy=config.runtime.strategy)
    except LostChief as e:
        print(f"{PROG} tune: error: Tuner worker: {e}; exiting", file=sys.stderr, flush=True)
        return LOST_CHIEF_EXIT
    if role == "worker":
        print(json.dumps(result), flush=True)
        return 0
    if place and output_dir == place.output_dir:
        # The pipeline's Tuner step for this config is done: `lstm-math run` reuses it.
        runner.complete("Tuner", place.fingerprint, {**result, "tuned": True})
    print(json.dumps({"best_hyperparameters": os.path.join(output_dir, BEST_FILE),
                      "trials_csv": result["trials_csv"], "best_trial": result["best_trial"],
                      OBJECTIVE: result[OBJECTIVE], "best": result["best"],
                      "trials": len(result["trials"]), "seconds": result["seconds"],
                      "tensorboard": result["tensorboard"]}, indent=2), flush=True)
    return 0
