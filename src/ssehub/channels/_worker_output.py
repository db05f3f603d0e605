"""What a callback in a worker process logs or prints reaches the parent process.

anyio's worker processes send results over their standard output, so they point ``sys.stdout``
and ``sys.stderr`` at ``/dev/null``, and no logging is configured in them: without help, a
callback's ``print()`` and log records vanish. :func:`run_captured` runs the callback in the
worker with a logging handler on the root logger and ``sys.stdout``/``sys.stderr`` redirected
into buffers, and returns what they caught with the outcome; :meth:`Outcome.replay` hands the
records to the parent's loggers (its levels, handlers and format apply) and writes the output
to the parent's ``sys.stdout``/``sys.stderr``.

A record queue shared with the workers (``QueueHandler``/``QueueListener``) would need
processes started by :mod:`multiprocessing`; anyio starts its own. So records arrive when the
callback returns, not as they are logged, and both are bounded per call.
"""

from __future__ import annotations

import contextlib
import io
import logging
import pickle
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["MAX_OUTPUT_CHARS", "MAX_RECORDS", "Outcome", "log_threshold", "run_captured"]

MAX_RECORDS: Final = 1000
"""Log records forwarded per callback call; the rest are counted and reported as dropped."""

MAX_OUTPUT_CHARS: Final = 65_536
"""Characters of printed output forwarded per callback call and stream; the rest are dropped."""

_PLAIN = (str, int, float, bool, type(None))

logger = logging.getLogger("ssehub.channels")


@dataclass
class Outcome:
    """What one callback call in a worker process produced, sent back to the parent."""

    records: list[dict[str, Any]] = field(default_factory=list)
    dropped_records: int = 0
    stdout: str = ""
    stderr: str = ""
    error: Exception | SystemExit | None = None

    def replay(self, listener_id: str) -> None:
        """Log the records through the parent's loggers and write the printed output."""
        for fields in self.records:
            record = logging.makeLogRecord(fields)
            target = logging.getLogger(record.name)
            if target.isEnabledFor(record.levelno):
                target.handle(record)
        if self.dropped_records:
            logger.warning(
                "callback of listener %r logged too much: %d records dropped (at most %d a call)",
                listener_id,
                self.dropped_records,
                MAX_RECORDS,
            )
        for text, stream in ((self.stdout, sys.stdout), (self.stderr, sys.stderr)):
            if text and stream is not None:
                stream.write(text)
                stream.flush()


def log_threshold() -> int:
    """The lowest level any logger of this process is set to: less is never shown here.

    Workers capture from this level up, so what the parent would discard costs nothing to
    send; the parent's loggers still decide what they show.
    """
    loggers = logging.root.manager.loggerDict.values()
    levels = [item.level for item in loggers if isinstance(item, logging.Logger) and item.level]
    return min([logging.root.level, *levels])


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[dict[str, Any]] = []
        self.dropped = 0
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) >= MAX_RECORDS:
            self.dropped += 1
            return
        try:
            self.records.append(self._portable(record))
        except Exception:  # noqa: BLE001 - a record that cannot be kept must not fail the callback
            self.handleError(record)

    def _portable(self, record: logging.LogRecord) -> dict[str, Any]:
        # As QueueHandler.prepare does: the message is formatted here (its arguments may not
        # pickle), the traceback becomes text the parent's formatter appends.
        fields = dict(record.__dict__)
        fields["msg"] = record.getMessage()
        fields["args"] = None
        if record.exc_info:
            fields["exc_text"] = record.exc_text or self._formatter.formatException(record.exc_info)
        fields["exc_info"] = None
        fields.pop("message", None)
        try:
            pickle.dumps(fields, pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - an `extra` value that does not pickle: keep its repr
            fields = {k: v if isinstance(v, _PLAIN) else repr(v) for k, v in fields.items()}
        return fields


class _Bounded(io.TextIOBase):
    """A text sink keeping the first :data:`MAX_OUTPUT_CHARS` characters written to it."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[str] = []
        self._kept = 0
        self._dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        room = MAX_OUTPUT_CHARS - self._kept
        if room > 0:
            self._parts.append(text[:room])
            self._kept += min(len(text), room)
        self._dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def text(self) -> str:
        out = "".join(self._parts)
        if self._dropped:
            out += f"\n[ssehub: {self._dropped} more characters printed by the callback dropped]\n"
        return out


def run_captured(callback: Callable[[Any], Any], message: Any, threshold: int) -> Outcome:
    """Run ``callback(message)`` in a worker process, catching its log records and output.

    Runs in the worker: the callback's exception is returned (with the worker's traceback as a
    note, on Python 3.11+), not raised, so the records logged before it still reach the parent.
    """
    collector = _Collector()
    root = logging.getLogger()
    saved_level = root.level
    stdout, stderr = _Bounded(), _Bounded()
    outcome = Outcome()
    root.addHandler(collector)
    root.setLevel(threshold)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            callback(message)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - returned to the parent, which logs it
        add_note = getattr(exc, "add_note", None)
        if add_note is not None:
            add_note("in the worker process:\n" + traceback.format_exc().rstrip())
        try:
            pickle.loads(pickle.dumps(exc, pickle.HIGHEST_PROTOCOL))  # noqa: S301 - our own bytes
        except Exception:  # noqa: BLE001 - the parent gets what can travel
            outcome.error = RuntimeError(
                f"{type(exc).__name__}: {exc}\n{traceback.format_exc().rstrip()}"
            )
        else:
            outcome.error = exc
    finally:
        root.removeHandler(collector)
        root.setLevel(saved_level)
    outcome.records = collector.records
    outcome.dropped_records = collector.dropped
    outcome.stdout = stdout.text()
    outcome.stderr = stderr.text()
    return outcome
