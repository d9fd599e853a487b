import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lstm_math(*args, cwd=None, timeout=600, check=True):
    """Runs the installed ``lstm-math`` console script (falls back to the module)."""
    cmd = [sys.executable, "-m", "pipeline.cli", *args]
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(cmd, cwd=cwd or REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One real `lstm-math run --config smoke` shared by the end-to-end tests."""
    base = tmp_path_factory.mktemp("smoke")
    root, serving = base / "root", base / "serving"
    proc = lstm_math("run", "--config", "smoke", "--pipeline-root", str(root),
                     "--serving-base", str(serving))
    runs = sorted(os.listdir(root / "runs"))
    with open(root / "runs" / runs[-1] / "manifest.json") as f:
        manifest = json.load(f)
    return {"root": root, "serving": serving, "manifest": manifest, "stdout": proc.stdout,
            "stderr": proc.stderr}
