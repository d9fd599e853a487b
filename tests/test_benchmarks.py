"""benchmarks/: the results table reads real Evaluator metrics files; the time-to-accuracy
benchmark counts runs that never reach the target and prints the ratio last."""

import json
import math
import os
import subprocess
import sys

import pytest

from benchmarks import results_table, time_to_accuracy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_results_table_from_a_real_pipeline_run(smoke_run, capsys, tmp_path):
    comps = smoke_run["manifest"]["components"]
    metrics_file = os.path.join(comps["Evaluator"]["uri"], "metrics.json")
    with open(metrics_file) as f:
        metrics = json.load(f)
    # the same row whether given the root, the run directory or the metrics file
    tables = []
    for path in (str(smoke_run["root"]), smoke_run["manifest"]["run_dir"], metrics_file):
        assert results_table.main([path]) == 0
        tables.append(capsys.readouterr().out)
    assert tables[0] == tables[1] == tables[2]
    lines = tables[0].splitlines()
    assert lines[0].startswith("| task | config | training examples")
    row = [c.strip() for c in lines[2].strip("|").split("|")]
    cells = dict(zip(results_table.COLUMNS, row))
    assert cells["task"] == "a + b, 0..99"
    assert cells["config"] == "smoke"  # the preset the run's config.yaml equals
    assert cells["training examples"] == f"{comps['ExampleGen']['properties']['counts']['train']:,}"
    assert cells["exact match (uniform)"] == f"{metrics['uniform']['exact_match']:.5f}"
    # --write puts the same table between the README's markers, the rest untouched
    readme = tmp_path / "README.md"
    readme.write_text(f"# top\n{results_table.START}\nold table\n{results_table.END}\ntail\n")
    assert results_table.main([str(smoke_run["root"]), "--write", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# top\n") and text.endswith(f"{results_table.END}\ntail\n")
    assert "old table" not in text and tables[0].strip() in text
    readme.write_text("no markers\n")
    assert results_table.main([str(smoke_run["root"]), "--write", str(readme)]) == 2
    assert cells["exhaustive"] == f"{metrics['exhaustive']['exact_match']:.5f}"
    small = metrics["exhaustive"]["small_operands"]["<10"]
    assert cells["operands < 10"] == f"{small['exact_match']:.5f} ({small['count']})"
    assert small["count"] == 100  # every '1 + 2' of the space
    assert cells["hardware"] == metrics["hardware"] and "CPU" in cells["hardware"]
    assert "min" in cells["train wall time"]
    assert "4:" in cells["per result length (characters: exact match)"] or \
        "3:" in cells["per result length (characters: exact match)"]
    # a label and an override show up as such
    assert results_table.main([f"quick={smoke_run['root']}"]) == 0
    assert "| quick: smoke |" in capsys.readouterr().out


def test_results_table_names_the_fields_that_differ_from_the_closest_preset(tmp_path):
    import yaml

    from pipeline.config import load_config

    config = load_config("default", ["trainer.epochs=14"])
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    assert results_table.config_label(str(run)) == "default + trainer.epochs=14"
    # a config of an older schema (a field since renamed) is compared as written: the fields
    # it does not have yet are not counted as differences
    old = config.to_dict()
    old["trainer"]["model"]["learning_rate"] = old["trainer"]["optimizer"].pop("learning_rate")
    del old["trainer"]["short_share"]
    (run / "config.yaml").write_text(yaml.safe_dump(old))
    assert results_table.config_label(str(run)) == (
        "default + trainer.epochs=14, trainer.model.learning_rate=0.005")


def test_medians_count_never_and_the_ratio_says_so():
    inf = math.inf
    assert time_to_accuracy.median_text([10.0, inf, 30.0]) == "30.0s"
    assert time_to_accuracy.median_text([10.0, inf, inf]) == "never"
    assert time_to_accuracy.ratio_line([10.0, 20.0, 30.0], [100.0, 200.0, inf], 600) == \
        "ratio (post / project, medians): 10.00x"
    assert "> 30.0x" in time_to_accuracy.ratio_line([10.0, 20.0, 30.0], [inf, inf, 5.0], 600)
    assert "n/a" in time_to_accuracy.ratio_line([inf, inf, 1.0], [1.0, 2.0, 3.0], 600)


@pytest.mark.slow
def test_time_to_accuracy_tiny_runs_both_recipes_and_prints_the_ratio_last(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "benchmarks/time_to_accuracy.py", "--tiny",
                           "--target", "0.0", "--work", str(tmp_path),
                           "--json", str(tmp_path / "runs.json")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("ratio (post / project, medians): ")
    assert any(line.strip().startswith("project  seed 1:") for line in lines)
    assert any(line.strip().startswith("post     seed 1:") for line in lines)
    runs = json.loads((tmp_path / "runs.json").read_text())["runs"]
    for name in ("project", "post"):
        (run,) = runs[name]
        assert run["reached"] and run["epoch"] == 1  # target 0: the first epoch reaches it
        history = json.loads(open(os.path.join(os.path.dirname(run["log"]),
                                               "history.json")).read())
        assert history[0]["val_exact_match"] >= 0.0


def test_results_table_finds_components_of_a_root_given_as_a_relative_path(smoke_run, tmp_path,
                                                                           capsys):
    """`lstm-math run` from another directory with --pipeline-root artifacts writes relative
    URIs into the manifest; the table still finds the Evaluator's metrics."""
    import shutil

    root = tmp_path / "artifacts"
    shutil.copytree(smoke_run["root"], root)
    for manifest in root.glob("runs/*/manifest.json"):
        data = json.loads(manifest.read_text())
        for comp in data["components"].values():
            comp["uri"] = "artifacts/" + "/".join(comp["uri"].rstrip("/").split("/")[-2:])
        manifest.write_text(json.dumps(data))
    assert results_table.main([str(root)]) == 0
    relative = capsys.readouterr().out
    assert results_table.main([str(smoke_run["root"])]) == 0
    assert relative == capsys.readouterr().out


def test_time_to_accuracy_project_set_overrides_only_the_project_recipe(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(time_to_accuracy, "ensure_examples", lambda config, directory: directory)

    def fake_train(preset, overrides, seed, examples, output, target, max_seconds):
        seen.append((preset, list(overrides)))
        return {"seed": seed, "reached": True, "time_to_target": 1.0, "epoch": 1,
                "epoch_seconds_to_target": 0.5, "error": None}

    monkeypatch.setattr(time_to_accuracy, "train_until", fake_train)
    assert time_to_accuracy.main(["--seeds", "1", "--work", str(tmp_path),
                                  "--project-set", "trainer.steps_per_epoch=100"]) == 0
    assert seen == [("addition-fast", ["trainer.steps_per_epoch=100"]), ("seed", [])]


@pytest.mark.slow
def test_serving_benchmark_splits_clients_over_processes_and_counts_every_request():
    """The serving benchmark on the fixture model, 3 clients over 2 load processes: every
    cell of both protocols is answered without errors, by batches the server really ran."""
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "benchmarks/serving_benchmark.py", "--seconds", "1",
                           "--concurrency", "3", "--batch-sizes", "1", "4",
                           "--client-processes", "2"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = proc.stdout.split("\n\n")[-1].strip().splitlines()
    assert table[0].startswith("| server | api ")
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
    assert sorted((c[1], c[3], c[4]) for c in cells) == [
        ("grpc", "3", "1"), ("grpc", "3", "4"), ("rest", "3", "1"), ("rest", "3", "4")]
    for c in cells:
        assert c[9] == "0", c  # errors
        assert float(c[6].replace(",", "")) > 0  # equations/s
        assert float(c[10]) >= 1.0  # the server ran batches for them
