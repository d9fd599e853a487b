"""Shared test code: the CLI in a subprocess, digests of generated files, free ports, and a
cache of ExampleGen outputs (one per data config per test session; see conftest's
``examples_for``). Test files import from here, never from each other."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lstm_math(*args, cwd=None, timeout=600, check=True):
    """Runs ``lstm-math`` (``python -m pipeline.cli``) from this checkout."""
    cmd = [sys.executable, "-m", "pipeline.cli", *args]
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(cmd, cwd=cwd or REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def digest(directory) -> dict:
    """File name -> sha256 of every file directly in ``directory``."""
    out = {}
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def read_split(directory, split) -> list:
    """(equation, result) rows of one split, in file order."""
    from components import data as data_lib

    rows = []
    for batch in data_lib.features_dataset(str(directory), split, 512):
        rows += list(zip(batch["equation"].numpy().astype(str),
                         batch["result"].numpy().astype(str)))
    return rows


def free_ports(n: int = 1) -> list:
    """``n`` distinct TCP ports nothing listens on right now."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


class ExampleCache:
    """ExampleGen outputs keyed by the data config: each distinct ``task.data`` is generated
    once and shared (read-only) by every test that asks for it."""

    def __init__(self, make_dir):
        self._make_dir = make_dir
        self._dirs: dict[str, str] = {}

    def __call__(self, preset: str = "smoke", *overrides: str) -> str:
        from components.example_gen import run_example_gen
        from pipeline.config import fingerprint_dict, load_config

        data = load_config(preset, list(overrides)).task.data
        key = fingerprint_dict(dataclasses.asdict(data))
        if key not in self._dirs:
            out = str(self._make_dir())
            run_example_gen(data, out, [])
            self._dirs[key] = out
        return self._dirs[key]
