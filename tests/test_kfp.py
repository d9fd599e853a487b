"""The Kubeflow Pipelines v2 definition: the compiled spec (steps, parameters, image, wiring,
the blessing condition, the volume) and, slow, the smoke config run through KFP's local
SubprocessRunner (the same definition, no Docker)."""

import os

import pytest
import yaml

kfp = pytest.importorskip("kfp")

from lstm_math.pipeline import cli  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = {"example-gen": "ExampleGen", "data-validation": "DataValidation", "tuner": "Tuner",
         "trainer": "Trainer", "evaluator": "Evaluator", "exporter": "Exporter",
         "infra-validator": "InfraValidator"}
# consumer task -> {input parameter: producer task}, all through the producer's "uri" output
WIRING = {"data-validation": {"example_gen": "example-gen"},
          "tuner": {"example_gen": "example-gen", "data_validation": "data-validation"},
          "trainer": {"example_gen": "example-gen", "tuner": "tuner"},
          "evaluator": {"example_gen": "example-gen", "trainer": "trainer"},
          "exporter": {"trainer": "trainer", "evaluator": "evaluator"},
          "infra-validator": {"exporter": "exporter"}}


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    out = tmp_path_factory.mktemp("kfp") / "lstm_math.yaml"
    assert cli.main(["compile-kfp", "--config", "smoke", "--set", "cluster.train_workers=2",
                     "--set", "cluster.tuner_workers=3", "--set",
                     "cluster.image=registry.example/lstm-math:9", str(out)]) == 0
    docs = list(yaml.safe_load_all(out.read_text()))
    return docs[0], docs[1]["platforms"]["kubernetes"]


def test_steps_and_image(spec):
    pipeline, _ = spec
    tasks = pipeline["root"]["dag"]["tasks"]
    assert set(tasks) == set(TASKS) | {"condition-1"}
    for name, step in TASKS.items():
        assert tasks[name]["taskInfo"]["name"] == step
        assert tasks[name]["inputs"]["parameters"]["step"]["runtimeValue"]["constant"] == step
        assert tasks[name]["cachingOptions"] == {}  # KFP caching off: the steps cache
    executors = pipeline["deploymentSpec"]["executors"]
    assert len(executors) == 8
    for ex in executors.values():
        assert ex["container"]["image"] == "registry.example/lstm-math:9"
        program = ex["container"]["command"][-1]
        assert "from lstm_math.pipeline.kfp_task import run_as_task" in program
        assert "pip install" not in " ".join(ex["container"]["command"])  # kfp is in the image


def test_parameters(spec):
    pipeline, _ = spec
    params = pipeline["root"]["inputDefinitions"]["parameters"]
    defaults = {k: v.get("defaultValue") for k, v in params.items()}
    # The --set of compile-kfp are the default overrides (the workers/trials parameters are
    # applied after them, so the parameters win).
    assert defaults == {"config": "smoke", "overrides": [
        "cluster.train_workers=2", "cluster.tuner_workers=3",
        "cluster.image=registry.example/lstm-math:9"], "pipeline_root": "/data/artifacts",
                        "serving_base": "/data/serving_models", "beam_args": [],
                        "train_workers": 2, "tuner_workers": 3, "tuner_trials": 2,
                        "launcher": "kubernetes"}
    tasks = pipeline["root"]["dag"]["tasks"]
    p = tasks["example-gen"]["inputs"]["parameters"]
    assert p["beam_args"] == {"componentInputParameter": "beam_args"}
    assert tasks["trainer"]["inputs"]["parameters"]["train_workers"] == {
        "componentInputParameter": "train_workers"}
    for key in ("tuner_workers", "tuner_trials", "launcher"):
        assert tasks["tuner"]["inputs"]["parameters"][key] == {"componentInputParameter": key}
    for name in TASKS:
        for key in ("config", "overrides", "pipeline_root", "serving_base"):
            assert tasks[name]["inputs"]["parameters"][key] == {"componentInputParameter": key}


