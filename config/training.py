"""The ``trainer:`` and ``tuner:`` config sections: the model's hyperparameters, the
optimizer, the training loop, and the tuner's budget and search space over the first two
(``searchable_fields``). Each section validates itself; every error names the dotted field.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import typing
from typing import TYPE_CHECKING

from lstm_math.config.coverage import MODEL_FAMILIES, output_format_of
from lstm_math.config.fields import (ConfigError, is_finite, is_int, is_number, require,
                                     runtime_field, show)
from lstm_math.components import answer_formats
from lstm_math.components.equations import min_equation_chars

if TYPE_CHECKING:  # annotations only
    from lstm_math.config.schema import DataConfig

# Gradient clipping of each model family when ``trainer.optimizer.clipnorm`` is null.
FAMILY_CLIPNORM = {"attention": 1.0, "transformer": 1.0, "seed": None}
LR_SCHEDULES = ("cosine", "constant")
# The largest batch any step takes (trainer, evaluator): a fixed cap far above what this
# task needs (512 is the largest preset's), so that 1e12 is refused as the typo it is. A
# batch larger than the data is not refused: the training input repeats before batching.
MAX_BATCH_SIZE = 65536


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
    # Attention of each decoder step over the decoder's own earlier states (causal),
    # beside the attention over the encoder: a working that must be re-read (a
    # reduced sub-expression, a running sum) is in reach without being carried in the state.
    decoder_self_attention: bool = False
    # Heads of that self-attention, each over its own decoder_units / heads slice of the
    # states: several earlier steps read at once (a value's digit and the running sum).
    decoder_self_attention_heads: int = 1
    # Tokens the attention family's LSTM decoder writes per step (k output heads, fed back
    # the k it wrote): an answer of T tokens takes ceil(T / k) decoder steps. A fixed-layout
    # working whose steps are k tokens (running_sums' three-digit sums: 3) gets one decoder
    # step per step of the working.
    tokens_per_step: int = 1
    # Blocks of the transformer family's decoder (the LSTM decoders have one layer).
    decoder_layers: int = 1

    def validate(self, path: str = "trainer.model") -> None:
        require(self.family in MODEL_FAMILIES, f"{path}.family",
                f"unknown family {self.family!r}; choose from {', '.join(MODEL_FAMILIES)}")
        for name in ("embedding_dim", "encoder_units", "decoder_units", "encoder_layers",
                     "attention_heads", "decoder_layers"):
            require(getattr(self, name) >= 1, f"{path}.{name}", "must be positive")
        require(self.family != "attention" or not self.attention
                or (2 * self.encoder_units) % self.attention_heads == 0,
                f"{path}.attention_heads", f"must divide 2 x encoder_units "
                f"({2 * self.encoder_units}): each head attends over an equal slice")
        require(self.family != "transformer" or self.decoder_units % self.attention_heads == 0,
                f"{path}.attention_heads", f"must divide decoder_units ({self.decoder_units}): "
                "each head of the transformer decoder works on an equal slice")
        require(self.family == "transformer" or self.decoder_layers == 1,
                f"{path}.decoder_layers", f"the {self.family} family's decoder has one layer; "
                "only the transformer family stacks decoder blocks")
        require(self.family != "transformer" or self.attention, f"{path}.attention",
                "the transformer decoder always attends over the encoder; it cannot be off")
        require(0 <= self.dropout < 1, f"{path}.dropout", "must be in [0, 1)")
        require(not (self.decoder_self_attention and self.family != "attention"),
                f"{path}.decoder_self_attention",
                "an option of the attention family's LSTM decoder"
                + ("; the transformer decoder attends over its own tokens always"
                   if self.family == "transformer"
                   else f"; the {self.family} family has no autoregressive decoder"))
        require(self.decoder_self_attention_heads >= 1,
                f"{path}.decoder_self_attention_heads", "must be positive")
        require(self.decoder_self_attention_heads == 1 or self.decoder_self_attention,
                f"{path}.decoder_self_attention_heads",
                "heads of the decoder's self-attention: set decoder_self_attention: true")
        require(self.decoder_units % self.decoder_self_attention_heads == 0,
                f"{path}.decoder_self_attention_heads",
                f"must divide decoder_units ({self.decoder_units}): each head attends over "
                "an equal slice of the decoder states")
        require(self.tokens_per_step >= 1, f"{path}.tokens_per_step", "must be positive")
        require(self.tokens_per_step == 1 or self.family == "attention",
                f"{path}.tokens_per_step", "an option of the attention family's LSTM decoder; "
                f"the {self.family} family writes one token per step")
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


# What a Trainer output directory holds its model in (components.trainer.run writes it).
MODEL_FILE = "model.keras"
# The model at the end of the main epochs, kept beside MODEL_FILE when a finishing stage
# follows: a warm start from it tries another finishing stage without the main epochs.
MAIN_STAGE_FILE = "main_stage.keras"


def warm_start_file(path: str) -> str:
    """The model file ``trainer.warm_start`` names: the path itself when it ends in
    ``.keras``, else the Trainer output directory's model.keras (made absolute when local)."""
    file = path if path.endswith(".keras") else path.rstrip("/") + "/" + MODEL_FILE
    return file if "://" in file else os.path.abspath(file)


