#!/usr/bin/env python
"""``lstm-math generate`` through Beam's portability framework on this machine: starts a job
service and an external SDK worker pool on 127.0.0.1 (``lstm_math.pipeline.portable_local``),
runs the job, stops both.

    python scripts/portable_local.py generate --config smoke --output /tmp/out [--set k=v]

Further Beam options go after ``--beam``, as with ``lstm-math generate``.
"""

import logging
import sys

from lstm_math.pipeline import cli
from lstm_math.pipeline.portable_local import portable_services


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "generate":
        print(__doc__, file=sys.stderr)
        return 2
    logging.basicConfig(force=True, level=logging.INFO, datefmt="%H:%M:%S",
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with portable_services() as beam_args:
        # Beam options go after `--beam` (cli.main checks them against Beam's own).
        return cli.main(argv + ["--beam", *beam_args])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
