"""The pipeline as a pure description: components, what each consumes, which config it reads.

Nothing here runs anything; ``lstm_math.pipeline.runner.LocalRunner`` (or any orchestrator
calling ``lstm-math component NAME``) executes the nodes in order.

Each node declares everything its component is given, and the runner gives it exactly that
and fingerprints exactly that (so no fingerprint can miss what a component reads):
  inputs      upstream components whose artifacts it consumes (their fingerprints);
  config      parameter -> dotted config path (a typed section such as ``trainer`` or one
              field such as ``task.data.seed``), fingerprinted without the section's runtime
              fields (``lstm_math.config.runtime_field``: a progress interval);
  runtime     parameter -> dotted config path of how/where it runs (Beam options, the
              distribution strategy, a timeout): given, never fingerprinted;
  resolvers   parameter -> Resolver: a value from outside the pipeline root (the model now
              served, an absolute path), computed from declared config fields before the
              cache check and fingerprinted as computed (TFX's resolver nodes).
A node's function receives a ``Context`` (those values by parameter name, the upstream
artifacts, its own output directory) and returns the properties of the artifact it produced.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Mapping

from lstm_math.config import Coverage, ModelHParams, OptimizerConfig
from lstm_math.pipeline import artifacts as store
from lstm_math.pipeline.artifacts import Artifact  # noqa: F401  (re-exported)


class Params(Mapping):
    """The config values a node declared, by parameter name (``ctx.params.trainer``); any
    other name is an error naming what was declared."""

    def __init__(self, node: str, values: dict):
        object.__setattr__(self, "_node", node)
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"{self._node} declared no config input {name!r}; it "
                                 f"declared {', '.join(sorted(self._values)) or 'none'}"
                                 ) from None

    def __setattr__(self, name, value):
        raise AttributeError("a node's config inputs are read-only")

    def __getitem__(self, name):
        return self.__getattr__(name)

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)


@dataclasses.dataclass(frozen=True)
class Context:
    params: Params  # declared config and runtime values, by parameter name
    inputs: dict  # upstream component name -> Artifact
    output_dir: str
    resolved: dict = dataclasses.field(default_factory=dict)  # parameter -> resolved value


@dataclasses.dataclass(frozen=True)
class Resolver:
    """A value from outside the pipeline root: ``fn(**config values of params)``.

    ``identity``, when given, is what of the value the node's fingerprint holds (what the
    node's result depends on); the node itself is handed the whole value. ``at_start``: also
    resolved once when a run starts, before it writes anything, so that a bad value (a
    warm-start model that is not there) fails the run at once rather than steps later."""

    fn: Callable[..., object]
    params: Mapping[str, str]  # fn's parameter -> dotted config path
    identity: Callable[[object], object] | None = None
    at_start: bool = False

    def identity_of(self, value):
        return value if self.identity is None else self.identity(value)


@dataclasses.dataclass(frozen=True)
class Node:
    name: str
    run: Callable[[Context], dict]
    inputs: tuple = ()
    # keyword-only: a positional tuple of section names (the old form) is refused
    config: Mapping[str, str] = dataclasses.field(default_factory=dict, kw_only=True)
    runtime: Mapping[str, str] = dataclasses.field(default_factory=dict, kw_only=True)
    resolvers: Mapping[str, Resolver] = dataclasses.field(default_factory=dict, kw_only=True)

    def reads(self) -> dict:
        """Every dotted config path this node is given: parameter -> path."""
        out = {**self.config, **self.runtime}
        for name, r in self.resolvers.items():
            out.update({f"{name}.{k}": v for k, v in r.params.items()})
        return out


def config_value(config, dotted: str):
    """The value at a dotted config path (``trainer``, ``task.data.seed``)."""
    node = config
    for key in dotted.split("."):
        node = getattr(node, key)
    return node


def params_of(node: Node, config) -> Params:
    """What ``node`` is given from ``config``: its config and runtime values."""
    return Params(node.name, {p: config_value(config, path)
                              for p, path in {**node.config, **node.runtime}.items()})


def resolve(node: Node, config, at_start: bool = False) -> dict:
    """The node's resolved inputs, now (``at_start``: those checked when a run starts)."""
    return {name: r.fn(**{k: config_value(config, path) for k, path in r.params.items()})
            for name, r in sorted(node.resolvers.items()) if r.at_start or not at_start}


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

    p = ctx.params
    stats = run_example_gen(p.data, ctx.output_dir, p.beam_args)
    # the data's coverage; the Trainer fixes the model's part (Coverage.for_model)
    return {"examples_dir": ctx.output_dir, "coverage": Coverage.of_data(p.data).to_dict(),
            "counts": {s: v["count"] for s, v in stats["splits"].items()},
            "stats_file": os.path.join(ctx.output_dir, "stats.json"),
            "report": os.path.join(ctx.output_dir, "stats.html")}