def short_draws(short_share: float, batch_size: int) -> int:
    """How many records of each training batch ``trainer.short_share`` draws again from the
    short equations: that share of the batch, rounded, at least one (0 when off)."""
    return max(1, round(short_share * batch_size)) if short_share > 0 else 0


MAX_STAGE_CYCLES = 100  # a finishing stage runs at most this many times


@dataclasses.dataclass(frozen=True)
class StageConfig:
    """One stage of training after ``trainer.epochs``: ``epochs`` more epochs, each batch
    drawing ``short_share`` of its records from the short equations (as
    ``trainer.short_share``), at a learning rate that starts again from ``learning_rate`` and
    decays by the same cosine over the stage. The weights and Adam's moments carry on from
    the epoch before; the data mix and the rate change."""

    epochs: int = 0  # 0 = no such stage
    short_share: float = 0.5
    learning_rate: float = 5e-4
    # Which equations the stage's short draws come from: 0 = the trainer's short equations
    # (at most trainer.short_max_chars characters); n = those whose every operand has at
    # most n digits ('7 * 6 * 9' with 1), whatever their length: with two and three operands
    # at most 5 characters are mostly two-digit pairs ('12+34'), the single-digit three an
    # eighth of them. At most the widest operand's digits; in the fingerprint only when set.
    short_operand_digits: int = dataclasses.field(
        default=0, metadata={"fingerprint": lambda stage: bool(stage.short_operand_digits)})
    # How many times the stage runs back to back, the rate started again each time (a warm
    # restart; the data mix the same, each pass its own shuffle): 2 = the stage's epochs
    # twice. In the fingerprint only when not 1.
    cycles: int = dataclasses.field(
        default=1, metadata={"fingerprint": lambda stage: stage.cycles != 1})

    def validate(self, path: str) -> None:
        require(is_int(self.epochs) and self.epochs >= 0, f"{path}.epochs",
                f"an integer >= 0 (0 = off), got {show(self.epochs)}")
        require(is_int(self.short_operand_digits) and self.short_operand_digits >= 0,
                f"{path}.short_operand_digits",
                f"an integer >= 0 (0 = the trainer's short equations), got "
                f"{show(self.short_operand_digits)}")
        require(is_int(self.cycles) and 1 <= self.cycles <= MAX_STAGE_CYCLES, f"{path}.cycles",
                f"an integer in [1, {MAX_STAGE_CYCLES}] (how many times the stage runs), got "
                f"{show(self.cycles)}")
        require(is_number(self.short_share) and 0.0 <= self.short_share < 1.0,
                f"{path}.short_share", f"a fraction in [0, 1), got {show(self.short_share)}")
        require(is_finite(self.learning_rate) and self.learning_rate > 0,
                f"{path}.learning_rate", f"must be positive, got {show(self.learning_rate)}")


def _second_stage_runs(finish: "FinishConfig") -> bool:
    return bool(finish.epochs and finish.then.epochs)


