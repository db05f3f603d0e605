"""The ``ssehub`` command line.

Each subcommand lives in its own module, which defines ``add_parser(subparsers)`` to declare its
arguments and ``run(args) -> int`` to execute; ``main`` wires them together. Subcommand modules
are imported only when their command runs, so ``ssehub publish`` does not import the server.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..__about__ import __version__

__all__ = ["main"]

# name -> (module, one-line help)
_COMMANDS: dict[str, tuple[str, str]] = {
    "serve": (".serve", "run the hub server"),
    "publish": (".publish", "publish an event to a hub"),
    "listen": (".listen", "print events from a hub as they arrive"),
    "status": (".status", "show a hub's topics and subscribers"),
}


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(prog="ssehub", description="Server-Sent Events hub and tools")
    parser.add_argument("--version", action="version", version=f"ssehub {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in _COMMANDS.items():
        try:
            module = importlib.import_module(module_name, __name__)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(__name__):
                continue  # subcommand not shipped in this build
            raise
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        module.add_parser(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ssehub`` command line and return its exit code."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    # A command that cannot run here (serve without the hub extra) takes any arguments, so
    # that it can say what to install rather than that an option is unknown.
    if unknown and not getattr(args, "_any_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code: int = run(args)
    except KeyboardInterrupt:
        return 130  # Ctrl-C: the shell's code for SIGINT, without a traceback
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
