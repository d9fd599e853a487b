"""Inside a Kubeflow Pipelines task: the body of every component in
``lstm_math.pipeline.kfp_pipeline`` runs ``lstm-math step`` through ``run_as_task``."""

from __future__ import annotations

import subprocess
import sys


def run_as_task(step: str, config: str, overrides: list, pipeline_root: str, serving_base: str,
                inputs: dict, beam_args: list | None = None, **output_params: str) -> None:
    """Runs ``lstm-math step`` in a child process and fails the task with its exit code."""
    cmd = [sys.executable, "-m", "lstm_math.pipeline.cli", "step", step, "--config", config,
           "--set", f"runtime.pipeline_root={pipeline_root}",
           "--set", f"pusher.serving_base={serving_base}"]
    for o in overrides:
        cmd += ["--set", o]
    for name, uri in inputs.items():
        cmd += ["--input", f"{name}={uri}"]
    outputs_json = output_params.pop("outputs_json", None)
    if outputs_json:
        cmd += ["--outputs-json", outputs_json]
    for key, path in output_params.items():
        cmd += ["--output-param", f"{key}={path}"]
    if beam_args:  # Beam's own options, after the CLI's --beam separator
        cmd += ["--beam", *beam_args]
    print("lstm-math " + " ".join(cmd[3:]), flush=True)
    code = subprocess.run(cmd).returncode
    if code:
        raise SystemExit(f"lstm-math step {step} failed with exit code {code}")
