"""Time to 99.9% on 0..999 addition: this project's recipe vs the 2017 post's, in one run.

    python benchmarks/time_to_accuracy.py --seeds 3 --max-seconds 3600
    python benchmarks/time_to_accuracy.py --tiny          # CI: tiny data, 1 seed, 1 epoch
    python benchmarks/time_to_accuracy.py --seeds 3 \
        --project-set trainer.steps_per_epoch=100 --project-set trainer.validation_steps=12
                                      # a candidate recipe (overrides of the project's), side by side

Recipes (each trained by the real Trainer, ``lstm-math train``, on its own
ExampleGen data):
  project  the `addition-fast` preset: the `default` data with a model and schedule sized
           for speed (64 units, 4 attention heads, zero-padded operands, lr 0.015 over a
           1,200-step cosine in 100-step epochs)
  post     the `seed` preset: the post's model, data and optimizer

Runs alternate (project seed 1, post seed 1, project seed 2, ...) so that load from other
processes on the machine hits both alike; ``trainer.seed`` is the run's seed (its initial
weights), the data are the same for every run of a recipe. A run stops at the end of the
first epoch whose validation exact match (on its recipe's validation split) reaches the
target, or when it runs out of budget (``--max-seconds`` of wall time, or the preset's
epochs / early stopping). Its time is the wall time from starting the Trainer process to
that epoch's end (process start, graph building and each epoch's validation included); the
sum of the epochs' own seconds is printed too.

Runs that never reach the target are counted as never (infinite time), not dropped: a
median is finite only when more than half of the runs got there. The last line is the
ratio of the medians (post / project): how many times faster this project gets there.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RECIPES = {
    "project": ("addition-fast", []),
    "post": ("seed", []),
}
# --tiny: the same code path in about a minute (nothing reaches the target)
TINY = {
    "project": ["task.data.operand_max=99", "task.data.num_examples=1500",
                "task.data.num_shards=1", "trainer.model.embedding_dim=8",
                "trainer.model.encoder_units=16", "trainer.model.decoder_units=16",
                "trainer.epochs=1", "trainer.sample_predictions=0"],
    "post": ["task.data.operand_max=99", "task.data.num_examples=1500",
             "task.data.num_shards=1", "trainer.model.encoder_units=8", "trainer.epochs=1",
             "trainer.sample_predictions=0"],
}


def recipe_config(recipe: str, extra: list[str]):
    from lstm_math.config import load_config

    preset, overrides = RECIPES[recipe]
    return preset, overrides + extra, load_config(preset, overrides + extra)


def ensure_examples(config, directory: str) -> str:
    """ExampleGen output for the config's task.data, generated once and reused."""
    import dataclasses

    from lstm_math.components.example_gen import run_example_gen
    from lstm_math.config import fingerprint_dict

    data = dataclasses.asdict(config.task.data)
    stamp = os.path.join(directory, "data_fingerprint")
    want = fingerprint_dict(data)
    if os.path.exists(stamp) and open(stamp).read() == want:
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    run_example_gen(config.task.data, directory)
    with open(stamp, "w") as f:
        f.write(want)
    return directory


def _history(path: str) -> list[dict]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):  # not written yet, or being written
        return []


def train_until(preset: str, overrides: list[str], seed: int, examples: str, output: str,
                target: float, max_seconds: float, poll_s: float = 0.5) -> dict:
    """One Trainer process, stopped at the first epoch with val_exact_match >= target."""
    shutil.rmtree(output, ignore_errors=True)  # the Trainer would resume an old run
    os.makedirs(output)
    cmd = [sys.executable, "-m", "lstm_math.pipeline.cli", "train", "--config", preset,
           "--examples", examples, "--output", output, "--set", f"trainer.seed={seed}"]
    for o in overrides:
        cmd += ["--set", o]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log_path = os.path.join(output, "trainer.log")
    history_path = os.path.join(output, "history.json")
    started = time.time()
    seen = 0
    reached = None
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log_file,
                                stderr=subprocess.STDOUT)
        try:
            while True:
                done = proc.poll() is not None
                history = _history(history_path)
                now = time.time()
                for record in history[seen:]:
                    if record.get("val_exact_match", 0.0) >= target:
                        reached = {"epoch": record["epoch"],
                                   "wall_seconds": now - started,
                                   "epoch_seconds": sum(r["seconds"] for r in history
                                                        if r["epoch"] <= record["epoch"]),
                                   "val_exact_match": record["val_exact_match"]}
                        break
                seen = len(history)
                if reached or done or now - started > max_seconds:
                    break
                time.sleep(poll_s)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    history = _history(history_path)
    best = max((r.get("val_exact_match", 0.0) for r in history), default=None)
    out = {"seed": seed, "reached": reached is not None, "epochs_run": len(history),
           "best_val_exact_match": best, "wall_seconds_total": time.time() - started,
           "val_exact_match_per_epoch": [r.get("val_exact_match") for r in history],
           "seconds_per_epoch": [r.get("seconds") for r in history],
           "exit_code": proc.returncode, "log": log_path}
    if reached:
        out.update(time_to_target=reached["wall_seconds"], epoch=reached["epoch"],
                   epoch_seconds_to_target=reached["epoch_seconds"])
    else:
        out["time_to_target"] = math.inf
        if proc.returncode not in (0, None, -15) and not history:
            out["error"] = f"trainer exited with {proc.returncode}; see {log_path}"
    return out


