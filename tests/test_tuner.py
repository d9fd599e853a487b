"""Tuner: search space and budget from config, trials through the Trainer's input and model,
best hyperparameters + trial table, TensorBoard HParams, restart without re-running trials."""

import argparse
import csv
import dataclasses
import glob
import json
import os

import pytest
import tensorflow as tf

from lstm_math.components.tuner.space import TrialSettings
from lstm_math.config import ConfigError, coverage_of, load_config

SPACE = ("tuner.search_space={encoder_units: [8, 16], reverse_output: [true, false], "
         "learning_rate: {min: 0.001, max: 0.02, sampling: log}}")


@pytest.mark.parametrize("override,field", [
    ("tuner.search_space={}", "tuner.search_space"),
    ("tuner.search_space={units: [8]}", "tuner.search_space.units"),
    ("tuner.search_space={family: [seed]}", "tuner.search_space.family"),
    ("tuner.search_space={encoder_units: []}", "tuner.search_space.encoder_units"),
    ("tuner.search_space={encoder_units: 8}", "tuner.search_space.encoder_units"),
    ("tuner.search_space={encoder_units: [0, 8]}", "tuner.search_space.encoder_units"),
    ("tuner.search_space={encoder_units: [8.5]}", "tuner.search_space.encoder_units"),
    ("tuner.search_space={attention: [true, 1]}", "tuner.search_space.attention"),
    ("tuner.search_space={attention: {min: 0, max: 1}}", "tuner.search_space.attention"),
    ("tuner.search_space={learning_rate: {min: 0.01, max: 0.001}}",
     "tuner.search_space.learning_rate"),
    ("tuner.search_space={learning_rate: {min: 0.0, max: 0.1}}",
     "tuner.search_space.learning_rate"),
    ("tuner.search_space={dropout: [0.0, 1.0]}", "tuner.search_space.dropout"),
    ("tuner.search_space={learning_rate: {min: 0.001, max: 0.1, sampling: cubic}}",
     "tuner.search_space.learning_rate"),
    ("tuner.max_trials=0", "tuner.max_trials"),
    ("tuner.epochs=0", "tuner.epochs"),
    ("tuner.steps_per_trial_epoch=0", "tuner.steps_per_trial_epoch"),
    ("tuner.max_seconds=0", "tuner.max_seconds"),
    ("tuner.max_seconds=-3", "tuner.max_seconds"),
    ("tuner.algorithm=grid", "tuner.algorithm"),
])
def test_bad_tuner_config_fails_fast_naming_the_field(override, field):
    with pytest.raises(ConfigError) as info:
        load_config("smoke", [override])
    assert str(info.value).startswith(field + ":")


def test_hyperband_needs_room_to_cut_trials_short():
    with pytest.raises(ConfigError, match=r"^tuner\.epochs: hyperband"):
        load_config("smoke", ["tuner.algorithm=hyperband", "tuner.epochs=1"])
    c = load_config("smoke", ["tuner.algorithm=hyperband", "tuner.epochs=3",
                              "tuner.max_seconds=60"])
    assert c.tuner.max_seconds == 60
    # A disabled tuner's budget does not matter.
    assert load_config("smoke", ["tuner.enabled=false", "tuner.max_trials=0"]).tuner.max_trials == 0


def test_search_space_maps_every_model_option_to_keras_tuner():
    import keras_tuner as kt

    from lstm_math.components.tuner import Seq2SeqHyperModel

    config = load_config("smoke", [
        "tuner.search_space={encoder_units: [8, 16], decoder_units: {min: 8, max: 32, step: 8},"
        " encoder_layers: [1, 2], embedding_dim: [4, 8], learning_rate: {min: 0.001, max: 0.1,"
        " sampling: log}, dropout: [0.0, 0.25], attention: [true, false], reverse_output: [false]}"])
    hm = Seq2SeqHyperModel(config.tuner, TrialSettings.of(config.trainer), "unused",
                           coverage_of(config))
    hp = kt.HyperParameters()
    first = hm.hparams_from(hp).model
    kinds = {p.name: type(p).__name__ for p in hp.space}
    assert kinds == {"encoder_units": "Choice", "decoder_units": "Int", "encoder_layers": "Choice",
                     "embedding_dim": "Choice", "learning_rate": "Float", "dropout": "Choice",
                     "attention": "Boolean", "reverse_output": "Fixed"}
    assert first.reverse_output is False and first.family == config.trainer.model.family
    hp.values.update(encoder_units=16, decoder_units=24, encoder_layers=2, embedding_dim=4,
                     learning_rate=0.05, dropout=0.25, attention=False)
    chosen = hm.hparams_from(hp)
    model, optimizer = chosen.model, chosen.optimizer
    assert (model.encoder_units, model.decoder_units, model.encoder_layers, model.embedding_dim,
            optimizer.learning_rate, model.dropout, model.attention) == (16, 24, 2, 4, 0.05, 0.25,
                                                                        False)
    assert isinstance(model.attention, bool) and isinstance(optimizer.learning_rate, float)
    # what is not searched comes from the config
    assert optimizer.schedule == config.trainer.optimizer.schedule


