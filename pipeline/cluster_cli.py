"""The cluster subcommands of ``lstm-math`` (registered by ``lstm_math.pipeline.cli`` in one block).

  lstm-math step NAME [--config ...] [--set ...] --input UPSTREAM=URI ... [--outputs-json P]
                      [--output-param uri=P ...] [--beam-arg=...]   one step for an orchestrator
  lstm-math pod -- train|tune ...     inside an Indexed Job pod: TF_CONFIG / tuner id from
                                      JOB_COMPLETION_INDEX, then the command
  lstm-math k8s-specs [--config ...] --out DIR     Kubernetes YAML for training and tuning
  lstm-math compile-kfp [--config ...] OUT.yaml    the Kubeflow Pipelines v2 spec
  lstm-math rehearse [--config ...]   the whole pipeline as a cluster runs it, on 127.0.0.1
"""

from __future__ import annotations

import json
import logging
import os
import sys

from lstm_math.pipeline.usage import (PROG, UsageError, check_output_dir, check_output_file,
                                      int_range)

log = logging.getLogger("lstm_math")

COMMANDS = {
    "step": "run one step for an orchestrator: explicit inputs, outputs JSON, exit codes",
    "pod": "(inside a Kubernetes Indexed Job) set TF_CONFIG / the tuner id from "
           "JOB_COMPLETION_INDEX, then run the command",
    "k8s-specs": "write Kubernetes YAML: training workers (headless Service + Indexed Job), "
                 "tuner chief + workers",
    "compile-kfp": "write the Kubeflow Pipelines v2 spec (needs .[kfp])",
    "rehearse": "the whole pipeline as a cluster runs it, on this machine (127.0.0.1): "
                "portable Beam, 2 training workers, a tuner chief + 2 workers",
}


def config_args_of(args) -> list[str]:
    """The config flags that reproduce this config in another process or pod."""
    config = args.config
    if os.path.exists(config):
        config = os.path.abspath(config)
    out = ["--config", config]
    for o in args.overrides:
        out += ["--set", o]
    if getattr(args, "pipeline_root", None):
        out += ["--set", f"runtime.pipeline_root={args.pipeline_root}"]
    if getattr(args, "serving_base", None):
        out += ["--set", f"pusher.serving_base={args.serving_base}"]
    return out


def _parse_pairs(pairs: list, flag: str, allowed=None) -> dict:
    from lstm_math.pipeline.step_errors import StepUsageError

    out = {}
    for text in pairs:
        key, sep, value = text.partition("=")
        if not sep or not key or not value:
            raise StepUsageError(f"{flag} {text!r}: expected KEY=VALUE")
        if allowed and key not in allowed:
            raise StepUsageError(f"{flag} {text!r}: unknown key {key!r}; use "
                                 f"{', '.join(allowed)}")
        out[key] = value
    return out


def _step_error(name: str, message: str) -> None:
    message = message if message.startswith(name) else f"{name}: {message}"
    sys.stderr.write(f"{PROG} step: error: {message}\n")
    sys.stderr.flush()


def cmd_step(args) -> int:
    from lstm_math.config import ConfigError, config_from_args

    config = config_from_args(args)  # a bad config: exit 2 (cli.main), before any import
    from lstm_math.pipeline.cli_commands import check_roots

    check_roots(args, config, serving=args.name == "Pusher")
    if args.name == "Trainer":
        from lstm_math.pipeline.cli_commands import check_warm_start

        check_warm_start(config)
    check_output_file("--outputs-json", args.outputs_json)
    check_output_dir("--log-dir", args.log_dir)
    from lstm_math.pipeline.step_errors import StepError
    from lstm_math.pipeline.steps import OUTPUT_PARAMS, run_step, step_outputs, write_outputs

    try:
        params = _parse_pairs(args.output_params, "--output-param", OUTPUT_PARAMS)
        for key, path in params.items():
            check_output_file(f"--output-param {key}", path)
        inputs = _parse_pairs(args.inputs, "--input")
        artifact, cached, seconds = run_step(config, args.name, inputs, config_args_of(args),
                                             use_cache=not args.no_cache, log_dir=args.log_dir)
        outputs = step_outputs(artifact, cached, seconds)
        write_outputs(outputs, args.outputs_json, params)
    except StepError as e:
        _step_error(args.name, str(e))
        return e.exit_code
    except (ConfigError, UsageError):
        raise  # exit 2, from cli.main
    except Exception as e:  # noqa: BLE001 - an orchestrator wants a status and the reason
        from lstm_math.components.errors import StepFailed

        if isinstance(e, StepFailed):  # e.g. a refused push: its one line says it all
            _step_error(args.name, f"{args.name} failed: {e}")
        else:
            log.exception("step %s failed: %s", args.name, e)
        return 1
    summary = {k: v for k, v in outputs.items() if k != "properties"}
    log.info("step %s: %s in %.1fs -> %s", args.name, "cached" if cached else "done", seconds,
             artifact.uri)
    print(json.dumps(summary, default=str), flush=True)
    return 0


def cmd_pod(args) -> int:
    from lstm_math.pipeline.k8s import pod_environment

    rest = [a for a in args.command if a != "--"] if args.command[:1] == ["--"] else args.command
    if not rest:
        raise UsageError("give the command after --, e.g. lstm-math pod -- train ...")
    try:
        extra = pod_environment(os.environ)
    except ValueError as e:
        raise UsageError(str(e)) from None
    os.environ.update(extra)
    for key, value in extra.items():
        log.info("pod: %s=%s", key, value)
    # the command in this process's place, with the pod's environment
    os.execv(sys.executable, [sys.executable, "-m", "lstm_math.pipeline.cli", *rest])


