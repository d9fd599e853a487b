"""benchmarks/: the results table reads real Evaluator metrics files; the time-to-accuracy
benchmark counts runs that never reach the target and prints the ratio last."""

import json
import math
import os
import subprocess
import sys

import pytest

import shutil

from benchmarks import results_table, serving_benchmark, time_to_accuracy

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
    ex = metrics["exhaustive"]
    assert cells["exhaustive"] == f"{ex['exact_match']:.5f} ({ex['wrong']:,} wrong)"
    small = metrics["small_operands_all"]
    assert cells["operands < 10"] == f"{small['exact_match']:.5f} ({small['wrong']:,} wrong)"
    assert small["count"] == 100  # every '1 + 2' of the space
    # trusted: the test split's wrong answers caught / right ones given up (t), and the same
    # over every equation with the test split's t
    t = metrics["confidence"]["overall"]["threshold"]
    test_cell = cells["trusted, test split: wrong caught / right given up (t)"]
    # a barely trained model may have no right answer to set t from: then no (t)
    assert test_cell.endswith(f"({t:.4g})") if t is not None else "(" not in test_cell
    every = metrics["exhaustive"]["trust"]["overall"]
    caught = "-" if every["wrong_caught"] is None else f"{every['wrong_caught']:.1%}"
    assert cells["trusted, every equation: wrong caught / right given up"] == \
        f"{caught} / " + ("-" if every["right_given_up"] is None
                          else f"{every['right_given_up']:.2%}")
    assert cells["hardware"] == metrics["hardware"] and "CPU" in cells["hardware"]
    assert "min" in cells["train wall time"]
    assert "4:" in cells["per result length (characters: exact match)"] or \
        "3:" in cells["per result length (characters: exact match)"]
    # a label and an override show up as such
    assert results_table.main([f"quick={smoke_run['root']}"]) == 0
    assert "| quick: smoke |" in capsys.readouterr().out


def test_results_table_names_the_fields_that_differ_from_the_closest_preset(tmp_path):
    import yaml

    from lstm_math.config import load_config

    config = load_config("default", ["trainer.epochs=14"])
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    assert results_table.config_label(str(run)) == "default + trainer.epochs=14"
    # a path of the machine that ran shows as the artifact it names
    started = load_config("default", ["trainer.epochs=14",
                                      "trainer.warm_start=/home/me/runs/a/Trainer/556f9e49"])
    (run / "config.yaml").write_text(yaml.safe_dump(started.to_dict()))
    assert results_table.config_label(str(run)) == (
        'default + trainer.epochs=14, trainer.warm_start=".../Trainer/556f9e49"')
    # a config of an older schema (a field since renamed) is compared as written: the fields
    # it does not have yet are not counted as differences
    old = config.to_dict()
    old["trainer"]["model"]["learning_rate"] = old["trainer"]["optimizer"].pop("learning_rate")
    del old["trainer"]["short_share"]
    (run / "config.yaml").write_text(yaml.safe_dump(old))
    assert results_table.config_label(str(run)) == (
        "default + trainer.epochs=14, trainer.model.learning_rate=0.005")


def test_results_table_says_when_a_training_was_resumed():
    assert results_table.train_time_cell({"train_seconds": 600.0, "epochs_run": 9,
                                          "resumed_after_epoch": 0}) == "10.0 min (9 epochs)"
    assert results_table.train_time_cell({"train_seconds": 8829.0, "epochs_run": 45,
                                          "resumed_after_epoch": 18}) == \
        "147.2 min (45 epochs, resumed after epoch 18)"
    assert results_table.train_time_cell({}) == "-"


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


def _serving_benchmark_cells(concurrency, *flags):
    """Run the serving benchmark on the fixture model (1 s cells, batches of 1 and 4) and
    check that every cell of both protocols was answered without errors, by batches the
    server really ran; returns (stdout, the table's cells)."""
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "benchmarks/serving_benchmark.py", "--seconds", "1",
                           "--concurrency", str(concurrency), "--batch-sizes", "1", "4",
                           *flags],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = proc.stdout.split("\n\n")[-1].strip().splitlines()
    assert table[0].startswith("| server | api ")
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
    n = str(concurrency)
    assert sorted((c[1], c[3], c[4]) for c in cells) == [
        ("grpc", n, "1"), ("grpc", n, "4"), ("rest", n, "1"), ("rest", n, "4")]
    for c in cells:
        assert c[9] == "0", c  # errors
        assert float(c[6].replace(",", "")) > 0  # equations/s
        assert float(c[10]) >= 1.0  # the server ran batches for them
    return proc.stdout, cells


