"""The `lstm-math` command line.

Building the parser imports nothing heavy (no TensorFlow, Keras or Beam), so `--help` and
the ordinary mistakes (a typo'd flag, an unknown component, a missing directory, no server)
answer at once, in one line, with exit status 2 and nothing created. The commands import
what they need when they run. `serve` and `predict` take their arguments from
`lstm_math.serving.server` / `lstm_math.serving.client`, imported only when that command is chosen.

Cluster commands (`step`, `pod`, `k8s-specs`, `compile-kfp`, `rehearse`) live in
`pipeline/cluster_cli.py`.

Beam pipeline options travel through an explicit channel, checked against the options Beam
knows (Beam is imported only when some are given): `--beam-arg=--runner=PortableRunner`
(repeatable), or everything after a `--beam` separator.
"""

from __future__ import annotations

import argparse
import atexit
import difflib
import logging
import os
import re
import shutil
import socket
import sys
import threading

from lstm_math.pipeline import cluster_cli

log = logging.getLogger("lstm_math")

PROG = "lstm-math"
# The pipeline's steps in order (pipeline/pipeline.py; tests/test_cli.py checks they agree).
COMPONENTS = ("ExampleGen", "DataValidation", "Tuner", "Trainer", "Evaluator", "Exporter",
              "InfraValidator", "Pusher")
BEAM_COMMANDS = ("run", "component", "generate", "step", "rehearse")
# Commands whose arguments are declared by the module that runs them, imported only when
# that command is chosen (the serving engineers own them).
DELEGATED = {"serve": ("lstm_math.serving.server", "add_serve_arguments"),
             "predict": ("lstm_math.serving.client", "add_predict_arguments")}

DESCRIPTION = """\
LSTM seq2seq models that learn arithmetic from strings ('31 + 87' -> '118'), as a
TFX-style pipeline: ExampleGen (Beam) -> DataValidation -> Tuner -> Trainer -> Evaluator ->
Exporter (SavedModel) -> InfraValidator -> Pusher, then a TF Serving-compatible server.

first steps, from the repository:
  make run                          # the whole pipeline on `default`, then a summary
  .venv/bin/lstm-math predict --via saved-model --saved-model serving_models "31 + 87"
  .venv/bin/lstm-math serve --model-base serving_models   # own terminal; answers after ~15 s
  .venv/bin/lstm-math predict "31 + 87"                   # asks that server
(`source .venv/bin/activate` once per shell lets you type `lstm-math` alone.)

`lstm-math COMMAND --help` describes a command's options.
"""

BEAM_EPILOG = """\
Beam pipeline options (for the ExampleGen job) go through an explicit channel and are
checked against the options Beam knows:
  --beam-arg=--direct_num_workers=2 --beam-arg=--direct_running_mode=multi_processing
  ... --beam --runner=PortableRunner --job_endpoint=localhost:8099   (all after --beam)
"""


class UsageError(Exception):
    """An ordinary mistake: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a mistake in one line (no usage block) and exits 2."""

    def error(self, message):  # noqa: D401 - argparse's hook
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)


def _fail(prog: str, message: str) -> int:
    sys.stderr.write(f"{prog}: error: {message}\n")
    return 2


# --------------------------------------------------------------------------------------
# Help: presets, and the arguments of train / tune (declared here, their only place, so
# that their --help needs no TensorFlow).


def presets() -> list[tuple[str, str]]:
    """(name, first sentence of the file's leading comment) for pipeline/configs/*.yaml."""
    from lstm_math.config import CONFIG_DIR

    out = []
    for fname in sorted(os.listdir(CONFIG_DIR)):
        if not fname.endswith(".yaml"):
            continue
        summary = ""
        with open(os.path.join(CONFIG_DIR, fname)) as f:
            for line in f:
                if not line.startswith("#"):
                    break
                summary += " " + line.lstrip("#").strip()
        summary = summary.strip()
        cut = summary.find(". ")
        summary = summary[:cut + 1] if cut > 0 else summary
        if len(summary) > 80:
            summary = summary[:77].rsplit(" ", 1)[0] + " ..."
        out.append((fname[:-5], summary))
    return out


