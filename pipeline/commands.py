"""The bodies of ``lstm-math generate``, ``train`` and ``tune``: each runs a pipeline node's
own function, finding and recording artifacts only through the runner's public API."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys

import tensorflow as tf

from lstm_math.config import Coverage, ModelHParams, PipelineConfig, coverage_of, load_config
from lstm_math.pipeline.pipeline import create_pipeline
from lstm_math.pipeline.runner import LocalRunner, NotReady, external_artifact, run_component

log = logging.getLogger("lstm_math")


def generate(config: PipelineConfig, output_dir: str) -> int:
    """ExampleGen alone into a directory; prints the record count of each split."""
    properties = run_component(config, "ExampleGen", output_dir)
    print(json.dumps(properties["counts"]))
    return 0


def read_hparams_file(path: str, config: PipelineConfig) -> dict:
    """A best_hyperparameters.json as {"model": ..., "optimizer": ...}. The older flat form
    (the model's fields, learning_rate among them) is read too."""
    with tf.io.gfile.GFile(path) as f:
        data = json.loads(f.read())
    if "model" in data:
        return data
    model_fields = {f.name for f in dataclasses.fields(ModelHParams)}
    optimizer = dataclasses.asdict(config.trainer.optimizer)
    if "learning_rate" in data:
        optimizer["learning_rate"] = data["learning_rate"]
    return {"model": {k: v for k, v in data.items() if k in model_fields},
            "optimizer": optimizer}


def train(args) -> int:
    """`lstm-math train`: the Trainer node on --examples into --output (resumable)."""
    from lstm_math.components.example_layout import NoShardsError, shard_files

    config = load_config(args.config, list(args.overrides))
    try:
        shard_files(args.examples, "train")
    except NoShardsError as e:
        log.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        return 2
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
                      "model": os.path.join(args.output, "model.keras")}), flush=True)
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
    """`lstm-math tune`: returns the exit status (0 done, 2 usage, 3 worker lost the chief)."""
    from lstm_math.components.tuner import (BEST_FILE, LOST_CHIEF_EXIT, OBJECTIVE, LostChief,
                                            TrialSettings, configure_role, run_tuner)

    if not config.tuner.enabled:
        log.error("tuner.enabled is false: nothing to tune (the Trainer uses trainer.model)")
        return 2
    try:
        role = configure_role(args.role, args.oracle, args.tuner_id)
    except ValueError as e:
        log.error("%s", e)
        return 2
    runner = LocalRunner(config)
    place = None
    if args.examples:
        examples_dir, coverage = args.examples, coverage_of(config)
    else:
        try:
            examples, place = _tuner_place(config, runner)
        except FileNotFoundError as e:
            log.error("%s", e)
            return 2
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
        log.error("Tuner worker: %s; exiting", e)
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