@pytest.fixture(scope="module")
def examples(examples_for):
    return examples_for("smoke")


def test_trial_datasets_are_built_for_the_trials_reversal(examples):
    from lstm_math.components import data as data_lib
    from lstm_math.components import tokenizer
    from lstm_math.components.tuner import Seq2SeqHyperModel

    config = load_config("smoke")
    hm = Seq2SeqHyperModel(config.tuner, TrialSettings.of(config.trainer), examples,
                           coverage_of(config))
    batch = config.trainer.batch_size
    results = next(iter(data_lib.features_dataset(examples, "validation", batch)))["result"]
    results = [r.decode() for r in results.numpy()]
    assert any(len(r) > 1 and r != r[::-1] for r in results)
    for reverse in (True, False):
        hparams = dataclasses.replace(config.trainer.model, reverse_output=reverse)
        _, val = hm.datasets(hparams)
        (_, _), targets = next(iter(val))
        as_read = [t.decode() for t in tokenizer.decode_results(targets, reverse=False).numpy()]
        assert as_read == [r[::-1] if reverse else r for r in results]


def test_seeded_trials_start_from_the_same_weights(examples):
    """trainer.seed: every trial's model starts from the same initial weights, so trials are
    compared on their hyperparameters, not on the luck of their initialization."""
    import keras_tuner as kt
    import numpy as np

    from lstm_math.components.tuner import Seq2SeqHyperModel

    def initial_weights(seed):
        config = load_config("smoke", [f"trainer.seed={seed}"])
        hm = Seq2SeqHyperModel(config.tuner, TrialSettings.of(config.trainer), examples,
                               coverage_of(config))
        return [w.numpy() for w in hm.build(kt.HyperParameters()).weights]

    first, second = initial_weights(3), initial_weights(3)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    other = initial_weights(4)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    unseeded = initial_weights("null")
    assert not all(np.array_equal(a, b) for a, b in zip(first, unseeded, strict=True))


@pytest.fixture(scope="module")
def search(examples, tmp_path_factory):
    """A real 2-trial random search over units, reversal and learning rate."""
    from lstm_math.components.tuner import run_tuner

    config = load_config("smoke", [SPACE, "tuner.max_trials=2"])
    out = str(tmp_path_factory.mktemp("tuner"))
    result = run_tuner(config.tuner, TrialSettings.of(config.trainer), examples,
                       coverage_of(config), out)
    return {"config": config, "out": out, "result": result, "examples": examples}


def test_search_writes_best_hyperparameters_and_trial_table(search):
    out, result = search["out"], search["result"]
    with open(os.path.join(out, "trials.json")) as f:
        trials = json.load(f)
    assert [t["trial_id"] for t in trials] == ["0", "1"]
    assert all(t["status"] == "COMPLETED" and 0.0 <= t["val_exact_match"] <= 1.0 for t in trials)
    assert trials[0]["hyperparameters"] != trials[1]["hyperparameters"]
    for t in trials:
        assert set(t["hyperparameters"]) == {"encoder_units", "reverse_output", "learning_rate"}
        assert t["optimizer"]["learning_rate"] == t["hyperparameters"]["learning_rate"]
        assert t["model"]["encoder_units"] == t["hyperparameters"]["encoder_units"]
        assert t["model"]["embedding_dim"] == search["config"].trainer.model.embedding_dim
        assert t["tuner_id"] == "tuner0" and t["seconds"] > 0
    with open(os.path.join(out, "best_hyperparameters.json")) as f:
        best = json.load(f)
    best_trial = min(trials, key=lambda t: (-t["val_exact_match"], t["trial_id"]))
    assert result["val_exact_match"] == best_trial["val_exact_match"]
    assert result["best_trial"] == best_trial["trial_id"]
    best_row = next(t for t in trials if t["trial_id"] == result["best_trial"])
    assert best == {"model": best_row["model"], "optimizer": best_row["optimizer"]}
    assert result["best"] == best and result["trials"] == trials
    with open(os.path.join(out, "trials.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [(r["trial_id"], r["status"], float(r["val_exact_match"]), int(r["encoder_units"]),
             r["reverse_output"]) for r in rows] == [
        (t["trial_id"], t["status"], t["val_exact_match"], t["model"]["encoder_units"],
         str(t["model"]["reverse_output"])) for t in trials]


