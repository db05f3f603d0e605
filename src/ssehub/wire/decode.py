"""An incremental, sans-IO parser for ``text/event-stream``.

Implements the client side of WHATWG HTML §9.2.6 "Interpreting an event stream"
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation)
and the dispatch steps of §9.2.6 "dispatch the event". Bytes go in through :meth:`EventParser.feed`,
dispatched :class:`MessageEvent` values come out; no I/O happens here, so the same parser serves
the client, the tests and anyone else's transport.

The parser works on bytes and decodes each field value as UTF-8 with replacement. This is exact:
CR and LF never occur inside a multi-byte UTF-8 sequence, so splitting lines before decoding gives
the same text as the spec's decode-then-split, and a character split across chunks simply waits in
the buffer with the rest of its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from .._exceptions import EventTooLarge

__all__ = ["DEFAULT_MAX_EVENT_SIZE", "MAX_RETRY", "EventParser", "MessageEvent", "parse"]

DEFAULT_MAX_EVENT_SIZE: Final = 8 * 1024 * 1024
"""8 MiB bounds one line and one event's data; generous for LLM token streams and JSON documents,
small enough that a hostile endless line cannot exhaust a client's memory."""

MAX_RETRY: Final = 2**64 - 1
"""The largest ``retry:`` value (milliseconds) the parser accepts and the encoder writes: Chromium's
bound (an unsigned 64-bit integer). A larger value is ignored like any invalid one, so a hostile
server cannot make the parser convert thousands of digits (which Python refuses with a
``ValueError`` beyond ``sys.get_int_max_str_digits()``, 4300 by default)."""

_MAX_RETRY_DIGITS: Final = len(str(MAX_RETRY))

_EOL: Final = re.compile(rb"\r\n|\r|\n")
_BOM: Final = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """A dispatched event, as a browser's ``MessageEvent`` would present it.

    Attributes:
        data: the data buffer with its final LF removed.
        event: the event type; ``"message"`` when the stream gave none.
        id: the *last event ID string* at dispatch time (it persists across events).
    """

    data: str
    event: str = "message"
    id: str = ""