@pytest.mark.slow
def test_serving_benchmark_splits_clients_over_processes_and_counts_every_request():
    """3 clients over 2 load processes."""
    _serving_benchmark_cells(3, "--client-processes", "2")


H2LOAD_SUMMARY = """finished in 3.30s, 5934.67 req/s, 1.28MB/s
requests: 17804 total, 17804 started, 17804 done, 17790 succeeded, 14 failed, 0 errored, 0 timeout
status codes: 17790 2xx, 0 3xx, 14 4xx, 0 5xx
traffic: 3.84MB (4023704) total, 1.99MB (2089639) headers (space savings 0.00%)
"""


def test_h2load_summary_is_parsed_and_a_missing_summary_says_so():
    counts = serving_benchmark.parse_h2load(H2LOAD_SUMMARY)
    assert (counts["done"], counts["succeeded"], counts["failed"], counts["4xx"]) == (
        17804, 17790, 14, 14)
    with pytest.raises(RuntimeError, match="h2load printed no 'requests:'"):
        serving_benchmark.parse_h2load("connect to 127.0.0.1 failed")


def test_grpc_errors_counts_failed_predict_calls_only():
    # a gRPC status travels in HTTP/2 trailers, so h2load counts a failed call as a 200:
    # the benchmark reads the failures from the server's metrics instead
    text = "\n".join([
        'lstm_math_serving_requests_total{api="grpc",code="OK",endpoint="predict"} 2000.0',
        'lstm_math_serving_requests_total{api="grpc",code="CANCELLED",endpoint="predict"} 15.0',
        'lstm_math_serving_requests_total{api="grpc",code="NOT_FOUND",endpoint="predict"} 3.0',
        'lstm_math_serving_requests_total{api="grpc",code="INVALID_ARGUMENT",endpoint="predict"} 2.0',
        'lstm_math_serving_requests_total{api="grpc",code="NOT_FOUND",endpoint="status"} 7.0',
        'lstm_math_serving_requests_total{api="rest",code="404",endpoint="predict"} 9.0',
    ])
    assert serving_benchmark.grpc_errors(serving_benchmark.metric_samples(text)) == 5.0


def test_serving_benchmark_h2load_missing_fails_fast(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, PATH=str(tmp_path))
    proc = subprocess.run([sys.executable, "benchmarks/serving_benchmark.py",
                           "--load-generator", "h2load"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--load-generator h2load: no h2load on PATH" in proc.stderr.strip().splitlines()[-1]
    assert proc.stdout == ""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("h2load") is None,
                    reason="h2load not installed (apt-get install nghttp2-client)")
def test_serving_benchmark_with_h2load_answers_every_cell():
    """h2load as the load: both protocols (HTTP/2 gRPC framing, HTTP/1.1 keep-alive)."""
    stdout, cells = _serving_benchmark_cells(4, "--load-generator", "h2load")
    assert "load: h2load" in stdout
    for c in cells:
        assert float(c[7]) > 0 and float(c[8]) >= float(c[7])  # p50, p99 from h2load's log


def test_signature_benchmark_versus_draws_each_models_own_equations():
    """`signature_benchmark.py --versus` times each model on its own task: its operators
    and operand count, operands in range, never a division by zero, text the parser reads."""
    from benchmarks import signature_benchmark
    from lstm_math.components.equations import evaluate, parse

    from tests.helpers import make_coverage

    coverage = make_coverage(operators=["*", "/"], operand_max=20, num_operands=3,
                             min_operands=3)
    rows = signature_benchmark.sample_equations(coverage, 400)
    assert len(rows) == 400 and rows == signature_benchmark.sample_equations(coverage, 400)
    ops_seen = set()
    for row in rows:
        eq = parse(row.decode())
        assert len(eq.operands) == 3 and all(0 <= v <= 20 for v in eq.operands)
        ops_seen.update(eq.operators)
        evaluate(eq.operands, eq.operators)  # raises on a division by zero
    assert ops_seen == {"*", "/"}
