"""Every preset in pipeline/configs loads, validates and carries a real blessing bar."""

import os

import pytest

from lstm_math.components.sampling import EquationSpace
from lstm_math.config import CONFIG_DIR, coverage_of, load_config

PRESETS = sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml"))
# smoke: a barely trained model for tests, blessed whatever it scores (threshold 0.0)
TEST_ONLY = {"smoke"}


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_validates_and_has_a_real_threshold(name):
    config = load_config(name)
    coverage, d = coverage_of(config), config.task.data
    space = EquationSpace(tuple(d.operators), d.operand_min, d.operand_max, d.num_operands,
                          d.min_operands)
    assert coverage.min_operands <= coverage.num_operands
    if name not in TEST_ONLY:
        # a bar of 0.9 overall, or a bar on every operator slice the test split holds (a
        # budget that cannot reach 0.9 overall must still not push a model that lost one)
        bars = config.evaluator.operator_thresholds
        assert config.evaluator.threshold >= 0.9 or (
            set(bars) == set(space.operator_tags) and min(bars.values()) > 0 and config.evaluator.threshold > 0
        ), f"{name}: evaluator.threshold is not a bar"
    with open(os.path.join(CONFIG_DIR, f"{name}.yaml")) as f:
        assert f.readline().startswith("#"), f"{name}: say what the preset is for, first"



@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_a_user_trains_gates_on_every_single_digit_equation_right(name):
    # What a user of any preset relies on: a model that gets '1 + 9' (or '7 * 6', '1+2*3')
    # wrong is not pushed. Only the tests' barely trained model has no bar.
    bar = load_config(name).evaluator.small_operands_threshold
    assert bar is None if name in TEST_ONLY else bar == 1.0, f"{name}: {bar}"


@pytest.mark.parametrize("name", ["full", "mixed"])
def test_three_operand_presets_draw_their_single_digit_equations_again(name):
    trainer = load_config(name).trainer
    assert trainer.short_share > 0 and trainer.short_max_chars >= len("1+2*3")

def test_full_covers_every_operator_and_two_to_three_operands():
    config = load_config("full")
    coverage = coverage_of(config)
    assert sorted(coverage.operators) == sorted(["+", "-", "*", "/"])
    assert (coverage.min_operands, coverage.num_operands) == (2, 3)
    assert coverage.max_input_length == len("999*999*999")
    assert coverage.max_result_length >= len("997002999")  # a safe bound (sign room)
    assert config.task.data.sampling == "stratified"
    d = config.task.data
    space = EquationSpace(tuple(d.operators), d.operand_min, d.operand_max, d.num_operands,
                          d.min_operands)
    assert space.size > config.evaluator.exhaustive_max_equations  # never exhaustive


@pytest.mark.parametrize("name,operator", [("subtraction", "-"), ("multiplication", "*"),
                                           ("division", "/")])
def test_per_operator_presets(name, operator):
    config = load_config(name)
    assert config.task.data.operators == [operator] and config.task.data.num_operands == 2
    d = config.task.data
    size = EquationSpace((operator,), d.operand_min, d.operand_max, 2).size
    assert size <= config.evaluator.exhaustive_max_equations  # judged on every equation too


@pytest.mark.parametrize("name", PRESETS)
def test_coverage_json_form_round_trips_key_for_key(name):
    """What the Trainer writes (coverage.json) and the Exporter ships (assets/coverage.json)
    is ``to_dict()``; read back with ``from_dict`` it gives the same JSON, key for key and in
    order, so a model's assets do not change on the way through the pipeline."""
    import json

    from lstm_math.config import Coverage

    coverage = coverage_of(load_config(name))
    text = json.dumps(coverage.to_dict(), indent=2)
    again = Coverage.from_dict(json.loads(text))
    assert again == coverage and json.dumps(again.to_dict(), indent=2) == text
    assert list(json.loads(text)) == [
        "operators", "operand_min", "operand_max", "num_operands", "min_operands",
        "max_input_length", "max_result_length", "reverse_output", "output_format",
        "answer_format", "pad_operands"]
