"""``python -m serving.server``: see :mod:`serving.server.command`."""

from serving.server.command import main

raise SystemExit(main())
