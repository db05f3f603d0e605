"""``python -m ssehub.cli``."""

from . import main

raise SystemExit(main())
