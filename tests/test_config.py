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


# --------------------------------------------------------------------------------------
# Fail fast: a bad preset, file or override is one ConfigError line naming the field,
# before anything builds the equation space or starts a step.


def _one_line_error(*args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(*args, **kwargs)
    text = str(info.value)
    assert "\n" not in text and len(text) < 400, text
    return text


@pytest.mark.parametrize("value,problem", [
    ("*a", "found undefined alias 'a' at column 1"),
    ('!!python/object/apply:os.system ["true"]', "could not determine a constructor"),
    ("[unclosed", "expected ',' or ']', but got '<stream end>' at column 10"),
    ("{a: 1, a: 2}", "found duplicate key 'a'"),
    ("[" * 3000, ""),  # nested past PyYAML's recursion: no RecursionError
    ("0x" + "f" * 4000, "out of range (at most 64 bits)"),
    ("1" + "0" * 5000, "out of range (at most 64 bits)"),
])
def test_an_override_that_is_not_yaml_is_one_line_naming_the_field(value, problem):
    text = _one_line_error("smoke", [f"trainer.epochs={value}"])
    assert text.startswith("trainer.epochs: cannot parse value "), text
    assert problem in text


def test_a_config_file_that_is_not_yaml_is_one_line_with_its_line_and_column(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("trainer: [\n")
    assert _one_line_error(str(path)) == (
        f"{path}: not valid YAML: while parsing a flow node: expected the node content, but "
        "found '<stream end>' at line 2, column 1")
    path.write_text("base: smoke\ntrainer:\n  epochs: 1\ntrainer:\n  epochs: 2\n")
    assert "found duplicate key 'trainer' at line 4, column 1" in _one_line_error(str(path))
    # a key merged in from an anchor may still be overridden
    path.write_text("base: smoke\nshared: &shared {epochs: 1, batch_size: 8}\n"
                    "trainer:\n  <<: *shared\n  epochs: 2\n")
    with pytest.raises(ConfigError, match="^shared: unknown field"):
        load_config(str(path))


@pytest.mark.parametrize("content,message", [
    (b"\xff\xfe\x00\x01", "not a YAML text file (not UTF-8: byte 0xff at offset 0)"),
    (b"base: smoke\x00\n", "not valid YAML: unacceptable character #x0000 at offset 11: "
                           "special characters are not allowed"),
    (b"base: [1]\n", "base: a preset name or a YAML file path, got [1]"),
    # base: 5 was os.path.exists(5), true for file descriptor 5, then open(5)
    (b"base: 5\n", "base: a preset name or a YAML file path, got 5"),
    (b"base: ''\n", "base: a preset name or a YAML file path, got ''"),
    (b"- 1\n", "top level must be a mapping"),
])
def test_a_config_file_that_cannot_be_read_names_the_file(tmp_path, content, message):
    path = tmp_path / "mine.yaml"
    path.write_bytes(content)
    assert _one_line_error(str(path)) == f"{path}: {message}"


def test_a_directory_is_not_a_config_file_but_a_preset_beats_a_directory_of_its_name(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    assert _one_line_error("mine") == "--config 'mine': a directory, not a YAML file"
    (tmp_path / "smoke").mkdir()
    assert load_config("smoke").task.data.operand_max == 99


def test_base_cycles_are_refused_naming_the_file_and_base(tmp_path, monkeypatch):
    (tmp_path / "self.yaml").write_text("base: self.yaml\n")
    (tmp_path / "a.yaml").write_text("base: b.yaml\ntrainer: {epochs: 2}\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    monkeypatch.chdir(tmp_path.parent)  # a base is found beside the file that names it
    assert _one_line_error(str(tmp_path / "self.yaml")) == (
        f"{tmp_path / 'self.yaml'}: base 'self.yaml': a base cycle (self.yaml -> self.yaml)")
    assert _one_line_error(str(tmp_path / "a.yaml")) == (
        f"{tmp_path / 'b.yaml'}: base 'a.yaml': a base cycle (a.yaml -> b.yaml -> a.yaml)")
    (tmp_path / "b.yaml").write_text("base: smoke\n")
    assert load_config(str(tmp_path / "a.yaml")).trainer.epochs == 2
    (tmp_path / "b.yaml").write_text("base: nothing-here\n")
    assert _one_line_error(str(tmp_path / "a.yaml")).startswith(
        f"{tmp_path / 'b.yaml'}: base 'nothing-here': no such file and no such preset")


def test_a_line_break_in_a_value_stays_on_one_line():
    text = _one_line_error("smoke", ['pusher.model_name="a\\nb"'])
    assert text.startswith("pusher.model_name: ") and "'a\\nb'" in text


def test_task_size_is_bounded_by_what_the_model_server_takes_before_the_space_is_built():
    import time

    start = time.time()
    for n in (513, 2000, 1_000_000, 10**18):
        assert _one_line_error("smoke", [f"task.data.num_operands={n}"]).startswith(
            "task.data.num_operands: must be from 2 to 512 (the model server takes equations "
            "of at most 1024 characters)")
    # 342 two-digit operands and their operators: 1025 characters
    assert _one_line_error("smoke", ["task.data.num_operands=342"]).startswith(
        "task.data.num_operands: 342 operands up to 99 make equations of up to 1025 characters")
    # within the length, the space is too large to index: said without printing 10**679
    assert "about 10**" in _one_line_error("smoke", ["task.data.num_operands=341"])
    assert _one_line_error("smoke", ["task.data.operand_max=1_000_000_000_000_000_000"]
                           ).startswith("task.data.operand_max: at most 999999999999999999")
    # 4**7 * 100**8 equations: counted exactly (numpy's int64 sum of the parts wraps around)
    assert _one_line_error("smoke", ["task.data.num_operands=8",
                                     "task.data.operators=['+', '-', '*', '/']"]) == (
        "task.data.operand_max: the equation space has about 10**20 equations; at most 2**63 "
        "are supported")
    assert time.time() - start < 5


def test_the_equation_bound_is_the_serving_signatures():
    import ast
    import os

    from lstm_math.config import schema

    source = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               "components", "signature.py")).read()
    bound = next(node.value.value for node in ast.parse(source).body
                 if isinstance(node, ast.Assign)
                 and getattr(node.targets[0], "id", None) == "MAX_INPUT_BYTES")
    assert schema.MAX_EQUATION_CHARS == bound


@pytest.mark.parametrize("override,field", [
    ("trainer.optimizer.learning_rate=.inf", "trainer.optimizer.learning_rate"),
    ("trainer.optimizer.learning_rate=.nan", "trainer.optimizer.learning_rate"),
    ("trainer.optimizer.clipnorm=.inf", "trainer.optimizer.clipnorm"),
    ("trainer.progress_every_s=-1", "trainer.progress_every_s"),
    ("trainer.progress_every_s=.nan", "trainer.progress_every_s"),
    ("trainer.short_share=.nan", "trainer.short_share"),
    ("evaluator.regression_margin=.inf", "evaluator.regression_margin"),
    ("pusher.infra_max_latency_ms=.inf", "pusher.infra_max_latency_ms"),
    ("cluster.step_timeout_s=.inf", "cluster.step_timeout_s"),
    ("cluster.poll_interval_s=.nan", "cluster.poll_interval_s"),
    ("runtime.beam_args=[1]", "runtime.beam_args"),
    ("runtime.beam_args=['runner=DirectRunner']", "runtime.beam_args"),
    ("runtime.beam_args=--runner=DirectRunner", "runtime.beam_args"),
    ("runtime.infra_validation_timeout_s=-1", "runtime.infra_validation_timeout_s"),
    ("runtime.infra_validation_timeout_s=0", "runtime.infra_validation_timeout_s"),
    ("runtime.pipeline_root=", "runtime.pipeline_root"),
    ("runtime.pipeline_root=' '", "runtime.pipeline_root"),
    ("pusher.serving_base=", "pusher.serving_base"),
    ("pusher.model_name=..", "pusher.model_name"),
    ("pusher.model_name=.", "pusher.model_name"),
    ("pusher.model_name=a b", "pusher.model_name"),
    ("pusher.model_name=a:b", "pusher.model_name"),
    ("pusher.model_name=", "pusher.model_name"),
    ("cluster.cpu=abc", "cluster.cpu"),
    ("cluster.cpu='0'", "cluster.cpu"),
    ("cluster.cpu='-1'", "cluster.cpu"),
    ("cluster.memory=4GB", "cluster.memory"),
    ("cluster.memory=lots", "cluster.memory"),
    ("cluster.volume_claim='BAD NAME'", "cluster.volume_claim"),
    ("cluster.volume_claim=Data", "cluster.volume_claim"),
    ("cluster.service_account=My_Account", "cluster.service_account"),
    ("cluster.namespace=" + "a" * 64, "cluster.namespace"),
    ("tuner.seed=-1", "tuner.seed"),
    ("name=", "name"),
    ("task.data.num_shards=10", "task.data.num_shards"),  # smoke with num_examples=5
    ("trainer.batch_size=1e12", "trainer.batch_size"),
    ("trainer.batch_size=65537", "trainer.batch_size"),
    ("trainer.batch_size=12.5", "trainer.batch_size"),
    ("evaluator.batch_size=1e12", "evaluator.batch_size"),
    ("evaluator.exhaustive_batch_size=1e9", "evaluator.exhaustive_batch_size"),
    ("trainer.seed=0x" + "f" * 16, "trainer.seed"),
])
def test_fields_that_were_never_checked_fail_naming_the_field(override, field):
    overrides = ["task.data.num_examples=5"] if "num_shards" in override else []
    assert _one_line_error("smoke", overrides + [override]).startswith(field + ":")


@pytest.mark.parametrize("override", [
    "pusher.model_name=my-model.v2", "pusher.model_name=lstm_math",
    "runtime.beam_args=['--direct_num_workers=2', '--direct_running_mode=multi_processing']",
    "trainer.progress_every_s=0", "cluster.cpu='500m'", "cluster.cpu='1.5'",
    "cluster.memory='512Mi'", "cluster.memory='1e9'", "cluster.volume_claim=''",
    "cluster.volume_claim=data.claim-1", "cluster.service_account=pipeline-runner",
    "trainer.batch_size=65536", "trainer.batch_size=4096",  # more than smoke's 2100 examples
])
def test_the_valid_values_of_those_fields_still_load(override):
    load_config("smoke", [override])


def test_huge_numbers_fail_naming_the_field_in_files_and_built_configs():
    from lstm_math.config import from_dict

    with pytest.raises(ConfigError, match=r"^trainer\.epochs: an integer of about 1001 digits "
                                          r"is out of range"):
        from_dict({"trainer": {"epochs": 10**1000}})
    with pytest.raises(ConfigError, match=r"^trainer\.optimizer\.learning_rate: expected a "
                                          r"finite number"):
        from_dict({"trainer": {"optimizer": {"learning_rate": 10**400}}})


@pytest.mark.parametrize("overrides,field,message", [
    # ExampleGen's data validation refuses an empty split
    (["task.data.num_examples=1", "task.data.num_shards=1"], "task.data.num_examples",
     "with 1 equation drawn the validation and test splits would be empty"),
    (["task.data.num_examples=3", "task.data.num_shards=1"], "task.data.num_examples",
     "splits would be empty"),
    # single-digit equations always train: nothing is ever held out
    (["task.data.operand_max=9", "task.data.exhaustive=true"], "task.data.operand_max",
     "only single-digit equations, which always train"),
    # a one-equation space: named by the field the user set, not by the shards it leaves
    (["task.data.operand_max=0"], "task.data.operand_max",
     "only single-digit equations, which always train"),
    # the whole space drawn, and still too small a share to hold out
    (["task.data.split_fractions={train: 0.99998, validation: 0.00001, test: 0.00001}",
      "task.data.num_examples=100_000"], "task.data.split_fractions.validation",
     "with the whole space drawn (10000 equations)"),
    (["task.data.operand_max=999", "task.data.num_examples=10_000_000",
      "task.data.split_fractions={train: 0.999998, validation: 0.000001, test: 0.000001}"],
     "task.data.split_fractions.validation", "with none of the first 20000 equations drawn"),
])
def test_a_sample_whose_splits_cannot_all_have_examples_is_refused(overrides, field, message):
    text = _one_line_error("smoke", overrides)
    assert text.startswith(field + ":") and message in text, text


def test_a_small_sample_whose_splits_all_have_examples_loads():
    from lstm_math.components import sampling

    c = load_config("smoke", ["task.data.num_examples=10", "task.data.num_shards=1",
                              "trainer.batch_size=8"])
    d = c.task.data
    sampler = sampling.Sampler(d.space(), d.seed, d.num_examples, d.exhaustive, d.sampling)
    splits = sampling.split_indices(sampler.block(0, sampler.count).texts(),
                                    [d.split_fractions[s] for s in sampling.SPLITS])
    assert set(splits.tolist()) == {0, 1, 2}


@pytest.mark.parametrize("overrides,field,shown", [
    (["tuner.search_space={attention_heads: [3]}"], "tuner.search_space.attention_heads",
     "attention_heads=3 fails trainer.model.attention_heads: must divide 2 x encoder_units (32)"),
    (["tuner.search_space={attention_heads: [1, 2, 3, 4]}"],
     "tuner.search_space.attention_heads", "attention_heads=3 fails"),
    (["trainer.model.attention_heads=4", "tuner.search_space={encoder_units: [8, 3]}"],
     "tuner.search_space.encoder_units", "encoder_units=3 fails"),
    (["tuner.search_space={decoder_layers: [1, 2]}"], "tuner.search_space.decoder_layers",
     "decoder_layers=2 fails trainer.model.decoder_layers: the attention family's decoder"),
    (["trainer.model.family=transformer", "tuner.search_space={attention: [true, false]}"],
     "tuner.search_space.attention", "attention=False fails"),
    # no value fails alone, nor any two of them: only the three together
    (["trainer.model.attention=false", "trainer.model.encoder_units=24",
      "tuner.search_space={attention: [false, true], attention_heads: [1, 3], "
      "encoder_units: [24, 16]}"], "tuner.search_space.attention_heads",
     "a trial with attention=True, attention_heads=3, encoder_units=16 fails"),
    # a range, drawn as keras-tuner draws it
    (["tuner.search_space={encoder_units: {min: 8, max: 64}}"],
     "tuner.search_space.encoder_units", "encoder_units=9 fails"),
    (["trainer.model.family=transformer", "trainer.model.decoder_units=48",
      "tuner.search_space={attention_heads: {min: 2, max: 32, step: 2, sampling: log}}"],
     "tuner.search_space.attention_heads", "attention_heads=32 fails"),
    # too many combinations to try them all: the fields that interact, in every combination
    (["tuner.search_space={encoder_units: {min: 8, max: 512, step: 8}, decoder_units: "
      "{min: 8, max: 512, step: 8}, embedding_dim: {min: 4, max: 64}, attention_heads: [1, 3]}"],
     "tuner.search_space.attention_heads", "a trial with attention_heads=3 fails"),
    (["trainer.model.family=transformer", "tuner.search_space={decoder_units: {min: 8, "
      "max: 512, step: 8}, embedding_dim: {min: 4, max: 512}, attention_heads: [1, 2, 16]}"],
     "tuner.search_space.attention_heads", "decoder_units=8, attention_heads=16 fails"),
    (["tuner.search_space={learning_rate: [.inf]}"], "tuner.search_space.learning_rate",
     "finite numbers"),
    (["tuner.search_space={dropout: {min: 0, max: 0.5, sampling: log}}"],
     "tuner.search_space.dropout", "log sampling needs min > 0"),
    (["tuner.search_space={encoder_units: {min: 8, max: 64, step: 1, sampling: log}}"],
     "tuner.search_space.encoder_units", "the step multiplies: it must be > 1"),
    (["tuner.search_space={attention_heads: {min: 1, max: 1000}, "
      "encoder_units: {min: 1, max: 1000}}"], "tuner.search_space",
     "1000000 combinations of attention_heads, encoder_units"),
])
def test_every_trial_of_the_search_space_is_a_valid_model(overrides, field, shown):
    text = _one_line_error("smoke", overrides)
    assert text.startswith(field + ":") and shown in text, text


@pytest.mark.parametrize("overrides", [
    ["tuner.search_space={attention_heads: [1, 2, 4], encoder_units: [8, 12, 16], "
     "attention: [true, false]}"],
    ["tuner.search_space={encoder_units: {min: 8, max: 512, step: 8}, "
     "decoder_units: {min: 8, max: 512, step: 8}, attention_heads: [1, 2, 4, 8]}"],
    ["trainer.model.family=transformer",
     "tuner.search_space={decoder_units: [16, 32, 64], attention_heads: [1, 2, 4, 8, 16]}"],
    # large but independent: each value checked alone
    ["tuner.search_space={embedding_dim: {min: 4, max: 512}, warmup_steps: {min: 0, "
     "max: 1000000}, learning_rate: {min: 1e-5, max: 1e-2, sampling: log}, "
     "encoder_layers: [1, 2, 3]}"],
    ["tuner.search_space={attention_heads: [3]}", "tuner.enabled=false"],
])
def test_search_spaces_whose_every_trial_is_valid_load(overrides):
    load_config("smoke", overrides)


def test_trial_values_are_the_ones_keras_tuner_draws():
    kt = pytest.importorskip("keras_tuner")
    from lstm_math.config.training import trial_values

    for spec in ({"min": 8, "max": 64, "step": 8}, {"min": 2, "max": 100, "step": 3,
                                                    "sampling": "log"},
                 {"min": 2, "max": 100, "step": 2, "sampling": "reverse_log"},
                 {"min": 1, "max": 9}):
        hp = kt.HyperParameters()
        step = {"step": spec["step"]} if "step" in spec else {}
        hp.Int("x", spec["min"], spec["max"], sampling=spec.get("sampling", "linear"), **step)
        assert list(trial_values(spec, int, True)) == [
            int(v) for v in hp.space[0].values], spec


NASTY = [".nan", ".inf", "-1", "0x" + "f" * 40, "1" + "0" * 5000, "[1]", "{a: 1}", "''",
         "[[.nan]]", "{'+': [1]}"]


def _leaves(cls, prefix=""):
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _leaves(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}"


def test_no_value_of_any_field_gets_past_the_config_as_anything_but_a_config_error():
    from lstm_math.config import PipelineConfig

    for field in _leaves(PipelineConfig):
        for value in NASTY:
            try:
                load_config("smoke", [f"{field}={value}"])
            except ConfigError as e:
                assert "\n" not in str(e) and len(str(e)) < 400, (field, value, str(e))


@pytest.mark.parametrize("files,argv,expected", [
    ({"a.yaml": "base: b.yaml\n", "b.yaml": "base: a.yaml\n"}, ["--config", "CFG/a.yaml"],
     "bad config: CFG/b.yaml: base 'a.yaml': a base cycle (a.yaml -> b.yaml -> a.yaml)"),
    ({"mine.yaml": "base: smoke\ntrainer: [\n"}, ["--config", "CFG/mine.yaml"],
     "bad config: CFG/mine.yaml: not valid YAML: while parsing a flow node: expected the node "
     "content, but found '<stream end>' at line 3, column 1"),
    ({}, ["--config", "smoke", "--set", "trainer.epochs=[unclosed"],
     "bad config: trainer.epochs: cannot parse value '[unclosed': while parsing a flow "
     "sequence: expected ',' or ']', but got '<stream end>' at column 10"),
    ({}, ["--config", "smoke", "--set", "tuner.search_space={attention_heads: [3]}"],
     "bad config: tuner.search_space.attention_heads: a trial with attention_heads=3 fails"),
], ids=["base-cycle", "file-yaml", "override-yaml", "search-space"])
def test_a_bad_config_on_the_cli_is_one_line_exit_2_and_creates_nothing(tmp_path, files, argv,
                                                                        expected):
    import os
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    configs, work = tmp_path / "configs", tmp_path / "work"
    configs.mkdir()
    work.mkdir()
    for name, text in files.items():
        (configs / name).write_text(text)
    argv = [a.replace("CFG", str(configs)) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "lstm_math.pipeline.cli", "run", *argv],
                          cwd=work, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=repo))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [proc.stderr.rstrip("\n")], proc.stderr  # one line
    assert proc.stderr.startswith("lstm-math run: error: "
                                  + expected.replace("CFG", str(configs))), proc.stderr
    assert proc.stdout == ""
    assert os.listdir(work) == [] and sorted(os.listdir(configs)) == sorted(files)