def _hparams_events(path):
    from tensorboard.plugins.hparams import plugin_data_pb2

    found = []
    for event in tf.compat.v1.train.summary_iterator(path):
        for v in event.summary.value:
            if v.metadata.plugin_data.plugin_name == "hparams":
                found.append(plugin_data_pb2.HParamsPluginData.FromString(
                    v.metadata.plugin_data.content))
    return found


def _scalars(run_dir):
    values = {}
    for path in glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                if v.HasField("tensor") and tf.make_ndarray(v.tensor).size == 1:
                    values[v.tag] = float(tf.make_ndarray(v.tensor).reshape(()))
    return values


def test_tensorboard_has_a_run_per_trial_and_the_hparams_dashboard(search):
    from lstm_math.components.tuner import OBJECTIVE_TAG

    logs = os.path.join(search["out"], "logs")
    with open(os.path.join(search["out"], "trials.json")) as f:
        trials = json.load(f)
    # one run per trial, named by its number: trial-01, trial-02 (no execution0 level)
    assert sorted(d for d in os.listdir(logs) if not d.startswith("events.")) == [
        "trial-01", "trial-02"]
    for number, t in enumerate(sorted(trials, key=lambda t: int(t["trial_id"])), 1):
        run = os.path.join(logs, f"trial-{number:02d}")
        starts = [d.session_start_info for p in glob.glob(os.path.join(run, "events.*"))
                  for d in _hparams_events(p) if d.HasField("session_start_info")]
        assert len(starts) == 1
        # every model and optimizer value the trial trained with, as the Trainer writes its
        # own (integers as strings); no experiment record: TensorBoard builds the table from
        # every run's values, trials and trainings of all pipeline runs together
        assert not [d for p in glob.glob(os.path.join(run, "events.*"))
                    for d in _hparams_events(p) if d.HasField("experiment")]
        assert set(starts[0].hparams) == {  # a value of None (the family's default) is left out
            k for k, v in {**t["model"], **t["optimizer"]}.items() if v is not None}
        assert starts[0].hparams["embedding_dim"].string_value == str(t["model"]["embedding_dim"])
        hparams = {k: getattr(v, v.WhichOneof("kind")) for k, v in starts[0].hparams.items()}
        assert hparams["encoder_units"] == str(t["hyperparameters"]["encoder_units"])
        assert hparams["reverse_output"] == t["hyperparameters"]["reverse_output"]
        assert hparams["learning_rate"] == pytest.approx(t["hyperparameters"]["learning_rate"])
        assert _scalars(run)[OBJECTIVE_TAG] == pytest.approx(t["val_exact_match"])
        # the Trainer's tag names, not Keras's epoch_* / evaluation_*_vs_iterations
        assert set(_scalars(os.path.join(run, "validation"))) == {
            "loss", "exact_match", "char_accuracy"}
        assert set(_scalars(os.path.join(run, "train"))) == {
            "loss", "exact_match", "char_accuracy", "learning_rate", "examples_per_second"}


def test_trial_run_names():
    from lstm_math.components.tuner import trial_run_name

    assert [trial_run_name(i) for i in ("0", "1", "9", "00", "11", "099")] == [
        "trial-01", "trial-02", "trial-10", "trial-01", "trial-12", "trial-100"]
    assert trial_run_name("3", execution=1) == "trial-04-execution2"


def test_rerun_in_the_same_directory_reruns_no_finished_trial(search):
    from lstm_math.components.tuner import read_executions, run_tuner

    before = read_executions(search["out"])
    assert sorted(r["trial_id"] for r in before) == ["0", "1"]
    config = search["config"]
    again = run_tuner(config.tuner, TrialSettings.of(config.trainer), search["examples"],
                      coverage_of(config), search["out"])
    assert read_executions(search["out"]) == before
    assert again["best"] == search["result"]["best"]
    assert again["trials"] == search["result"]["trials"]


