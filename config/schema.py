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
import re

import yaml

from lstm_math.config.cluster import ClusterConfig, validate_cluster
from lstm_math.config.coverage import Coverage
from lstm_math.config.fields import is_int, is_number, require, show
from lstm_math.config.training import MAX_BATCH_SIZE, TrainerConfig, TunerConfig
from lstm_math.components import answer_formats
from lstm_math.components.equations import (OPERATOR_TAGS, OPERATORS, max_equation_chars,
                                            max_result_chars)
from lstm_math.components.sampling import (MAX_EXHAUSTIVE, SAMPLING_SCHEMES, SPLITS,
                                           EquationSpace, Sampler, split_indices)
from lstm_math.serving.contract import DEFAULT_MODEL_NAME, MODEL_NAME_RULE, is_model_name

# What the product can serve bounds every task: the model server answers "too long" to an
# equation of more than components.signature.MAX_INPUT_BYTES characters (the config, a
# leaf, cannot import TensorFlow's module; tests/test_config.py checks that the two agree),
# and reads each operand as a 64-bit integer of at most 18 digits.
MAX_EQUATION_CHARS = 1024
MAX_OPERANDS = (MAX_EQUATION_CHARS + 1) // 2  # '1+2+3...': a digit and an operator each
MAX_OPERAND = 10**18 - 1
# Equations of a sample whose splits are computed when a held-out split could be empty,
# and the most strata (operator combination x operand digit lengths) drawn from to do so.
SPLIT_CHECK = 20_000
MAX_STRATA = 20_000


