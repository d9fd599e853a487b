"""Beam's portability framework (job service + external worker pool), as a cluster runs it."""

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO, digest
OVERRIDES = ["task.data.operators=['+', '-', '*', '/']", "task.data.num_operands=3",
             "task.data.num_examples=6000", "task.data.num_shards=3",
             "task.data.sampling=stratified", "trainer.short_max_chars=5"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_portable_runner_writes_the_same_bytes_as_the_direct_runner(tmp_path, examples_for):
    direct = examples_for("smoke", *OVERRIDES)

    portable = tmp_path / "portable"
    args = [sys.executable, os.path.join(REPO, "scripts", "portable_local.py"), "generate",
            "--config", "smoke", "--output", str(portable)]
    for o in OVERRIDES:
        args += ["--set", o]
    proc = subprocess.run(args, cwd=str(tmp_path), capture_output=True, text=True, timeout=540,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "--runner=PortableRunner" in proc.stderr
    assert "Completed job" in proc.stderr and "state DONE" in proc.stderr
    assert len(digest(portable)) == 3 * 3 + 2  # shards, stats.json, stats.html
    assert digest(portable) == digest(direct)

    # Both services (and the SDK workers they started) are gone.
    pids = [line.split("pid ")[1].split(",")[0] for line in proc.stderr.splitlines()
            if "portable: " in line and " service on 127.0.0.1:" in line]
    assert len(pids) == 2
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[
            2] == "Z"
