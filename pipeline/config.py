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

from components.equations import OPERATORS, max_equation_chars, max_result_chars
from components.models import MODEL_FAMILIES, ModelHParams

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


@dataclasses.dataclass
class TunerConfig:
    enabled: bool = True
    algorithm: str = "random"  # random, bayesian or hyperband
    max_trials: int = 3
    epochs: int = 1
    steps_per_trial_epoch: int = 250
    validation_steps: int = 20
    search_space: dict = dataclasses.field(
        default_factory=lambda: {"encoder_units": [64, 128], "decoder_units": [64, 128]}
    )
    seed: int = 7


@dataclasses.dataclass
class EvaluatorConfig:
    threshold: float = 0.999  # absolute bar on test exact match
    regression_margin: float = 0.001  # may be at most this much worse than the pushed model
    max_examples: int = 0  # 0 = the whole test split
    batch_size: int = 1024


@dataclasses.dataclass
class PusherConfig:
    model_name: str = "lstm_math"
    serving_base: str = "serving_models"
    keep_versions: int = 5


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
    pusher: PusherConfig = dataclasses.field(default_factory=PusherConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)

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

    tu = config.tuner
    _require(tu.algorithm in ("random", "bayesian", "hyperband"), "tuner.algorithm",
             "random, bayesian or hyperband")
    if tu.enabled:
        _require(tu.max_trials >= 1, "tuner.max_trials", "budget must be at least one trial")
        _require(tu.epochs >= 1, "tuner.epochs", "budget must be at least one epoch")
        _require(tu.steps_per_trial_epoch >= 1, "tuner.steps_per_trial_epoch", "must be positive")
        _require(len(tu.search_space) > 0, "tuner.search_space", "empty search space")
        known = {f.name for f in dataclasses.fields(ModelHParams)} - {"family"}
        for name, values in tu.search_space.items():
            _require(name in known, f"tuner.search_space.{name}",
                     f"unknown hyperparameter; known: {', '.join(sorted(known))}")
            _require(isinstance(values, list) and len(values) > 0,
                     f"tuner.search_space.{name}", "must be a non-empty list of choices")

    e = config.evaluator
    _require(0 <= e.threshold <= 1, "evaluator.threshold", "must be in [0, 1]")
    _require(e.regression_margin >= 0, "evaluator.regression_margin", "must be >= 0")
    p = config.pusher
    _require(bool(p.model_name) and "/" not in p.model_name, "pusher.model_name",
             "must be a non-empty name without '/'")
    _require(p.keep_versions >= 1, "pusher.keep_versions", "must be at least 1")
    _require(config.runtime.strategy in ("auto", "default", "mirrored", "multi_worker"),
             "runtime.strategy", "auto, default, mirrored or multi_worker")


def coverage_of(config: PipelineConfig) -> dict:
    """What a model trained on this config covers: the serving validation contract."""
    d = config.task.data
    return {
        "operators": list(d.operators),
        "operand_min": d.operand_min,
        "operand_max": d.operand_max,
        "num_operands": d.num_operands,
        "max_input_length": max_equation_chars(d.operand_max, d.num_operands),
        "max_result_length": max_result_chars(d.operators, d.operand_min, d.operand_max,
                                              d.num_operands),
        "reverse_output": config.trainer.model.reverse_output,
    }


def fingerprint_dict(data: Any) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
