"""``ssehub status [--url URL] [--json]``: a readable summary of a hub's ``GET /status``.

::

    hub          http://127.0.0.1:8000
    uptime       1h 02m 03s
    connections  3

    TOPIC   SUBSCRIBERS  HISTORY
    chat              2       10
    news              1        0

    totals: published 10, delivered 20, dropped 0, shed 0, subscribed topics 2

Exit codes: 0 shown, 1 the hub answered an error or cannot be reached, 2 bad URL.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from .._exceptions import ConfigurationError, HubResponseError, SSEHubError
from .publish import describe_refusal

__all__ = ["add_parser", "format_status", "run"]

# The totals' "topics" counts topics with subscribers, not the topics of the table above it
# (which lists topics with history too).
_TOTAL_LABELS = {"topics": "subscribed topics"}

_PROG = "ssehub status"


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the ``status`` arguments.

    Args:
        parser: the ``status`` subcommand's parser.
    """
    from ..client._hub import DEFAULT_HUB_URL, HUB_URL_ENV, TOKEN_ENV

    parser.add_argument(
        "--url", help=f"the hub's URL (env {HUB_URL_ENV}; default {DEFAULT_HUB_URL})"
    )
    parser.add_argument(
        "--token", help=f"a JWT or API key for the hub (env {TOKEN_ENV}, which ps cannot show)"
    )
    parser.add_argument("--json", action="store_true", help="print the raw JSON document")


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return str(seconds)
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{seconds:.1f}s" if isinstance(seconds, float) else f"{secs}s"


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def format_status(url: str, document: Mapping[str, Any]) -> str:
    """Render a ``/status`` document as the table ``ssehub status`` prints.

    Unknown keys are tolerated: scalar ones are listed under the header, so a newer hub's
    extra figures still show.

    Args:
        url: the hub's URL, shown first.
        document: the JSON document.

    Returns:
        The text, without a final newline.
    """
    header: list[tuple[str, str]] = [("hub", url)]
    if "uptime" in document:
        header.append(("uptime", _duration(document["uptime"])))
    for key, value in document.items():
        if key in ("uptime", "topics", "totals") or isinstance(value, (dict, list)):
            continue
        header.append((key, _cell(value)))
    width = max(len(key) for key, _ in header) + 2
    lines = [f"{key.ljust(width)}{value}".rstrip() for key, value in header]

    topics = document.get("topics")
    lines.append("")
    if isinstance(topics, Mapping) and topics:
        rows = [
            (
                str(name),
                _cell(info.get("subscribers") if isinstance(info, Mapping) else info),
                _cell(info.get("history") if isinstance(info, Mapping) else None),
            )
            for name, info in sorted(topics.items())
        ]
        table = [("TOPIC", "SUBSCRIBERS", "HISTORY"), *rows]
        widths = [max(len(row[i]) for row in table) for i in range(3)]
        for index, (name, subscribers, history) in enumerate(table):
            cells = (
                name.ljust(widths[0]),
                subscribers.rjust(widths[1]) if index else subscribers.ljust(widths[1]),
                history.rjust(widths[2]) if index else history,
            )
            lines.append("  ".join(cells).rstrip())
    else:
        lines.append("no topics")

    totals = document.get("totals")
    if isinstance(totals, Mapping) and totals:
        lines.append("")
        lines.append(
            "totals: "
            + ", ".join(f"{_TOTAL_LABELS.get(k, k)} {_cell(v)}" for k, v in totals.items())
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Fetch and print the hub's status.

    Args:
        args: the parsed command line.

    Returns:
        0 when printed, 1 when the hub answered an error or cannot be reached, 2 for a bad URL.
    """
    from ..client._hub import HubClient, default_hub_url, token_headers

    try:
        with HubClient(args.url or default_hub_url(), headers=token_headers(args.token)) as hub:
            document = hub.status()
            url = hub.url
    except ConfigurationError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 2
    except HubResponseError as exc:
        print(f"{_PROG}: {describe_refusal(exc)}", file=sys.stderr)
        return 1
    except SSEHubError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(document, indent=2, sort_keys=True))
    else:
        print(format_status(url, document))
    return 0
