"""Server-sent events as immutable, validated values that encode themselves once.

The wire format is WHATWG HTML §9.2.5 "Parsing an event stream"
(https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream).
A field value may not contain CR or LF, because every conformant parser treats CRLF, a lone LF
*and a lone CR* as a line end. That is why ``event`` and ``id`` are rejected (never stripped) when
they contain either, and why ``data`` and ``comment`` are split on all three terminators.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar, Final, NoReturn

from .._exceptions import EventValidationError
from ._json import dumps
from .decode import MAX_RETRY

__all__ = ["DEFAULT_SEPARATOR", "SEPARATORS", "JSONServerSentEvent", "ServerSentEvent"]

DEFAULT_SEPARATOR: Final = "\n"
"""LF, not CRLF: every parser accepts LF, while hand-written LF-only parsers break on CRLF."""

SEPARATORS: Final = ("\n", "\r\n", "\r")

_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")
_LF: Final = "\n"
_NEXT_DATA: Final = "\ndata: "


def _text(field: str, value: object) -> str:
    """Return ``value`` as a plain ``str`` (a ``str`` subclass such as a ``StrEnum`` member is
    reduced to its text, never to its ``str()``/``repr``), or raise for a non-string."""
    if isinstance(value, str):
        return str.__str__(value)
    raise EventValidationError(field, f"must be str, not {type(value).__name__}")


def _split_lines(text: str) -> list[str]:
    if "\n" in text or "\r" in text:
        return _LINE_BREAK.split(text)
    return [text]


def _check_line(field: str, value: str) -> None:
    if "\n" in value or "\r" in value:
        raise EventValidationError(field, "must not contain CR or LF")


def _raise_unencodable(**fields: str | None) -> NoReturn:
    for field, value in fields.items():
        if value is not None:
            try:
                value.encode()
            except UnicodeEncodeError as exc:
                raise EventValidationError(
                    field, f"not encodable as UTF-8 ({exc.reason} at index {exc.start})"
                ) from None
    raise AssertionError("unreachable: no field failed to encode")  # pragma: no cover


def _int_text(field: str, value: int) -> str:
    # int.__repr__, not str(): an IntEnum member's str() is its name on Python 3.10.
    try:
        return int.__repr__(value)
    except ValueError:
        # Python refuses to render ints of more than sys.get_int_max_str_digits() digits
        # (4300 by default); report it as the typed error every other bad field raises.
        raise EventValidationError(
            field, "int has too many digits to be rendered as text"
        ) from None


def _id_text(value: object) -> str:
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return _int_text("id", value)
    raise EventValidationError("id", f"must be str or int, not {type(value).__name__}")


def _json_text(value: object) -> str:
    try:
        return dumps(value)
    except (TypeError, ValueError) as exc:
        raise EventValidationError("data", f"not JSON-serialisable: {exc}") from exc


def _data_text(data: object) -> str:
    # Only text and numbers have a text form that is not a Python repr: str() of anything else
    # (object(), a plain Enum member's "E.A", a container, bytes' "b'...'") would put a repr on
    # the wire. int and float cover sse-starlette's common non-str data (IntEnum, IntFlag and
    # float subclasses included, rendered by value); bool is an int but refused, because "True"
    # is neither JSON nor what a JavaScript client expects.
    if isinstance(data, str):
        return str.__str__(data)  # a str subclass: its text, as a plain str
    if isinstance(data, int) and not isinstance(data, bool):
        return _int_text("data", data)
    if isinstance(data, float):
        return float.__repr__(data)
    raise EventValidationError("data", _not_text(data))


def _not_text(data: object) -> str:
    """The message for data that is neither str nor a number (shared with the response)."""
    return (
        f"must be str, int or float, not {type(data).__name__}; use JSONServerSentEvent "
        "(or ServerSentEvent.json()) to send structured data as JSON, or convert it to str"
    )


class ServerSentEvent:
    """One server-sent event: immutable, validated on construction, encoded once.

    Args:
        data: the event's data. ``str`` is sent as is (multi-line text becomes one ``data:``
            line per line); ``int`` and ``float`` (subclasses such as ``IntEnum`` included)
            become their decimal text. Anything else (containers, bytes, ``bool``, a plain
            ``Enum`` member, arbitrary objects) is refused so a Python ``repr`` never reaches
            the wire: use :class:`JSONServerSentEvent` or :meth:`ServerSentEvent.json` for
            structured data.
            ``None`` writes no ``data`` line (such a frame dispatches nothing in a browser, but
            still sets ``id``).
        event: the event type (``event:`` field); no CR or LF.
        id: the event id; ``str`` or ``int`` (rendered as decimal text); no CR, LF or NUL.
        retry: the client's reconnection time in milliseconds; an ``int`` from 0 to
            :data:`~ssehub.wire.MAX_RETRY` (2**64 - 1, the most a parser honours).
        comment: comment text; each line becomes one ``:`` line, ignored by clients.
        sep: the line separator, ``"\\n"`` (default), ``"\\r\\n"`` or ``"\\r"``.

    Raises:
        EventValidationError: a field would break the wire format, a text field holds a
            lone surrogate (not encodable as UTF-8), or an ``int`` ``id`` or ``data`` has more
            digits than Python renders as text (``sys.get_int_max_str_digits()``). It is a
            ``ValueError``.

    Fields are written in sse-starlette's order (comment, id, event, data, retry), each as
    ``name: value`` with exactly one space, which the parser strips, so a value that itself
    starts with a space survives the round trip. The wire bytes are computed here, once: the
    event is fully validated when the constructor returns and :meth:`encode` is free.

    Instances are immutable, so one event can be shared by every subscriber: assigning or
    deleting any attribute (private ones included) raises ``AttributeError``; use
    :meth:`replace` for a changed copy. Events can be pickled and copied.
    """

    # One slot, the tuple (encoded bytes, data, event, id, retry, comment, sep), written once
    # through its slot descriptor because __setattr__ refuses every name. One descriptor call
    # costs less than the seven attribute stores it replaces (measured with callgrind: about
    # 1 % fewer instructions per construction), and no more than two calls would.
    __slots__ = ("_state",)
    _json_data: ClassVar[bool] = False  # JSONServerSentEvent: data is a JSON value

    _state: tuple[bytes, str | None, str | None, str | None, int | None, str | None, str]

    def __init__(
        self,
        data: Any = None,
        *,
        event: str | None = None,
        id: str | int | None = None,
        retry: int | None = None,
        comment: str | None = None,
        sep: str | None = None,
    ) -> None:
        # Hot path (the encode benchmark measures it): each field is rendered with LF, and the
        # checks are single C-level scans (``str.isprintable()`` is false for CR, LF and NUL,
        # so only non-printable values take the exact, slower check). No rendered value
        # contains CR or LF (data and comment are split, event and id refused), so swapping LF
        # for another separator at the end is exact.
        head = ""
        if comment is not None:
            if type(comment) is not str:
                comment = _text("comment", comment)
            head = ": " + "\n: ".join(_split_lines(comment)) + "\n"
        if id is not None:
            if type(id) is not str:
                id = _id_text(id)
            if not id.isprintable():
                _check_line("id", id)
                if "\0" in id:
                    # WHATWG §9.2.6: an id containing U+0000 is ignored by clients, which
                    # would silently break resumption; refuse it here instead.
                    raise EventValidationError("id", "must not contain NUL")
            head = f"{head}id: {id}\n"
        if event is not None:
            if type(event) is not str:
                event = _text("event", event)
            if not event.isprintable():
                _check_line("event", event)
            head = f"{head}event: {event}\n"
        if retry is None:
            tail = "\n"
        else:
            if type(retry) is not int:
                if isinstance(retry, bool) or not isinstance(retry, int):
                    raise EventValidationError("retry", "must be a non-negative int (milliseconds)")
                retry = int(retry)
            if not 0 <= retry <= MAX_RETRY:
                # Parsers ignore larger values (Chromium keeps an unsigned 64-bit integer, and
                # so does ssehub's EventParser), so such a field could never take effect; the
                # bound also keeps the int cheap to render as text.
                raise EventValidationError(
                    "retry", "must be a non-negative int (milliseconds) up to 2**64 - 1"
                )
            tail = f"retry: {retry}\n\n"
        if data is None:
            text = head + tail
        else:
            if self._json_data:
                data = _json_text(data)
            elif type(data) is not str:
                data = _data_text(data)
            # A lone CR is a line end for every conformant parser (WHATWG §9.2.6), so data
            # is split on CRLF, CR and LF alike, one ``data:`` line per piece.
            if "\r" in data:
                text = f"{head}data: {_NEXT_DATA.join(_LINE_BREAK.split(data))}\n{tail}"
            elif "\n" in data:
                text = f"{head}data: {data.replace(_LF, _NEXT_DATA)}\n{tail}"
            else:
                text = f"{head}data: {data}\n{tail}"
        if sep is None:
            sep = "\n"
        elif sep != "\n":
            if sep not in SEPARATORS:
                raise EventValidationError("sep", r"must be one of '\n', '\r\n', '\r'")
            text = text.replace("\n", sep)
        try:
            encoded = text.encode()
        except UnicodeEncodeError:
            # A lone surrogate cannot be UTF-8; failing here keeps encode() infallible.
            _raise_unencodable(data=data, event=event, id=id, comment=comment)
        _set_state(self, (encoded, data, event, id, retry, comment, sep))

    @classmethod
    def json(
        cls,
        value: Any,
        *,
        event: str | None = None,
        id: str | int | None = None,
        retry: int | None = None,
        comment: str | None = None,
        sep: str | None = None,
    ) -> ServerSentEvent:
        """Build an event whose data is ``value`` as compact UTF-8 JSON.

        Raises:
            EventValidationError: ``value`` is not JSON-serialisable (nested too deeply to
                serialise included).
        """
        try:
            text = dumps(value)
        except (TypeError, ValueError) as exc:
            raise EventValidationError("data", f"not JSON-serialisable: {exc}") from exc
        except RecursionError as exc:
            # A container that holds itself, or a payload parsed just below json.loads' own
            # depth limit that dumps, a few frames deeper, cannot write back: bad data, not
            # a server error.
            raise EventValidationError("data", "not JSON-serialisable: nested too deeply") from exc
        # ServerSentEvent, not cls: JSONServerSentEvent.json() must not encode the text twice.
        return ServerSentEvent(text, event=event, id=id, retry=retry, comment=comment, sep=sep)

    @property
    def data(self) -> str | None:
        """The data text, or ``None`` when the event has no ``data`` field."""
        return self._state[1]

    @property
    def event(self) -> str | None:
        """The event type, or ``None`` (clients then use ``"message"``)."""
        return self._state[2]

    @property
    def id(self) -> str | None:
        """The event id as text, or ``None``."""
        return self._state[3]

    @property
    def retry(self) -> int | None:
        """The reconnection time in milliseconds, or ``None``."""
        return self._state[4]

    @property
    def comment(self) -> str | None:
        """The comment text, or ``None``."""
        return self._state[5]

    @property
    def sep(self) -> str:
        """The line separator used by :meth:`encode`."""
        return self._state[6]

    def encode(self) -> bytes:
        """Return the event's UTF-8 wire bytes, ending with the blank line that dispatches it.

        The bytes were computed by the constructor; every call returns the same ``bytes``
        object, so one event can be sent to any number of subscribers without re-encoding.
        """
        return self._state[0]

    def replace(self, **changes: Any) -> ServerSentEvent:
        """Return a copy with some fields changed, validated like a new event.

        Example: ``event.replace(id="42")``.
        """
        _, data, event, id, retry, comment, sep = self._state
        fields: dict[str, Any] = {
            "data": data,
            "event": event,
            "id": id,
            "retry": retry,
            "comment": comment,
            "sep": sep,
        }
        unknown = set(changes) - set(fields)
        if unknown:
            raise TypeError(f"unknown ServerSentEvent fields: {sorted(unknown)}")
        fields.update(changes)
        data = fields.pop("data")
        return ServerSentEvent(data, **fields)

    def __setattr__(self, name: str, value: object) -> None:
        # Every name, private slots included: one event object is shared by all subscribers
        # (and its bytes cached), so changing it after construction would change what every
        # one of them is sent. replace() makes a validated copy instead.
        raise AttributeError(f"{type(self).__name__} is immutable; use replace() for a copy")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle and copy would otherwise restore the slots with setattr(), which is refused.
        return (_restore, (type(self), self._state))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServerSentEvent):
            return NotImplemented
        # The encoded bytes are a function of the fields: comparing them too changes nothing.
        return self._state == other._state

    def __hash__(self) -> int:
        return hash(self._state)

    def __repr__(self) -> str:
        _, data, event, id, retry, comment, sep = self._state
        parts = [
            f"{name}={value!r}"
            for name, value in (
                ("data", data),
                ("event", event),
                ("id", id),
                ("retry", retry),
                ("comment", comment),
            )
            if value is not None
        ]
        if sep != DEFAULT_SEPARATOR:
            parts.append(f"sep={sep!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


# The slot descriptor's setter, bound once: the only way to write an event's state.
_STATE_SLOT: Final = vars(ServerSentEvent)["_state"]
_set_state: Final[Callable[[ServerSentEvent, tuple[Any, ...]], None]] = _STATE_SLOT.__set__


def _restore(cls: type[ServerSentEvent], state: tuple[Any, ...]) -> ServerSentEvent:
    """Rebuild an event from its state without re-validating it (pickle and copy)."""
    event = cls.__new__(cls)
    _set_state(event, state)
    return event


class JSONServerSentEvent(ServerSentEvent):
    """A server-sent event whose data is a JSON value, written as compact UTF-8 JSON.

    Same arguments as :class:`ServerSentEvent`, except that ``data`` may be any JSON-serialisable
    value (``None`` still means "no data field", as in sse-starlette). Uses ``orjson`` when it is
    installed and the standard library otherwise; the output is the same compact JSON.

    Raises:
        EventValidationError: ``data`` is not JSON-serialisable, or another field is invalid.
    """

    __slots__ = ()
    # ServerSentEvent.__init__ serialises ``data`` as JSON when this is set. No __init__ of
    # its own: a second Python frame with keyword arguments would cost about as much as
    # the JSON encoding itself.
    _json_data: ClassVar[bool] = True
