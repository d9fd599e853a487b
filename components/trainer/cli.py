"""The arguments of ``lstm-math train`` (the command itself: pipeline.commands.train)."""

from __future__ import annotations

import argparse


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="default",
                        help="a preset name (default, smoke, seed, ...) or a YAML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config field (repeatable)")
    parser.add_argument("--examples", required=True,
                        help="ExampleGen output: shards + stats.json (local path or gfile URL)")
    parser.add_argument("--output", required=True,
                        help="Trainer output (model, checkpoints, logs); rerunning the same "
                             "command resumes from its last checkpoint")
    parser.add_argument("--hparams", help="a best_hyperparameters.json from the Tuner "
                                          "(default: the config's trainer.model and "
                                          "trainer.optimizer)")
    parser.add_argument("-v", "--verbose", action="store_true")