def _presets_epilog() -> str:
    lines = ["presets (--config NAME, files in pipeline/configs/; or --config my.yaml):"]
    found = presets()
    width = max((len(name) for name, _ in found), default=8)
    lines += [f"  {name:<{width}}  {text}" for name, text in found]
    return "\n".join(lines) + "\n"


def _add_verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log debug messages and TensorFlow's start-up messages too "
                        "(default: info and above)")


def _add_config_arguments(p: argparse.ArgumentParser, roots: bool = True) -> None:
    names = ", ".join(n for n, _ in presets())
    p.add_argument("--config", default="default", metavar="NAME|FILE",
                   help=f"a preset ({names}; default %(default)s) or a YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set trainer.epochs=3 (repeatable)")
    if roots:
        p.add_argument("--pipeline-root", metavar="DIR",
                       help="where artifacts go (runtime.pipeline_root; default artifacts)")
        p.add_argument("--serving-base", metavar="DIR",
                       help="where blessed models are pushed (pusher.serving_base; default "
                            "serving_models)")
    _add_verbose(p)


def _add_beam_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--beam-arg", dest="beam_args", action="append", default=[],
                   metavar="--OPTION=VALUE",
                   help="a Beam pipeline option for the ExampleGen job, e.g. "
                        "--beam-arg=--runner=PortableRunner (repeatable; or put them all "
                        "after --beam)")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of `lstm-math train` (pipeline.commands.train reads them)."""
    _add_config_arguments(p, roots=False)
    p.add_argument("--examples", required=True, metavar="DIR",
                   help="ExampleGen output: shards + stats.json (local path or gfile URL)")
    p.add_argument("--output", required=True, metavar="DIR",
                   help="Trainer output (model, checkpoints, logs); rerunning the same "
                        "command resumes from its last checkpoint")
    p.add_argument("--hparams", metavar="FILE",
                   help="a best_hyperparameters.json from the Tuner (default: the config's "
                        "trainer.model)")


def add_tune_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of `lstm-math tune` (pipeline.commands.tune reads them)."""
    _add_config_arguments(p)
    p.add_argument("--role", choices=("local", "chief", "worker"),
                   help="local (default; or from KERASTUNER_* variables): one process; chief: "
                        "serve the oracle, run no trials; worker: run trials the chief hands out")
    p.add_argument("--oracle", metavar="HOST:PORT",
                   help="chief: address to listen on; worker: the chief's address (default: "
                        "KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT)")
    p.add_argument("--tuner-id", help="this worker's id, unique and stable across restarts "
                                      "(default: KERASTUNER_TUNER_ID or worker-<hostname>)")
    p.add_argument("--examples", metavar="DIR",
                   help="ExampleGen output directory (default: this config's ExampleGen "
                        "artifact under --pipeline-root)")
    p.add_argument("--output", metavar="DIR",
                   help="the shared tuning directory (default: this config's Tuner artifact "
                        "directory under --pipeline-root)")
    p.add_argument("--chief-timeout", type=float, default=120.0, metavar="SECONDS",
                   help="worker: exit (status 3) when the chief is unreachable this long")


def _tidy_help(p: argparse.ArgumentParser) -> None:
    """Every option of a delegated parser gets help text, without reST markup."""
    for action in p._actions:  # argparse has no public iterator over its actions
        if action.help is None and "--verbose" in action.option_strings:
            action.help = "log debug messages too"
        elif action.help is None and action.option_strings:
            action.help = action.dest.replace("_", " ")
        if isinstance(action.help, str):
            action.help = action.help.replace("``", "'")


# --------------------------------------------------------------------------------------
# Checks made before anything is imported or created.


def _suggest(word: str, choices, n: int = 1) -> str:
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def _is_local(path: str) -> bool:
    return "://" not in path