def _data_validation(ctx: Context) -> dict:
    from lstm_math.components.data_validation import run_data_validation

    examples = ctx.inputs["ExampleGen"].properties
    return run_data_validation(examples["examples_dir"], Coverage.from_dict(examples["coverage"]),
                               ctx.output_dir)


def _tuner(ctx: Context) -> dict:
    p = ctx.params
    if not p.tuner.enabled:
        return {"best": {"model": dataclasses.asdict(p.model),
                         "optimizer": dataclasses.asdict(p.optimizer)},
                "trials": [], "tuned": False}
    from lstm_math.components.tuner import TrialSettings, role_from_env, run_tuner

    examples = ctx.inputs["ExampleGen"].properties
    if role_from_env() == "worker":
        raise RuntimeError("KERASTUNER_* variables make this process a tuning worker; the chief "
                           "writes the results: run workers with `lstm-math tune --role worker`")
    trial = TrialSettings(**{f.name: p[f.name] for f in dataclasses.fields(TrialSettings)})
    # Continues a search interrupted in this directory (same config -> same directory).
    result = run_tuner(p.tuner, trial, examples["examples_dir"],
                       Coverage.from_dict(examples["coverage"]),
                       ctx.output_dir, strategy=p.strategy)
    return {**result, "tuned": True}


def _trainer(ctx: Context) -> dict:
    from lstm_math.components.trainer import run_trainer

    p = ctx.params
    examples = ctx.inputs["ExampleGen"].properties
    best = ctx.inputs["Tuner"].properties["best"]  # {"model": ..., "optimizer": ...}
    result = run_trainer(p.trainer, examples["examples_dir"],
                         Coverage.from_dict(examples["coverage"]),
                         ModelHParams(**best["model"]), ctx.output_dir,
                         optimizer=OptimizerConfig(**best["optimizer"]),
                         shuffle_seed=p.shuffle_seed, strategy=p.strategy,
                         warm_start=ctx.resolved.get("warm_start"))
    return {**result, "model_dir": ctx.output_dir}


def warm_start_source(path: str) -> dict | None:
    """The Trainer's warm start: the model file and its content digest (None when off)."""
    from lstm_math.components.trainer.model import warm_start_source as source

    return source(path)


def _digest_only(source: dict | None):
    """What a training from a warm start depends on: the model's content, not its path."""
    return source and source["digest"]


def served_baseline(serving_base: str, model_name: str) -> dict:
    """The Evaluator's baseline: the latest model served at the Pusher's target (serving
    base, model name, version, content digest; see components.baseline)."""
    from lstm_math.components.baseline import resolve_baseline

    return resolve_baseline(serving_base, model_name)


def baseline_identity(baseline: dict) -> dict:
    """What of the baseline a blessing depends on: the served model's version and content,
    not where it is served (see components.baseline.identity)."""
    from lstm_math.components.baseline import identity

    return identity(baseline)


def pushes_on_blessings(root: str) -> list[dict]:
    """What this pipeline root's Pusher pushed: ``{"evaluator": the blessing's Evaluator
    fingerprint, "judged_against": the baseline of that blessing, "pushed": the pushed
    version as a baseline}`` for each push."""
    found = []
    for _, artifact in store.list_artifacts(root, "Pusher"):
        p = artifact.properties
        judged = p.get("judged_against")
        if p.get("pushed") and judged and p.get("evaluator"):
            found.append({"evaluator": p["evaluator"], "judged_against": judged,
                          "pushed": {"serving_base": judged["serving_base"],
                                     "model_name": judged["model_name"],
                                     "version": p["version"], "digest": p["digest"]}})
    return found