def test_artifact_wiring(spec):
    pipeline, _ = spec
    tasks = pipeline["root"]["dag"]["tasks"]
    for consumer, inputs in WIRING.items():
        params = tasks[consumer]["inputs"]["parameters"]
        for param, producer in inputs.items():
            assert params[param] == {"taskOutputParameter": {
                "outputParameterKey": "uri", "producerTask": producer}}, (consumer, param)
        assert set(tasks[consumer]["dependentTasks"]) == set(inputs.values())


def test_blessing_gates_the_pusher(spec):
    pipeline, _ = spec
    cond = pipeline["root"]["dag"]["tasks"]["condition-1"]
    assert cond["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--evaluator-Output'] == 'true'")
    assert cond["inputs"]["parameters"]["pipelinechannel--evaluator-Output"] == {
        "taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "evaluator"}}
    inner = pipeline["components"]["comp-condition-1"]["dag"]["tasks"]
    assert set(inner) == {"pusher"}
    params = inner["pusher"]["inputs"]["parameters"]
    assert params["exporter"] == {"componentInputParameter": "pipelinechannel--exporter-uri"}
    assert params["infra_validator"] == {
        "componentInputParameter": "pipelinechannel--infra-validator-uri"}
    outputs = pipeline["components"]["comp-evaluator"]["outputDefinitions"]["parameters"]
    assert set(outputs) == {"uri", "Output", "outputs_json"}  # Output: the blessing


def test_pipeline_root_volume(spec):
    _, platform = spec
    mounts = platform["deploymentSpec"]["executors"]
    assert len(mounts) == 8
    for m in mounts.values():
        assert m["pvcMount"][0]["mountPath"] == "/data"
        assert m["pvcMount"][0]["constant"] == "lstm-math-data"


def test_object_store_root_has_no_volume(tmp_path):
    out = tmp_path / "gs.yaml"
    assert cli.main(["compile-kfp", "--config", "smoke", "--pipeline-root", "gs://b/root",
                     "--serving-base", "gs://b/models", str(out)]) == 0
    docs = list(yaml.safe_load_all(out.read_text()))
    assert len(docs) == 1  # no platform spec: nothing to mount
    params = docs[0]["root"]["inputDefinitions"]["parameters"]
    assert params["pipeline_root"]["defaultValue"] == "gs://b/root"


def test_bad_config_writes_nothing(tmp_path, capsys):
    out = tmp_path / "x.yaml"
    assert cli.main(["compile-kfp", "--config", "smoke", "--set", "cluster.train_workers=0",
                     str(out)]) == 2
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_smoke_config_through_the_kfp_local_subprocess_runner(tmp_path, monkeypatch):
    """The same definition, run by kfp.local (lightweight components in subprocesses)."""
    import json

    from kfp import local

    from lstm_math.pipeline.kfp_pipeline import build_pipeline
    from lstm_math.serving import contract

    monkeypatch.setenv("PYTHONPATH", REPO)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.chdir(tmp_path)
    local.init(runner=local.SubprocessRunner(use_venv=False),
               pipeline_root=str(tmp_path / "kfp_root"))
    root, serving = tmp_path / "root", tmp_path / "serving"
    fn = build_pipeline(image="lstm-math:test", config_name="smoke", launcher="local",
                        tuner_trials=2)
    fn(config="smoke", pipeline_root=str(root), serving_base=str(serving),
       beam_args=["--direct_num_workers=1"])
    assert contract.versions(str(serving / "lstm_math"), complete_only=True) == [1]
    # Every step wrote its artifact under the pipeline root, through the runner's layout.
    for step in ("ExampleGen", "DataValidation", "Tuner", "Trainer", "Evaluator", "Exporter",
                 "InfraValidator", "Pusher"):
        (fp,) = os.listdir(root / step)
        art = json.loads((root / step / fp / "artifact.json").read_text())
        assert art["component"] == step
