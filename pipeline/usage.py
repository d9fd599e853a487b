"""What the command line accepts, and how it reports an ordinary mistake (one line, exit
status 2, nothing created): the checks made before anything heavy is imported.

Nothing here imports TensorFlow, Keras or Beam (Beam only when Beam options are given).
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import shutil
import sys

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
        _, unknown = parser.parse_known_args(beam_args)
    except UsageError as e:
        raise UsageError(f"Beam option: {e}") from None
    if unknown:
        name = next((a for a in unknown if a.startswith("--")), unknown[0]).split("=", 1)[0]
        raise UsageError(f"Beam has no option {name}"
                         + suggest(name, _option_strings(parser))
                         + " (Beam's options: apache_beam/options/pipeline_options.py)")


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
