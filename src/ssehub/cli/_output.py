"""Standard output that went away: ``ssehub publish ... | head -1`` and friends."""

from __future__ import annotations

import os
import sys

__all__ = ["drop_stdout"]


def drop_stdout() -> None:
    """Send what is still to be written to standard output to ``os.devnull``.

    Called on ``BrokenPipeError``: the reader left, and Python's own flush at exit would
    otherwise fail a second time with a traceback.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