def _check_path(flag: str, path: str | None, what: str) -> None:
    if path and _is_local(path) and not os.path.exists(path):
        raise UsageError(f"{flag} {path}: no such {what}")


def _option_strings(p: argparse.ArgumentParser) -> list[str]:
    return [s for a in p._actions for s in a.option_strings if s.startswith("--")]


def _unknown_option_message(p: argparse.ArgumentParser, extra: list[str], beam_ok: bool) -> str:
    flag = next((a for a in extra if a.startswith("-")), extra[0])
    name = flag.split("=", 1)[0]
    if not flag.startswith("-"):
        return f"unexpected argument {flag!r}"
    message = f"unknown option {name}" + _suggest(name, _option_strings(p))
    if "did you mean" not in message and "_" in name:
        message += (f"; Beam options go through --beam-arg={flag} or after --beam"
                    if beam_ok else "; this command takes no Beam options")
    return message


def _beam_parser():
    """Beam's own option parser (every PipelineOptions subclass), raising on errors."""
    root = logging.getLogger()
    quiet = logging.NullHandler()  # Beam's import warns about apitools on the root logger
    root.addHandler(quiet)
    try:
        from apache_beam.options import pipeline_options as po
    finally:
        root.removeHandler(quiet)

    base = getattr(po, "_BeamArgumentParser", argparse.ArgumentParser)

    class BeamParser(base):
        def error(self, message):
            raise UsageError(message)

    parser = BeamParser(allow_abbrev=False, add_help=False)
    classes = {}
    for cls in po.PipelineOptions.__subclasses__():
        classes.setdefault(str(cls), cls)
    for cls in classes.values():
        cls._add_argparse_args(parser)  # how Beam builds its own parser (get_all_options)
    return parser


def validate_beam_args(beam_args: list[str]) -> None:
    """Raises UsageError unless Beam knows every option (and accepts its value)."""
    bad = [a for a in beam_args if not a.startswith("--")]
    if bad:
        raise UsageError(f"Beam option {bad[0]!r} should look like --name=value")
    parser = _beam_parser()
    try:
        _, unknown = parser.parse_known_args(beam_args)
    except UsageError as e:
        raise UsageError(f"Beam option: {e}") from None
    if unknown:
        name = next((a for a in unknown if a.startswith("--")), unknown[0]).split("=", 1)[0]
        raise UsageError(f"Beam has no option {name}"
                         + _suggest(name, _option_strings(parser))
                         + " (Beam's options: apache_beam/options/pipeline_options.py)")


