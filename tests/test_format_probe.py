"""benchmarks/format_probe.py: candidates trained side by side on a tiny budget print their
curves; the CSV rows are real evaluations; bad flags fail fast naming the flag."""

import csv
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--high", "9", "--max-steps", "4", "--eval-every", "1000", "--eval-size", "20",
        "--batch-size", "16", "--embedding-dim", "4", "--encoder-units", "8",
        "--decoder-units", "8", "--heads", "2"]


def _probe(args, cwd):
    return subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "format_probe.py"),
                           *args], cwd=cwd, capture_output=True, text=True, timeout=900)


def test_side_by_side_on_a_tiny_budget_prints_both_curves(tmp_path):
    out = tmp_path / "out"
    proc = _probe([*TINY, "--out-dir", str(out), "--nice", "0", "--side-by-side",
                   "--format direct --reverse --no-pad",
                   "--format running_sums --step-embedding"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    assert "--format direct --reverse --no-pad" in text
    assert "--format running_sums --step-embedding" in text
    assert text.strip().splitlines()[-1].startswith("last evaluation of each: ")
    for i, fmt in enumerate(("direct", "running_sums")):
        with open(out / f"candidate{i}.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 1  # the evaluation at the end of the budget
        row = rows[0]
        assert row["format"] == fmt and int(row["examples"]) == 4 * 16
        assert 0.0 <= float(row["exact_match"]) <= 1.0
        assert 0.0 <= float(row["digit_accuracy"]) <= 1.0
        assert float(row["loss"]) > 0
    assert (out / "candidate1.csv").read_text().splitlines()[1].split(",")[2] == "1"


def test_bad_flags_fail_fast_naming_the_flag(tmp_path):
    proc = _probe(["--high", "9", "--eval-size", "80"], tmp_path)
    assert proc.returncode == 2 and "--eval-size" in proc.stderr.splitlines()[-1]
    proc = _probe(["--heads", "3"], tmp_path)
    assert proc.returncode == 2 and "--heads" in proc.stderr.splitlines()[-1]
    assert os.listdir(tmp_path) == []
