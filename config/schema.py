"""The config schema: nested dataclasses, one per section, each validating itself.

A leaf: it imports no component, only the task's arithmetic (``lstm_math.components.equations``,
stdlib + numpy) to check that a task is well formed, and the serving contract's model
name. Every error names the dotted field (``trainer.optimizer.learning_rate: ...``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from typing import Any

import yaml

from lstm_math.config.cluster import ClusterConfig, validate_cluster
from lstm_math.config.coverage import MODEL_FAMILIES, Coverage, output_format_of
from lstm_math.components import answer_formats
from lstm_math.components.equations import OPERATOR_TAGS, OPERATORS, max_result_chars
from lstm_math.components.sampling import MAX_EXHAUSTIVE, SAMPLING_SCHEMES, EquationSpace
from lstm_math.serving.contract import DEFAULT_MODEL_NAME

# Gradient clipping of each model family when ``trainer.optimizer.clipnorm`` is null.
FAMILY_CLIPNORM = {"attention": 1.0, "seed": None}
LR_SCHEDULES = ("cosine", "constant")


def runtime_field(default):
    """A field that says how a step runs, not what it computes (a progress interval, a
    timeout): a node that reads it gets it, but it is left out of the node's fingerprint,
    so changing it reuses the cached artifact (``fingerprint_value``)."""
    return dataclasses.field(default=default, metadata={"fingerprint": False})


def fingerprinted(f: dataclasses.Field) -> bool:
    return f.metadata.get("fingerprint", True)


def fingerprint_value(value):
    """What of a config value goes into a fingerprint: a section as a mapping without its
    runtime fields (``runtime_field``), recursively; anything else as it is."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: fingerprint_value(getattr(value, f.name))
                for f in dataclasses.fields(value) if fingerprinted(f)}
    return value


class ConfigError(ValueError):
    """A config value that is missing, of the wrong type or inconsistent; names the field."""


def require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{field}: {message}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# --------------------------------------------------------------------------------------
# task


