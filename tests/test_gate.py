"""The regression gate end to end: the Evaluator judges a candidate against the model served
at ``pusher.serving_base``, and that baseline is an input of the Evaluator (a new baseline
is a new evaluation); the Pusher pushes only while the served model is still the one the
blessing compared with.

The pipelines here are the real Evaluator, Exporter and Pusher nodes (their own functions,
fingerprints and caching through ``LocalRunner``) around stand-ins: ExampleGen hands over a
shared small data set, the Trainer writes which oracle model it "trained" (``OracleModel`` from
tests/helpers.py, loaded through a patched ``load_trained``), and the
InfraValidator passes. No network is trained.
"""

import dataclasses
import json
import os
import shutil

import pytest

from lstm_math.components import pusher
from lstm_math.components.exporter import export_saved_model
from lstm_math.config import Coverage, coverage_of, load_config
from lstm_math.pipeline.pipeline import Pipeline, Resolver, create_pipeline
from lstm_math.pipeline.runner import LocalRunner
from lstm_math.serving import contract
from tests.helpers import OracleModel

DATA = ["task.data.operand_max=30", "task.data.num_examples=600", "task.data.num_shards=2",
        'task.data.operators=["+", "-"]']


def gate_config(root, serving):
    # threshold 0 (as in the smoke preset): an empty serving base blesses anything, so only
    # the regression check against the served model can stop a bad candidate
    return load_config("smoke", DATA + [
        f"runtime.pipeline_root={root}", f"pusher.serving_base={serving}",
        "evaluator.threshold=0.0", "evaluator.regression_margin=0.001",
        "evaluator.exhaustive_max_equations=0",
        "exporter.jit_compile=false"])  # the oracles decode with string ops (no XLA)


def oracle(kind: str, coverage: dict):
    if kind == "good":  # never wrong
        return OracleModel(coverage, wrong_a=-1)
    if kind == "flawed":  # wrong on every 7 + b: about 98% right
        return OracleModel(coverage)
    if kind == "broken":  # always wrong
        return OracleModel(coverage, always_wrong=True)
    raise ValueError(kind)


@pytest.fixture
def oracle_pipeline(examples_for, monkeypatch):
    """``oracle_pipeline(config, kind)``: the pipeline with the oracle ``kind`` as its model."""
    examples = examples_for("smoke", *DATA)

    def load_trained(model_dir):
        with open(os.path.join(model_dir, "oracle.json")) as f:
            made = json.load(f)
        coverage = Coverage.from_dict(made["coverage"])
        return oracle(made["kind"], coverage), coverage

    monkeypatch.setattr("lstm_math.components.trainer.load_trained", load_trained)

    def make(config, kind):
        coverage = coverage_of(config).to_dict()  # as an artifact's properties hold it

        def example_gen(ctx):
            return {"examples_dir": examples, "coverage": coverage}

        def trainer(ctx):
            with open(os.path.join(ctx.output_dir, "oracle.json"), "w") as f:
                json.dump({"kind": kind, "coverage": coverage}, f)
            return {"model_dir": ctx.output_dir}

        def infra_validator(ctx):
            return {"passed": True, "problems": []}

        real = create_pipeline(config)
        stand_ins = {"ExampleGen": dict(run=example_gen),
                     "Trainer": dict(run=trainer, inputs=("ExampleGen",),
                                     resolvers={"kind": Resolver(lambda: kind, {})}),
                     "InfraValidator": dict(run=infra_validator)}
        return Pipeline(real.name, [dataclasses.replace(real.node(n), **stand_ins.get(n, {}))
                                    for n in ("ExampleGen", "Trainer", "Evaluator", "Exporter",
                                              "InfraValidator", "Pusher")])

    return make


def served_versions(serving):
    return contract.versions(os.path.join(serving, "lstm_math"))


def place_model(kind, config, version_dir):
    """A model served without any pipeline: `cp -r <model> BASE/lstm_math/N`."""
    coverage = coverage_of(config)
    export_saved_model(oracle(kind, coverage), coverage, None, str(version_dir))
    return str(version_dir)


def test_a_blessing_is_not_reused_against_a_different_served_model(tmp_path, oracle_pipeline):
    """The tester's reproduction: a broken candidate blessed against an empty base, then run
    against a base serving a good model, is evaluated again, not blessed, and not pushed."""
    root, empty, good = tmp_path / "root", tmp_path / "x", tmp_path / "y"
    config = gate_config(root, empty)
    first = LocalRunner(config).run(oracle_pipeline(config, "broken"))["components"]
    blessing = first["Evaluator"]["properties"]["blessing"]
    assert blessing["blessed"] is True and blessing["baseline"] is None
    assert first["Pusher"]["properties"]["pushed"] is True
    assert served_versions(empty) == [1]

    # the same candidate, nothing changed: everything cached, nothing pushed again
    again = LocalRunner(config).run(oracle_pipeline(config, "broken"))["components"]
    assert all(c["cached"] for c in again.values()), {n: c["cached"] for n, c in again.items()}
    assert served_versions(empty) == [1]

    place_model("good", config, good / "lstm_math" / "1")
    config = gate_config(root, good)
    comps = LocalRunner(config).run(oracle_pipeline(config, "broken"))["components"]
    assert comps["Trainer"]["cached"] and not comps["Evaluator"]["cached"]
    blessing = comps["Evaluator"]["properties"]["blessing"]
    assert blessing["blessed"] is False
    assert blessing["baseline"]["version"] == 1 and blessing["baseline"]["exact_match"] == 1.0
    assert any(r.startswith("regression") for r in blessing["reasons"])
    push = comps["Pusher"]["properties"]
    assert push["pushed"] is False and "not blessed" in push["reason"]
    assert served_versions(good) == [1]
    assert blessing["judged_against"] == {
        "serving_base": str(good), "model_name": "lstm_math", "version": 1,
        "digest": pusher.content_digest(str(good / "lstm_math" / "1"))}
    on_disk = json.loads(open(os.path.join(comps["Evaluator"]["uri"], "blessing.json")).read())
    assert on_disk["judged_against"] == blessing["judged_against"]
    # "no model" is a baseline too, and it names where
    assert first["Evaluator"]["properties"]["blessing"]["judged_against"] == {
        "serving_base": str(empty), "model_name": "lstm_math", "version": None, "digest": None}


