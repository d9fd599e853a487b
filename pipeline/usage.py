"""What the command line accepts, and how it reports an ordinary mistake (one line, exit
status 2, nothing created): the checks made before anything heavy is imported.

Nothing here imports TensorFlow, Keras or Beam (Beam only when Beam options are given).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import os
import shutil
import sys
import tempfile

PROG = "lstm-math"
# The pipeline's steps in order (pipeline/pipeline.py; tests/test_cli.py checks they agree).
COMPONENTS = ("ExampleGen", "DataValidation", "Tuner", "Trainer", "Evaluator", "Exporter",
              "InfraValidator", "Pusher")


class UsageError(Exception):
    """An ordinary mistake: reported in one line, exit status 2."""


def fail(prog: str, message: str) -> int:
    sys.stderr.write(f"{prog}: error: {message}\n")
    return 2


def suggest(word: str, choices, n: int = 1) -> str:
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def is_local(path: str) -> bool:
    return "://" not in path


def check_path(flag: str, path: str | None, what: str) -> None:
    if path and is_local(path) and not os.path.exists(path):
        raise UsageError(f"{flag} {path}: no such {what}")


def check_input_dir(flag: str, path: str | None, what: str = "directory") -> None:
    """A local input directory: it exists and is a directory."""
    check_path(flag, path, what)
    if path and is_local(path) and not os.path.isdir(path):
        raise UsageError(f"{flag} {path}: not a directory")


def _check_creatable(flag: str, path: str) -> None:
    """``path`` does not exist: its nearest existing ancestor must be a directory in which a
    directory can be made (tried with a hidden scratch directory, removed at once, so that
    a read-only mount or /proc is caught whoever runs)."""
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"{flag} {path}: cannot be created: {parent} is not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".lstm-math-probe-", dir=parent))
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot be created: no directory can be made in "
                         f"{parent} ({e.strerror or e})") from None


def check_output_dir(flag: str, path: str | None) -> None:
    """A local output directory: an existing directory, or one that can be created (not an
    existing file, nor under one). URLs are left to their file system."""
    if not path or not is_local(path):
        return
    if os.path.isdir(path):
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"{flag} {path}: directory not writable")
        return
    if os.path.lexists(path):
        raise UsageError(f"{flag} {path}: exists and is not a directory")
    _check_creatable(flag, path)


def check_output_file(flag: str, path: str | None, make_parents: bool = True) -> None:
    """A local file to write: not a directory; its directory exists (``make_parents``: or
    can be created)."""
    if not path or not is_local(path):
        return
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path}: is a directory; give a file name")
    parent = os.path.dirname(path)
    if not parent:
        return
    if make_parents:
        check_output_dir(flag, parent)
    elif not os.path.isdir(parent):
        raise UsageError(f"{flag} {path}: no such directory {parent}")


def int_range(lo: int, hi: int):
    """An argparse ``type``: an integer in lo..hi (argparse reports the flag and this)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer in {lo}..{hi}, got "
                                             f"{text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be in {lo}..{hi}, got {value}")
        return value

    return parse


def _option_strings(p: argparse.ArgumentParser) -> list[str]:
    return [s for a in p._actions for s in a.option_strings if s.startswith("--")]


def unknown_option_message(p: argparse.ArgumentParser, extra: list[str], beam_ok: bool) -> str:
    flag = next((a for a in extra if a.startswith("-")), extra[0])
    name = flag.split("=", 1)[0]
    if not flag.startswith("-"):
        return f"unexpected argument {flag!r}"
    message = f"unknown option {name}" + suggest(name, _option_strings(p))
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
        known, unknown = parser.parse_known_args(beam_args)
    except UsageError as e:
        raise UsageError(f"Beam option: {e}") from None
    if unknown:
        name = next((a for a in unknown if a.startswith("--")), unknown[0]).split("=", 1)[0]
        raise UsageError(f"Beam has no option {name}"
                         + suggest(name, _option_strings(parser))
                         + " (Beam's options: apache_beam/options/pipeline_options.py)")
    if getattr(known, "runner", None):
        check_beam_runner(known.runner)


