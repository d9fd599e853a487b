#!/usr/bin/env python
"""``lstm-math generate`` through Beam's portability framework on this machine (a job service
and an external worker pool on 127.0.0.1); the code is ``lstm_math.pipeline.portable_local``.

    python scripts/portable_local.py generate --config smoke --output /tmp/out [--set k=v]
"""

import sys

from lstm_math.pipeline.portable_local import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
