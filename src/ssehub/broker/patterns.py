"""Topic patterns: subscribe to every topic a pattern matches.

The syntax is the one of the hub's grants (:class:`ssehub.hub.TopicPatterns`): ``*`` matches any
run of characters, ``/`` included, possibly none; every other character matches itself (``?``,
``[`` and ``.`` are ordinary topic characters, not wildcards). So ``orders/*`` matches
``orders/1`` and ``orders/1/items`` but not ``orders`` itself, and ``*`` alone matches every
topic. A topic that itself contains ``*`` is matched like any other text.

:meth:`ssehub.Broker.subscribe` takes a ``str`` containing ``*`` as a :class:`TopicPattern`, and
any object implementing :class:`TopicMatcher` (the extension point for other selector syntaxes,
such as Mercure's URI templates) as is. The broker groups pattern subscribers by
:attr:`TopicMatcher.key`, so a thousand subscribers of one pattern cost one match per new topic.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

from .._exceptions import InvalidTopic
from .topics import MAX_TOPIC_LENGTH, TOPIC_PATTERN, validate_topic

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "DEFAULT_MAX_PATTERNS",
    "WILDCARD",
    "TopicMatcher",
    "TopicPattern",
    "compile_glob",
    "glob_parts",
    "is_pattern",
    "normalize_glob",
    "split_topics",
    "validate_pattern",
]

WILDCARD: Final = "*"
"""The one wildcard character: any run of characters (``/`` included), possibly empty."""

DEFAULT_MAX_PATTERNS: Final = 8
"""Patterns per subscription. Each costs one match per distinct topic published (then cached),
so the bound keeps one subscriber from making every new topic expensive; a larger set of
topics belongs in a broader pattern."""

_STARS: Final = re.compile(r"\*{2,}")
_COMPILED_CACHE: Final = 4096  # distinct pattern strings kept compiled (a few hundred bytes each)


@runtime_checkable
class TopicMatcher(Protocol):
    """Selects topics for a subscription: the extension point for selector syntaxes.

    The broker calls :meth:`matches` once per distinct topic it has to place (the answers are
    cached per topic), never per event and per subscriber.
    """

    @property
    def key(self) -> str:
        """A stable identity: equal keys must mean the same set of matched topics.

        The broker shares matching (and its cache) between subscribers whose matchers have
        equal keys, so prefix the key with the syntax (``glob:``, ``uritemplate:``...) to keep
        keys of different syntaxes apart.
        """
        ...

    def matches(self, topic: str) -> bool:
        """Return whether ``topic`` is selected (pure, fast and never raising)."""
        ...


def is_pattern(topic: str) -> bool:
    """Return whether a subscribe argument is a pattern (it contains ``*``)."""
    return WILDCARD in topic


def normalize_glob(pattern: str) -> str:
    """Return ``pattern`` with every run of ``*`` collapsed to one (the same topics match)."""
    return _STARS.sub(WILDCARD, pattern) if "**" in pattern else pattern


def glob_parts(pattern: str) -> tuple[str, ...]:
    """Return the literal parts of a pattern between its ``*``: ``"a*b*c"`` gives
    ``("a", "b", "c")``, ``"*b"`` gives ``("", "b")``."""
    return tuple(normalize_glob(pattern).split(WILDCARD))


@functools.lru_cache(maxsize=_COMPILED_CACHE)
def compile_glob(pattern: str) -> Callable[[str], bool]:
    """Return a function telling whether a topic matches ``pattern`` (compiled once, cached).

    No regular expression: ``.*a.*a.*b`` backtracks, and a pattern like ``*a*a*a*a*a*a*b``
    takes seconds on an 80-character topic, inside the fan-out. Each function here runs in
    time linear in the topic (:func:`_parts_match` for the general case).

    Args:
        pattern: topic characters and ``*`` (not validated here: see :class:`TopicPattern`).

    Returns:
        ``topic -> bool``: a constant for ``*``, a string comparison without ``*``, a prefix
        test for ``prefix*``, else an ordered search of the literal parts.
    """
    if pattern.strip(WILDCARD) == "":
        return _everything
    if WILDCARD not in pattern:
        return pattern.__eq__
    head, _, tail = pattern.partition(WILDCARD)
    if tail.strip(WILDCARD) == "":  # "prefix*": the common case
        return functools.partial(_starts_with, head)
    return functools.partial(_parts_match, glob_parts(pattern))


def _everything(topic: str) -> bool:
    return True


def _starts_with(prefix: str, topic: str) -> bool:
    return topic.startswith(prefix)


def _parts_match(parts: tuple[str, ...], topic: str) -> bool:
    """Whether ``topic`` is ``parts[0] * parts[1] * ... * parts[-1]``.

    The first part must start the topic and the last end it; each part between is found at
    its leftmost place after the previous one. Leftmost is always right for ``*``-only globs
    (a later place only leaves less room to the parts after it), so no choice is ever undone.
    """
    first, last = parts[0], parts[-1]
    end = len(topic) - len(last)
    if end < len(first) or not topic.startswith(first) or not topic.endswith(last):
        return False
    position = len(first)
    for part in parts[1:-1]:
        found = topic.find(part, position, end)
        if found < 0:
            return False
        position = found + len(part)
    return True


class TopicPattern:
    """A glob pattern over topic names (``*`` is the one wildcard); a :class:`TopicMatcher`.

    Patterns are compared by :attr:`key`: runs of ``*`` mean the same as one, so ``a/**`` and
    ``a/*`` are one pattern.

    Args:
        pattern: 1-256 topic characters (see :func:`~ssehub.broker.validate_topic`); ``*`` is
            the wildcard.

    Raises:
        InvalidTopic: the pattern is empty, too long, or has a character no topic can have.
    """

    __slots__ = ("_matches", "key", "pattern")

    def __init__(self, pattern: str) -> None:
        validate_topic(pattern)
        normalized = normalize_glob(pattern)
        self.pattern: str = normalized
        """The pattern, with runs of ``*`` collapsed to one."""
        self.key: str = "glob:" + normalized
        """``"glob:"`` and the pattern: equal keys, equal patterns."""
        self._matches = compile_glob(normalized)

    def matches(self, topic: str) -> bool:
        """Return whether ``topic`` matches the pattern."""
        return self._matches(topic)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TopicPattern) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"TopicPattern({self.pattern!r})"


def split_topics(
    topics: str | TopicMatcher | Iterable[str | TopicMatcher],
    *,
    limit: int,
    max_patterns: int,
) -> tuple[tuple[str, ...], tuple[TopicMatcher, ...]]:
    """Validate a subscribe argument; return its exact topics and its matchers, each distinct.

    A ``str`` with ``*`` becomes a :class:`TopicPattern`, a ``str`` without is an exact topic,
    a :class:`TopicMatcher` is kept as is (matchers with equal keys count once).

    Args:
        topics: a topic or pattern, a matcher, or an iterable of them.
        limit: the most exact topics and matchers together.
        max_patterns: the most matchers.

    Returns:
        ``(exact topics, matchers)``, each in first-seen order; together not empty.

    Raises:
        InvalidTopic: an item is invalid or of another type, none was given, more than
            ``limit`` were given, or more than ``max_patterns`` patterns.
    """
    single = isinstance(topics, str) or not isinstance(topics, Iterable)
    items: Iterable[object] = (topics,) if single else topics  # type: ignore[assignment]
    exact: dict[str, None] = {}
    matchers: dict[str, TopicMatcher] = {}
    for item in items:
        if isinstance(item, str):
            if is_pattern(item):
                pattern = TopicPattern(item)
                matchers.setdefault(pattern.key, pattern)
            else:
                exact[validate_topic(item)] = None
        elif isinstance(item, TopicMatcher) and isinstance(item.key, str):
            matchers.setdefault(item.key, item)
        else:
            raise InvalidTopic(
                repr(item)[:64], f"must be str or a TopicMatcher, not {type(item).__name__}"
            )
    if not exact and not matchers:
        raise InvalidTopic("", "at least one topic is required")
    if len(exact) + len(matchers) > limit:
        raise InvalidTopic(
            next(iter(exact), "") or next(iter(matchers)), f"too many topics (at most {limit})"
        )
    if len(matchers) > max_patterns:
        raise InvalidTopic(
            next(iter(matchers)), f"too many patterns (at most {max_patterns} per subscription)"
        )
    return tuple(exact), tuple(matchers.values())


def validate_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a valid grant or subscription pattern, else raise.

    Raises:
        ValueError: empty, longer than 256 characters, or a character no topic can have.
    """
    if not pattern or len(pattern) > MAX_TOPIC_LENGTH:
        raise ValueError(f"topic patterns have 1-{MAX_TOPIC_LENGTH} characters")
    if TOPIC_PATTERN.fullmatch(pattern) is None:
        raise ValueError("topic patterns use only topic characters and '*'")
    return pattern
