import pytest
import yaml

from lstm_math.config import ConfigError, load_config, coverage_of


def test_presets_load_and_smoke_inherits_default():
    default = load_config("default")
    smoke = load_config("smoke")
    assert default.task.data.operators == ["+"] and default.task.data.operand_max == 999
    assert smoke.task.data.operand_max == 99
    assert smoke.pusher.model_name == default.pusher.model_name == "lstm_math"
    assert coverage_of(default).max_result_length == 4
    assert coverage_of(default).max_input_length == 7
    # the product draws every digit-length stratum; the post's reproduction draws uniformly
    assert default.task.data.sampling == smoke.task.data.sampling == "stratified"
    assert load_config("seed").task.data.sampling == "uniform"


def test_overrides_are_typed():
    c = load_config("smoke", ["trainer.epochs=3", "task.data.operators=['+', '-']",
                              "evaluator.threshold=0.5", "tuner.enabled=false"])
    assert c.trainer.epochs == 3
    assert c.task.data.operators == ["+", "-"]
    assert c.evaluator.threshold == 0.5
    assert c.tuner.enabled is False


@pytest.mark.parametrize("override,field", [
    ("trainer.epochs=0", "trainer.epochs"),
    ("trainer.seed=-1", "trainer.seed"),
    ("trainer.seed=true", "trainer.seed"),
    ("exporter.jit_compile=maybe", "exporter.jit_compile"),
    ("exporter.warmup_batch_sizes=[0]", "exporter.warmup_batch_sizes"),
    ("exporter.warmup_batch_sizes=8", "exporter.warmup_batch_sizes"),
    ("trainer.epochs=three", "trainer.epochs"),
    ("trainer.epoch=3", "trainer.epoch"),
    ("task.data.operators=['%']", "task.data.operators"),
    ("task.data.operand_max=-1", "task.data.operand_max"),
    ("task.data.split_fractions={train: 0.5, validation: 0.1, test: 0.1}", "task.data.split_fractions"),
    ("tuner.search_space={}", "tuner.search_space"),
    ("tuner.search_space={units: [1, 2]}", "tuner.search_space.units"),
    ("tuner.max_trials=0", "tuner.max_trials"),
    ("trainer.model.family=gru", "trainer.model.family"),
    ("trainer.model.decoder_layers=2", "trainer.model.decoder_layers"),
    ("evaluator.threshold=2", "evaluator.threshold"),
    ("evaluator.operator_thresholds={'%': 0.9}", "evaluator.operator_thresholds.%"),
    ("evaluator.operator_thresholds={'+': 1.5}", "evaluator.operator_thresholds.+"),
    ("evaluator.operator_thresholds={'+': high}", "evaluator.operator_thresholds.+"),
    # smoke is + on two operands: no '*' equations and no mixed ones to judge
    ("evaluator.operator_thresholds={'*': 0.9}", "evaluator.operator_thresholds.*"),
    ("evaluator.operator_thresholds={mixed: 0.5}", "evaluator.operator_thresholds.mixed"),
    ("pusher.model_name=a/b", "pusher.model_name"),
    ("trainer.optimizer.learning_rate=0", "trainer.optimizer.learning_rate"),
    ("trainer.optimizer.schedule=linear", "trainer.optimizer.schedule"),
    ("trainer.optimizer.warmup_steps=-1", "trainer.optimizer.warmup_steps"),
    ("trainer.optimizer.clipnorm=-1", "trainer.optimizer.clipnorm"),
    ("trainer.optimizer.clipnorm=big", "trainer.optimizer.clipnorm"),
    ("trainer.optimizer.momentum=0.9", "trainer.optimizer.momentum"),
])
def test_bad_configs_fail_fast_naming_the_field(override, field):
    with pytest.raises(ConfigError) as info:
        load_config("smoke", [override])
    assert str(info.value).startswith(field)


def test_yaml_file_with_base(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"base": "smoke", "trainer": {"epochs": 2}}))
    c = load_config(str(path))
    assert c.trainer.epochs == 2 and c.task.data.operand_max == 99
    with pytest.raises(ConfigError, match="no such file and no such preset"):
        load_config("nope")


