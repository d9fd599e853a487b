"""User-facing text describes the product as it is: no issue numbers (README, docs, the serving
README, the presets' comments, every command's --help), and every repository file it names
exists."""

import glob
import os
import re
import subprocess
import sys

import pytest

from lstm_math.pipeline import cli
from tests.helpers import REPO

ISSUE = re.compile(r"\bissues?\s*#?\s*\d+", re.IGNORECASE)
# A repository path as text names it: pipeline/runner.py, docs/cli.md, scripts/x.py, ...
REPO_PATH = re.compile(r"(?<![\w/.<-])((?:pipeline|components|serving|config|scripts|benchmarks|"
                       r"tests|docs|deploy)/[\w./-]*\w)")


def _user_files():
    files = ["README.md", "serving/README.md"] + sorted(
        os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))
    files += sorted(os.path.relpath(p, REPO)
                    for p in glob.glob(os.path.join(REPO, "pipeline", "configs", "*.yaml")))
    return files


def _help_texts():
    """{command line: the --help text} of `lstm-math` and each of its commands."""
    parser = cli.build_parser(cli.ALL)
    texts = {"lstm-math --help": parser.format_help()}
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    for name, p in sub.choices.items():
        texts[f"lstm-math {name} --help"] = p.format_help()
    return texts


def test_no_issue_numbers_in_docs_readmes_and_presets():
    found = []
    for rel in _user_files():
        with open(os.path.join(REPO, rel)) as f:
            for number, line in enumerate(f, 1):
                if ISSUE.search(line):
                    found.append(f"{rel}:{number}: {line.strip()}")
    assert found == []


def test_no_issue_numbers_in_any_commands_help():
    texts = _help_texts()
    assert {"lstm-math run --help", "lstm-math rehearse --help", "lstm-math serve --help",
            "lstm-math predict --help", "lstm-math step --help"} <= set(texts)
    found = [(cmd, m.group(0)) for cmd, text in texts.items() for m in ISSUE.finditer(text)]
    assert found == []


def test_the_help_checked_is_what_the_command_prints():
    proc = subprocess.run([sys.executable, "-m", "lstm_math.pipeline.cli", "run", "--help"],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, COLUMNS="80"))
    assert proc.returncode == 0
    assert "presets (--config NAME" in proc.stdout and not ISSUE.search(proc.stdout)
    for name, summary in cli.presets():
        assert name in proc.stdout and not ISSUE.search(summary)


@pytest.mark.parametrize("text", ["issue 14's bar", "(issue 14)", "Issue 13's rewrite",
                                  "issue #25", "issues 13"])
def test_the_pattern_catches_the_forms_used(text):
    assert ISSUE.search(text)


def test_every_repository_file_the_docs_name_exists():
    missing = []
    for rel in _user_files():
        with open(os.path.join(REPO, rel)) as f:
            for number, line in enumerate(f, 1):
                for path in REPO_PATH.findall(line):
                    if not os.path.exists(os.path.join(REPO, path)):
                        missing.append(f"{rel}:{number}: {path}")
    assert missing == []
