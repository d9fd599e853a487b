"""Nested dataclass configs (task / trainer / tuner / evaluator / pusher / runtime).

A config comes from a named preset (``pipeline/configs/<name>.yaml``) or a YAML file, then
``--set key=value`` overrides with dotted keys (``trainer.epochs=3``). Every field is type
checked and validated; a bad config fails fast with a ConfigError naming the field.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from typing import Any

import yaml

from serving.contract import DEFAULT_MODEL_NAME

from components.equations import OPERATORS, max_equation_chars, max_result_chars
from components.models import MODEL_FAMILIES, ModelHParams, output_format_of
from pipeline.cluster_config import ClusterConfig, validate_cluster

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


class ConfigError(ValueError):
    """A config value that is missing, of the wrong type or inconsistent; names the field."""


@dataclasses.dataclass
class DataConfig:
    operators: list = dataclasses.field(default_factory=lambda: ["+"])
    num_operands: int = 2
    operand_min: int = 0
    operand_max: int = 999
    num_examples: int = 200_000
    exhaustive: bool = False  # enumerate the whole space instead of num_examples draws
    seed: int = 42
    split_fractions: dict = dataclasses.field(
        default_factory=lambda: {"train": 0.7, "validation": 0.1, "test": 0.2}
    )
    num_shards: int = 4
    compression: str = "GZIP"  # GZIP or NONE
    # uniform: every equation of the space equally likely; stratified: draws shared equally
    # over (operator combination, operand digit lengths) strata. Ignored when exhaustive.
    sampling: str = "uniform"


@dataclasses.dataclass
class TaskConfig:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)


@dataclasses.dataclass
class TrainerConfig:
    model: ModelHParams = dataclasses.field(default_factory=ModelHParams)
    epochs: int = 10
    batch_size: int = 256  # global batch size, split over the replicas
    lr_schedule: str = "cosine"  # cosine or constant
    shuffle_buffer: int = 50_000
    steps_per_epoch: int = 0  # 0 = one pass over the training split
    validation_steps: int = 0  # 0 = the whole validation split
    cache_dataset: bool = True
    early_stopping_patience: int = 0  # stop after this many epochs without val exact-match gain; 0 = off
    max_result_length: int = 0  # answer characters the model emits; 0 = derived from task.data
    steps_per_loop: int = 20  # training steps per tf.function call (fewer Python round trips)
    sample_predictions: int = 8  # validation equations decoded into TensorBoard each epoch
    progress_every_s: float = 30.0  # progress line within an epoch at most this often
    # Seeds Python, NumPy and TF (keras.utils.set_random_seed) before the model is built:
    # the same seed gives the same initial weights (and the same ones for every tuner trial).
    # null = unseeded.
    seed: int | None = None


@dataclasses.dataclass
class TunerConfig:
    enabled: bool = True  # false: the Trainer trains trainer.model as configured
    algorithm: str = "random"  # random, bayesian or hyperband
    # Budget: at most max_trials trials of `epochs` epochs (hyperband: its max_epochs) of
    # steps_per_trial_epoch steps; no trial starts after max_seconds (null = no time limit).
    max_trials: int = 3
    epochs: int = 1
    steps_per_trial_epoch: int = 250
    validation_steps: int = 20  # 0 = the whole validation split
    max_seconds: int | None = None
    # trainer.model field -> list of choices, or a range {min, max, step?, sampling?}
    # (sampling: linear, log or reverse_log) for the numeric ones.
    search_space: dict = dataclasses.field(
        default_factory=lambda: {"encoder_units": [64, 128], "decoder_units": [64, 128]}
    )
    seed: int = 7
    hyperband_factor: int = 3
    hyperband_iterations: int = 1


@dataclasses.dataclass
class EvaluatorConfig:
    threshold: float = 0.999  # absolute bar on test exact match
    regression_margin: float = 0.001  # may be at most this much worse than the pushed model
    max_examples: int = 0  # 0 = the whole test split
    batch_size: int = 1024
    num_worst_errors: int = 20  # how many of the worst errors metrics.json lists
    # Evaluate every equation of the operand space when it has at most this many
    # (10^6 = all of 0..999 addition); 0 = never.
    exhaustive_max_equations: int = 1_000_000
    exhaustive_batch_size: int = 4096


@dataclasses.dataclass
class ExporterConfig:
    # XLA-compile the decoder inside serving_default (~2x the CPU throughput; real TF Serving
    # then needs --xla_cpu_compilation_enabled=true, which serving/deploy passes).
    jit_compile: bool = True
    # Batch sizes written as TF Serving warm-up requests (assets.extra/
    # tf_serving_warmup_requests): replayed at load by TF Serving and `lstm-math serve`, so
    # no client pays a first-call XLA compilation. [] = no warm-up file.
    warmup_batch_sizes: list = dataclasses.field(
        default_factory=lambda: [2 ** k for k in range(11)])


@dataclasses.dataclass
class PusherConfig:
    model_name: str = DEFAULT_MODEL_NAME
    serving_base: str = "serving_models"
    keep_versions: int = 5
    infra_canaries: int = 24  # canary equations with known answers sent by the InfraValidator
    infra_max_latency_ms: float = 2000.0  # single-request p50 bound checked before a push


@dataclasses.dataclass
class RuntimeConfig:
    pipeline_root: str = "artifacts"
    strategy: str = "auto"  # auto, default, mirrored or multi_worker
    beam_args: list = dataclasses.field(default_factory=list)
    infra_validation_timeout_s: int = 300


@dataclasses.dataclass
class PipelineConfig:
    name: str = "lstm_math"
    task: TaskConfig = dataclasses.field(default_factory=TaskConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    tuner: TunerConfig = dataclasses.field(default_factory=TunerConfig)
    evaluator: EvaluatorConfig = dataclasses.field(default_factory=EvaluatorConfig)
    exporter: ExporterConfig = dataclasses.field(default_factory=ExporterConfig)
    pusher: PusherConfig = dataclasses.field(default_factory=PusherConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)
    cluster: ClusterConfig = dataclasses.field(default_factory=ClusterConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# --------------------------------------------------------------------------------------
# Building from dicts with type checks.


def _check_type(path: str, value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation) or annotation
    if annotation in ("int", int) or origin is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if annotation in ("float", float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if annotation in ("bool", bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if annotation in ("str", str):
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    if annotation in ("list", list):
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return value
    if annotation in ("dict", dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return value
    return value


def _build(cls, data: dict, path: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        field_path = f"{path}.{key}" if path else key
        if key not in fields:
            raise ConfigError(
                f"{field_path}: unknown field; known fields: {', '.join(sorted(fields))}"
            )
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, field_path)
        else:
            kwargs[key] = _check_type(field_path, value, hint)
    return cls(**kwargs)


def _deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in (
            "split_fractions",
            "search_space",
        ):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. trainer.epochs=3")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"{key}: cannot parse value {raw!r}: {e}") from e
    return key, value


def _load_yaml(name_or_path: str) -> dict:
    if os.path.exists(name_or_path):
        path = name_or_path
    else:
        path = os.path.join(CONFIG_DIR, f"{name_or_path}.yaml")
        if not os.path.exists(path):
            presets = sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml"))
            raise ConfigError(
                f"--config {name_or_path!r}: no such file and no such preset; "
                f"presets: {', '.join(presets)}"
            )
    with open(path) as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    base = data.pop("base", None)
    if base:
        data = _deep_merge(_load_yaml(base), data)
    return data


def load_config(name_or_path: str = "default", overrides: list[str] | None = None) -> PipelineConfig:
    data = _load_yaml(name_or_path)
    for text in overrides or []:
        key, value = parse_override(text)
        _set_dotted(data, key, value)
    config = _build(PipelineConfig, data, "")
    validate(config)
    return config


def from_dict(data: dict) -> PipelineConfig:
    config = _build(PipelineConfig, data, "")
    validate(config)
    return config


# --------------------------------------------------------------------------------------
# Semantic validation.


def _require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{field}: {message}")


def validate(config: PipelineConfig) -> None:
    d = config.task.data
    _require(len(d.operators) > 0, "task.data.operators", "at least one operator is needed")
    for op in d.operators:
        _require(op in OPERATORS, "task.data.operators", f"unknown operator {op!r}; use + - * /")
    _require(len(set(d.operators)) == len(d.operators), "task.data.operators", "duplicates")
    _require(d.num_operands >= 2, "task.data.num_operands", "must be at least 2")
    _require(d.operand_min >= 0, "task.data.operand_min", "operands are non-negative")
    _require(d.operand_max >= d.operand_min, "task.data.operand_max", "must be >= operand_min")
    _require(
        not (d.operators == ["/"] and d.operand_max < 1),
        "task.data.operand_max",
        "division needs a divisor > 0",
    )
    _require(d.num_examples >= 1, "task.data.num_examples", "must be positive")
    _require(d.num_shards >= 1, "task.data.num_shards", "must be positive")
    _require(d.compression in ("GZIP", "NONE"), "task.data.compression", "GZIP or NONE")
    from components.equations import MAX_EXHAUSTIVE, SAMPLING_SCHEMES, EquationSpace

    _require(d.sampling in SAMPLING_SCHEMES, "task.data.sampling",
             f"unknown scheme {d.sampling!r}; use {' or '.join(SAMPLING_SCHEMES)}")
    _require(isinstance(d.seed, int) and 0 <= d.seed < 2**63, "task.data.seed",
             "must be an integer in [0, 2**63)")
    _require(len(set(d.operators)) ** (d.num_operands - 1) <= 65536, "task.data.num_operands",
             "too many operator combinations (operators ** (num_operands - 1) > 65536)")
    if d.operand_max >= d.operand_min >= 0 and d.num_operands >= 2 and d.operators and set(
            d.operators) <= set(OPERATORS):
        size = EquationSpace(tuple(d.operators), d.operand_min, d.operand_max,
                             d.num_operands).size
        _require(size < 2**63, "task.data.operand_max",
                 f"the equation space has {size} equations; at most 2**63 are supported")
        if d.exhaustive:
            _require(size <= MAX_EXHAUSTIVE, "task.data.exhaustive",
                     f"the space has {size} equations, more than {MAX_EXHAUSTIVE} to enumerate; "
                     "use num_examples instead")
    fr = d.split_fractions
    _require(
        set(fr) == {"train", "validation", "test"},
        "task.data.split_fractions",
        "needs exactly train, validation and test",
    )
    for k, v in fr.items():
        _require(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1,
            f"task.data.split_fractions.{k}",
            f"must be a number in (0, 1), got {v!r}",
        )
    _require(abs(sum(fr.values()) - 1.0) < 1e-6, "task.data.split_fractions", "must sum to 1")

    m = config.trainer.model
    _require(m.family in MODEL_FAMILIES, "trainer.model.family",
             f"unknown family {m.family!r}; choose from {', '.join(MODEL_FAMILIES)}")
    for name in ("embedding_dim", "encoder_units", "decoder_units", "encoder_layers"):
        _require(getattr(m, name) >= 1, f"trainer.model.{name}", "must be positive")
    _require(0 <= m.dropout < 1, "trainer.model.dropout", "must be in [0, 1)")
    _require(m.learning_rate > 0, "trainer.model.learning_rate", "must be positive")
    t = config.trainer
    _require(t.epochs >= 1, "trainer.epochs", "must be positive")
    _require(t.batch_size >= 1, "trainer.batch_size", "must be positive")
    _require(t.lr_schedule in ("cosine", "constant"), "trainer.lr_schedule", "cosine or constant")
    _require(t.steps_per_epoch >= 0, "trainer.steps_per_epoch", "must be >= 0")
    _require(t.validation_steps >= 0, "trainer.validation_steps", "must be >= 0")
    _require(t.shuffle_buffer >= 0, "trainer.shuffle_buffer", "must be >= 0 (0 = no shuffling)")
    _require(t.early_stopping_patience >= 0, "trainer.early_stopping_patience",
             "must be >= 0 (0 = off)")
    _require(t.steps_per_loop >= 1, "trainer.steps_per_loop", "must be positive")
    _require(t.sample_predictions >= 0, "trainer.sample_predictions", "must be >= 0")
    _require(t.seed is None or (isinstance(t.seed, int) and not isinstance(t.seed, bool)
                                and 0 <= t.seed < 2**32), "trainer.seed",
             f"an integer in [0, 2**32) or null (unseeded), got {t.seed!r}")
    needed = max_result_chars(d.operators, d.operand_min, d.operand_max, d.num_operands)
    _require(t.max_result_length == 0 or t.max_result_length >= needed,
             "trainer.max_result_length",
             f"{t.max_result_length} characters cannot hold every answer of task.data "
             f"(operators {' '.join(d.operators)}, operands {d.operand_min}..{d.operand_max}: "
             f"up to {needed} characters); raise it or use 0 to derive it")
    _require(t.max_result_length >= 0, "trainer.max_result_length", "must be >= 0 (0 = derived)")
    _require(not (m.family == "seed" and m.reverse_output), "trainer.model.reverse_output",
             "the seed model emits the post's right-aligned answer, not a reversed one; "
             "set it to false")

    x = config.exporter
    _require(isinstance(x.jit_compile, bool), "exporter.jit_compile",
             f"true or false, got {x.jit_compile!r}")
    _require(isinstance(x.warmup_batch_sizes, list) and all(
        isinstance(b, int) and not isinstance(b, bool) and 1 <= b <= 4096
        for b in x.warmup_batch_sizes), "exporter.warmup_batch_sizes",
        f"a list of batch sizes in 1..4096 ([] = no warm-up), got {x.warmup_batch_sizes!r}")

    tu = config.tuner
    _require(tu.algorithm in ("random", "bayesian", "hyperband"), "tuner.algorithm",
             "random, bayesian or hyperband")
    if tu.enabled:
        _require(tu.max_trials >= 1, "tuner.max_trials", "budget must be at least one trial")
        _require(tu.epochs >= 1, "tuner.epochs", "budget must be at least one epoch")
        _require(tu.steps_per_trial_epoch >= 1, "tuner.steps_per_trial_epoch", "must be positive")
        _require(tu.validation_steps >= 0, "tuner.validation_steps", "must be >= 0 (0 = all)")
        _require(tu.max_seconds is None or (
            isinstance(tu.max_seconds, (int, float)) and not isinstance(tu.max_seconds, bool)
            and tu.max_seconds > 0), "tuner.max_seconds",
            f"time budget must be a positive number of seconds (null = no limit), "
            f"got {tu.max_seconds!r}")
        if tu.algorithm == "hyperband":
            _require(tu.epochs >= 2, "tuner.epochs",
                     "hyperband needs at least 2 epochs (its max_epochs) to cut trials short")
            _require(tu.hyperband_factor >= 2, "tuner.hyperband_factor", "must be at least 2")
            _require(tu.hyperband_iterations >= 1, "tuner.hyperband_iterations",
                     "must be at least 1")
        _require(len(tu.search_space) > 0, "tuner.search_space", "empty search space")
        hints = typing.get_type_hints(ModelHParams)
        kinds = {f.name: hints[f.name] for f in dataclasses.fields(ModelHParams)
                 if hints[f.name] in (int, float, bool)}
        checks = {"learning_rate": (lambda v: v > 0, "must be positive"),
                  "dropout": (lambda v: 0 <= v < 1, "must be in [0, 1)")}

        def is_num(v, kind):
            ok = isinstance(v, (int, float)) if kind is float else isinstance(v, int)
            return ok and not isinstance(v, bool)

        for name, spec in tu.search_space.items():
            field = f"tuner.search_space.{name}"
            _require(name in kinds, field,
                     f"unknown hyperparameter; known: {', '.join(sorted(kinds))}")
            kind = kinds[name]
            ok, what = checks.get(name, (lambda v: v >= 1, "must be at least 1"))
            if isinstance(spec, dict):
                _require(kind is not bool, field, "a range needs a numeric hyperparameter; "
                                                  "list the choices instead")
                _require(set(spec) <= {"min", "max", "step", "sampling"} and {"min", "max"}
                         <= set(spec), field, "a range is {min, max, step?, sampling?}")
                lo, hi = spec["min"], spec["max"]
                _require(is_num(lo, kind) and is_num(hi, kind), field,
                         f"min and max must be {kind.__name__}s")
                _require(ok(lo) and ok(hi), field, f"values {what}")
                _require(lo < hi, field, "min must be less than max")
                _require(spec.get("sampling", "linear") in ("linear", "log", "reverse_log"),
                         field, "sampling: linear, log or reverse_log")
                _require(spec.get("step") is None or (is_num(spec["step"], kind)
                                                      and spec["step"] > 0),
                         field, "step must be a positive number")
                continue
            _require(isinstance(spec, list) and len(spec) > 0, field,
                     "must be a non-empty list of choices or a range {min, max}")
            for v in spec:
                if kind is bool:
                    _require(isinstance(v, bool), field, f"choices must be true or false, got {v!r}")
                else:
                    _require(is_num(v, kind), field,
                             f"choices must be {kind.__name__}s, got {v!r}")
                    _require(ok(v), field, f"choice {v!r} {what}")
            _require(len(set(spec)) == len(spec), field, "duplicate choices")

    e = config.evaluator
    _require(0 <= e.threshold <= 1, "evaluator.threshold", "must be in [0, 1]")
    _require(e.regression_margin >= 0, "evaluator.regression_margin", "must be >= 0")
    _require(e.max_examples >= 0, "evaluator.max_examples", "must be >= 0 (0 = all)")
    _require(e.batch_size >= 1, "evaluator.batch_size", "must be positive")
    _require(e.num_worst_errors >= 0, "evaluator.num_worst_errors", "must be >= 0")
    _require(e.exhaustive_max_equations >= 0, "evaluator.exhaustive_max_equations",
             "must be >= 0 (0 = never)")
    _require(e.exhaustive_batch_size >= 1, "evaluator.exhaustive_batch_size", "must be positive")
    p = config.pusher
    _require(bool(p.model_name) and "/" not in p.model_name, "pusher.model_name",
             "must be a non-empty name without '/'")
    _require(p.keep_versions >= 1, "pusher.keep_versions", "must be at least 1")
    _require(p.infra_canaries >= 1, "pusher.infra_canaries", "must be at least 1")
    _require(p.infra_max_latency_ms > 0, "pusher.infra_max_latency_ms", "must be positive")
    _require(config.runtime.strategy in ("auto", "default", "mirrored", "multi_worker"),
             "runtime.strategy", "auto, default, mirrored or multi_worker")
    validate_cluster(config.cluster, _require)


def coverage_of(config: PipelineConfig) -> dict:
    """What a model trained on this config covers: the serving validation contract."""
    d = config.task.data
    return {
        "operators": list(d.operators),
        "operand_min": d.operand_min,
        "operand_max": d.operand_max,
        "num_operands": d.num_operands,
        "max_input_length": max_equation_chars(d.operand_max, d.num_operands),
        "max_result_length": config.trainer.max_result_length or max_result_chars(
            d.operators, d.operand_min, d.operand_max, d.num_operands),
        "reverse_output": config.trainer.model.reverse_output,
        "output_format": output_format_of(config.trainer.model.family),
    }


def fingerprint_dict(data: Any) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
