"""The `lstm-math` command line.

Building the parser imports nothing heavy (no TensorFlow, Keras or Beam), so `--help` and
the ordinary mistakes (a typo'd flag, an unknown component, a missing directory, no server)
answer at once, in one line, with exit status 2 and nothing created. The commands import
what they need when they run. `serve` and `predict` take their arguments from
`lstm_math.serving.server` / `lstm_math.serving.client`, imported only when that command is chosen.

This module is the entry point: the arguments, the parser and `main()`. What the local
commands do is in `pipeline/cli_commands.py`, the cluster commands (`step`, `pod`,
`k8s-specs`, `compile-kfp`, `rehearse`) in `pipeline/cluster_cli.py`, the one-line checks in
`pipeline/usage.py`, logging and TensorFlow's quiet start in `pipeline/terminal.py`.

Beam pipeline options travel through an explicit channel, checked against the options Beam
knows (Beam is imported only when some are given): `--beam-arg=--runner=PortableRunner`
(repeatable), or everything after a `--beam` separator.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from lstm_math.pipeline import cli_commands, cluster_cli
from lstm_math.pipeline.terminal import filter_native_stderr, quiet_tensorflow, setup_logging
from lstm_math.pipeline.usage import (COMPONENTS, PROG, UsageError, fail, is_local, suggest,
                                      unknown_option_message, validate_beam_args)

log = logging.getLogger("lstm_math")

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


class _Parser(argparse.ArgumentParser):
    """argparse that reports a mistake in one line (no usage block) and exits 2."""

    def error(self, message):  # noqa: D401 - argparse's hook
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)


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
    p.set_defaults(func=cli_commands.cmd_run)

    p = add("component", epilog=_presets_epilog() + "\n" + BEAM_EPILOG)
    p.add_argument("name", metavar="NAME", help=", ".join(COMPONENTS))
    _add_config_arguments(p)
    p.add_argument("--no-cache", action="store_true", help="rerun the step even if cached")
    _add_beam_argument(p)
    p.set_defaults(func=cli_commands.cmd_component)

    p = add("generate", epilog=_presets_epilog() + "\n" + BEAM_EPILOG)
    _add_config_arguments(p, roots=False)
    p.add_argument("--output", required=True, metavar="DIR",
                   help="directory (or gfile URL) for the shards")
    _add_beam_argument(p)
    p.set_defaults(func=cli_commands.cmd_generate)

    p = add("train", epilog=_presets_epilog())
    add_train_arguments(p)
    p.set_defaults(func=cli_commands.cmd_train)

    p = add("tune", epilog=_presets_epilog())
    add_tune_arguments(p)
    p.set_defaults(func=cli_commands.cmd_tune)

    for name, func in (("serve", cli_commands.cmd_serve),
                       ("predict", cli_commands.cmd_predict)):
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


def main(argv: list[str] | None = None) -> int:
    from_command_line = argv is None
    argv, beam_tail = _split_argv(list(sys.argv[1:] if argv is None else argv))
    command = next((a for a in argv if not a.startswith("-")), None)
    # `pod` execs another lstm-math command in its place, which filters its own stderr: a
    # filter here would leave the new process writing into a pipe nobody reads
    if quiet_tensorflow(argv) and from_command_line and command != "pod":
        filter_native_stderr()
    if command is not None and command not in COMMANDS:
        return fail(PROG, f"no command {command!r}" + suggest(command, COMMANDS)
                    + f" (commands: {', '.join(COMMANDS)})")
    if command == "serve":  # before importing the server (TensorFlow): a typo'd path is quick
        base = _peek_value(argv, "--model-base")
        if base and is_local(base) and not os.path.isdir(base):
            return fail(f"{PROG} serve", f"--model-base {base}: no such directory (`make run` "
                                         "pushes to serving_models)")
    parser = build_parser(command)
    if command is None:
        if any(a in ("-h", "--help") for a in argv):
            parser.print_help()
            return 0
        return fail(PROG, f"choose a command: {', '.join(COMMANDS)} (see `{PROG} --help`)")
    args, extra = parser.parse_known_args(argv)
    prog = f"{PROG} {command}"
    sub = parser._subparsers._group_actions[0].choices[command]
    if extra:
        return fail(prog, unknown_option_message(sub, extra, command in BEAM_COMMANDS)
                    + f" (see `{prog} --help`)")
    if beam_tail:
        if command not in BEAM_COMMANDS:
            return fail(prog, "this command takes no Beam options (--beam)")
        args.beam_args = list(args.beam_args) + beam_tail
    try:
        if getattr(args, "beam_args", None):
            validate_beam_args(args.beam_args)
        setup_logging(getattr(args, "verbose", False))
        return args.func(args)
    except UsageError as e:
        return fail(prog, str(e))
    except Exception as e:  # noqa: BLE001 - translate the known ordinary mistakes only
        from lstm_math.config import ConfigError

        if isinstance(e, ConfigError):
            return fail(prog, f"bad config: {e}")
        if isinstance(e, RuntimeError) and "has not run with this config yet" in str(e):
            return fail(prog, str(e))
        from lstm_math.components.errors import StepFailed

        if isinstance(e, StepFailed):  # e.g. a refused push: the step failed, in one line
            sys.stderr.write(f"{prog}: error: {e}\n")
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
