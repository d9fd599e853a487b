"""`lstm-math step`: one component on explicit inputs, its outputs JSON and plain output
parameters for an orchestrator, exit codes; `lstm-math pod` refusing to guess."""

import json
import os

from lstm_math.pipeline import cli


def test_steps_chain_by_the_uris_they_report(tmp_path):
    root = tmp_path / "root"
    eg_json, eg_uri = tmp_path / "out" / "eg.json", tmp_path / "out" / "eg.uri"
    common = ["--config", "smoke", "--set", "task.data.num_examples=300",
              "--pipeline-root", str(root)]
    assert cli.main(["step", "ExampleGen", *common, "--outputs-json", str(eg_json),
                     "--output-param", f"uri={eg_uri}"]) == 0
    eg = json.loads(eg_json.read_text())
    assert eg["component"] == "ExampleGen" and eg["cached"] is False
    assert eg["uri"] == eg_uri.read_text() == str(root / "ExampleGen" / eg["fingerprint"])
    assert os.path.exists(os.path.join(eg["uri"], "artifact.json"))
    assert sum(eg["properties"]["counts"].values()) == 300

    dv_json, dv_param = tmp_path / "dv.json", tmp_path / "dv.all"
    assert cli.main(["step", "DataValidation", *common, "--input", f"ExampleGen={eg['uri']}",
                     "--outputs-json", str(dv_json), "--output-param", f"json={dv_param}"]) == 0
    dv = json.loads(dv_json.read_text())
    assert dv["uri"].startswith(str(root / "DataValidation"))
    assert json.loads(dv_param.read_text())["uri"] == dv["uri"]
    # Same inputs and config again: cached, same uri.
    assert cli.main(["step", "ExampleGen", *common, "--outputs-json", str(eg_json)]) == 0
    again = json.loads(eg_json.read_text())
    assert again["cached"] is True and again["uri"] == eg["uri"]


def test_usage_errors_exit_2_and_create_nothing(tmp_path, capsys):
    root = tmp_path / "root"
    common = ["--config", "smoke", "--pipeline-root", str(root)]
    assert cli.main(["step", "Trainer", *common]) == 2
    assert "Trainer needs --input ExampleGen=URI" in capsys.readouterr().err
    assert cli.main(["step", "DataValidation", *common, "--input",
                     f"ExampleGen={tmp_path / 'nope'}"]) == 2
    assert "no complete artifact at" in capsys.readouterr().err
    assert cli.main(["step", "DataValidation", *common, "--input", "Tuner=/x",
                     "--input", "ExampleGen=/y"]) == 2
    assert "--input Tuner: DataValidation does not read it" in capsys.readouterr().err
    assert cli.main(["step", "Nope", *common]) == 2
    assert cli.main(["step", "ExampleGen", *common, "--output-param", "size=/x"]) == 2
    assert cli.main(["step", "ExampleGen", *common, "--set", "cluster.poll_interval_s=0"]) == 2
    assert "cluster.poll_interval_s" in capsys.readouterr().err
    assert not root.exists()


def test_pod_needs_a_command_and_an_index(monkeypatch, capsys):
    assert cli.main(["pod"]) == 2
    monkeypatch.setenv("LSTM_MATH_TF_CLUSTER", json.dumps({"worker": ["a:1", "b:1"]}))
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    assert cli.main(["pod", "--", "train", "--help"]) == 2
    assert "JOB_COMPLETION_INDEX" in capsys.readouterr().err
