"""``python -m ssehub``: the same command line as the ``ssehub`` script."""

from ssehub.cli import main

raise SystemExit(main())
