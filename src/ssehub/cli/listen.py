"""``ssehub listen [--url URL] TOPIC... [--json] [--last-event-id ID] [--count N] [--wait]``.

Prints the events of one or more topics as they arrive, one per line: ``<id> <type> <data>``
(continuation lines of multi-line data indented; control characters shown escaped so an event
cannot drive the terminal), in colour when standard output is a terminal and ``NO_COLOR`` is
unset. ``--json`` prints JSON lines ``{"id", "event", "data"}`` instead.

When the stream opens it says so on standard error (``connected to URL (topics ...)``), so a
quiet terminal means "no events yet", not "still connecting"; events go to standard output only.
It keeps going across hub restarts: once the stream has opened, a lost connection, a refused one,
or a 429/502/503/504 answer reconnects with backoff (a note goes to standard error, and another,
``reconnected``, when the stream is back) and resumes with ``Last-Event-ID``. If the hub cannot
be reached at all on the first attempt, ``listen`` says so and exits, unless ``--wait`` asks it
to keep trying until the hub comes up.

Exit codes: 0 after ``--count`` events or when the hub ends the stream with 204, 1 when the
hub cannot be reached (without ``--wait``) or refuses the subscription, 2 for bad arguments,
130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import TYPE_CHECKING

from .._exceptions import ConfigurationError, SSEHubError
from ._output import drop_stdout

if TYPE_CHECKING:
    from ..client import EventSource
    from ..wire import MessageEvent

__all__ = ["add_parser", "format_event", "run"]

_PROG = "ssehub listen"
# C0 controls except TAB, DEL and C1 controls: shown escaped, never sent to the terminal raw.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_DIM, _BOLD_CYAN, _RESET = "\x1b[2m", "\x1b[1;36m", "\x1b[0m"
# ssehub.client's MAX_WAIT, not imported: the parser must work without the client extra.
_MAX_DELAY = 86400.0


def _delay(text: str) -> float:
    value = _non_negative(text)
    if value > _MAX_DELAY:
        raise argparse.ArgumentTypeError(f"must be at most {_MAX_DELAY:g} seconds (one day)")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be a number of seconds, 0 or more")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the ``listen`` arguments.

    Args:
        parser: the ``listen`` subcommand's parser.
    """
    from ..client._hub import DEFAULT_HUB_URL, HUB_URL_ENV, TOKEN_ENV

    parser.add_argument(
        "--url", help=f"the hub's URL (env {HUB_URL_ENV}; default {DEFAULT_HUB_URL})"
    )
    parser.add_argument(
        "--token", help=f"a JWT or API key for the hub (env {TOKEN_ENV}, which ps cannot show)"
    )
    parser.add_argument("topics", metavar="TOPIC", nargs="+", help="topics to listen to")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.add_argument(
        "--last-event-id", metavar="ID", default="", help="resume after this event id"
    )
    parser.add_argument(
        "--count", "-n", type=_positive_int, metavar="N", help="exit after N events"
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="keep trying when the hub cannot be reached yet (default: exit with an error)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=_non_negative,
        default=45.0,
        metavar="S",
        help="reconnect after S seconds without any data, heartbeats included (default 45)",
    )
    parser.add_argument(
        "--reconnect-delay",
        type=_delay,
        default=1.0,
        metavar="S",
        help="first reconnection delay until the hub sends retry: (default 1; backoff to 10)",
    )


