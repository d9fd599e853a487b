"""The ``lstm-math`` command line.

  lstm-math run       [--config NAME|PATH] [--set k=v ...] [--pipeline-root DIR]
                      [--serving-base DIR] [--no-cache] [Beam options ...]
  lstm-math generate  [--config ...] [--set ...] --output DIR [Beam options ...]
  lstm-math train     [--config ...] [--set ...] --examples DIR --output DIR  (resumable)
  lstm-math tune      [--config ...] [--role chief|worker --oracle HOST:PORT --tuner-id ID]
  lstm-math component NAME [--config ...] [--set ...] [--pipeline-root DIR] ...
  lstm-math serve     --model-base DIR [...]          (TF Serving-compatible local server)
  lstm-math predict   "31 + 87" [...] [--via rest|grpc|saved-model]
  lstm-math step NAME --input UPSTREAM=URI ... [--outputs-json PATH]   (for orchestrators)
  lstm-math compile-kfp | k8s-specs | rehearse | pod    (see pipeline/cluster_cli.py)

Unrecognised ``--flags`` of run / generate / component are passed to Beam as pipeline
options (``--runner=PortableRunner --job_endpoint=...``, ``--direct_num_workers=2`` ...).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

log = logging.getLogger("lstm_math")


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        force=True,
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("apache_beam", "absl", "tensorflow", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _add_config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="default",
                   help="a preset name (default, smoke, ...) or a YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set trainer.epochs=3 (repeatable)")
    p.add_argument("--pipeline-root", help="where artifacts go (sets runtime.pipeline_root)")
    p.add_argument("--serving-base", help="where blessed models are pushed (pusher.serving_base)")
    p.add_argument("-v", "--verbose", action="store_true")


def _load(args, beam_args: list[str]):
    from pipeline.config import load_config

    overrides = list(args.overrides)
    if getattr(args, "pipeline_root", None):
        overrides.append(f"runtime.pipeline_root={args.pipeline_root}")
    if getattr(args, "serving_base", None):
        overrides.append(f"pusher.serving_base={args.serving_base}")
    config = load_config(args.config, overrides)
    if beam_args:
        config.runtime.beam_args = list(config.runtime.beam_args) + beam_args
    return config


def _summary(manifest: dict, config) -> str:
    comps = manifest["components"]
    root = config.runtime.pipeline_root
    lines = ["", f"lstm-math run {manifest['run_id']} finished in {manifest.get('seconds', 0):.0f}s"]
    for name, c in comps.items():
        lines.append(f"  {name:<15} {'cached ' if c['cached'] else 'ran    '} "
                     f"{c['seconds']:7.1f}s  {c['uri']}")
    ev = comps.get("Evaluator", {}).get("properties", {})
    if ev:
        m = ev["metrics"]
        lines.append(f"Test exact match: {m['exact_match']:.5f} ({m['wrong']} wrong of "
                     f"{m['count']}); blessed: {ev['blessing']['blessed']}")
    push = comps.get("Pusher", {}).get("properties", {})
    lines.append(f"Run manifest and effective config: {manifest['run_dir']}")
    if "Trainer" in comps:
        lines.append(f"Model (Keras):      {comps['Trainer']['uri']}/model.keras")
    if "Exporter" in comps:
        lines.append(f"SavedModel:         {comps['Exporter']['properties']['saved_model']}")
    if ev:
        lines.append(f"Metrics:            {ev['metrics_file']}")
        if ev.get("report"):
            lines.append(f"Evaluation report:  {ev['report']}")
        for picture in ev.get("pictures", []):
            lines.append(f"Error map / plots:  {picture}")
    lines.append("")
    lines.append("Look at it:")
    lines.append(f"  tensorboard --logdir {root}      # then open http://localhost:6006")
    if push.get("pushed"):
        base = config.pusher.serving_base
        lines.append(f"Pushed:             {push['path']} (version {push['version']})")
        lines.append(f"  saved_model_cli show --dir {push['path']} --tag_set serve "
                     "--signature_def serving_default")
        lines.append(f"  lstm-math predict --via saved-model --saved-model {base} \"31 + 87\"")
        lines.append(f"  lstm-math serve --model-base {base}      # REST :8501, gRPC :8500")
    elif push:
        lines.append(f"Not pushed: {push.get('reason')}")
    return "\n".join(lines)


def cmd_run(args, beam_args) -> int:
    from pipeline.pipeline import create_pipeline
    from pipeline.runner import LocalRunner

    config = _load(args, beam_args)
    manifest = LocalRunner(config).run(create_pipeline(config), use_cache=not args.no_cache)
    print(_summary(manifest, config), flush=True)
    return 0


def cmd_component(args, beam_args) -> int:
    from pipeline.pipeline import create_pipeline
    from pipeline.runner import LocalRunner

    config = _load(args, beam_args)
    pipeline = create_pipeline(config)
    pipeline.node(args.name)  # fails fast on an unknown name
    manifest = LocalRunner(config).run(pipeline, only=[args.name], use_cache=not args.no_cache)
    print(_summary(manifest, config), flush=True)
    return 0


def cmd_generate(args, beam_args) -> int:
    import json

    from components.example_gen import run_example_gen

    config = _load(args, beam_args)
    stats = run_example_gen(config.task.data, args.output, config.runtime.beam_args)
    print(json.dumps({s: v["count"] for s, v in stats["splits"].items()}))
    return 0


def cmd_tune(args, beam_args) -> int:
    from components.tuner import run_tune

    return run_tune(args, _load(args, beam_args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lstm-math", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the whole pipeline")
    _add_config_arguments(p)
    p.add_argument("--no-cache", action="store_true", help="rerun every component")
    p.set_defaults(func=cmd_run, beam_passthrough=True)

    p = sub.add_parser("component", help="run one component (inputs from earlier runs)")
    p.add_argument("name", help="ExampleGen, DataValidation, Tuner, Trainer, Evaluator, "
                                "Exporter, InfraValidator or Pusher")
    _add_config_arguments(p)
    p.add_argument("--no-cache", action="store_true")
    p.set_defaults(func=cmd_component, beam_passthrough=True)

    p = sub.add_parser("generate", help="run ExampleGen alone into a directory")
    _add_config_arguments(p)
    p.add_argument("--output", required=True, help="directory (or gfile URL) for the shards")
    p.set_defaults(func=cmd_generate, beam_passthrough=True)

    from components.trainer import add_train_arguments, run_train

    p = sub.add_parser("train", help="train one model on ExampleGen shards (resumable; one "
                                     "worker of a TF_CONFIG cluster)")
    add_train_arguments(p)
    p.set_defaults(func=lambda a, _: run_train(a), beam_passthrough=False)

    from components import tuner

    p = sub.add_parser("tune", help="hyperparameter search: local, or one chief + N workers "
                                    "(keras-tuner's distributed mode)")
    _add_config_arguments(p)
    tuner.add_tune_arguments(p)
    p.set_defaults(func=cmd_tune, beam_passthrough=False)

    from serving import client, server

    p = sub.add_parser("serve", help="TF Serving-compatible local server (REST + gRPC)")
    server.add_serve_arguments(p)
    p.set_defaults(func=lambda a, _: server.run_serve(a), beam_passthrough=False)

    p = sub.add_parser("predict", help="answer equations via REST, gRPC or a SavedModel")
    client.add_predict_arguments(p)
    p.set_defaults(func=lambda a, _: client.run_predict(a), beam_passthrough=False)

    # Cluster: step, pod, k8s-specs, compile-kfp, rehearse (pipeline/cluster_cli.py).
    from pipeline import cluster_cli

    cluster_cli.add_subparsers(sub, _add_config_arguments)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pipeline.config import ConfigError

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "beam_passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    bad = [a for a in extra if not a.startswith("--")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)} (Beam options look like --name=value)")
    _setup_logging(getattr(args, "verbose", False))
    try:
        return args.func(args, extra)
    except ConfigError as e:
        log.error("bad config: %s", e)
        return 2


if __name__ == "__main__":
    sys.exit(main())
