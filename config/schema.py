"""The config schema: the whole config (``PipelineConfig``) and its ``task:``, ``evaluator:``,
``exporter:``, ``pusher:`` and ``runtime:`` sections, each a dataclass validating itself;
``trainer:`` and ``tuner:`` are in ``config/training.py``, ``cluster:`` in
``config/cluster.py``, what every section is built from in ``config/fields.py``.

A leaf: it imports no component, only the task's arithmetic (``lstm_math.components.equations``
and ``.sampling``, stdlib + numpy) to check that a task is well formed, and the serving
contract's model name. Every error names the dotted field
(``trainer.optimizer.learning_rate: ...``).
"""

from __future__ import annotations

import dataclasses

import yaml

from lstm_math.config.cluster import ClusterConfig, validate_cluster
from lstm_math.config.coverage import Coverage
from lstm_math.config.fields import is_int, is_number, require
from lstm_math.config.training import TrainerConfig, TunerConfig
from lstm_math.components import answer_formats
from lstm_math.components.equations import OPERATOR_TAGS, OPERATORS, max_result_chars
from lstm_math.components.sampling import MAX_EXHAUSTIVE, SAMPLING_SCHEMES, EquationSpace
from lstm_math.serving.contract import DEFAULT_MODEL_NAME


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
    # them), {"mixed": "reduce_first"} (each reduction's value, then the answer),
    # {"mixed": "reduce_running_sums"} (the same, a product of two operands worked first).
    answer_format: dict = dataclasses.field(default_factory=dict)

    def validate(self, path: str = "task.data") -> None:
        d = self
        require(len(d.operators) > 0, f"{path}.operators", "at least one operator is needed")
        for op in d.operators:
            require(op in OPERATORS, f"{path}.operators", f"unknown operator {op!r}; use + - * /")
        require(len(set(d.operators)) == len(d.operators), f"{path}.operators", "duplicates")
        require(d.num_operands >= 2, f"{path}.num_operands", "must be at least 2")
        require(d.min_operands is None or (
            is_int(d.min_operands) and 2 <= d.min_operands <= d.num_operands),
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
        require(is_int(d.seed) and 0 <= d.seed < 2**63, f"{path}.seed",
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
            require(is_number(v) and 0 < v < 1, f"{path}.split_fractions.{k}",
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
            require(is_number(bar) and 0 <= bar <= 1, field, f"must be in [0, 1], got {bar!r}")
        require(self.small_operands_threshold is None or (
            is_number(self.small_operands_threshold) and 0 <= self.small_operands_threshold <= 1),
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
            is_int(b) and 1 <= b <= 4096 for b in self.warmup_batch_sizes),
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
