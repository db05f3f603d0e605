"""``ssehub publish [--url URL | --socket PATH] TOPIC DATA [--event E] [--retry MS] [--lines]``.

Publishes through the hub's ``POST /publish`` and prints what the hub answered, one line per
event: ``id=<id> topics=<t,...> subscribers=<n>``. ``DATA`` ``-`` reads standard input: all of it
as one event (one final newline removed, as shells do with ``$(...)``), or with ``--lines`` one
event per line *as each line arrives*, so ``tail -f log | ssehub publish logs - --lines`` streams.
With ``--lines`` CRLF, CR and LF all end a line, on standard input as inline, and empty lines
are skipped.

Exit codes: 0 published, 1 the hub refused or cannot be reached, 2 bad arguments (URL, input).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .._exceptions import ConfigurationError, HubResponseError, SSEHubError

if TYPE_CHECKING:
    from ..client import PublishResult

__all__ = ["add_parser", "describe_refusal", "run"]

_PROG = "ssehub publish"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BYTE_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the ``publish`` arguments.

    Args:
        parser: the ``publish`` subcommand's parser.
    """
    from ..client._hub import DEFAULT_HUB_URL, HUB_URL_ENV, TOKEN_ENV

    parser.add_argument(
        "--url",
        help=f"the hub's URL (env {HUB_URL_ENV}; default {DEFAULT_HUB_URL})",
    )
    parser.add_argument(
        "--token", help=f"a JWT or API key for the hub (env {TOKEN_ENV}, which ps cannot show)"
    )
    parser.add_argument("topic", metavar="TOPIC", help="the topic to publish to")
    parser.add_argument(
        "data", metavar="DATA", help="the event's data; '-' reads it from standard input"
    )
    parser.add_argument("--event", "-e", metavar="TYPE", help="the event type (default: message)")
    parser.add_argument(
        "--retry", type=int, metavar="MS", help="tell subscribers to reconnect after MS ms"
    )
    parser.add_argument(
        "--lines",
        action="store_true",
        help="publish one event per line of DATA (with '-': as each line arrives)",
    )
    # -- channels: publish through the hub's ingest socket instead of HTTP
    parser.add_argument(
        "--socket",
        metavar="PATH",
        help="publish through the hub's ingest socket (a Unix socket path, or "
        "tcp://HOST:PORT) instead of HTTP; prints id=<id> topics=<topic> per event",
    )


def _stdin_lines() -> Iterator[str]:
    """Yield the lines of standard input as they arrive; CRLF, CR and LF all end a line.

    Iterating the binary stream would split on LF only (and keep a lone CR), unlike inline
    ``--lines``. ``read1`` returns whatever the pipe holds, so a line is published as soon as its
    terminator arrives, even one ending in a CR with nothing after it yet.
    """
    stream = sys.stdin.buffer
    read = getattr(stream, "read1", stream.read)
    yield from _split_lines(iter(lambda: read(65536), b""))


def _split_lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """Split a stream of byte chunks into UTF-8 lines at CRLF, CR or LF.

    A CR ends its line at once; an LF right after it (perhaps in the next chunk) is the rest of
    the same CRLF, not an empty line. Splitting the bytes is safe before decoding: CR and LF
    never occur inside a multi-byte UTF-8 sequence.

    Raises:
        UnicodeDecodeError: a line is not UTF-8.
    """
    pending = b""
    after_cr = False
    for raw in chunks:
        chunk = raw[1:] if after_cr and raw.startswith(b"\n") else raw
        after_cr = chunk.endswith(b"\r")
        *complete, pending = _BYTE_LINE_BREAK.split(pending + chunk)
        for line in complete:
            yield line.decode("utf-8")
    if pending:
        yield pending.decode("utf-8")


def _payloads(args: argparse.Namespace) -> Iterator[str]:
    if args.data == "-":
        if args.lines:
            yield from _stdin_lines()
            return
        text = sys.stdin.buffer.read().decode("utf-8")
        yield text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")
        return
    if args.lines:
        yield from _LINE_BREAK.split(args.data)
        return
    yield args.data


def describe_refusal(exc: HubResponseError) -> str:
    """One line for a hub error: its detail, code and HTTP status."""
    detail = exc.error.get("detail") or "no detail"
    code = exc.error.get("error") or "error"
    return f"the hub refused: {detail} ({code}, HTTP {exc.status_code})"


def _show(result: PublishResult) -> None:
    topics = ",".join(result.topics)
    print(f"id={result.id} topics={topics} subscribers={result.subscribers}", flush=True)


def run(args: argparse.Namespace) -> int:
    """Publish and print the hub's answers.

    Args:
        args: the parsed command line.

    Returns:
        0 when every event was published, 1 when the hub refused one or cannot be reached, 2
        for an invalid URL or input that is not UTF-8, 130 on Ctrl-C.
    """
    from ..client._hub import HubClient, default_hub_url, token_headers

    if getattr(args, "socket", None):
        return _run_socket(args)
    try:
        with HubClient(args.url or default_hub_url(), headers=token_headers(args.token)) as hub:
            for data in _payloads(args):
                if args.lines and not data:
                    continue
                _show(hub.publish(args.topic, data, event=args.event, retry=args.retry))
    except ConfigurationError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 2
    except UnicodeDecodeError:
        print(f"{_PROG}: standard input is not UTF-8 text", file=sys.stderr)
        return 2
    except HubResponseError as exc:
        print(f"{_PROG}: {describe_refusal(exc)}", file=sys.stderr)
        return 1
    except SSEHubError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _run_socket(args: argparse.Namespace) -> int:
    """``run`` through the ingest socket: same input handling, output and exit codes."""
    from .._exceptions import IngestError
    from ..channels._ingest_client import IngestClient

    try:
        with IngestClient(args.socket) as ingest:
            for data in _payloads(args):
                if args.lines and not data:
                    continue
                command = {"command": "publish", "topic": args.topic, "data": data}
                if args.event is not None:
                    command["event"] = args.event
                if args.retry is not None:
                    command["retry"] = args.retry
                reply = ingest.send(command)
                print(f"id={reply['id']} topics={args.topic}", flush=True)
    except ConfigurationError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 2
    except UnicodeDecodeError:
        print(f"{_PROG}: standard input is not UTF-8 text", file=sys.stderr)
        return 2
    except IngestError as exc:
        print(f"{_PROG}: the hub refused: {exc.detail} ({exc.code})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