def _server_down(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return False
    except OSError:
        return True


def _check_predict(args) -> None:
    via = args.via or ("saved-model" if getattr(args, "saved_model", None) else "rest")
    if via == "saved-model":
        if not args.saved_model:
            raise UsageError("--via saved-model needs --saved-model DIR (a model base such as "
                             "serving_models, or one version's directory)")
        _check_path("--saved-model", args.saved_model, "SavedModel or model base")
        return
    port = args.rest_port if via == "rest" else args.grpc_port
    if _server_down(args.host, port):
        url = (f"http://{args.host}:{port}/v1/models/{args.model_name}:predict" if via == "rest"
               else f"grpc://{args.host}:{port}")
        raise UsageError(f"no server at {url}: start one in another terminal with "
                         f"`{_tool(PROG)} serve --model-base serving_models` (it answers after "
                         f"about 15 s of warm-up), or ask the model without a server: "
                         f"--via saved-model --saved-model serving_models")


# --------------------------------------------------------------------------------------
# The commands.


def _load(args):
    from lstm_math.config import config_from_args

    return config_from_args(args)


def _tool(name: str) -> str:
    """How to call a tool installed beside this Python, as typed in a fresh shell.

    The bare name when it is first on PATH; else its path, relative to the current directory
    when inside it (`.venv/bin/lstm-math` after `make run`), absolute otherwise.
    """
    path = os.path.join(os.path.dirname(sys.executable), name)
    if not os.path.exists(path):
        if name == PROG:
            return f"{sys.executable} -m lstm_math.pipeline.cli"
        return name
    if shutil.which(name) == path:
        return name
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


def _tensorboard_logdir(manifest: dict, root: str) -> str:
    """TensorBoard's arguments: the root's view (one folder per pipeline run, holding
    trainer/train, tuner/trial-01, evaluator); where there is none (a bucket), this run's
    steps by --logdir_spec."""
    if manifest.get("tensorboard"):
        return f"--logdir {manifest['tensorboard']}"
    comps = manifest["components"]
    spec = [f"{name.lower()}:{comps[name]['uri'].rstrip('/')}/logs"
            for name in ("Tuner", "Trainer", "Evaluator") if name in comps]
    return f"--logdir_spec {','.join(spec)}" if spec else f"--logdir {root}"


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
    if manifest.get("tensorboard_run"):
        lines.append(f"TensorBoard run:    {manifest['tensorboard_run']} (beside the root's "
                     "earlier runs)")
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
    if push.get("pushed"):
        lines.append(f"Pushed:             {push['path']} (version {push['version']})")
    elif push:
        lines.append(f"Not pushed: {push.get('reason')}")
    cli = _tool(PROG)
    lines.append("")
    lines.append("Next (each command works as printed, from this directory):")
    if push.get("pushed"):
        base = config.pusher.serving_base
        lines.append(f"  {cli} predict --via saved-model --saved-model {base} \"31 + 87\"")
        lines.append(f"  {_tool('saved_model_cli')} show --dir {push['path']} --tag_set serve "
                     "--signature_def serving_default")
        lines.append(f"  {cli} serve --model-base {base}   # own terminal; REST :8501 "
                     "after ~15 s warm-up")
        lines.append(f"  {cli} predict \"31 + 87\"   # asks that server")
    lines.append(f"  {_tool('tensorboard')} {_tensorboard_logdir(manifest, root)}   "
                 "# own terminal; http://localhost:6006")
    activate = os.path.join(os.path.dirname(sys.executable), "activate")
    if cli != PROG and os.path.exists(activate):
        rel = os.path.relpath(activate)
        lines.append(f"(Or `source {activate if rel.startswith('..') else rel}` once per "
                     "shell, then type `lstm-math` alone.)")
    return "\n".join(lines)


def cmd_run(args) -> int:
    from lstm_math.pipeline.pipeline import create_pipeline
    from lstm_math.pipeline.runner import LocalRunner

    config = _load(args)
    manifest = LocalRunner(config).run(create_pipeline(config), use_cache=not args.no_cache)
    print(_summary(manifest, config), flush=True)
    return 0


def _missing_upstream(runner, pipeline, name: str) -> str | None:
    """The earliest step that `name` needs and that has no output for this config yet."""
    needed, todo = set(), list(pipeline.node(name).inputs)
    while todo:
        n = todo.pop()
        if n not in needed:
            needed.add(n)
            todo.extend(pipeline.node(n).inputs)
    artifacts = {}
    for node in pipeline.nodes:
        if node.name == name:
            break
        if node.name not in needed:
            continue
        if any(k not in artifacts for k in node.inputs):
            return next(k for k in node.inputs if k not in artifacts)
        cached = runner.load_cached(node.name, runner.fingerprint(pipeline, node.name, artifacts))
        if cached is None:
            return node.name
        artifacts[node.name] = cached
    return None


def _run_first(step: str, root: str) -> str:
    cli = _tool(PROG)
    if step == COMPONENTS[0]:
        return (f"run `{cli} run --pipeline-root {root}` first (with the same --config and "
                f"--set), or `{cli} component {step} --pipeline-root {root}`")
    return (f"run `{cli} component {step} --pipeline-root {root}` first (with the same "
            f"--config and --set), or `{cli} run`")


def cmd_component(args) -> int:
    name = args.name
    if name not in COMPONENTS:
        lower = {c.lower(): c for c in COMPONENTS}
        guess = lower.get(name.lower()) or "".join(
            difflib.get_close_matches(name, COMPONENTS, n=1, cutoff=0.5))
        raise UsageError(f"no component {name!r}" + (f"; did you mean {guess}?" if guess else "")
                         + f" (components: {', '.join(COMPONENTS)})")
    if name != COMPONENTS[0] and args.pipeline_root and _is_local(args.pipeline_root) \
            and not os.path.isdir(args.pipeline_root):
        raise UsageError(f"--pipeline-root {args.pipeline_root}: no such directory, so {name} "
                         f"has no inputs; " + _run_first(COMPONENTS[0], args.pipeline_root))
    from lstm_math.pipeline.pipeline import create_pipeline
    from lstm_math.pipeline.runner import LocalRunner

    config = _load(args)
    runner, pipeline = LocalRunner(config), create_pipeline(config)
    root = config.runtime.pipeline_root
    if name != COMPONENTS[0]:
        if _is_local(root) and not os.path.isdir(root):
            raise UsageError(f"pipeline root {root}: no such directory, so {name} has no "
                             f"inputs; " + _run_first(COMPONENTS[0], root))
        missing = _missing_upstream(runner, pipeline, name)
        if missing:
            served = (" (nor against the model served now at pusher.serving_base)"
                      if pipeline.node(missing).resolvers else "")
            raise UsageError(f"{name} needs the output of {missing}, which has not run with "
                             f"this config under {root}{served}; " + _run_first(missing, root))
    manifest = runner.run(pipeline, only=[name], use_cache=not args.no_cache)
    print(_summary(manifest, config), flush=True)
    return 0


def cmd_generate(args) -> int:
    from lstm_math.pipeline import commands

    return commands.generate(_load(args), args.output)


def cmd_train(args) -> int:
    _check_path("--examples", args.examples, "directory")
    _check_path("--hparams", args.hparams, "file")
    from lstm_math.pipeline import commands

    return commands.train(args)


def cmd_tune(args) -> int:
    _check_path("--examples", args.examples, "directory")
    if not args.examples and args.pipeline_root and _is_local(args.pipeline_root) \
            and not os.path.isdir(args.pipeline_root):
        raise UsageError(f"--pipeline-root {args.pipeline_root}: no such directory, so no "
                         f"ExampleGen output to tune on; pass --examples DIR, or "
                         + _run_first(COMPONENTS[0], args.pipeline_root))
    from lstm_math.pipeline import commands

    return commands.tune(args, _load(args))


def cmd_serve(args) -> int:
    _check_path("--model-base", args.model_base, "directory (`make run` pushes to "
                "serving_models)")
    from lstm_math.serving import server

    return server.run_serve(args)


def cmd_predict(args) -> int:
    _check_predict(args)
    from lstm_math.serving import client

    return client.run_predict(args)


# --------------------------------------------------------------------------------------
# The parser.

COMMANDS = {
    "run": "run the whole pipeline (cached steps are reused)",
    "component": "run one step, on the outputs of earlier steps",
    "generate": "run ExampleGen alone into a directory",
    "train": "train one model on ExampleGen shards (resumable; one worker of a TF_CONFIG "
             "cluster)",
    "tune": "hyperparameter search: local, or one chief + N workers (keras-tuner's "
            "distributed mode)",
    "serve": "TF Serving-compatible local server (REST :8501, gRPC :8500)",
    "predict": "answer equations via the server (REST or gRPC) or a SavedModel",
    **cluster_cli.COMMANDS,
}


ALL = "*"


def build_parser(command: str | None = ALL) -> argparse.ArgumentParser:
    """The parser. ``command``: fill in only that command's delegated arguments (serve and
    predict import their modules), so that other commands' help imports nothing heavy;
    None: none of them; ALL (the default): every command."""
    parser = _Parser(prog=PROG, description=DESCRIPTION, allow_abbrev=False,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    fmt = argparse.RawDescriptionHelpFormatter

    def add(name, epilog=None, **kw):
        return sub.add_parser(name, help=COMMANDS[name], description=COMMANDS[name],
                              epilog=epilog, formatter_class=fmt, allow_abbrev=False, **kw)

    p = add("run", epilog=_presets_epilog() + "\n" + BEAM_EPILOG)
    _add_config_arguments(p)
    p.add_argument("--no-cache", action="store_true", help="rerun every step")
    _add_beam_argument(p)
    p.set_defaults(func=cmd_run)

    p = add("component", epilog=_presets_epilog() + "\n" + BEAM_EPILOG)
    p.add_argument("name", metavar="NAME", help=", ".join(COMPONENTS))
    _add_config_arguments(p)
    p.add_argument("--no-cache", action="store_true", help="rerun the step even if cached")
    _add_beam_argument(p)
    p.set_defaults(func=cmd_component)

    p = add("generate", epilog=_presets_epilog() + "\n" + BEAM_EPILOG)
    _add_config_arguments(p, roots=False)
    p.add_argument("--output", required=True, metavar="DIR",
                   help="directory (or gfile URL) for the shards")
    _add_beam_argument(p)
    p.set_defaults(func=cmd_generate)

    p = add("train", epilog=_presets_epilog())
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)

    p = add("tune", epilog=_presets_epilog())
    add_tune_arguments(p)
    p.set_defaults(func=cmd_tune)

    for name, func in (("serve", cmd_serve), ("predict", cmd_predict)):
        p = add(name)
        if command in (ALL, name):
            import importlib

            module, function = DELEGATED[name]
            getattr(importlib.import_module(module), function)(p)
            p.add_argument("-v", "--verbose", action="store_true",
                           help="TensorFlow's start-up messages and debug logging too")
            _tidy_help(p)
        p.set_defaults(func=func)

    # Cluster: step, pod, k8s-specs, compile-kfp, rehearse (pipeline/cluster_cli.py).
    cluster_cli.add_subparsers(sub, _add_config_arguments, _add_beam_argument)
    return parser


def _split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(lstm-math's arguments, Beam options after a `--beam` separator); and
    `--beam-arg X` becomes `--beam-arg=X` so that X may start with '--'."""
    beam: list[str] = []
    if "--beam" in argv:
        i = argv.index("--beam")
        argv, beam = argv[:i], [a for a in argv[i + 1:] if a != "--beam"]
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--beam-arg" and i + 1 < len(argv):
            out.append(f"--beam-arg={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out, beam


def _peek_value(argv: list[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        force=True,
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("apache_beam", "absl", "tensorflow", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def quiet_tensorflow(argv: list[str]) -> bool:
    """Unless -v/--verbose: TF_CPP_MIN_LOG_LEVEL=3 (when not set already) before TensorFlow
    is imported. Returns whether TensorFlow's native log lines should be filtered."""
    if any(a in ("-v", "--verbose") for a in argv):
        return False
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return True


# A line of TensorFlow's native (absl) logging ('I0000 00:00:1796194145.643927 8626
# port.cc:153] ...') and absl's notice that it logs to stderr before being initialized.
# TensorFlow 2.21 writes its start-up lines (oneDNN, cudart_stub, cuInit) this way whatever
# TF_CPP_MIN_LOG_LEVEL says. Fatal ('F') lines are kept.
_NATIVE_LOG_LINE = re.compile(
    rb"^(?:[IWE]\d{4} [\d:.]+ +\d+ [\w.+/-]+:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called)")
# The second line of TensorFlow's CPU feature notice.
_NATIVE_CONTINUATION = b"To enable the following instructions:"


def filter_native_stderr() -> None:
    """Keeps TensorFlow's native log lines off the terminal for the rest of the process.

    File descriptor 2 becomes a pipe read by a thread that passes on every line but
    TensorFlow's (``_NATIVE_LOG_LINE``); Python's own ``sys.stderr`` (logging, tracebacks)
    writes to the real stderr directly, so nothing of ours waits on the thread. At exit
    fd 2 is given back. Only for the command line (``main()`` without argv): callers in
    process keep their streams."""
    try:
        sys.stderr.flush()
        real = os.dup(2)
        read_end, write_end = os.pipe()
    except (OSError, ValueError):
        return
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = open(os.dup(real), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                      errors="backslashreplace")

    def pump():
        pending, after_native = b"", False
        while True:
            try:
                chunk = os.read(read_end, 65536)
            except OSError:
                break
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            kept = []
            for line in lines:
                native = bool(_NATIVE_LOG_LINE.match(line)) or (
                    after_native and line.startswith(_NATIVE_CONTINUATION))
                after_native = native
                if not native:
                    kept.append(line + b"\n")
            if kept:
                os.write(real, b"".join(kept))
        if pending and not _NATIVE_LOG_LINE.match(pending):
            os.write(real, pending)

    thread = threading.Thread(target=pump, name="native-stderr-filter", daemon=True)
    thread.start()

    def restore():
        try:
            sys.stderr.flush()
            os.dup2(real, 2)  # the pipe's last write end in this process closes: EOF
        except (OSError, ValueError):
            return
        thread.join(timeout=2)

    atexit.register(restore)


def main(argv: list[str] | None = None) -> int:
    from_command_line = argv is None
    argv, beam_tail = _split_argv(list(sys.argv[1:] if argv is None else argv))
    command = next((a for a in argv if not a.startswith("-")), None)
    # `pod` execs another lstm-math command in its place, which filters its own stderr: a
    # filter here would leave the new process writing into a pipe nobody reads
    if quiet_tensorflow(argv) and from_command_line and command != "pod":
        filter_native_stderr()
    if command is not None and command not in COMMANDS:
        return _fail(PROG, f"no command {command!r}" + _suggest(command, COMMANDS)
                     + f" (commands: {', '.join(COMMANDS)})")
    if command == "serve":  # before importing the server (TensorFlow): a typo'd path is quick
        base = _peek_value(argv, "--model-base")
        if base and _is_local(base) and not os.path.isdir(base):
            return _fail(f"{PROG} serve", f"--model-base {base}: no such directory (`make run` "
                                          "pushes to serving_models)")
    parser = build_parser(command)
    if command is None:
        if any(a in ("-h", "--help") for a in argv):
            parser.print_help()
            return 0
        return _fail(PROG, f"choose a command: {', '.join(COMMANDS)} (see `{PROG} --help`)")
    args, extra = parser.parse_known_args(argv)
    prog = f"{PROG} {command}"
    sub = parser._subparsers._group_actions[0].choices[command]
    if extra:
        return _fail(prog, _unknown_option_message(sub, extra, command in BEAM_COMMANDS)
                     + f" (see `{prog} --help`)")
    if beam_tail:
        if command not in BEAM_COMMANDS:
            return _fail(prog, "this command takes no Beam options (--beam)")
        args.beam_args = list(args.beam_args) + beam_tail
    try:
        if getattr(args, "beam_args", None):
            validate_beam_args(args.beam_args)
        _setup_logging(getattr(args, "verbose", False))
        return args.func(args)
    except UsageError as e:
        return _fail(prog, str(e))
    except Exception as e:  # noqa: BLE001 - translate the known ordinary mistakes only
        from lstm_math.config import ConfigError

        if isinstance(e, ConfigError):
            return _fail(prog, f"bad config: {e}")
        if isinstance(e, RuntimeError) and "has not run with this config yet" in str(e):
            return _fail(prog, str(e))
        from lstm_math.components.baseline import BaselineChanged

        if isinstance(e, BaselineChanged):  # a refused push: the step failed, in one line
            sys.stderr.write(f"{prog}: error: {e}\n")
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
