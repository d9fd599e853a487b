#!/usr/bin/env python
"""The local rehearsal of a cluster run: ``lstm-math rehearse`` (lstm_math.pipeline.cluster_local).

    python scripts/cluster_local.py --config smoke --pipeline-root /tmp/r/root \
        --serving-base /tmp/r/serving [--train-workers 2] [--tuner-workers 2]
"""

import sys

from lstm_math.pipeline import cli

if __name__ == "__main__":
    sys.exit(cli.main(["rehearse", *sys.argv[1:]]))