@dataclasses.dataclass(frozen=True)
class FinishConfig(StageConfig):
    """The finishing stage (a StageConfig) and, under ``then``, a second one after it: for
    the short equations a uniform sample rarely holds, once the rest is learned ('9 * 9 * 9'
    in a space of 10^9); a second stage can raise their share again once the first has
    settled the rest. ``epochs`` 0 turns the finishing off, ``then`` included. ``then`` is
    in the fingerprint only while it runs (both stages have epochs), so a training without
    it keeps its cached output."""

    then: StageConfig = dataclasses.field(default_factory=StageConfig,
                                          metadata={"fingerprint": _second_stage_runs})

    def validate(self, path: str = "trainer.finish") -> None:
        super().validate(path)
        self.then.validate(f"{path}.then")

    def stages(self) -> tuple[StageConfig, ...]:
        """The finishing stages that run, in order, each as many times as its ``cycles``
        (none with ``epochs`` 0; the first's cycles, then the second's)."""
        return tuple(stage for _, stage in self.named_stages())

    def named_stages(self, path: str = "trainer.finish") -> tuple[tuple[str, StageConfig], ...]:
        """``stages()`` with each one's dotted path (``path``, ``path.then``)."""
        if not self.epochs:
            return ()
        return tuple((p, s) for p, s in ((path, self), (f"{path}.then", self.then))
                     if s.epochs for _ in range(s.cycles))

    @property
    def total_epochs(self) -> int:
        return sum(s.epochs for s in self.stages())


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
    # 0.01% of the space) and the model sees them too rarely to learn them. Every batch
    # holds short_draws(short_share, batch_size) of them (rounded, at least one). 0 = off.
    short_share: float = 0.0
    short_max_chars: int = 5
    # Seeds Python, NumPy and TF (keras.utils.set_random_seed) before the model is built:
    # the same seed gives the same initial weights (and the same ones for every tuner trial).
    # null = unseeded.
    seed: int | None = None
    # Warm start: a trained model whose weights this training starts from instead of fresh
    # ones (a Trainer output directory, or its model.keras; a local path or a URL), e.g. the
    # `multiplication` model for a model of every operator. The architecture must be the
    # same (trainer.model, the decoder length); the optimizer and its schedule start anew.
    # The fingerprint holds the model file's content digest, not where it lives. '' = off.
    warm_start: str = runtime_field("")
    # A finishing stage after the epochs above (FinishConfig): more epochs with another share
    # of short draws and the learning rate started again, and optionally a second one after
    # it (finish.then). Off by default.
    finish: FinishConfig = dataclasses.field(default_factory=FinishConfig)

    def validate(self, path: str = "trainer") -> None:
        self.model.validate(f"{path}.model")
        self.optimizer.validate(f"{path}.optimizer")
        self.finish.validate(f"{path}.finish")
        require(self.epochs >= 1, f"{path}.epochs", "must be positive")
        require(1 <= self.batch_size <= MAX_BATCH_SIZE, f"{path}.batch_size",
                f"must be from 1 to {MAX_BATCH_SIZE}, got {self.batch_size}")
        require(self.steps_per_epoch >= 0, f"{path}.steps_per_epoch", "must be >= 0")
        require(self.validation_steps >= 0, f"{path}.validation_steps", "must be >= 0")
        require(self.shuffle_buffer >= 0, f"{path}.shuffle_buffer",
                "must be >= 0 (0 = no shuffling)")
        require(self.early_stopping_patience >= 0, f"{path}.early_stopping_patience",
                "must be >= 0 (0 = off)")
        require(self.steps_per_loop >= 1, f"{path}.steps_per_loop", "must be positive")
        require(self.sample_predictions >= 0, f"{path}.sample_predictions", "must be >= 0")
        require(is_finite(self.progress_every_s) and self.progress_every_s >= 0,
                f"{path}.progress_every_s",
                f"a number of seconds >= 0 (0 = every step), got {show(self.progress_every_s)}")
        require(self.seed is None or (is_int(self.seed) and 0 <= self.seed < 2**32),
                f"{path}.seed",
                f"an integer in [0, 2**32) or null (unseeded), got {show(self.seed)}")
        require(isinstance(self.warm_start, str), f"{path}.warm_start",
                f"a path to a Trainer output or its model.keras ('' = off), got "
                f"{show(self.warm_start)}")
        require(self.max_result_length >= 0, f"{path}.max_result_length",
                "must be >= 0 (0 = derived)")
        require(0.0 <= self.short_share < 1.0, f"{path}.short_share",
                f"a fraction in [0, 1) (0 = off), got {show(self.short_share)}")
        shares = {"short_share": self.short_share}
        for field, stage in self.finish.named_stages("finish"):
            shares[f"{field}.short_share"] = stage.short_share  # the stages that run
        for field, share in shares.items():
            draws = short_draws(share, self.batch_size)
            require(draws < self.batch_size, f"{path}.{field}",
                    f"{show(share)} of a batch of {self.batch_size} is {draws} short draws: "
                    f"no record of the split would be left; lower it or raise "
                    f"{path}.batch_size")
        require(self.finish.epochs == 0 or self.early_stopping_patience == 0,
                f"{path}.finish.epochs",
                f"a finishing stage follows every main epoch, and early stopping "
                f"({path}.early_stopping_patience {self.early_stopping_patience}) would skip "
                f"it or keep an epoch before it: set one of them to 0")
        require(is_int(self.short_max_chars) and self.short_max_chars >= 3,
                f"{path}.short_max_chars",
                f"an integer >= 3 (the shortest equation, '1+2'), got "
                f"{show(self.short_max_chars)}")

    def validate_against(self, data: DataConfig, path: str = "trainer") -> None:
        needed = data.max_target_chars()
        require(self.max_result_length == 0 or self.max_result_length >= needed,
                f"{path}.max_result_length",
                f"{self.max_result_length} characters cannot hold every answer of task.data "
                f"(operators {' '.join(data.operators)}, operands {data.operand_min}.."
                f"{data.operand_max}: up to {needed} characters"
                + (", working included" if needed > data.max_result_chars() else "")
                + "); raise it or use 0 to derive it")
        fewest = data.min_operands or data.num_operands
        shortest = min_equation_chars(data.operand_min, fewest)  # '1+2', '1+2*3'
        by_digits = {p: s for p, s in self.finish.named_stages(f"{path}.finish")
                     if s.short_share > 0 and s.short_operand_digits}
        # digits of the narrowest and the widest operand of task.data (no power of ten of
        # a configured value is computed: any integer is checked at once)
        low, high = data.operand_min, data.operand_max
        narrowest = len(str(0 if low <= 0 <= high else min(abs(low), abs(high))))
        widest = len(str(max(abs(low), abs(high))))
        for stage_path, stage in by_digits.items():
            n = stage.short_operand_digits
            require(n >= narrowest, f"{stage_path}.short_operand_digits",
                    f"no operand of task.data ({low}..{high}) has at most {n} "
                    f"digit{'s' if n > 1 else ''}: the stage's short draws would be empty; "
                    f"raise it to {narrowest} or more, or set it to 0")
            require(n <= widest, f"{stage_path}.short_operand_digits",
                    f"{show(n)} is more digits than any operand of task.data ({low}..{high}) "
                    f"has ({widest}): every equation would be short; use {widest} or less")
        draws_short = self.short_share > 0 or any(
            s.short_share > 0 and not s.short_operand_digits for s in self.finish.stages())
        require(not draws_short or self.short_max_chars >= shortest,
                f"{path}.short_max_chars",
                f"{self.short_max_chars} characters admit no equation of task.data (the "
                f"shortest, {fewest} operands from {data.operand_min}, has {shortest}): the "
                f"short draws would be empty; raise it to {shortest} or more, or set "
                f"{path}.short_share (and the finishing stages' short_share) to 0")
        worked = {t: f for t, f in data.answer_format.items() if f != answer_formats.DIRECT}
        require(not worked or output_format_of(self.model.family) == "left",
                "task.data.answer_format",
                f"{self.model.family!r} models answer all at once and cannot write a working "
                f"({worked}); use trainer.model.family 'attention' or 'transformer'")


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
        return is_finite(v) if kind is float else is_int(v)

    if isinstance(spec, dict):
        require(kind is not bool, field, "a range needs a numeric hyperparameter; "
                                         "list the choices instead")
        require(set(spec) <= {"min", "max", "step", "sampling"} and {"min", "max"} <= set(spec),
                field, "a range is {min, max, step?, sampling?}")
        lo, hi = spec["min"], spec["max"]
        require(is_kind(lo) and is_kind(hi), field,
                f"min and max must be {'finite numbers' if kind is float else 'integers'}")
        require(ok(lo) and ok(hi), field, f"values {what}")
        require(lo < hi, field, "min must be less than max")
        sampling = spec.get("sampling", "linear")
        require(sampling in ("linear", "log", "reverse_log"), field,
                "sampling: linear, log or reverse_log")
        step = spec.get("step")
        require(step is None or (is_kind(step) and step > 0), field,
                "step must be a positive number")
        if sampling != "linear":  # keras-tuner's rules for a logarithmic range
            require(lo > 0, field, f"{sampling} sampling needs min > 0")
            require(step is None or step > 1, field,
                    f"with {sampling} sampling the step multiplies: it must be > 1")
        return
    require(isinstance(spec, list) and len(spec) > 0, field,
            "must be a non-empty list of choices or a range {min, max}")
    for v in spec:
        if kind is bool:
            require(isinstance(v, bool), field, f"choices must be true or false, got {show(v)}")
        else:
            require(is_kind(v), field, f"choices must be "
                    f"{'finite numbers' if kind is float else 'integers'}, got {show(v)}")
            require(ok(v), field, f"choice {v!r} {what}")
    require(len(set(spec)) == len(spec), field, "duplicate choices")


