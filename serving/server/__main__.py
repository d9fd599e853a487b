"""``python -m lstm_math.serving.server``: see :mod:`lstm_math.serving.server.command`."""

from lstm_math.serving.server.command import main

raise SystemExit(main())
