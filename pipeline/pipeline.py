"""The pipeline as a pure description: components, what each consumes, which config it reads.

Nothing here runs anything; ``lstm_math.pipeline.runner.LocalRunner`` (or any orchestrator calling
``lstm-math component NAME``) executes the nodes in order. Each node's function receives a
``Context`` (config, upstream artifacts, its own output directory) and returns the
properties of the artifact it produced.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

from lstm_math.pipeline.artifacts import Artifact  # noqa: F401  (re-exported)
from lstm_math.pipeline.config import ModelHParams, OptimizerConfig, PipelineConfig, coverage_of


@dataclasses.dataclass
class Context:
    config: PipelineConfig
    inputs: dict  # upstream component name -> Artifact
    output_dir: str


@dataclasses.dataclass
class Node:
    name: str
    run: Callable[[Context], dict]
    inputs: tuple = ()
    config_sections: tuple = ()  # dotted config paths whose values change the output
    fingerprint_extra: Callable[[PipelineConfig], object] | None = None


@dataclasses.dataclass
class Pipeline:
    name: str
    nodes: list

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no component named {name!r}; components: "
                       + ", ".join(n.name for n in self.nodes))


# --------------------------------------------------------------------------------------
# Node functions: thin adapters from artifacts to the components' own functions.


def _example_gen(ctx: Context) -> dict:
    from lstm_math.components.example_gen import run_example_gen

    stats = run_example_gen(ctx.config.task.data, ctx.output_dir, ctx.config.runtime.beam_args)
    return {"examples_dir": ctx.output_dir, "coverage": coverage_of(ctx.config),
            "counts": {s: v["count"] for s, v in stats["splits"].items()},
            "stats_file": os.path.join(ctx.output_dir, "stats.json"),
            "report": os.path.join(ctx.output_dir, "stats.html")}


def _data_validation(ctx: Context) -> dict:
    from lstm_math.components.data_validation import run_data_validation

    examples = ctx.inputs["ExampleGen"].properties
    return run_data_validation(examples["examples_dir"], examples["coverage"], ctx.output_dir)


def _tuner(ctx: Context) -> dict:
    from lstm_math.components.tuner import role_from_env, run_tuner

    examples = ctx.inputs["ExampleGen"].properties
    if not ctx.config.tuner.enabled:
        t = ctx.config.trainer
        return {"best": {"model": dataclasses.asdict(t.model),
                         "optimizer": dataclasses.asdict(t.optimizer)},
                "trials": [], "tuned": False}
    if role_from_env() == "worker":
        raise RuntimeError("KERASTUNER_* variables make this process a tuning worker; the chief "
                           "writes the results: run workers with `lstm-math tune --role worker`")
    # Continues a search interrupted in this directory (same config -> same directory).
    result = run_tuner(ctx.config, examples["examples_dir"], examples["coverage"], ctx.output_dir)
    return {**result, "tuned": True}


def _trainer(ctx: Context) -> dict:
    from lstm_math.components.trainer import run_trainer

    examples = ctx.inputs["ExampleGen"].properties
    best = ctx.inputs["Tuner"].properties["best"]  # {"model": ..., "optimizer": ...}
    result = run_trainer(ctx.config, examples["examples_dir"], examples["coverage"],
                         ModelHParams(**best["model"]), ctx.output_dir,
                         optimizer=OptimizerConfig(**best["optimizer"]))
    return {**result, "model_dir": ctx.output_dir}


def _evaluator(ctx: Context) -> dict:
    from lstm_math.components.evaluator import run_evaluator

    result = run_evaluator(ctx.config, ctx.inputs["Trainer"].properties["model_dir"],
                           ctx.inputs["ExampleGen"].properties["examples_dir"], ctx.output_dir)
    metrics = {k: v for k, v in result["metrics"].items() if k != "worst_errors"}
    if metrics.get("exhaustive"):
        metrics["exhaustive"] = {k: v for k, v in metrics["exhaustive"].items()
                                 if k != "worst_errors"}
    return {"metrics": metrics, "blessing": result["blessing"],
            "metrics_file": os.path.join(ctx.output_dir, "metrics.json"),
            "report": os.path.join(ctx.output_dir, "report.md"),
            "pictures": [os.path.join(ctx.output_dir, p) for p in metrics.get("pictures", [])],
            "tensorboard": os.path.join(ctx.output_dir, "logs")}


def _exporter(ctx: Context) -> dict:
    from lstm_math.components.exporter import run_exporter

    x = ctx.config.exporter
    return run_exporter(ctx.inputs["Trainer"].properties["model_dir"],
                        ctx.inputs["Evaluator"].uri, ctx.output_dir,
                        jit_compile=x.jit_compile, warmup_batch_sizes=x.warmup_batch_sizes)


def _infra_validator(ctx: Context) -> dict:
    from lstm_math.components.infra_validator import run_infra_validator

    exported = ctx.inputs["Exporter"].properties
    p = ctx.config.pusher
    return run_infra_validator(exported["saved_model"], exported["coverage"],
                               ctx.config.evaluator.threshold, ctx.output_dir,
                               timeout_s=ctx.config.runtime.infra_validation_timeout_s,
                               num_canaries=p.infra_canaries,
                               max_latency_ms=p.infra_max_latency_ms, model_name=p.model_name)


def _pusher(ctx: Context) -> dict:
    from lstm_math.components.pusher import run_pusher

    p = ctx.config.pusher
    return run_pusher(ctx.inputs["Exporter"].properties["saved_model"],
                      ctx.inputs["Evaluator"].properties["blessing"],
                      ctx.inputs["InfraValidator"].properties, p.serving_base, p.model_name,
                      p.keep_versions)


def create_pipeline(config: PipelineConfig) -> Pipeline:
    return Pipeline(
        name=config.name,
        nodes=[
            Node("ExampleGen", _example_gen, (), ("task.data",)),
            Node("DataValidation", _data_validation, ("ExampleGen",), ()),
            Node("Tuner", _tuner, ("ExampleGen", "DataValidation"),
                 ("tuner", "trainer.model", "trainer.batch_size", "trainer.shuffle_buffer",
                  "trainer.optimizer", "trainer.seed")),
            Node("Trainer", _trainer, ("ExampleGen", "Tuner"), ("trainer",)),
            Node("Evaluator", _evaluator, ("ExampleGen", "Trainer"),
                 ("evaluator", "exporter.jit_compile")),
            Node("Exporter", _exporter, ("Trainer", "Evaluator"), ("exporter",)),
            Node("InfraValidator", _infra_validator, ("Exporter",),
                 ("evaluator.threshold", "pusher.infra_canaries", "pusher.infra_max_latency_ms",
                  "pusher.model_name")),
            Node("Pusher", _pusher, ("Exporter", "Evaluator", "InfraValidator"), ("pusher",),
                 fingerprint_extra=lambda c: os.path.abspath(c.pusher.serving_base)),
        ],
    )