@dataclasses.dataclass(frozen=True)
class DataConfig:
    operators: list = dataclasses.field(default_factory=lambda: ["+"])
    num_operands: int = 2
    # Fewest operands per equation: one model answers every count from min_operands to
    # num_operands ('7 * 6' and '131 + 83 * 33'). null = num_operands (one count).
    min_operands: int | None = None
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
    # What the model writes for each operator tag ('+' '-' '*' '/' 'mixed'; tags not named:
    # direct, the answer itself), components.answer_formats: e.g. {"*": "running_sums"}
    # (a * b's digit-pair products summed column by column, then the answer read from
    # them), {"mixed": "reduce_first"} (each reduction's value, then the answer).
    answer_format: dict = dataclasses.field(default_factory=dict)

    def validate(self, path: str = "task.data") -> None:
        d = self
        require(len(d.operators) > 0, f"{path}.operators", "at least one operator is needed")
        for op in d.operators:
            require(op in OPERATORS, f"{path}.operators", f"unknown operator {op!r}; use + - * /")
        require(len(set(d.operators)) == len(d.operators), f"{path}.operators", "duplicates")
        require(d.num_operands >= 2, f"{path}.num_operands", "must be at least 2")
        require(d.min_operands is None or (
            _is_int(d.min_operands) and 2 <= d.min_operands <= d.num_operands),
            f"{path}.min_operands", f"an integer from 2 to num_operands ({d.num_operands}), "
            f"or null (= num_operands), got {d.min_operands!r}")
        require(d.operand_min >= 0, f"{path}.operand_min", "operands are non-negative")
        require(d.operand_max >= d.operand_min, f"{path}.operand_max", "must be >= operand_min")
        require(not (d.operators == ["/"] and d.operand_max < 1), f"{path}.operand_max",
                "division needs a divisor > 0")
        require(d.num_examples >= 1, f"{path}.num_examples", "must be positive")
        require(d.num_shards >= 1, f"{path}.num_shards", "must be positive")
        require(d.compression in ("GZIP", "NONE"), f"{path}.compression", "GZIP or NONE")
        require(d.sampling in SAMPLING_SCHEMES, f"{path}.sampling",
                f"unknown scheme {d.sampling!r}; use {' or '.join(SAMPLING_SCHEMES)}")
        require(_is_int(d.seed) and 0 <= d.seed < 2**63, f"{path}.seed",
                "must be an integer in [0, 2**63)")
        require(len(set(d.operators)) ** (d.num_operands - 1) <= 65536, f"{path}.num_operands",
                "too many operator combinations (operators ** (num_operands - 1) > 65536)")
        size = d.space().size
        require(size < 2**63, f"{path}.operand_max",
                f"the equation space has {size} equations; at most 2**63 are supported")
        if d.exhaustive:
            require(size <= MAX_EXHAUSTIVE, f"{path}.exhaustive",
                    f"the space has {size} equations, more than {MAX_EXHAUSTIVE} to enumerate; "
                    "use num_examples instead")
        fr = d.split_fractions
        require(set(fr) == {"train", "validation", "test"}, f"{path}.split_fractions",
                "needs exactly train, validation and test")
        for k, v in fr.items():
            require(_is_number(v) and 0 < v < 1, f"{path}.split_fractions.{k}",
                    f"must be a number in (0, 1), got {v!r}")
        require(abs(sum(fr.values()) - 1.0) < 1e-6, f"{path}.split_fractions", "must sum to 1")
        require(isinstance(d.answer_format, dict), f"{path}.answer_format",
                f"a mapping of operator tag to format, e.g. {{'*': 'running_sums'}}, got "
                f"{d.answer_format!r}")
        held = EquationSpace(tuple(d.operators), d.operand_min, d.operand_max, d.num_operands,
                             d.min_operands).operator_tags
        for tag, fmt in d.answer_format.items():
            require(tag in held, f"{path}.answer_format",
                    f"{tag!r} is not an operator tag of this task (it has {', '.join(held)})")
            require(fmt in answer_formats.FORMATS, f"{path}.answer_format.{tag}",
                    f"unknown format {fmt!r}; choose from {', '.join(answer_formats.FORMATS)}")
            require(answer_formats.applies(fmt, tag), f"{path}.answer_format.{tag}",
                    f"{fmt!r} cannot answer {tag!r} (it answers "
                    f"{', '.join(answer_formats.FORMAT_TAGS[fmt])})")

    def max_result_chars(self) -> int:
        """Characters of the longest answer of the task (its working not included)."""
        low = self.num_operands if self.min_operands is None else self.min_operands
        return max_result_chars(self.operators, self.operand_min, self.operand_max,
                                self.num_operands, low)

    def space(self) -> EquationSpace:
        """Every equation of the task."""
        return Coverage.of_data(self).space()

    def max_target_chars(self) -> int:
        """Decoder tokens (before END) every answer, or working, of the task fits in."""
        return Coverage.of_data(self).max_result_length


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)

    def validate(self, path: str = "task") -> None:
        self.data.validate(f"{path}.data")


# --------------------------------------------------------------------------------------
# trainer


