"""InfraValidator: a good export passes with a report of what ran; a broken one is refused."""

import dataclasses
import json
import os
import stat
import sys
import textwrap

import pytest

from lstm_math.components import infra_validator
from lstm_math.components.exporter import export_saved_model
from tests.helpers import OracleModel, make_coverage

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COVERAGE = make_coverage(operators=["+", "-"], max_input_length=5, max_result_length=3,
                         reverse_output=True)


def export(tmp_path, model, name="saved_model", metrics=None):
    path = str(tmp_path / name)
    export_saved_model(model, COVERAGE, metrics or {"exact_match": 1.0}, path)
    return path


@pytest.fixture(scope="module")
def exact_export(tmp_path_factory):
    return export(tmp_path_factory.mktemp("good"), OracleModel(COVERAGE, wrong_a=-1))


def test_a_good_model_passes_and_the_report_says_what_ran(exact_export, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no tensorflow_model_server here
    out = infra_validator.run_infra_validator(exact_export, COVERAGE, 0.999, str(tmp_path),
                                              num_canaries=30)
    assert out["passed"] is True, out["problems"]
    report = out["report"]
    assert report["canary_exact_match"] == 1.0
    assert report["empty_batch_ok"] is True
    assert report["huge_batch"]["same_answers_as_small_batch"] is True
    assert report["imported_project_code"] == [] and report["keras_blocked"] is True
    assert report["assets"]["coverage_json"] == COVERAGE.to_dict()
    assert 0 < report["single_p50_ms"] < 2000
    checks = " | ".join(out["checks"])
    assert "30 canary answers" in checks and "hostile inputs rejected" in checks
    assert "Keras blocked" in checks
    assert "tensorflow_model_server not on PATH" in checks
    # TF Serving's own loader (graph-mode Session, SaverDef restore) ran and agreed
    assert "TF Serving's loader (tf.compat.v1 Session, SaverDef restore" in checks
    assert report["session"]["error"] is None and report["session"]["mismatches"] == []
    assert report["session"]["rows"] == len(report["rows"])
    # Every hostile row came back invalid with its specific reason.
    hostile = infra_validator.hostile_for(COVERAGE)
    rows = report["rows"][30:]
    assert len(rows) == len(hostile) >= 30
    for (text, reason), row in zip(hostile, rows):
        assert row["valid"] is False and reason in row["error"], (text[:40], row)
    on_disk = json.loads((tmp_path / "infra_blessing.json").read_text())
    assert on_disk["passed"] is True and on_disk["checks"] == out["checks"]


def test_a_model_broken_in_export_is_refused_with_a_clear_report(tmp_path):
    """The network emits its digits in the wrong order (a reversed-output mix-up): loads
    fine, rejects hostile rows fine, but the canaries' answers are wrong."""
    reversed_wrong = dataclasses.replace(COVERAGE, reverse_output=False)
    broken = export(tmp_path, OracleModel(reversed_wrong, wrong_a=-1))
    out = infra_validator.run_infra_validator(broken, COVERAGE, 0.999, str(tmp_path / "iv"))
    assert out["passed"] is False
    assert any(p.startswith("canary exact match") for p in out["problems"])
    assert json.loads((tmp_path / "iv" / "infra_blessing.json").read_text())["passed"] is False


@pytest.mark.slow
def test_wrong_assets_and_slow_answers_are_refused(exact_export, tmp_path):
    wider = dataclasses.replace(COVERAGE, operand_max=999)  # assets say 0..99: not this
    out = infra_validator.run_infra_validator(exact_export, wider, 0.0, str(tmp_path),
                                              max_latency_ms=0.001)
    assert out["passed"] is False
    assert any("assets/coverage.json" in p for p in out["problems"])
    assert any("latency p50" in p and "pusher.infra_max_latency_ms" in p for p in out["problems"])


def test_running_out_of_time_records_no_verdict_and_says_how_to_rerun(exact_export, tmp_path):
    """No answer within the time allowed says nothing about the model: the step fails in one
    line naming the setting, and writes nothing a rerun would take from the cache."""
    from lstm_math.components.errors import StepFailed

    out_dir = tmp_path / "out"
    with pytest.raises(StepFailed) as e:
        infra_validator.run_infra_validator(exact_export, COVERAGE, 0.0, str(out_dir),
                                            timeout_s=0.2)
    message = str(e.value)
    assert "\n" not in message and "runtime.infra_validation_timeout_s" in message
    assert "rerun" in message
    assert not (out_dir / "infra_blessing.json").exists()


def test_a_long_fresh_process_check_reports_progress_and_is_killed_at_its_limit(caplog):
    """The fresh-process check of a large model runs for minutes: a progress line while it
    runs, its whole output once it ends, and a process past its limit killed."""
    import subprocess
    import time

    caplog.set_level("INFO", logger=infra_validator.log.name)
    echo_late = [sys.executable, "-c",
                 "import sys, time; data = sys.stdin.read(); time.sleep(1.2); print(data[::-1])"]
    done = infra_validator.run_with_progress(echo_late, "abc" * 1000, 30, "the echo",
                                             every_s=0.3)
    assert done.returncode == 0 and done.stdout.strip() == ("abc" * 1000)[::-1]
    progress = [r.getMessage() for r in caplog.records if "the echo: running for" in r.getMessage()]
    assert 2 <= len(progress) <= 6, progress
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        infra_validator.run_with_progress(
            [sys.executable, "-c", "import time; time.sleep(60)"], "", 1.0, "the sleeper",
            every_s=0.4)
    assert time.monotonic() - started < 10  # killed at its limit, not waited for


FAKE_MODEL_SERVER = textwrap.dedent("""\
    #!{python}
    # Test double for tensorflow_model_server: same flags, served by the project's local
    # TF Serving-compatible server (serving/server.py).
    import os, sys
    flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
    base = flags["model_base_path"].rstrip("/")
    os.chdir({repo!r})
    os.execv(sys.executable, [sys.executable, "-m", "lstm_math.serving.server",
             "--model-base", os.path.dirname(base), "--model-name", flags["model_name"],
             "--host", "127.0.0.1", "--rest-port", flags["rest_api_port"],
             "--grpc-port", flags["port"], "--poll-seconds", "1"])
    """)


@pytest.mark.slow
def test_with_a_model_server_on_path_rest_and_grpc_are_checked(exact_export, tmp_path,
                                                               monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "tensorflow_model_server"
    fake.write_text(FAKE_MODEL_SERVER.format(python=sys.executable, repo=REPO))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", REPO)
    out = infra_validator.run_infra_validator(exact_export, COVERAGE, 0.999, str(tmp_path / "iv"))
    assert out["passed"] is True, (out["problems"], out["report"].get("model_server"))
    ran = [c for c in out["checks"] if c.startswith("tensorflow_model_server:")]
    assert ran == ["tensorflow_model_server: model status AVAILABLE over REST",
                   "tensorflow_model_server: REST predict, row format",
                   "tensorflow_model_server: REST predict, columnar format",
                   "tensorflow_model_server: REST metadata",
                   "tensorflow_model_server: gRPC Predict",
                   "tensorflow_model_server: gRPC GetModelMetadata"]
    assert out["report"]["model_server"]["binary"] == str(fake)


def test_canaries_and_hostile_rows_follow_the_operand_counts_a_model_covers():
    mixed = dataclasses.replace(COVERAGE, operators=("+", "-", "*", "/"), num_operands=3,
                                min_operands=2, max_input_length=8, max_result_length=7)
    counts = {text.replace(" ", "").count("+") + sum(text.count(o) for o in "-*/") + 1
              for text, _ in infra_validator.canaries(mixed, 12)}
    assert counts == {2, 3}
    reasons = [reason for _, reason in infra_validator.hostile_for(mixed)]
    assert "too short" not in reasons and "too long" in reasons  # 2 operands are fine
    three_only = dataclasses.replace(mixed, min_operands=3)
    assert (b"1 + 1", "too short") in infra_validator.hostile_for(three_only)


@pytest.mark.parametrize("preset", ["default", "seed", "mixed", "full", "subtraction",
                                    "multiplication", "division"])
def test_hostile_rows_get_their_reason_from_every_presets_signature(preset):
    """The InfraValidator's expectations hold for every model the presets train: each
    hostile row is refused by the in-graph validation with the reason the check expects
    (an out-of-range operand only in an otherwise covered equation, and so on)."""
    import tensorflow as tf

    from lstm_math.components.signature import validate
    from lstm_math.config import coverage_of, load_config

    coverage = coverage_of(load_config(preset))
    rows = infra_validator.hostile_for(coverage)
    valid, reason, _ = validate(tf.constant([r for r, _ in rows]), coverage)
    for (text, want), ok, got in zip(rows, valid.numpy(), reason.numpy()):
        assert not ok and want in got.decode(), (preset, text[:50], got)
    good, _, _ = validate(tf.constant([t for t, _ in infra_validator.canaries(coverage, 12)]),
                          coverage)
    assert good.numpy().all()


def test_trusted_must_agree_with_the_thresholds_the_model_ships(tmp_path, monkeypatch):
    """`trusted` is checked on every canary against assets/metrics.json's thresholds: an
    export whose graph and asset agree passes; one whose asset says otherwise (a graph
    baked with other thresholds than the metrics shipped beside it) is refused."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no tensorflow_model_server here
    metrics = {"exact_match": 1.0, "confidence": {"+": {"threshold": 0.5},
                                                  "-": {"threshold": 0.5}}}
    good = export(tmp_path, OracleModel(COVERAGE, wrong_a=-1), "good", metrics)
    out = infra_validator.run_infra_validator(good, COVERAGE, 0.999, str(tmp_path / "iv1"),
                                              num_canaries=10, huge_batch=64)
    assert out["passed"] is True, out["problems"]
    assert all(row["trusted"] for row in out["report"]["rows"][:10])
    assert not any(row["trusted"] for row in out["report"]["rows"][10:])  # hostile rows
    assert any("`trusted` agrees with the thresholds" in c for c in out["checks"])

    # the same graph (thresholds 0.5) beside an asset that says 0.999
    stale = export(tmp_path, OracleModel(COVERAGE, wrong_a=-1), "stale", metrics)
    shipped = {"exact_match": 1.0, "confidence": {"+": {"threshold": 0.999},
                                                  "-": {"threshold": 0.999}}}
    with open(os.path.join(stale, "assets", "metrics.json"), "w") as f:
        json.dump(shipped, f)
    out = infra_validator.run_infra_validator(stale, COVERAGE, 0.999, str(tmp_path / "iv2"),
                                              num_canaries=10, huge_batch=64)
    assert out["passed"] is False
    assert any("trusted=True but its confidence" in p and "0.999 in assets/metrics.json" in p
               for p in out["problems"]), out["problems"]