def median_text(values: list[float]) -> str:
    m = statistics.median(values)
    return "never" if math.isinf(m) else f"{m:.1f}s"


def ratio_line(project: list[float], post: list[float], max_seconds: float) -> str:
    mp, mq = statistics.median(project), statistics.median(post)
    if math.isinf(mp):
        return ("ratio (post / project, medians): n/a: the project's median run never reached "
                "the target")
    if math.isinf(mq):
        return (f"ratio (post / project, medians): > {max_seconds / mp:.1f}x: the post's median "
                f"run never reached the target within its budget ({max_seconds:.0f}s, or its "
                f"preset's epochs and early stopping)")
    return f"ratio (post / project, medians): {mq / mp:.2f}x"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="runs per recipe (seeds 1..N)")
    parser.add_argument("--target", type=float, default=0.999,
                        help="validation exact match to reach")
    parser.add_argument("--max-seconds", type=float, default=3600.0,
                        help="wall-time budget of one run")
    parser.add_argument("--work", default=os.path.join(ROOT, "artifacts", "time_to_accuracy"),
                        help="data and Trainer outputs go here")
    parser.add_argument("--tiny", action="store_true",
                        help="CI: tiny data and models, 1 seed, 1 epoch")
    parser.add_argument("--json", help="also write every run's figures to this file")
    parser.add_argument("--project-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override added to the project recipe (repeatable): "
                             "measure a candidate recipe against the post's in the same run")
    args = parser.parse_args(argv)
    if args.tiny:
        args.seeds = 1
        args.max_seconds = min(args.max_seconds, 300.0)

    recipes = {}
    for name in RECIPES:
        extra = (TINY[name] if args.tiny else []) + (args.project_set if name == "project"
                                                      else [])
        preset, overrides, config = recipe_config(name, extra)
        examples = ensure_examples(config, os.path.join(args.work, f"data_{name}"))
        recipes[name] = (preset, overrides, examples)
        print(f"{name}: preset {preset} {' '.join(overrides)}; "
              f"{config.task.data.num_examples} equations ({config.task.data.sampling}), "
              f"model {config.trainer.model.family} {config.trainer.model.encoder_units} units",
              flush=True)

    runs = {name: [] for name in RECIPES}
    for seed in range(1, args.seeds + 1):
        for name in RECIPES:  # alternating
            preset, overrides, examples = recipes[name]
            run = train_until(preset, overrides, seed, examples,
                              os.path.join(args.work, "runs", f"{name}-seed{seed}"),
                              args.target, args.max_seconds)
            runs[name].append(run)
            when = (f"{run['time_to_target']:.1f}s (epoch {run['epoch']}, epochs' own "
                    f"{run['epoch_seconds_to_target']:.1f}s)" if run["reached"] else
                    f"never (best val exact match {run['best_val_exact_match']} after "
                    f"{run['epochs_run']} epochs, {run['wall_seconds_total']:.0f}s)")
            print(f"  {name:<8} seed {seed}: {when}" + (f"  ERROR {run['error']}"
                                                        if run.get("error") else ""),
                  flush=True)

    print(f"target: validation exact match >= {args.target}; budget {args.max_seconds:.0f}s "
          f"per run; runs that never reach it count as never")
    for name in RECIPES:
        times = [r["time_to_target"] for r in runs[name]]
        reached = sum(r["reached"] for r in runs[name])
        print(f"{name}: median {median_text(times)} over {len(times)} runs "
              f"({reached} reached the target, {len(times) - reached} never)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"target": args.target, "max_seconds": args.max_seconds, "runs": runs},
                      f, indent=2, default=str)
    print(ratio_line([r["time_to_target"] for r in runs["project"]],
                     [r["time_to_target"] for r in runs["post"]], args.max_seconds), flush=True)
    return 1 if any(r.get("error") for rs in runs.values() for r in rs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