def cmd_k8s_specs(args) -> int:
    from lstm_math.config import config_from_args
    from lstm_math.pipeline.k8s import key_problem, write_specs

    config = config_from_args(args)
    problem = key_problem(config.cluster, args.key)
    if problem:
        raise UsageError(f"--key {args.key!r}: {problem}")
    check_output_dir("--out", args.out)
    for path in write_specs(config, args.out, key=args.key, examples=args.examples,
                            trainer_output=args.trainer_output, tuner_output=args.tuner_output,
                            config_args=config_args_of(args)):
        print(path)
    return 0


def cmd_compile_kfp(args) -> int:
    from lstm_math.config import config_from_args

    config = config_from_args(args)  # validates the config before anything is written
    if not args.output.endswith((".yaml", ".yml")):
        raise UsageError(f"OUTPUT {args.output}: the spec is YAML; give a file name ending "
                         "in .yaml, e.g. lstm_math.yaml")
    check_output_file("OUTPUT", args.output, make_parents=False)
    try:
        from lstm_math.pipeline.kfp_pipeline import compile_pipeline
    except ImportError as e:
        raise UsageError(f"compile-kfp needs the kfp SDK: pip install '.[kfp]' ({e})") from None
    compile_pipeline(args.output, config_name=args.config, overrides=args.overrides,
                     config=config)
    log.info("wrote the Kubeflow Pipelines spec %s", args.output)
    print(args.output)
    return 0


def cmd_rehearse(args) -> int:
    from lstm_math.config import config_from_args

    config = config_from_args(args)
    from lstm_math.pipeline.cli_commands import check_roots, check_warm_start

    check_roots(args, config)
    check_warm_start(config)
    from lstm_math.pipeline.cluster_local import rehearse

    manifest = rehearse(config, config_args_of(args), train_workers=args.train_workers,
                        tuner_workers=args.tuner_workers, beam=args.beam_runner,
                        use_cache=not args.no_cache, extra_beam_args=list(args.beam_args))
    print(json.dumps({k: manifest[k] for k in ("run_id", "run_dir", "seconds", "pushed")},
                     default=str), flush=True)
    return 0 if manifest["ok"] else manifest.get("exit_code", 1)


def add_subparsers(sub, add_config_arguments, add_beam_argument) -> None:
    import argparse

    p = sub.add_parser("step", help=COMMANDS["step"], description=COMMANDS["step"])
    p.add_argument("name", help="ExampleGen, DataValidation, Tuner, Trainer, Evaluator, "
                                "Exporter, InfraValidator or Pusher")
    add_config_arguments(p)
    p.add_argument("--input", dest="inputs", action="append", default=[],
                   metavar="UPSTREAM=URI", help="an upstream artifact directory (repeatable)")
    p.add_argument("--outputs-json", help="write the step's outputs JSON here (path or URL)")
    p.add_argument("--output-param", dest="output_params", action="append", default=[],
                   metavar="KEY=PATH", help="write one output (uri, blessed, pushed, version, "
                                            "json) as plain text to PATH (repeatable)")
    p.add_argument("--log-dir", help="where a distributed step's worker logs go")
    p.add_argument("--no-cache", action="store_true", help="rerun the step even if cached")
    add_beam_argument(p)
    p.set_defaults(func=cmd_step)

    p = sub.add_parser("pod", help=COMMANDS["pod"], description=COMMANDS["pod"])
    p.add_argument("command", nargs=argparse.REMAINDER,
                   help="the lstm-math command to run, after --: train ... or tune ...")
    p.set_defaults(func=cmd_pod)

    p = sub.add_parser("k8s-specs", help=COMMANDS["k8s-specs"], description=COMMANDS["k8s-specs"])
    add_config_arguments(p)
    p.add_argument("--out", required=True, help="directory for train.yaml and tune.yaml")
    p.add_argument("--key", default="manual", help="tells launches apart in object names")
    p.add_argument("--examples", help="ExampleGen output the workers read")
    p.add_argument("--trainer-output", help="Trainer output directory")
    p.add_argument("--tuner-output", help="shared tuning directory")
    p.set_defaults(func=cmd_k8s_specs)

    p = sub.add_parser("compile-kfp", help=COMMANDS["compile-kfp"],
                       description=COMMANDS["compile-kfp"])
    add_config_arguments(p)
    p.add_argument("output", help="the pipeline spec to write, e.g. lstm_math.yaml")
    p.set_defaults(func=cmd_compile_kfp)

    p = sub.add_parser("rehearse", help=COMMANDS["rehearse"], description=COMMANDS["rehearse"])
    add_config_arguments(p)
    p.add_argument("--train-workers", type=int_range(1, 256), default=2,
                   help="MultiWorkerMirroredStrategy worker processes for the Trainer "
                        "(1..256)")
    p.add_argument("--tuner-workers", type=int_range(0, 256), default=2,
                   help="keras-tuner worker processes beside the chief (0..256)")
    p.add_argument("--beam-runner", choices=("portable", "direct"), default="portable",
                   help="portable: a Beam job service + external worker pool (default)")
    p.add_argument("--no-cache", action="store_true", help="rerun every step")
    add_beam_argument(p)
    p.set_defaults(func=cmd_rehearse)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(os.execv(sys.executable, [sys.executable, "-m", "lstm_math.pipeline.cli", *sys.argv[1:]]))
