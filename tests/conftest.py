import json
import os

import pytest

from tests.helpers import ExampleCache, lstm_math  # noqa: F401  (lstm_math: older imports)


@pytest.fixture(scope="session")
def examples_for(tmp_path_factory):
    """``examples_for(preset, *overrides)``: the ExampleGen output of that data config,
    generated once per session (shared read-only by every test asking for the same data)."""
    return ExampleCache(lambda: tmp_path_factory.mktemp("examples"))


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