def _count(n: int) -> str:
    """A count as a message shows it: exact up to 10**15, else its order of magnitude."""
    return str(n) if n < 10**15 else f"about 10**{n.bit_length() * 3 // 10}"


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
    # {"mixed": "reduce_running_sums"} (the same, a product of two operands worked first),
    # {"mixed": "reduce_unsigned"} (the same, sums and differences ordered so that no value
    # before the answer is negative),
    # {"mixed": "reduce_fitting"} (reduce_unsigned, and every product whose factors fit an
    # operand's digits worked, a value's too: 7 * 4 * 7's 28 * 7),
    # {"mixed": "reduce_chunked"} (reduce_fitting, and a product of a wider value worked
    # in chunks of an operand's digits: 123 * 456 * 789's 088 * 789 and 056 * 789),
    # {"mixed": "reduce_fitting_division"} (reduce_fitting, and every quotient of a value
    # that fits an operand's digits worked as long division: 4 * 9 / 3's 036 / 003),
    # {"mixed": "reduce_worked"} (every product and every quotient of a value worked),
    # {"mixed": "reduce_aligned"} (reduce_worked in reduce_unsigned's order, every value
    # before the answer zero-padded to the digits it can have),
    # {"mixed": "reduce_digit_products"} (reduce_worked with each digit-pair product
    # written before the running sum it joins),
    # {"mixed": "reduce_long_division"} (reduce_digit_products with each long division
    # step written out: the number brought down, the quotient digit, its product with the
    # divisor, the remainder),
    # {"mixed": "reduce_division_table"} (reduce_long_division with the divisor's multiples
    # 1..9 written before each long division of a value),
    # {"mixed": "reduce_column_division"} (reduce_long_division with each remainder digit
    # written right after the two digits it subtracts).
    answer_format: dict = dataclasses.field(default_factory=dict)

    def validate(self, path: str = "task.data") -> None:
        d = self
        require(len(d.operators) > 0, f"{path}.operators", "at least one operator is needed")
        for op in d.operators:
            require(isinstance(op, str) and op in OPERATORS, f"{path}.operators",
                    f"unknown operator {show(op)}; use + - * /")
        require(len(set(d.operators)) == len(d.operators), f"{path}.operators", "duplicates")
        # Bounds first: everything below builds the equation space and prints its numbers.
        require(2 <= d.num_operands <= MAX_OPERANDS, f"{path}.num_operands",
                f"must be from 2 to {MAX_OPERANDS} (the model server takes equations of at "
                f"most {MAX_EQUATION_CHARS} characters), got {show(d.num_operands)}")
        require(d.min_operands is None or (
            is_int(d.min_operands) and 2 <= d.min_operands <= d.num_operands),
            f"{path}.min_operands", f"an integer from 2 to num_operands ({d.num_operands}), "
            f"or null (= num_operands), got {show(d.min_operands)}")
        require(d.operand_min >= 0, f"{path}.operand_min", "operands are non-negative")
        require(d.operand_max <= MAX_OPERAND, f"{path}.operand_max",
                f"at most {MAX_OPERAND} (18 digits: the model server reads an operand as a "
                "64-bit integer)")
        require(d.operand_max >= d.operand_min, f"{path}.operand_max", "must be >= operand_min")
        longest = max_equation_chars(d.operand_max, d.num_operands)
        require(longest <= MAX_EQUATION_CHARS, f"{path}.num_operands",
                f"{d.num_operands} operands up to {d.operand_max} make equations of up to "
                f"{longest} characters; the model server takes at most {MAX_EQUATION_CHARS}")
        require(not (d.operators == ["/"] and d.operand_max < 1), f"{path}.operand_max",
                "division needs a divisor > 0")
        require(d.num_examples >= 1, f"{path}.num_examples", "must be positive")
        require(d.num_shards >= 1, f"{path}.num_shards", "must be positive")
        require(d.compression in ("GZIP", "NONE"), f"{path}.compression", "GZIP or NONE")
        require(d.sampling in SAMPLING_SCHEMES, f"{path}.sampling",
                f"unknown scheme {show(d.sampling)}; use {' or '.join(SAMPLING_SCHEMES)}")
        require(is_int(d.seed) and 0 <= d.seed < 2**63, f"{path}.seed",
                "must be an integer in [0, 2**63)")
        require(len(set(d.operators)) ** (d.num_operands - 1) <= 65536, f"{path}.num_operands",
                "too many operator combinations (operators ** (num_operands - 1) > 65536)")
        size = d.space_size()
        require(size < 2**63, f"{path}.operand_max",
                f"the equation space has {_count(size)} equations; at most 2**63 are supported")
        if d.exhaustive:
            require(size <= MAX_EXHAUSTIVE, f"{path}.exhaustive",
                    f"the space has {_count(size)} equations, more than {MAX_EXHAUSTIVE} to "
                    "enumerate; use num_examples instead")
        fr = d.split_fractions
        require(set(fr) == {"train", "validation", "test"}, f"{path}.split_fractions",
                "needs exactly train, validation and test")
        for k, v in fr.items():
            require(is_number(v) and 0 < v < 1, f"{path}.split_fractions.{k}",
                    f"must be a number in (0, 1), got {show(v)}")
        require(abs(sum(fr.values()) - 1.0) < 1e-6, f"{path}.split_fractions", "must sum to 1")
        # Single-digit equations always train (components.sampling.always_trains).
        require(d.operand_max >= 10, f"{path}.operand_max",
                f"operands up to {d.operand_max} make only single-digit equations, which "
                "always train: the validation and test splits would be empty; use at least 10")
        space = d.space()
        count = size if d.exhaustive else min(d.num_examples, size)  # sample_size()
        require(d.num_shards <= count, f"{path}.num_shards",
                f"{d.num_shards} shards for the {count} equations drawn; at most one shard "
                "per equation")
        self._check_splits(path, space, count)
        require(isinstance(d.answer_format, dict), f"{path}.answer_format",
                f"a mapping of operator tag to format, e.g. {{'*': 'running_sums'}}, got "
                f"{show(d.answer_format)}")
        held = space.operator_tags
        for tag, fmt in d.answer_format.items():
            require(tag in held, f"{path}.answer_format",
                    f"{show(tag)} is not an operator tag of this task (it has {', '.join(held)})")
            require(isinstance(fmt, str) and fmt in answer_formats.FORMATS,
                    f"{path}.answer_format.{tag}",
                    f"unknown format {show(fmt)}; choose from {', '.join(answer_formats.FORMATS)}")
            require(answer_formats.applies(fmt, tag), f"{path}.answer_format.{tag}",
                    f"{fmt!r} cannot answer {tag!r} (it answers "
                    f"{', '.join(answer_formats.FORMAT_TAGS[fmt])})")

    def _check_splits(self, path: str, space: EquationSpace, count: int) -> None:
        """ExampleGen's data validation refuses an empty split. The split of an equation is
        a hash of its text, and an equation of single-digit operands always trains
        (components.sampling.always_trains); where a held-out split could come out empty,
        the splits of the sample's first equations (all of them, up to SPLIT_CHECK) are
        computed as ExampleGen computes them."""
        fractions = [self.split_fractions[s] for s in SPLITS]
        # At least this many of the draws go to a split by their hash: those that are not
        # single-digit equations.
        single = 0 if self.operand_min > 9 else EquationSpace(
            tuple(self.operators), self.operand_min, 9, self.num_operands,
            self.min_operands).size
        hashed = max(0, count - single)
        if all(hashed * f >= 25 for f in fractions):  # empty with odds below e**-25
            return
        lengths = len(str(self.operand_max)) - len(str(self.operand_min)) + 1
        strata = sum(len(self.operators) ** (k - 1) * lengths ** k for k in space.operand_counts)
        if self.sampling == "stratified" and not self.exhaustive and strata > MAX_STRATA:
            return  # too many strata to draw from here; ExampleGen's validation would say
        sampler = Sampler(space, self.seed, self.num_examples, self.exhaustive, self.sampling)
        first = min(count, SPLIT_CHECK)
        splits = split_indices(sampler.block(0, first).texts(), fractions)
        empty = [s for i, s in enumerate(SPLITS) if not (splits == i).any()]
        if not empty:
            return
        which = (f"the {' and '.join(empty)} split{'s' if len(empty) > 1 else ''} would be "
                 "empty")
        needs = "ExampleGen needs train, validation and test examples"
        require(first < count or self.exhaustive or count == space.size, f"{path}.num_examples",
                f"with {count} equation{'s' if count > 1 else ''} drawn {which} ({needs}); "
                "draw more")
        drawn = (f"with the whole space drawn ({count} equations)" if first == count else
                 f"with none of the first {first} equations drawn in it,")
        require(False, f"{path}.split_fractions.{empty[0]}",
                f"{drawn} {which} ({needs}); raise the fraction"
                + (" or widen the operands" if first == count else ""))

    def space_size(self) -> int:
        """How many equations the task has (``space().size``), in exact integers: with k
        operands, the first operand's values times, for each operator after it, the sum over
        the operators of the values the next operand can take (not 0 after '/')."""
        low, high = self.operand_min, self.operand_max
        after = sum(high - (max(low, 1) if op == "/" else low) + 1 for op in self.operators)
        fewest = self.num_operands if self.min_operands is None else self.min_operands
        return sum((high - low + 1) * after ** (k - 1)
                   for k in range(fewest, self.num_operands + 1))

    def sample_size(self) -> int:
        """How many equations ExampleGen draws (components.example_gen.sample_size)."""
        size = self.space_size()
        return size if self.exhaustive else min(self.num_examples, size)

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
            require(is_number(bar) and 0 <= bar <= 1, field, f"must be in [0, 1], got {show(bar)}")
        require(self.small_operands_threshold is None or (
            is_number(self.small_operands_threshold) and 0 <= self.small_operands_threshold <= 1),
            f"{path}.small_operands_threshold",
            f"must be in [0, 1] or null (no bar), got {show(self.small_operands_threshold)}")
        require(self.regression_margin >= 0, f"{path}.regression_margin", "must be >= 0")
        require(self.max_examples >= 0, f"{path}.max_examples", "must be >= 0 (0 = all)")
        require(1 <= self.batch_size <= MAX_BATCH_SIZE, f"{path}.batch_size",
                f"must be from 1 to {MAX_BATCH_SIZE}, got {self.batch_size}")
        require(self.num_worst_errors >= 0, f"{path}.num_worst_errors", "must be >= 0")
        require(self.exhaustive_max_equations >= 0, f"{path}.exhaustive_max_equations",
                "must be >= 0 (0 = never)")
        require(1 <= self.exhaustive_batch_size <= MAX_BATCH_SIZE,
                f"{path}.exhaustive_batch_size",
                f"must be from 1 to {MAX_BATCH_SIZE}, got {self.exhaustive_batch_size}")

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
                f"true or false, got {show(self.jit_compile)}")
        require(isinstance(self.warmup_batch_sizes, list) and all(
            is_int(b) and 1 <= b <= 4096 for b in self.warmup_batch_sizes),
            f"{path}.warmup_batch_sizes",
            f"a list of batch sizes in 1..4096 ([] = no warm-up), got "
            f"{show(self.warmup_batch_sizes)}")


