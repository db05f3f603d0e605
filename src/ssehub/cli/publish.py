"""``ssehub publish [--url URL | --socket PATH] TOPIC DATA [--event E] [--retry MS] [--lines]``.

Publishes through the hub's ``POST /publish`` and prints what the hub answered, one line per
event: ``id=<id> topics=<t,...> subscribers=<n>``. ``DATA`` ``-`` reads standard input: all of it
as one event (one final newline removed, as shells do with ``$(...)``), or with ``--lines`` one
event per line *as each line arrives*, so ``tail -f log | ssehub publish logs - --lines`` streams.
With ``--lines`` CRLF, CR and LF all end a line, on standard input as inline, and empty lines
are skipped.

Each event is published with an idempotency key (``--idempotency-key``, or a new random one per
event) and retried with that same key, with backoff, when the hub answers 502, 503 or 504
(``outcome_unknown``: it may have been published) or cannot be reached: up to ``--attempts``
tries in all (5). A retry never publishes the event twice. Each retry is announced on standard
error.

Exit codes: 0 published, 1 the hub refused or cannot be reached, 2 bad arguments (URL, input).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from typing import TYPE_CHECKING, Any

from .._exceptions import ConfigurationError, HubResponseError, SSEHubError
from ._output import drop_stdout

if TYPE_CHECKING:
    from ..client import PublishResult
    from ..client._publish import PublishRetry

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
    parser.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="name this publication (1-255 visible ASCII characters): running the command "
        "again with the same KEY publishes nothing new while the event is in the hub's "
        "history (default: a new random key, reused only by this command's own retries; not "
        "with --lines)",
    )
    parser.add_argument(
        "--attempts",
        type=int,
        default=5,
        metavar="N",
        help="tries per event when the hub answers 502/503/504 or cannot be reached, with the "
        "same idempotency key, so an event is never published twice (default 5; 1: no retry)",
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
    if exc.error.get("outcome") == "unknown":
        return f"the outcome is unknown: {detail} ({code}, HTTP {exc.status_code})"
    return f"the hub refused: {detail} ({code}, HTTP {exc.status_code})"


def _retry_policy(args: argparse.Namespace) -> PublishRetry:
    from ..client._publish import PublishRetry

    return PublishRetry(attempts=args.attempts)


def _announce(attempt: int, delay: float, cause: BaseException) -> None:
    """Say on standard error that an attempt failed and when the next one goes."""
    if isinstance(cause, HubResponseError):
        reason = f"HTTP {cause.status_code} ({cause.error.get('error') or 'error'})"
    else:
        reason = str(cause)
    print(
        f"{_PROG}: attempt {attempt} failed: {reason}; retrying in {delay:.1f} s "
        "with the same idempotency key",
        file=sys.stderr,
        flush=True,
    )


def _show(result: PublishResult) -> None:
    topics = ",".join(result.topics)
    try:
        print(f"id={result.id} topics={topics} subscribers={result.subscribers}", flush=True)
    except BrokenPipeError:
        # The reader of the answers left (`| head -1`): the event is published, and so are
        # the rest of the input's; only the answers are no longer shown.
        drop_stdout()


def run(args: argparse.Namespace) -> int:
    """Publish and print the hub's answers.

    Args:
        args: the parsed command line.

    Returns:
        0 when every event was published, 1 when the hub refused one or cannot be reached, 2
        for an invalid URL or input that is not UTF-8, 130 on Ctrl-C.
    """
    from ..client._hub import HubClient, default_hub_url, token_headers

    try:
        key = _check_key_options(args)
        if getattr(args, "socket", None):
            return _run_socket(args, key)
        with HubClient(
            args.url or default_hub_url(),
            headers=token_headers(args.token),
            publish_retry=_retry_policy(args),
            on_retry=_announce,
        ) as hub:
            for data in _payloads(args):
                if args.lines and not data:
                    continue
                result = hub.publish(
                    args.topic, data, event=args.event, retry=args.retry, idempotency_key=key
                )
                _show(result)
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


def _check_key_options(args: argparse.Namespace) -> str | None:
    """Return ``--idempotency-key`` (checked), refusing what cannot work.

    Raises:
        ConfigurationError: ``--attempts`` below 1, an invalid key, or a key with ``--lines``
            (one key names one event).
    """
    from ..broker.publication import check_idempotency_key

    if args.attempts < 1:
        raise ConfigurationError("--attempts must be at least 1")
    key: str | None = getattr(args, "idempotency_key", None)
    if key is None:
        return None
    if args.lines:
        raise ConfigurationError("--idempotency-key names one event; it cannot go with --lines")
    try:
        return check_idempotency_key(key)
    except ValueError as exc:
        raise ConfigurationError(f"--idempotency-key: {exc}") from None


_SOCKET_RETRY_CODES = frozenset({"unavailable", "outcome_unknown", "connection"})
"""Ingest errors after which a command is sent again, with the same idempotency key."""


def _send_with_retry(ingest: Any, command: dict[str, Any], policy: PublishRetry) -> Any:
    """Send ``command``, again (unchanged: same key) after a retryable error, as ``policy``
    says; the ingest client reconnects by itself after a connection error."""
    from .._exceptions import IngestError
    from ..client._publish import Retrying

    retrying = Retrying(policy, _announce)
    while True:
        try:
            return ingest.send(command)
        except IngestError as exc:
            delay = retrying.after(exc) if exc.code in _SOCKET_RETRY_CODES else None
            if delay is None:
                raise
        time.sleep(delay)


def _run_socket(args: argparse.Namespace, key: str | None) -> int:
    """``run`` through the ingest socket: same input handling, output and exit codes."""
    from .._exceptions import IngestError
    from ..channels._ingest_client import IngestClient
    from ..client._publish import new_idempotency_key

    policy = _retry_policy(args)
    try:
        # Connected by the first send, so a socket that is not there yet is retried too.
        with closing(IngestClient(args.socket)) as ingest:
            for data in _payloads(args):
                if args.lines and not data:
                    continue
                command = {"command": "publish", "topic": args.topic, "data": data}
                if args.event is not None:
                    command["event"] = args.event
                if args.retry is not None:
                    command["retry"] = args.retry
                command["idempotency_key"] = key or new_idempotency_key()
                reply = _send_with_retry(ingest, command, policy)
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