def test_time_budget_stops_new_trials_in_the_oracle(tmp_path):
    import time

    from lstm_math.components.tuner import Seq2SeqHyperModel, make_tuner

    config = load_config("smoke", [SPACE, "tuner.max_trials=5", "tuner.max_seconds=30"])
    hypermodel = Seq2SeqHyperModel(config.tuner, TrialSettings.of(config.trainer), "unused",
                                   coverage_of(config))
    tuner = make_tuner(config.tuner, hypermodel, str(tmp_path))
    tuner.oracle.deadline = time.time() - 1
    assert tuner.oracle.create_trial("tuner0").status == "STOPPED"
    tuner.oracle.deadline = time.time() + 60
    trial = tuner.oracle.create_trial("tuner1")
    assert trial.status == "RUNNING" and set(trial.hyperparameters.values) == {
        "encoder_units", "reverse_output", "learning_rate"}


def test_disabled_tuner_hands_the_configs_hyperparameters_to_the_trainer(tmp_path):
    from lstm_math.pipeline.runner import external_artifact, run_component

    config = load_config("smoke", ["tuner.enabled=false", "trainer.model.encoder_units=24"])
    examples = external_artifact("ExampleGen", str(tmp_path), {
        "examples_dir": str(tmp_path), "coverage": coverage_of(config).to_dict()})
    props = run_component(config, "Tuner", str(tmp_path), {
        "ExampleGen": examples, "DataValidation": external_artifact("DataValidation", "", {})})
    assert props["tuned"] is False and props["trials"] == []
    assert props["best"] == {"model": dataclasses.asdict(config.trainer.model),
                             "optimizer": dataclasses.asdict(config.trainer.optimizer)}
    assert props["best"]["model"]["encoder_units"] == 24


def _tune_args(*argv):
    from lstm_math.pipeline.cli import build_parser

    return build_parser().parse_args(["tune", *argv])


def test_tune_command_rejects_a_worker_without_a_usable_chief_address(examples, tmp_path,
                                                                      monkeypatch, caplog):
    from lstm_math.pipeline.commands import tune as run_tune

    for var in ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        monkeypatch.delenv(var, raising=False)
    config = load_config("smoke")
    args = _tune_args("--config", "smoke", "--role", "worker", "--examples", examples,
                      "--output", str(tmp_path))
    assert run_tune(args, config) == 2
    assert "--oracle HOST:PORT" in caplog.text
    args = _tune_args("--config", "smoke", "--role", "worker", "--oracle", "127.0.0.1:1",
                      "--tuner-id", "chief2", "--examples", examples, "--output", str(tmp_path))
    assert run_tune(args, config) == 2
    assert "must not contain 'chief'" in caplog.text
    assert "KERASTUNER_TUNER_ID" not in os.environ
    assert isinstance(args, argparse.Namespace) and not os.listdir(tmp_path)


def test_bayesian_search_is_keras_tuners_oracle_within_the_time_budget(tmp_path):
    """keras-tuner's own Bayesian optimization (scikit-learn GP, scipy) with our budget:
    random points first, then proposals from the Gaussian process, none after the deadline."""
    import time

    import keras_tuner as kt

    from lstm_math.components.tuner import BayesianOracle

    oracle = BayesianOracle(objective=kt.Objective("score", "max"), max_trials=6, seed=1,
                            num_initial_points=2)
    assert isinstance(oracle, kt.oracles.BayesianOptimizationOracle)
    oracle.verbose = 0
    hp = kt.HyperParameters()
    hp.Int("units", 8, 128)
    hp.Boolean("attention")
    oracle.update_space(hp)
    oracle._set_project_dir(str(tmp_path), "toy")
    for _ in range(3):  # two random points, then one from the Gaussian process
        trial = oracle.create_trial("t")
        assert trial.status == "RUNNING"
        v = trial.hyperparameters.values
        oracle.update_trial(trial.trial_id,
                            {"score": -abs(v["units"] - 48) + (10 if v["attention"] else 0)})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    oracle.deadline = time.time() - 1
    assert oracle.create_trial("t").status == "STOPPED"