def _escape(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def format_event(event: MessageEvent, *, as_json: bool = False, colour: bool = False) -> str:
    """Render one event as ``listen`` prints it.

    Args:
        event: the event.
        as_json: a JSON object ``{"id", "event", "data"}`` instead of the readable form.
        colour: add ANSI colours to the readable form.

    Returns:
        The text, without a final newline.
    """
    if as_json:
        return json.dumps({"id": event.id, "event": event.event, "data": event.data})
    ident = event.id or "-"
    kind = _escape(event.event)
    if colour:
        ident, kind = f"{_DIM}{_escape(ident)}{_RESET}", f"{_BOLD_CYAN}{kind}{_RESET}"
    else:
        ident = _escape(ident)
    first, *rest = event.data.split("\n")
    lines = [f"{ident} {kind} {_escape(first)}"]
    lines += [f"    {_escape(line)}" for line in rest]
    return "\n".join(lines)


def _reason(cause: BaseException | None, idle_timeout: float | None) -> str:
    import httpx

    if cause is None:
        return "the hub ended the stream"
    text = str(cause) or type(cause).__name__
    if isinstance(cause, httpx.ReadTimeout) and idle_timeout is not None:
        return f"no data for {idle_timeout:g} s"
    if isinstance(cause, (httpx.ConnectError, httpx.ConnectTimeout)):
        return f"cannot connect ({text})"
    if isinstance(cause, httpx.TransportError):
        return f"connection lost ({text})"
    return text


class _Listener:
    """The callbacks of one ``listen`` run: notices, and giving up when the hub is unreachable."""

    def __init__(
        self, url: str, topics: list[str], *, wait: bool, idle_timeout: float | None
    ) -> None:
        self.url = url
        self.topics = topics
        self.wait = wait
        self.idle_timeout = idle_timeout
        self.opened = False
        self.unreachable: BaseException | None = None
        self.source: EventSource[MessageEvent] | None = None

    def on_open(self) -> None:
        if not self.opened:
            note = f"connected to {self.url} (topics {', '.join(self.topics)})"
        else:
            resume = self.source.last_event_id if self.source is not None else ""
            note = f"reconnected, resuming after {resume}" if resume else "reconnected"
        self.opened = True
        print(f"{_PROG}: {_escape(note)}", file=sys.stderr, flush=True)

    def on_reconnect(self, delay: float, cause: BaseException | None) -> None:
        from .._exceptions import ConnectionFailed

        if not self.opened and not self.wait and not isinstance(cause, ConnectionFailed):
            # Never connected: most likely a wrong URL or a hub that is not running. Say so
            # instead of retrying forever; --wait is for starting before the hub.
            self.unreachable = cause
            if self.source is not None:
                self.source.close()
            return
        reason = _reason(cause, self.idle_timeout)
        print(f"{_PROG}: {reason}; reconnecting in {delay:.1f} s", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Subscribe and print events until ``--count``, a 204, an error or Ctrl-C.

    Args:
        args: the parsed command line.

    Returns:
        The exit code (see the module docstring).
    """
    from ..client import RETRYABLE_STATUSES, HubClient, ReconnectPolicy
    from ..client._hub import default_hub_url, token_headers

    colour = not args.json and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    policy = ReconnectPolicy(
        initial_retry=args.reconnect_delay,
        max_delay=max(10.0, args.reconnect_delay),
        retry_statuses=RETRYABLE_STATUSES,
    )
    idle_timeout = args.idle_timeout or None
    received = 0
    try:
        with HubClient(args.url or default_hub_url(), headers=token_headers(args.token)) as hub:
            listener = _Listener(hub.url, args.topics, wait=args.wait, idle_timeout=idle_timeout)
            with hub.subscribe(
                args.topics,
                args.last_event_id or None,
                policy=policy,
                idle_timeout=idle_timeout,
                on_reconnect=listener.on_reconnect,
                on_open=listener.on_open,
            ) as source:
                listener.source = source
                for event in source:
                    print(format_event(event, as_json=args.json, colour=colour), flush=True)
                    received += 1
                    if args.count is not None and received >= args.count:
                        return 0
    except ConfigurationError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 2
    except SSEHubError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, without a second error at exit.
        drop_stdout()
        return 0
    if listener.unreachable is not None:
        cause = listener.unreachable
        print(
            f"{_PROG}: cannot reach the hub at {listener.url}: {cause or type(cause).__name__}",
            file=sys.stderr,
        )
        return 1
    print(f"{_PROG}: the hub ended the stream", file=sys.stderr)
    return 0
