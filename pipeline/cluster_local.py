"""The local rehearsal: the whole pipeline as a cluster runs it, on one machine (127.0.0.1).

``lstm-math rehearse --config smoke``:

* every step is its own process, ``lstm-math step NAME --input ... --outputs-json ...``,
  exactly the command each Kubeflow Pipelines task runs, wired by the artifact URIs the
  previous steps reported (not by this process's memory);
* ExampleGen runs through Beam's portable runner: a separate job service and an external
  SDK worker pool (``lstm_math.pipeline.portable_local``), both on 127.0.0.1;
* the Tuner is a keras-tuner chief plus ``--tuner-workers`` worker processes;
* the Trainer is ``--train-workers`` processes under MultiWorkerMirroredStrategy;
* the blessing gates the Pusher (as ``dsl.If`` does in the KFP pipeline).

Every step runs in this process's working directory with the installed package (nothing is
read from a source checkout), so a relative ``--pipeline-root`` means the same directory to
every step. Writes ``<pipeline_root>/runs/<run id>-rehearsal/manifest.json`` (each step's
outputs JSON) and per-step logs beside it (``logs/<step>.log``, worker logs under
``logs/<step>/``). A step that fails stops the run with its exit code and the tail of its log.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time

from lstm_math.pipeline import tensorboard_view

log = logging.getLogger("lstm_math.rehearsal")

_PROGRESS = re.compile(r"^(\d\d:\d\d:\d\d |Traceback|\S*Error\b|\{)")


def _run_step(cmd: list, log_path: str, timeout_s: float, name: str,
              tensorboard_run: str | None = None) -> int:
    """Runs one step process, streaming its output (prefixed) to the console and a file."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    if tensorboard_run:  # every step's logs in one TensorBoard folder
        env[tensorboard_view.RUN_ENV] = tensorboard_run
    for var in ("TF_CONFIG", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT",
                "KERASTUNER_TUNER_ID"):
        env.pop(var, None)
    with open(log_path, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                start_new_session=True)

        def pump():
            for line in proc.stdout:
                out.write(line)
                out.flush()
                if _PROGRESS.match(line):  # our log lines; TF/absl start-up noise stays in the file
                    sys.stderr.write(f"  {name:>14} | {line}")

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.error("%s: no result after cluster.step_timeout_s=%.0fs; stopping it", name,
                      timeout_s)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait(timeout=30)
            code = 5
        reader.join(timeout=10)
    return code


def rehearse(config, config_args: list, train_workers: int = 2, tuner_workers: int = 2,
             beam: str = "portable", use_cache: bool = True,
             extra_beam_args: list | None = None) -> dict:
    import tensorflow as tf

    from lstm_math.pipeline.pipeline import create_pipeline
    from lstm_math.pipeline.portable_local import portable_services

    root = config.runtime.pipeline_root
    run_id = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    run_dir = os.path.join(root, "runs", f"{run_id}-rehearsal")
    tf.io.gfile.makedirs(run_dir)
    local_dir = run_dir if "://" not in run_dir else os.path.join(
        "/tmp", f"lstm-math-rehearsal-{run_id}")
    log_dir = os.path.join(local_dir, "logs")
    os.makedirs(log_dir, exist_ok=True)
    cluster_args = ["--set", "cluster.launcher=processes",
                    "--set", f"cluster.train_workers={train_workers}",
                    "--set", f"cluster.tuner_workers={tuner_workers}",
                    "--set", f"pusher.serving_base={config.pusher.serving_base}"]
    nodes = create_pipeline(config).nodes
    board = tensorboard_view.RunView.start(root, config.to_dict(), note="rehearsal")
    manifest = {"pipeline": config.name, "run_id": run_id, "run_dir": run_dir,
                "mode": "rehearsal", "train_workers": train_workers,
                "tuner_workers": tuner_workers, "beam": beam, "steps": {}, "ok": False,
                "pushed": None, "tensorboard_run": board.name if board else None}
    started = time.monotonic()
    log.info("rehearsal %s: %d steps, each its own process; Beam %s; Tuner chief + %d "
             "workers; Trainer on %d workers (MultiWorkerMirroredStrategy); logs in %s",
             run_id, len(nodes), beam, tuner_workers, train_workers, log_dir)
    services = portable_services(log_dir=log_dir) if beam == "portable" \
        else contextlib.nullcontext([])
    outputs: dict = {}
    with services as beam_flags:
        for i, node in enumerate(nodes, 1):
            name = node.name
            if name == "Pusher" and not outputs.get("Evaluator", {}).get("blessed"):
                log.info("[%d/%d] Pusher: skipped (the Evaluator did not bless the model)",
                         i, len(nodes))
                manifest["steps"][name] = {"skipped": "not blessed"}
                manifest["pushed"] = False
                continue
            out_json = os.path.join(log_dir, f"{name}.outputs.json")
            cmd = [sys.executable, "-m", "lstm_math.pipeline.cli", "step", name, *config_args,
                   *cluster_args, "--outputs-json", out_json,
                   "--log-dir", os.path.join(log_dir, name)]
            for upstream in node.inputs:
                cmd += ["--input", f"{upstream}={outputs[upstream]['uri']}"]
            if not use_cache:
                cmd.append("--no-cache")
            if name == "ExampleGen":
                beam_options = list(beam_flags) + list(extra_beam_args or [])
                if beam_options:  # Beam's own options, after the CLI's --beam separator
                    cmd += ["--beam", *beam_options]
            what = {"Tuner": f" (chief + {tuner_workers} workers)" if tuner_workers else "",
                    "Trainer": f" ({train_workers} workers)" if train_workers > 1 else "",
                    "ExampleGen": f" (Beam {beam})"}.get(name, "")
            log.info("[%d/%d] %s%s: running", i, len(nodes), name, what)
            t0 = time.monotonic()
            code = _run_step(cmd, os.path.join(log_dir, f"{name}.log"),
                             config.cluster.step_timeout_s, name,
                             tensorboard_run=board.name if board else None)
            if code != 0:
                log.error("[%d/%d] %s failed (exit %d) after %.1fs; log: %s", i, len(nodes),
                          name, code, time.monotonic() - t0, os.path.join(log_dir,
                                                                         f"{name}.log"))
                manifest["steps"][name] = {"failed": code}
                manifest["exit_code"] = code
                break
            with open(out_json) as f:
                outputs[name] = json.load(f)
            manifest["steps"][name] = {k: v for k, v in outputs[name].items()
                                       if k != "properties"}
            log.info("[%d/%d] %s: %s in %.1fs -> %s", i, len(nodes), name,
                     "cached" if outputs[name]["cached"] else "done", time.monotonic() - t0,
                     outputs[name]["uri"])
            if name == "Pusher":
                manifest["pushed"] = outputs[name].get("pushed")
        else:
            manifest["ok"] = True
    manifest["seconds"] = round(time.monotonic() - started, 1)
    with tf.io.gfile.GFile(os.path.join(run_dir, "manifest.json"), "w") as f:
        f.write(json.dumps(manifest, indent=2, default=str))
    ev = outputs.get("Evaluator", {})
    push = outputs.get("Pusher", {})
    log.info("rehearsal %s %s in %.1fs; test exact match %s, blessed %s; %s", run_id,
             "finished" if manifest["ok"] else "FAILED", manifest["seconds"],
             ev.get("metrics", {}).get("exact_match"), ev.get("blessed"),
             f"pushed version {push.get('version')} to {push.get('path')}"
             if push.get("pushed") else "not pushed")
    return manifest