def test_a_served_version_replaced_in_place_is_a_new_baseline(tmp_path, oracle_pipeline):
    """Same path, other files: the version's content digest is part of the baseline."""
    root, serving = tmp_path / "root", tmp_path / "serving"
    config = gate_config(root, serving)
    first = LocalRunner(config).run(oracle_pipeline(config, "broken"))["components"]
    assert first["Pusher"]["properties"]["version"] == 1
    version_dir = serving / "lstm_math" / "1"
    shutil.rmtree(version_dir)
    place_model("good", config, version_dir)

    comps = LocalRunner(config).run(oracle_pipeline(config, "broken"))["components"]
    assert not comps["Evaluator"]["cached"] and not comps["Pusher"]["cached"]
    assert comps["Evaluator"]["properties"]["blessing"]["blessed"] is False
    assert comps["Pusher"]["properties"]["pushed"] is False
    assert served_versions(serving) == [1]


def test_a_push_by_another_pipeline_after_the_evaluation_is_refused(tmp_path, oracle_pipeline):
    """Pipelines A and B push to one base. A is evaluated against the empty base; B pushes a
    better model before A's Pusher runs: A's Pusher refuses in one line naming both
    baselines, and A's rerun evaluates A against B's model."""
    serving = tmp_path / "serving"
    config_a = gate_config(tmp_path / "root-a", serving)
    config_b = gate_config(tmp_path / "root-b", serving)
    runner_a, pipeline_a = LocalRunner(config_a), oracle_pipeline(config_a, "flawed")
    done = {}
    for step in ("ExampleGen", "Trainer", "Evaluator", "Exporter", "InfraValidator"):
        done[step], _, _ = runner_a.run_node(pipeline_a, step, done)
    assert done["Evaluator"].properties["blessing"]["blessed"] is True

    b = LocalRunner(config_b).run(oracle_pipeline(config_b, "good"))["components"]
    assert b["Pusher"]["properties"]["pushed"] is True
    b_digest = b["Pusher"]["properties"]["digest"]
    assert served_versions(serving) == [1]

    with pytest.raises(Exception) as refused:
        runner_a.run_node(pipeline_a, "Pusher", done)
    assert isinstance(refused.value, pusher.BaselineChanged), refused.value
    message = str(refused.value)
    assert "\n" not in message
    assert "no model" in message and "version 1" in message and b_digest[:12] in message
    assert "rerun" in message
    assert served_versions(serving) == [1]
    assert pusher.content_digest(str(serving / "lstm_math" / "1")) == b_digest
    assert done["Evaluator"].properties["blessing"]["judged_against"]["version"] is None

    rerun = runner_a.run(pipeline_a)["components"]
    assert rerun["Trainer"]["cached"] and not rerun["Evaluator"]["cached"]
    blessing = rerun["Evaluator"]["properties"]["blessing"]
    assert blessing["judged_against"]["version"] == 1
    assert blessing["judged_against"]["digest"] == b_digest
    assert blessing["baseline"]["exact_match"] == 1.0 and blessing["blessed"] is False
    assert rerun["Pusher"]["properties"]["pushed"] is False
    assert served_versions(serving) == [1]


def test_a_new_export_of_the_served_candidate_is_pushed_and_then_stays_cached(
        tmp_path, oracle_pipeline):
    """The served model is this very candidate (an earlier push of the same blessing): not a
    new baseline. A changed export of it is pushed, and the next run is all cached."""
    serving = tmp_path / "serving"
    config = gate_config(tmp_path / "root", serving)
    LocalRunner(config).run(oracle_pipeline(config, "flawed"))
    assert served_versions(serving) == [1]
    config = load_config("smoke", DATA + [
        f"runtime.pipeline_root={tmp_path / 'root'}", f"pusher.serving_base={serving}",
        "evaluator.threshold=0.0", "evaluator.regression_margin=0.001",
        "evaluator.exhaustive_max_equations=0", "exporter.jit_compile=false",
        "exporter.warmup_batch_sizes=[1]"])
    comps = LocalRunner(config).run(oracle_pipeline(config, "flawed"))["components"]
    assert comps["Evaluator"]["cached"] and not comps["Exporter"]["cached"]
    assert comps["Pusher"]["properties"]["pushed"] is True
    assert served_versions(serving) == [1, 2]
    again = LocalRunner(config).run(oracle_pipeline(config, "flawed"))["components"]
    assert all(c["cached"] for c in again.values())
    assert served_versions(serving) == [1, 2]