@dataclasses.dataclass(frozen=True)
class PusherConfig:
    model_name: str = DEFAULT_MODEL_NAME
    serving_base: str = "serving_models"
    keep_versions: int = 5
    infra_canaries: int = 24  # canary equations with known answers sent by the InfraValidator
    infra_max_latency_ms: float = 2000.0  # single-request p50 bound checked before a push

    def validate(self, path: str = "pusher") -> None:
        name = self.model_name
        require(is_model_name(name), f"{path}.model_name",
                f"{MODEL_NAME_RULE} (the URL /v1/models/<name> and a directory under "
                f"serving_base), got {show(name)}")
        require(bool(self.serving_base.strip()), f"{path}.serving_base",
                f"a directory (or gs://... URL) to push to, got {show(self.serving_base)}")
        require(self.keep_versions >= 1, f"{path}.keep_versions", "must be at least 1")
        require(self.infra_canaries >= 1, f"{path}.infra_canaries", "must be at least 1")
        require(self.infra_max_latency_ms > 0, f"{path}.infra_max_latency_ms", "must be positive")


STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
# A Beam option as Beam's own parser reads it: --name or --name=value.
BEAM_OPTION = re.compile(r"--[A-Za-z_][A-Za-z0-9_-]*(=.*)?", re.S)


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    pipeline_root: str = "artifacts"
    strategy: str = "auto"  # auto, default, mirrored or multi_worker
    beam_args: list = dataclasses.field(default_factory=list)
    infra_validation_timeout_s: int = 300

    def validate(self, path: str = "runtime") -> None:
        require(self.strategy in STRATEGIES, f"{path}.strategy",
                "auto, default, mirrored or multi_worker")
        require(bool(self.pipeline_root.strip()), f"{path}.pipeline_root",
                f"a directory (or gs://... URL) for the artifacts, got {show(self.pipeline_root)}")
        require(all(isinstance(a, str) and BEAM_OPTION.fullmatch(a) for a in self.beam_args),
                f"{path}.beam_args", "a list of Beam options, each a string like "
                f"--direct_num_workers=2, got {show(self.beam_args)}")
        require(self.infra_validation_timeout_s > 0, f"{path}.infra_validation_timeout_s",
                f"a positive number of seconds, got {self.infra_validation_timeout_s}")


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
        require(bool(self.name.strip()), "name", f"a pipeline name, got {show(self.name)}")
        self.task.validate("task")
        self.trainer.validate("trainer")
        self.trainer.validate_against(self.task.data, "trainer")
        self.exporter.validate("exporter")
        self.tuner.validate("tuner")
        self.tuner.validate_against(self.trainer, "tuner")
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