@dataclasses.dataclass(frozen=True)
class ModelHParams:
    """The model's hyperparameters (``trainer.model.*``); a tuner may search the numeric
    and boolean ones."""

    family: str = "attention"
    embedding_dim: int = 32
    encoder_units: int = 128
    decoder_units: int = 128
    encoder_layers: int = 1
    dropout: float = 0.0
    attention: bool = True
    # Heads of the decoder's dot-product attention, each over its own slice of the encoder
    # outputs (2 x encoder_units must divide evenly): with one head the first answer digit
    # can look at only one operand's units digit at a time.
    attention_heads: int = 1
    reverse_output: bool = True
    # Operands zero-padded to the widest operand's digits before the encoder ('12*345' ->
    # '012*345'): digit k of every operand is always at the same input position.
    pad_operands: bool = False
    # A learned embedding of the decoder step index added to each decoder input: a fixed-
    # layout working (running_sums) knows which digit pair each step needs.
    step_embedding: bool = False

    def validate(self, path: str = "trainer.model") -> None:
        require(self.family in MODEL_FAMILIES, f"{path}.family",
                f"unknown family {self.family!r}; choose from {', '.join(MODEL_FAMILIES)}")
        for name in ("embedding_dim", "encoder_units", "decoder_units", "encoder_layers",
                     "attention_heads"):
            require(getattr(self, name) >= 1, f"{path}.{name}", "must be positive")
        require(self.family != "attention" or not self.attention
                or (2 * self.encoder_units) % self.attention_heads == 0,
                f"{path}.attention_heads", f"must divide 2 x encoder_units "
                f"({2 * self.encoder_units}): each head attends over an equal slice")
        require(0 <= self.dropout < 1, f"{path}.dropout", "must be in [0, 1)")
        require(not (self.family == "seed" and self.reverse_output), f"{path}.reverse_output",
                "the seed model emits the post's right-aligned answer, not a reversed one; "
                "set it to false")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Adam with its learning-rate schedule and gradient clipping, as one object."""

    learning_rate: float = 3e-3  # the peak rate (after warm-up)
    schedule: str = "cosine"  # cosine (decays to 2% over the run) or constant
    warmup_steps: int = 0  # linear warm-up from 0 to learning_rate over this many steps
    # Clip each gradient's global norm to this; null = the family's default (attention 1.0,
    # seed none, as the post), 0 = no clipping.
    clipnorm: float | None = None

    def validate(self, path: str = "trainer.optimizer") -> None:
        require(self.learning_rate > 0, f"{path}.learning_rate", "must be positive")
        require(self.schedule in LR_SCHEDULES, f"{path}.schedule", " or ".join(LR_SCHEDULES))
        require(self.warmup_steps >= 0, f"{path}.warmup_steps", "must be >= 0 (0 = none)")
        require(self.clipnorm is None or self.clipnorm >= 0, f"{path}.clipnorm",
                "must be >= 0 (0 = no clipping) or null (the model family's default)")

    def clipnorm_for(self, family: str) -> float | None:
        """The clip norm in effect for a model family (None = no clipping)."""
        if self.clipnorm is None:
            return FAMILY_CLIPNORM.get(family)
        return self.clipnorm or None


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    model: ModelHParams = dataclasses.field(default_factory=ModelHParams)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    epochs: int = 10
    batch_size: int = 256  # global batch size, split over the replicas
    shuffle_buffer: int = 50_000
    steps_per_epoch: int = 0  # 0 = one pass over the training split
    validation_steps: int = 0  # 0 = the whole validation split
    cache_dataset: bool = True
    early_stopping_patience: int = 0  # stop after this many epochs without val exact-match gain; 0 = off
    max_result_length: int = 0  # answer characters the model emits; 0 = derived from task.data
    steps_per_loop: int = 20  # training steps per tf.function call (fewer Python round trips)
    sample_predictions: int = 8  # validation equations decoded into TensorBoard each epoch
    # A progress line within an epoch at most this often (how it runs: no retraining).
    progress_every_s: float = runtime_field(30.0)
    # Share of each training batch drawn again (with repetition) from the training
    # equations of at most short_max_chars characters, whitespace removed ('4+9' is 3):
    # short operands are a sliver of any sample (the 100 single-digit sums of 0..999 are
    # 0.01% of the space) and the model sees them too rarely to learn them. 0 = off.
    short_share: float = 0.0
    short_max_chars: int = 5
    # Seeds Python, NumPy and TF (keras.utils.set_random_seed) before the model is built:
    # the same seed gives the same initial weights (and the same ones for every tuner trial).
    # null = unseeded.
    seed: int | None = None

    def validate(self, path: str = "trainer") -> None:
        self.model.validate(f"{path}.model")
        self.optimizer.validate(f"{path}.optimizer")
        require(self.epochs >= 1, f"{path}.epochs", "must be positive")
        require(self.batch_size >= 1, f"{path}.batch_size", "must be positive")
        require(self.steps_per_epoch >= 0, f"{path}.steps_per_epoch", "must be >= 0")
        require(self.validation_steps >= 0, f"{path}.validation_steps", "must be >= 0")
        require(self.shuffle_buffer >= 0, f"{path}.shuffle_buffer",
                "must be >= 0 (0 = no shuffling)")
        require(self.early_stopping_patience >= 0, f"{path}.early_stopping_patience",
                "must be >= 0 (0 = off)")
        require(self.steps_per_loop >= 1, f"{path}.steps_per_loop", "must be positive")
        require(self.sample_predictions >= 0, f"{path}.sample_predictions", "must be >= 0")
        require(self.seed is None or (_is_int(self.seed) and 0 <= self.seed < 2**32),
                f"{path}.seed", f"an integer in [0, 2**32) or null (unseeded), got {self.seed!r}")
        require(self.max_result_length >= 0, f"{path}.max_result_length",
                "must be >= 0 (0 = derived)")
        require(0.0 <= self.short_share < 1.0, f"{path}.short_share",
                f"a fraction in [0, 1) (0 = off), got {self.short_share!r}")
        require(_is_int(self.short_max_chars) and self.short_max_chars >= 3,
                f"{path}.short_max_chars",
                f"an integer >= 3 (the shortest equation, '1+2'), got {self.short_max_chars!r}")

    def validate_against(self, data: DataConfig, path: str = "trainer") -> None:
        needed = data.max_target_chars()
        require(self.max_result_length == 0 or self.max_result_length >= needed,
                f"{path}.max_result_length",
                f"{self.max_result_length} characters cannot hold every answer of task.data "
                f"(operators {' '.join(data.operators)}, operands {data.operand_min}.."
                f"{data.operand_max}: up to {needed} characters"
                + (", working included" if needed > data.max_result_chars() else "")
                + "); raise it or use 0 to derive it")
        worked = {t: f for t, f in data.answer_format.items() if f != answer_formats.DIRECT}
        require(not worked or output_format_of(self.model.family) == "left",
                "task.data.answer_format",
                f"{self.model.family!r} models answer all at once and cannot write a working "
                f"({worked}); use trainer.model.family 'attention'")


# --------------------------------------------------------------------------------------
# tuner


def searchable_fields() -> dict:
    """Search-space names -> (trainer section, kind): the numeric and boolean fields of
    ``trainer.model`` and ``trainer.optimizer`` (their names do not overlap)."""
    out = {}
    for section, cls in (("model", ModelHParams), ("optimizer", OptimizerConfig)):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if hints[f.name] in (int, float, bool):
                assert f.name not in out, f"search-space name {f.name} in two sections"
                out[f.name] = (section, hints[f.name])
    return out


_SEARCH_CHECKS = {"learning_rate": (lambda v: v > 0, "must be positive"),
                  "dropout": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
                  "warmup_steps": (lambda v: v >= 0, "must be >= 0")}


def _validate_search_entry(field: str, name: str, spec, kind) -> None:
    ok, what = _SEARCH_CHECKS.get(name, (lambda v: v >= 1, "must be at least 1"))

    def is_kind(v):
        return _is_number(v) if kind is float else _is_int(v)

    if isinstance(spec, dict):
        require(kind is not bool, field, "a range needs a numeric hyperparameter; "
                                         "list the choices instead")
        require(set(spec) <= {"min", "max", "step", "sampling"} and {"min", "max"} <= set(spec),
                field, "a range is {min, max, step?, sampling?}")
        lo, hi = spec["min"], spec["max"]
        require(is_kind(lo) and is_kind(hi), field, f"min and max must be {kind.__name__}s")
        require(ok(lo) and ok(hi), field, f"values {what}")
        require(lo < hi, field, "min must be less than max")
        require(spec.get("sampling", "linear") in ("linear", "log", "reverse_log"), field,
                "sampling: linear, log or reverse_log")
        require(spec.get("step") is None or (is_kind(spec["step"]) and spec["step"] > 0), field,
                "step must be a positive number")
        return
    require(isinstance(spec, list) and len(spec) > 0, field,
            "must be a non-empty list of choices or a range {min, max}")
    for v in spec:
        if kind is bool:
            require(isinstance(v, bool), field, f"choices must be true or false, got {v!r}")
        else:
            require(is_kind(v), field, f"choices must be {kind.__name__}s, got {v!r}")
            require(ok(v), field, f"choice {v!r} {what}")
    require(len(set(spec)) == len(spec), field, "duplicate choices")


ALGORITHMS = ("random", "bayesian", "hyperband")


@dataclasses.dataclass(frozen=True)
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
    # trainer.model or trainer.optimizer field -> list of choices, or a range
    # {min, max, step?, sampling?} (sampling: linear, log or reverse_log) for numeric ones.
    search_space: dict = dataclasses.field(
        default_factory=lambda: {"encoder_units": [64, 128], "decoder_units": [64, 128]}
    )
    seed: int = 7
    hyperband_factor: int = 3
    hyperband_iterations: int = 1

    def validate(self, path: str = "tuner") -> None:
        require(self.algorithm in ALGORITHMS, f"{path}.algorithm", "random, bayesian or hyperband")
        if not self.enabled:
            return  # a disabled tuner's budget does not matter
        require(self.max_trials >= 1, f"{path}.max_trials", "budget must be at least one trial")
        require(self.epochs >= 1, f"{path}.epochs", "budget must be at least one epoch")
        require(self.steps_per_trial_epoch >= 1, f"{path}.steps_per_trial_epoch",
                "must be positive")
        require(self.validation_steps >= 0, f"{path}.validation_steps", "must be >= 0 (0 = all)")
        require(self.max_seconds is None or (_is_number(self.max_seconds)
                                             and self.max_seconds > 0), f"{path}.max_seconds",
                f"time budget must be a positive number of seconds (null = no limit), "
                f"got {self.max_seconds!r}")
        if self.algorithm == "hyperband":
            require(self.epochs >= 2, f"{path}.epochs",
                    "hyperband needs at least 2 epochs (its max_epochs) to cut trials short")
            require(self.hyperband_factor >= 2, f"{path}.hyperband_factor", "must be at least 2")
            require(self.hyperband_iterations >= 1, f"{path}.hyperband_iterations",
                    "must be at least 1")
        require(len(self.search_space) > 0, f"{path}.search_space", "empty search space")
        fields = searchable_fields()
        for name, spec in self.search_space.items():
            field = f"{path}.search_space.{name}"
            require(name in fields, field,
                    f"unknown hyperparameter; known: {', '.join(sorted(fields))}")
            _validate_search_entry(field, name, spec, fields[name][1])


# --------------------------------------------------------------------------------------
# evaluator, exporter, pusher, runtime


@dataclasses.dataclass(frozen=True)
class EvaluatorConfig:
    threshold: float = 0.999  # absolute bar on test exact match
    # Bars per operator slice of the test split, on top of `threshold`: keys + - * / (the
    # two-operand equations of that operator) and mixed (three or more operands). A model
    # whose overall figure hides one operator gone wrong is not blessed. {} = none.
    operator_thresholds: dict = dataclasses.field(default_factory=dict)
    # Bar on every equation whose operands are all single-digit ('1 + 9'), evaluated whole
    # (a few hundred equations, whatever the space): the first things a person types.
    # null = no bar.
    small_operands_threshold: float | None = 1.0
    regression_margin: float = 0.001  # may be at most this much worse than the pushed model
    max_examples: int = 0  # 0 = the whole test split
    batch_size: int = 1024
    num_worst_errors: int = 20  # how many of the worst errors metrics.json lists
    # Evaluate every equation of the operand space when it has at most this many
    # (10^6 = all of 0..999 addition); 0 = never.
    exhaustive_max_equations: int = 1_000_000
    exhaustive_batch_size: int = 4096

    def validate(self, path: str = "evaluator") -> None:
        require(0 <= self.threshold <= 1, f"{path}.threshold", "must be in [0, 1]")
        for tag, bar in self.operator_thresholds.items():
            field = f"{path}.operator_thresholds.{tag}"
            require(tag in OPERATOR_TAGS, field,
                    f"unknown slice; known: {' '.join(OPERATOR_TAGS)}")
            require(_is_number(bar) and 0 <= bar <= 1, field, f"must be in [0, 1], got {bar!r}")
        require(self.small_operands_threshold is None or (
            _is_number(self.small_operands_threshold) and 0 <= self.small_operands_threshold <= 1),
            f"{path}.small_operands_threshold",
            f"must be in [0, 1] or null (no bar), got {self.small_operands_threshold!r}")
        require(self.regression_margin >= 0, f"{path}.regression_margin", "must be >= 0")
        require(self.max_examples >= 0, f"{path}.max_examples", "must be >= 0 (0 = all)")
        require(self.batch_size >= 1, f"{path}.batch_size", "must be positive")
        require(self.num_worst_errors >= 0, f"{path}.num_worst_errors", "must be >= 0")
        require(self.exhaustive_max_equations >= 0, f"{path}.exhaustive_max_equations",
                "must be >= 0 (0 = never)")
        require(self.exhaustive_batch_size >= 1, f"{path}.exhaustive_batch_size",
                "must be positive")

    def validate_against(self, data: DataConfig, path: str = "evaluator") -> None:
        """A bar on a slice the test split cannot have would never be met."""
        held = data.space().operator_tags
        for tag in self.operator_thresholds:
            require(tag in held, f"{path}.operator_thresholds.{tag}",
                    f"task.data has no {tag!r} equations; its slices: {' '.join(held)}")
        require(self.small_operands_threshold is None or data.operand_min <= 9,
                f"{path}.small_operands_threshold",
                f"task.data has no single-digit operands (operand_min {data.operand_min}); "
                "set it to null")


@dataclasses.dataclass(frozen=True)
class ExporterConfig:
    # XLA-compile the decoder inside serving_default (~2x the CPU throughput; real TF Serving
    # then needs --xla_cpu_compilation_enabled=true, which serving/deploy passes).
    jit_compile: bool = True
    # Batch sizes written as TF Serving warm-up requests (assets.extra/
    # tf_serving_warmup_requests): replayed at load by TF Serving and `lstm-math serve`, so
    # no client pays a first-call XLA compilation. [] = no warm-up file.
    warmup_batch_sizes: list = dataclasses.field(
        default_factory=lambda: [2 ** k for k in range(11)])

    def validate(self, path: str = "exporter") -> None:
        require(isinstance(self.jit_compile, bool), f"{path}.jit_compile",
                f"true or false, got {self.jit_compile!r}")
        require(isinstance(self.warmup_batch_sizes, list) and all(
            _is_int(b) and 1 <= b <= 4096 for b in self.warmup_batch_sizes),
            f"{path}.warmup_batch_sizes",
            f"a list of batch sizes in 1..4096 ([] = no warm-up), got {self.warmup_batch_sizes!r}")


@dataclasses.dataclass(frozen=True)
class PusherConfig:
    model_name: str = DEFAULT_MODEL_NAME
    serving_base: str = "serving_models"
    keep_versions: int = 5
    infra_canaries: int = 24  # canary equations with known answers sent by the InfraValidator
    infra_max_latency_ms: float = 2000.0  # single-request p50 bound checked before a push

    def validate(self, path: str = "pusher") -> None:
        require(bool(self.model_name) and "/" not in self.model_name, f"{path}.model_name",
                "must be a non-empty name without '/'")
        require(self.keep_versions >= 1, f"{path}.keep_versions", "must be at least 1")
        require(self.infra_canaries >= 1, f"{path}.infra_canaries", "must be at least 1")
        require(self.infra_max_latency_ms > 0, f"{path}.infra_max_latency_ms", "must be positive")


STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    pipeline_root: str = "artifacts"
    strategy: str = "auto"  # auto, default, mirrored or multi_worker
    beam_args: list = dataclasses.field(default_factory=list)
    infra_validation_timeout_s: int = 300

    def validate(self, path: str = "runtime") -> None:
        require(self.strategy in STRATEGIES, f"{path}.strategy",
                "auto, default, mirrored or multi_worker")


# --------------------------------------------------------------------------------------
# The whole config.


@dataclasses.dataclass(frozen=True)
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

    def validate(self) -> None:
        """Each section checks itself, in file order; then the checks across sections."""
        self.task.validate("task")
        self.trainer.validate("trainer")
        self.trainer.validate_against(self.task.data, "trainer")
        self.exporter.validate("exporter")
        self.tuner.validate("tuner")
        self.evaluator.validate("evaluator")
        self.evaluator.validate_against(self.task.data, "evaluator")
        self.pusher.validate("pusher")
        self.runtime.validate("runtime")
        validate_cluster(self.cluster, require)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def validate(config: PipelineConfig) -> None:
    config.validate()


def fingerprint_dict(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
