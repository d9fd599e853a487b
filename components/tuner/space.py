"""The search space (``tuner.search_space`` on keras-tuner's HyperParameters) and the
HyperModel that builds and fits one trial with the Trainer's own model, compile step and
input; objective: validation exact match."""

from __future__ import annotations

import dataclasses

import keras_tuner as kt

from lstm_math.components import data as data_lib
from lstm_math.components.trainer import compile_model, model_coverage, seed_weights, steps_for
from lstm_math.components.tuner.tensorboard import OBJECTIVE_TAG  # noqa: F401 - re-exported
from lstm_math.config import Coverage, ModelHParams, OptimizerConfig, TunerConfig, searchable_fields


def hyperparameter_kinds() -> dict:
    """Searchable names (numeric and boolean fields of ``trainer.model`` and
    ``trainer.optimizer``) -> 'int', 'float' or 'bool'."""
    return {name: kind.__name__ for name, (_, kind) in searchable_fields().items()}


@dataclasses.dataclass
class Candidate:
    """What a trial trains with: the model and the optimizer sections of ``trainer``."""

    model: ModelHParams
    optimizer: OptimizerConfig

    def to_dict(self) -> dict:
        return {"model": dataclasses.asdict(self.model),
                "optimizer": dataclasses.asdict(self.optimizer)}

    @staticmethod
    def from_dict(data: dict) -> "Candidate":
        return Candidate(ModelHParams(**data["model"]), OptimizerConfig(**data["optimizer"]))


@dataclasses.dataclass(frozen=True)
class TrialSettings:
    """What a trial takes from the ``trainer`` section: the model and optimizer the search
    space varies, the input pipeline, the answer length and the seed of the initial weights
    (the pipeline's Tuner node is given exactly these fields)."""

    model: ModelHParams
    optimizer: OptimizerConfig
    batch_size: int
    shuffle_buffer: int
    cache_dataset: bool
    max_result_length: int
    seed: int | None

    @staticmethod
    def of(trainer) -> "TrialSettings":
        """From a whole ``trainer`` section (``lstm_math.config.TrainerConfig``)."""
        return TrialSettings(**{f.name: getattr(trainer, f.name)
                                for f in dataclasses.fields(TrialSettings)})


def declare(hp: kt.HyperParameters, name: str, spec, kind: str):
    """Registers one search-space entry on ``hp`` and returns its current value."""
    if isinstance(spec, dict):
        common = dict(sampling=spec.get("sampling", "linear"))
        if spec.get("step") is not None:
            common["step"] = spec["step"]
        if kind == "int":
            return int(hp.Int(name, int(spec["min"]), int(spec["max"]), **common))
        return float(hp.Float(name, float(spec["min"]), float(spec["max"]), **common))
    values = list(spec)
    if kind == "bool":
        if len(set(values)) == 1:
            return bool(hp.Fixed(name, bool(values[0])))
        return bool(hp.Boolean(name, default=bool(values[0])))
    if kind == "float":
        values = [float(v) for v in values]
    if len(values) == 1:
        return hp.Fixed(name, values[0])
    return hp.Choice(name, values, ordered=kind != "bool")


class Seq2SeqHyperModel(kt.HyperModel):
    """Builds and fits one trial with the Trainer's own model, compile step and input."""

    def __init__(self, tuner: TunerConfig, trial: TrialSettings, examples_dir: str,
                 base_coverage: Coverage):
        super().__init__(name="lstm_math")
        self.tuner = tuner
        self.trial = trial
        self.examples_dir = examples_dir
        self.base_coverage = base_coverage
        self.kinds = hyperparameter_kinds()
        tu = tuner
        self.steps_per_epoch = tu.steps_per_trial_epoch
        self.total_steps = tu.steps_per_trial_epoch * tu.epochs
        self._validation_steps = tu.validation_steps

    def hparams_from(self, hp: kt.HyperParameters) -> Candidate:
        """The trainer's model and optimizer with the trial's values in place."""
        t = self.trial
        values = {"model": dataclasses.asdict(t.model), "optimizer": dataclasses.asdict(t.optimizer)}
        sections = searchable_fields()
        for name, spec in self.tuner.search_space.items():
            values[sections[name][0]][name] = declare(hp, name, spec, self.kinds[name])
        return Candidate.from_dict(values)

    def coverage_for(self, hparams: ModelHParams) -> Coverage:
        return model_coverage(self.base_coverage, hparams, self.trial.max_result_length)

    def build(self, hp):
        choice = self.hparams_from(hp)
        seed_weights(self.trial.seed)  # same start for every trial
        return compile_model(choice.model, self.coverage_for(choice.model), self.total_steps,
                             choice.optimizer)

    def datasets(self, hparams: ModelHParams):
        """(train, validation) for this trial: targets encoded for the trial's hparams."""
        t, tu, coverage = self.trial, self.tuner, self.coverage_for(hparams)
        counts = {s: v["count"] for s, v in
                  data_lib.read_stats(self.examples_dir)["splits"].items()}
        # Cache (as the Trainer does when asked) only what a trial reads in full at least once.
        read = t.batch_size * tu.epochs
        train = data_lib.training_dataset(
            self.examples_dir, "train", coverage, t.batch_size, shuffle_buffer=t.shuffle_buffer,
            cache=t.cache_dataset and read * self.steps_per_epoch >= counts["train"],
            repeat=True, seed=tu.seed)
        val = data_lib.training_dataset(
            self.examples_dir, "validation", coverage, t.batch_size,
            cache=t.cache_dataset and read * self.validation_steps() >= counts["validation"],
            repeat=True)
        return train, val

    def validation_steps(self) -> int:
        if self._validation_steps:
            return self._validation_steps
        count = data_lib.read_stats(self.examples_dir)["splits"]["validation"]["count"]
        return steps_for(count, self.trial.batch_size)

    def fit(self, hp, model, *args, callbacks=None, epochs=None, initial_epoch=0, **kwargs):
        train, val = self.datasets(self.hparams_from(hp).model)
        history = model.fit(
            train,
            epochs=epochs or self.tuner.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=self.steps_per_epoch,
            validation_data=val,
            validation_steps=self.validation_steps(),
            callbacks=callbacks,
            shuffle=False,  # the dataset shuffles
            verbose=0,
        )
        return history