def check_beam_runner(name: str) -> None:
    """Raises UsageError unless Beam can make a runner of ``name``, resolved as Beam's
    ``create_runner`` does (apache_beam/runners/runner.py): a known runner's class name,
    case-insensitive, with or without 'Runner'; else a dotted path to a class. Known names
    are checked without importing Beam's runners; a dotted path is imported."""
    from apache_beam.options.pipeline_options import StandardOptions

    known = {path.rsplit(".", 1)[-1].lower() for path in StandardOptions.ALL_KNOWN_RUNNERS}
    known.add("pythonrpcdirectrunner")  # Beam's private alias
    if name.lower() in known or name.lower() + "runner" in known:
        return
    names = list(StandardOptions.KNOWN_RUNNER_NAMES)
    if "." not in name:
        raise UsageError(f"Beam option --runner={name}: no such runner" + suggest(name, names)
                         + f" (runners: {', '.join(names)}, or the dotted path of a "
                         "PipelineRunner class)")
    module, cls = name.rsplit(".", 1)
    try:
        found = getattr(importlib.import_module(module), cls, None)
    except Exception as e:  # noqa: BLE001 - any failure to import is the option's fault
        raise UsageError(f"Beam option --runner={name}: cannot import {module} "
                         f"({type(e).__name__}: {e})".replace("\n", " ")) from None
    if not isinstance(found, type):
        raise UsageError(f"Beam option --runner={name}: {module} has no class {cls}")


def tool(name: str) -> str:
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


def hparams_from_json(text: str, path: str, config) -> dict:
    """A best_hyperparameters.json (``--hparams``) as {"model": ..., "optimizer": ...},
    validated as the config's own ``trainer.model`` / ``trainer.optimizer`` (types, ranges,
    and against the task); UsageError naming the file and the field. The older flat form
    (the model's fields, learning_rate among them) is read too; a missing optimizer is the
    config's."""
    import dataclasses
    import json

    from lstm_math.config import ConfigError, ModelHParams, from_dict

    flag = f"--hparams {path}"
    try:
        data = json.loads(text)
    except ValueError as e:
        raise UsageError(f"{flag}: not JSON ({e})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{flag}: expected a JSON object {{\"model\": {{...}}, "
                         f"\"optimizer\": {{...}}}}, got {type(data).__name__}")
    optimizer = dataclasses.asdict(config.trainer.optimizer)
    if "model" in data:
        extra = sorted(set(data) - {"model", "optimizer"})
        if extra:
            raise UsageError(f"{flag}: unknown key {extra[0]!r}; expected model and optimizer")
        model, optimizer = data["model"], data.get("optimizer", optimizer)
    else:  # the flat form
        fields = {f.name for f in dataclasses.fields(ModelHParams)}
        model = {k: v for k, v in data.items() if k in fields}
        if "learning_rate" in data:
            optimizer["learning_rate"] = data["learning_rate"]
    tree = config.to_dict()
    tree["trainer"] = {**tree["trainer"], "model": model, "optimizer": optimizer}
    try:
        checked = from_dict(tree).trainer  # the config's own typed build and checks
    except ConfigError as e:
        text = str(e)
        raise UsageError(f"{flag}: {text[len('trainer.'):] if text.startswith('trainer.') else text}"
                         ) from None
    return {"model": dataclasses.asdict(checked.model),
            "optimizer": dataclasses.asdict(checked.optimizer)}


def read_local_hparams(path: str, config) -> dict | None:
    """``hparams_from_json`` of a local --hparams file (None for a URL: read later)."""
    if not path or not is_local(path):
        return None
    check_path("--hparams", path, "file")
    if os.path.isdir(path):
        raise UsageError(f"--hparams {path}: is a directory; give the tuner's "
                         "best_hyperparameters.json")
    try:
        with open(path) as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--hparams {path}: cannot read it ({e})") from None
    return hparams_from_json(text, path, config)
