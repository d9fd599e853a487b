#!/usr/bin/env python
"""The local rehearsal of a cluster run: ``lstm-math rehearse`` (see pipeline/cluster_local.py).

    python scripts/cluster_local.py --config smoke --pipeline-root /tmp/r/root \
        --serving-base /tmp/r/serving [--train-workers 2] [--tuner-workers 2]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lstm_math.pipeline import cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli.main(["rehearse", *sys.argv[1:]]))
