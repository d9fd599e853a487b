"""The arguments of ``lstm-math tune`` (the command itself: pipeline.commands.tune)."""

from __future__ import annotations

import argparse

from components.tuner.distributed import ROLES


def add_tune_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--role", choices=ROLES,
                   help="local (default; or from KERASTUNER_* variables): one process; chief: "
                        "serve the oracle, run no trials; worker: run trials the chief hands out")
    p.add_argument("--oracle", metavar="HOST:PORT",
                   help="chief: address to listen on; worker: the chief's address (default: "
                        "KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT)")
    p.add_argument("--tuner-id", help="this worker's id, unique and stable across restarts "
                                      "(default: KERASTUNER_TUNER_ID or worker-<hostname>)")
    p.add_argument("--examples", help="ExampleGen output directory (default: this config's "
                                      "ExampleGen artifact under --pipeline-root)")
    p.add_argument("--output", help="the shared tuning directory (default: this config's Tuner "
                                    "artifact directory under --pipeline-root)")
    p.add_argument("--chief-timeout", type=float, default=120.0, metavar="SECONDS",
                   help="worker: exit (status 3) when the chief is unreachable this long")