class EventParser:
    """Incremental SSE parser: ``feed()`` bytes in any chunking, get dispatched events back.

    Args:
        last_event_id: seed for the last event ID string, for a parser that continues a
            reconnected stream (as Chromium and npm ``eventsource`` do).
        max_event_size: bound in bytes for one line and for one event's data buffer.

    Attributes:
        last_event_id: the last event ID string (committed at each blank line).
        retry: the last valid ``retry:`` value in milliseconds, or ``None``. Valid means ASCII
            digits only (WHATWG §9.2.6; leading zeros allowed) and at most :data:`MAX_RETRY`
            (2**64 - 1, Chromium's bound); a larger value is ignored like an invalid one, so
            the previous value stays, and the work per ``retry:`` line stays bounded however
            many digits a server sends.

    Raises:
        EventTooLarge: from :meth:`feed`, when a line or an event's data exceeds the bound. The
            parser must then be discarded (the stream is no longer in a known state).
    """

    __slots__ = (
        "_bom_checked",
        "_data",
        "_event",
        "_id",
        "_max",
        "_pending",
        "_pending_size",
        "_skip_lf",
        "last_event_id",
        "retry",
    )

    def __init__(
        self, *, last_event_id: str = "", max_event_size: int = DEFAULT_MAX_EVENT_SIZE
    ) -> None:
        if max_event_size <= 0:
            raise ValueError("max_event_size must be positive")
        self.last_event_id = last_event_id
        self.retry: int | None = None
        self._max = max_event_size
        self._id = last_event_id.encode()
        self._event = b""
        # The data buffer as the spec builds it (each line, then LF) in one bytearray: a list
        # of lines held a bytes object (about 35 bytes) per line, so an event of short lines
        # took many times max_event_size in memory.
        self._data = bytearray()
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._skip_lf = False
        self._bom_checked = False

    def feed(self, chunk: bytes) -> list[MessageEvent]:
        """Parse the next chunk of the stream and return the events it completed, in order."""
        if not chunk:
            return []
        if self._skip_lf:
            # The previous chunk ended in CR: a LF now is the second half of that CRLF.
            self._skip_lf = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
                if not chunk:
                    return []
        if not self._bom_checked:
            head = b"".join(self._pending) + chunk if self._pending else chunk
            if len(head) < len(_BOM) and _BOM.startswith(head):
                # Could still be the start of a BOM: wait for more bytes.
                self._pending = [head]
                self._pending_size = len(head)
                return []
            self._bom_checked = True
            self._pending = []
            self._pending_size = 0
            # WHATWG "UTF-8 decode" removes exactly one leading BOM.
            chunk = head[3:] if head.startswith(_BOM) else head

        match = _EOL.search(chunk)
        if match is None:
            self._pending.append(chunk)
            self._pending_size += len(chunk)
            if self._pending_size > self._max:
                raise EventTooLarge(self._max)
            return []
        if self._pending:
            offset = self._pending_size
            self._pending.append(chunk)
            buffer = b"".join(self._pending)
            self._pending = []
            self._pending_size = 0
            match = _EOL.search(buffer, offset)
            assert match is not None
        else:
            buffer = chunk

        events: list[MessageEvent] = []
        start = 0
        end = len(buffer)
        while match is not None:
            line_end, next_start = match.span()
            if line_end - start > self._max:
                raise EventTooLarge(self._max)
            self._line(buffer[start:line_end], events)
            start = next_start
            if next_start == end:
                if buffer[line_end] == 0x0D and next_start - line_end == 1:
                    self._skip_lf = True
                break
            match = _EOL.search(buffer, start)
        if start < end:
            rest = buffer[start:]
            if len(rest) > self._max:
                raise EventTooLarge(self._max)
            self._pending = [rest]
            self._pending_size = len(rest)
        return events

    def close(self) -> None:
        """End of stream: discard the incomplete event, as the spec requires.

        An ``id`` seen in that incomplete event is never committed, because commitment only
        happens at a blank line. The parser keeps ``last_event_id`` and ``retry``, so bytes fed
        after ``close()`` are parsed as a new stream that continues from them (a reconnect, as
        Chromium seeds its new parser): a leading BOM is stripped again and a CR at the end of
        the old stream does not swallow a LF at the start of the new one.
        """
        self._bom_checked = False
        self._skip_lf = False
        self._pending = []
        self._pending_size = 0
        self._data = bytearray()
        self._event = b""
        self._id = self.last_event_id.encode()

    def _line(self, line: bytes, events: list[MessageEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line[0] == 0x3A:  # ":" starts a comment
            return
        colon = line.find(b":")
        if colon == -1:
            name, value = line, b""
        else:
            name = line[:colon]
            value = line[colon + 1 :]
            if value[:1] == b" ":
                value = value[1:]
        if name == b"data":
            if len(self._data) + len(value) + 1 > self._max:
                raise EventTooLarge(self._max)
            self._data += value
            self._data += b"\n"
        elif name == b"event":
            self._event = value
        elif name == b"id":
            if b"\0" not in value:
                self._id = value
        elif name == b"retry" and value.isdigit():
            # bytes.isdigit() is true for ASCII digits only (and false for b""), exactly the
            # spec's rule: "If the field value consists of only ASCII digits, then interpret
            # the field value as an integer in base ten" (WHATWG §9.2.6).
            self._set_retry(value)
        # Any other field name is ignored (§9.2.6), including case variants such as "Data".

    def _set_retry(self, digits: bytes) -> None:
        # The spec sets no upper bound, but int() on an unbounded digit string is both slow
        # (quadratic) and refused by Python beyond 4300 digits (a ValueError that would crash
        # the client). Leading zeros are legal ("03000" is 3000), so they are stripped first;
        # then more digits than MAX_RETRY has means a larger value, ignored as Chromium does.
        significant = digits.lstrip(b"0")
        if len(significant) > _MAX_RETRY_DIGITS:
            return
        value = int(significant) if significant else 0
        if value <= MAX_RETRY:
            self.retry = value

    def _dispatch(self, events: list[MessageEvent]) -> None:
        # Step 1: the last event ID string is set even when no event fires.
        self.last_event_id = self._id.decode("utf-8", "replace")
        data = self._data
        event = self._event
        self._data = bytearray()
        self._event = b""
        if not data:
            return
        # "If the data buffer's last character is a U+000A LINE FEED (LF) character, then
        # remove the last character from the data buffer" (WHATWG §9.2.6): in place, no copy.
        del data[-1]
        text = data.decode("utf-8", "replace")
        events.append(
            MessageEvent(
                text,
                event.decode("utf-8", "replace") if event else "message",
                self.last_event_id,
            )
        )


def parse(stream: bytes, *, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> list[MessageEvent]:
    """Parse a complete stream and return its events (a trailing incomplete event is dropped)."""
    parser = EventParser(max_event_size=max_event_size)
    events = parser.feed(stream)
    parser.close()
    return events