@pytest.mark.parametrize("old,new", [
    ("trainer.model.learning_rate=0.01", "trainer.optimizer.learning_rate"),
    ("trainer.lr_schedule=constant", "trainer.optimizer.schedule"),
])
def test_renamed_keys_name_their_new_place(old, new):
    with pytest.raises(ConfigError, match=f"renamed to {new}"):
        load_config("smoke", [old])


def test_optimizer_section_holds_rate_schedule_warmup_and_clipping():
    default, seed = load_config("default").trainer.optimizer, load_config("seed").trainer.optimizer
    assert (default.learning_rate, default.schedule, default.warmup_steps) == (0.005, "cosine", 0)
    assert (seed.learning_rate, seed.schedule) == (0.01, "constant")
    # null clipnorm: the family's own (the post's seed model has none); 0: off
    assert default.clipnorm is None and default.clipnorm_for("attention") == 1.0
    assert seed.clipnorm_for("seed") is None
    c = load_config("smoke", ["trainer.optimizer.clipnorm=0.5", "trainer.optimizer.warmup_steps=10"])
    assert c.trainer.optimizer.clipnorm_for("attention") == 0.5
    assert c.trainer.optimizer.warmup_steps == 10
    assert load_config("smoke", ["trainer.optimizer.clipnorm=0"]).trainer.optimizer.clipnorm_for(
        "attention") is None


def test_config_schema_imports_no_component_but_the_task_arithmetic():
    import ast
    import subprocess
    import sys

    code = ("import sys, lstm_math.config; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'apache_beam') or m.split('.')[:2] in "
            "(['lstm_math', 'components'], ['lstm_math', 'serving'])))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=__import__("os").path.dirname(
                             __import__("os").path.dirname(__file__))).stdout
    assert ast.literal_eval(out) == ["lstm_math.components", "lstm_math.components.answer_formats",
                                     "lstm_math.components.equations",
                                     "lstm_math.components.sampling", "lstm_math.serving",
                                     "lstm_math.serving.contract"]


@pytest.mark.parametrize("text,value", [
    ("3e-3", 3e-3), ("1e-3", 1e-3), ("1.5E+3", 1500.0), ("2e3", 2000.0), (".5", 0.5),
    ("3.0e-3", 3e-3), ("1_000.5", 1000.5)])
def test_numbers_in_overrides_parse_as_written(text, value):
    # YAML 1.1 (PyYAML) reads 3e-3 and 1e3 as strings: "expected a number"
    c = load_config("smoke", [f"trainer.optimizer.learning_rate={text}"])
    assert c.trainer.optimizer.learning_rate == value
    assert isinstance(c.trainer.optimizer.learning_rate, float)


@pytest.mark.parametrize("text,value", [("1_000", 1000), ("1e3", 1000), ("2_000.0", 2000),
                                        ("0x10", 16)])
def test_integers_in_overrides_parse_as_written(text, value):
    c = load_config("smoke", [f"task.data.num_examples={text}", f"trainer.seed={text}"])
    assert c.task.data.num_examples == value and isinstance(c.task.data.num_examples, int)
    assert c.trainer.seed == value and isinstance(c.trainer.seed, int)


@pytest.mark.parametrize("override,message", [
    ("task.data.num_examples=2.5e-1", "task.data.num_examples: expected an integer, got 0.25"),
    ("task.data.num_examples=010", "task.data.num_examples: expected an integer, got '010'"),
    ("trainer.epochs=1:30", "trainer.epochs: expected an integer, got '1:30'"),
    ("trainer.optimizer.learning_rate=3e-3x", "trainer.optimizer.learning_rate: expected a "
                                              "number, got '3e-3x'"),
])
def test_numbers_that_are_not_clear_fail_naming_the_field(override, message):
    with pytest.raises(ConfigError) as e:
        load_config("smoke", [override])
    assert str(e.value) == message


def test_numbers_in_config_files_parse_as_written(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: smoke\ntrainer:\n  optimizer:\n    learning_rate: 1e-3\n"
                    "task:\n  data:\n    num_examples: 2_000\n"
                    "tuner:\n  search_space:\n    learning_rate: [1e-3, 3e-3]\n")
    c = load_config(str(path))
    assert c.trainer.optimizer.learning_rate == 1e-3
    assert c.task.data.num_examples == 2000
    assert c.tuner.search_space["learning_rate"] == [1e-3, 3e-3]