# The fields of trainer.model that ModelHParams.validate checks against one another (heads
# divide the encoder's features or the transformer's decoder units). Every other rule
# bounds one field, given the model family (which no search varies), so a search space's
# other fields are checked value by value; these, in every combination a trial can draw.
INTERACTING = (("attention", "attention_heads", "encoder_units"),
               ("attention_heads", "decoder_units"))
# Combinations of a search space checked against trainer.model's rules, at most.
MAX_COMBINATIONS = 10_000


def trial_values(spec, kind, every: bool):
    """The values a trial can draw from one search-space entry, as keras-tuner draws them
    (components.tuner.space.declare): a list's choices; an integer range's values by its
    step (only its first and last when not ``every``); a float range's bounds (it is
    continuous, and every rule of a float field is a bound). Validated entries only."""
    if not isinstance(spec, dict):
        return [float(v) for v in spec] if kind is float else list(spec)
    lo, hi, step = spec["min"], spec["max"], spec.get("step")
    sampling = spec.get("sampling", "linear")
    if kind is float:
        return [lo, hi]
    if sampling == "linear":
        values = range(lo, hi + 1, step or 1)
    elif step is None:  # continuous on a log scale, truncated to int: any integer between
        values = range(lo, hi + 1)
    else:
        n = int(math.log(hi / lo, step) + 1e-8) + 1
        values = ([int(lo * math.pow(step, i)) for i in range(n)] if sampling == "log" else
                  [int(hi + lo - lo * math.pow(step, i)) for i in range(n)])
    return values if every else sorted({values[0], values[-1]})


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
        require(0 <= self.seed < 2**32, f"{path}.seed",
                f"an integer in [0, 2**32) (the oracle's random seed), got {self.seed}")
        require(self.steps_per_trial_epoch >= 1, f"{path}.steps_per_trial_epoch",
                "must be positive")
        require(self.validation_steps >= 0, f"{path}.validation_steps", "must be >= 0 (0 = all)")
        require(self.max_seconds is None or (is_number(self.max_seconds)
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

    def validate_against(self, trainer: TrainerConfig, path: str = "tuner") -> None:
        """Every trial the search space can make is a valid ``trainer`` model and optimizer:
        each combination of its values in place of the trainer's own, checked by the rules
        ``trainer.model`` and ``trainer.optimizer`` are checked by. (Call after validate.)"""
        if not self.enabled:
            return
        fields = searchable_fields()
        interacting = {name for group in INTERACTING for name in group}
        values = {name: trial_values(spec, fields[name][1], name in interacting)
                  for name, spec in self.search_space.items()}
        if math.prod(len(v) for v in values.values()) <= MAX_COMBINATIONS:
            groups = [list(values)]  # every combination
        else:  # each field's values alone; the fields that interact, in every combination
            groups = [[name] for name in values]
            for group in INTERACTING:
                searched = [name for name in group if name in values]
                count = math.prod(len(values[name]) for name in searched)
                require(count <= MAX_COMBINATIONS, f"{path}.search_space",
                        f"{count} combinations of {', '.join(searched)} to check against "
                        f"trainer.model's rules, more than {MAX_COMBINATIONS}; list fewer "
                        "choices or give the ranges a larger step")
                groups.append(searched)
        for group in groups:
            for combo in itertools.product(*(values[name] for name in group)):
                trial = dict(zip(group, combo))
                if _trial_error(trainer, trial, fields) is not None:
                    self._refuse(trainer, trial, fields, path)

    def _refuse(self, trainer: TrainerConfig, trial: dict, fields: dict, path: str) -> None:
        """Raises for a failing trial, naming the fewest of its values that still fail."""
        trial = {name: trial[name] for name in self.search_space if name in trial}
        for name in list(trial):
            fewer = {k: v for k, v in trial.items() if k != name}
            if fewer and _trial_error(trainer, fewer, fields) is not None:
                trial = fewer
        error = _trial_error(trainer, trial, fields)
        named = str(error).split(":", 1)[0].rsplit(".", 1)[-1]
        key = named if named in trial else next(iter(trial))
        shown = ", ".join(f"{k}={v!r}" for k, v in trial.items())
        raise ConfigError(f"{path}.search_space.{key}: a trial with {shown} fails {error}")


def _trial_error(trainer: TrainerConfig, trial: dict, fields: dict) -> ConfigError | None:
    """The ConfigError of the trainer's model and optimizer with a trial's values in place
    (as components.tuner.space makes a trial), or None."""
    sections = {"model": {}, "optimizer": {}}
    for name, value in trial.items():
        sections[fields[name][0]][name] = value
    try:
        dataclasses.replace(trainer.model, **sections["model"]).validate("trainer.model")
        dataclasses.replace(trainer.optimizer, **sections["optimizer"]).validate(
            "trainer.optimizer")
    except ConfigError as e:
        return e
    return None