def _evaluator(ctx: Context) -> dict:
    from lstm_math.components.evaluator import run_evaluator

    p = ctx.params
    result = run_evaluator(p.evaluator, ctx.inputs["Trainer"].properties["model_dir"],
                           ctx.inputs["ExampleGen"].properties["examples_dir"], ctx.output_dir,
                           split_fractions=p.split_fractions, jit_compile=p.jit_compile,
                           judged_against=ctx.resolved["baseline"])
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

    x = ctx.params.exporter
    return run_exporter(ctx.inputs["Trainer"].properties["model_dir"],
                        ctx.inputs["Evaluator"].uri, ctx.output_dir,
                        jit_compile=x.jit_compile, warmup_batch_sizes=x.warmup_batch_sizes)


def _infra_validator(ctx: Context) -> dict:
    from lstm_math.components.infra_validator import run_infra_validator

    exported = ctx.inputs["Exporter"].properties
    p = ctx.params
    return run_infra_validator(exported["saved_model"], Coverage.from_dict(exported["coverage"]),
                               p.threshold, ctx.output_dir, timeout_s=p.timeout_s,
                               num_canaries=p.num_canaries, max_latency_ms=p.max_latency_ms,
                               model_name=p.model_name)


def _pusher(ctx: Context) -> dict:
    from lstm_math.components.pusher import run_pusher

    p = ctx.params
    evaluator = ctx.inputs["Evaluator"]
    blessing = evaluator.properties["blessing"]
    # a version this very blessing pushed earlier (then the export changed) is no new baseline
    earlier = [x["pushed"] for x in pushes_on_blessings(p.pipeline_root)
               if evaluator.fingerprint and x["evaluator"] == evaluator.fingerprint]
    out = run_pusher(ctx.inputs["Exporter"].properties["saved_model"], blessing,
                     ctx.inputs["InfraValidator"].properties, ctx.resolved["serving_base"],
                     p.model_name, p.keep_versions, also_accept=earlier)
    return {**out, "evaluator": evaluator.fingerprint,
            "judged_against": blessing.get("judged_against")}


def _absolute(path: str) -> str:
    """A local path made absolute (the same setting run from another directory is another
    place); a URL as given."""
    return path if "://" in path else os.path.abspath(path)


# What a Tuner trial takes from ``trainer`` (components.tuner.TrialSettings' fields).
_TRIAL = ("model", "optimizer", "batch_size", "shuffle_buffer", "cache_dataset",
          "max_result_length", "seed")


def create_pipeline(config) -> Pipeline:
    return Pipeline(
        name=config.name,
        nodes=[
            Node("ExampleGen", _example_gen, (), config={"data": "task.data"},
                 runtime={"beam_args": "runtime.beam_args"}),
            Node("DataValidation", _data_validation, ("ExampleGen",)),
            Node("Tuner", _tuner, ("ExampleGen", "DataValidation"),
                 config={"tuner": "tuner", **{f: f"trainer.{f}" for f in _TRIAL}},
                 runtime={"strategy": "runtime.strategy"}),
            Node("Trainer", _trainer, ("ExampleGen", "Tuner"),
                 config={"trainer": "trainer", "shuffle_seed": "task.data.seed"},
                 runtime={"strategy": "runtime.strategy"},
                 resolvers={"warm_start": Resolver(warm_start_source,
                                                   {"path": "trainer.warm_start"},
                                                   identity=_digest_only, at_start=True)}),
            Node("Evaluator", _evaluator, ("ExampleGen", "Trainer"),
                 config={"evaluator": "evaluator", "jit_compile": "exporter.jit_compile",
                         "split_fractions": "task.data.split_fractions"},
                 resolvers={"baseline": Resolver(served_baseline, {
                     "serving_base": "pusher.serving_base",
                     "model_name": "pusher.model_name"}, identity=baseline_identity)}),
            Node("Exporter", _exporter, ("Trainer", "Evaluator"),
                 config={"exporter": "exporter"}),
            Node("InfraValidator", _infra_validator, ("Exporter",),
                 config={"threshold": "evaluator.threshold",
                         "num_canaries": "pusher.infra_canaries",
                         "max_latency_ms": "pusher.infra_max_latency_ms",
                         "model_name": "pusher.model_name"},
                 runtime={"timeout_s": "runtime.infra_validation_timeout_s"}),
            Node("Pusher", _pusher, ("Exporter", "Evaluator", "InfraValidator"),
                 config={"model_name": "pusher.model_name",
                         "keep_versions": "pusher.keep_versions"},
                 runtime={"pipeline_root": "runtime.pipeline_root"},
                 resolvers={"serving_base": Resolver(_absolute,
                                                     {"path": "pusher.serving_base"})}),
        ],
    )
