"""Topic patterns: the topics a credential grants, with ``*`` as the only wildcard.

``*`` matches any run of characters, ``/`` included: ``orders/*`` grants ``orders/1`` and
``orders/1/items``, but not ``orders`` itself; ``*`` alone grants every topic. Every other
character matches itself (``?``, ``[`` and ``.`` are ordinary topic characters, not wildcards).
A topic that itself contains ``*`` is matched like any other text. The matching itself is the
broker's (:mod:`ssehub.broker.patterns`), which subscriptions to patterns use too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from ..broker.patterns import WILDCARD, compile_glob, normalize_glob, validate_pattern

__all__ = ["EVERYTHING", "MAX_PATTERNS", "NOTHING", "TopicPatterns"]

MAX_PATTERNS: Final = 256
"""Patterns per grant; a larger list belongs in a wildcard, and the bound keeps matching cheap."""


class TopicPatterns:
    """An immutable set of topic patterns, compiled once (linear-time matching, no regex).

    Args:
        patterns: the patterns (valid topic characters, at most 256 characters each).

    Raises:
        ValueError: a pattern is empty, too long or has a character no topic can have, or
            there are more than :data:`MAX_PATTERNS`.
    """

    __slots__ = ("_everything", "_exact", "_globs", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        unique = tuple(dict.fromkeys(patterns))
        if len(unique) > MAX_PATTERNS:
            raise ValueError(f"at most {MAX_PATTERNS} topic patterns")
        for pattern in unique:
            validate_pattern(pattern)
        self.patterns = unique
        self._everything = any(not p.strip(WILDCARD) for p in unique)  # '*', '**'...
        # Plain topics are one set lookup; the others the broker's glob matchers (no regular
        # expression: one that backtracks would let a crafted grant stall every check).
        self._exact = frozenset(p for p in unique if WILDCARD not in p)
        self._globs: tuple[Callable[[str], bool], ...] = tuple(
            compile_glob(normalize_glob(p)) for p in unique if WILDCARD in p
        )

    def matches(self, topic: str) -> bool:
        """Return whether ``topic`` is granted by one of the patterns."""
        if self._everything or topic in self._exact:
            return True
        return any(match(topic) for match in self._globs)

    def matches_any(self, topics: Iterable[str]) -> bool:
        """Return whether at least one of ``topics`` is granted."""
        return any(self.matches(topic) for topic in topics)

    def covers(self, pattern: str) -> bool:
        """Return whether every topic ``pattern`` can match is granted (a subscription to it).

        A sound, conservative rule (deciding containment in general is costlier than a grant
        check should be): the pattern is covered by a grant of only ``*``, by a grant equal to
        it, or by a grant ``p*`` when the pattern starts with ``p`` (whatever the pattern
        matches after ``p``, the grant's ``*`` matches too). A pattern without ``*`` is one
        topic: :meth:`matches` decides.
        """
        if self._everything:
            return True
        if WILDCARD not in pattern:
            return self.matches(pattern)
        pattern = normalize_glob(pattern)
        for grant in map(normalize_glob, self.patterns):
            if grant == pattern:
                return True
            if grant.endswith(WILDCARD) and pattern.startswith(grant[:-1]):
                return True
        return False

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TopicPatterns) and set(self.patterns) == set(other.patterns)

    def __hash__(self) -> int:
        return hash(frozenset(self.patterns))

    def __repr__(self) -> str:
        return f"TopicPatterns({list(self.patterns)!r})"


EVERYTHING: Final = TopicPatterns(["*"])
NOTHING: Final = TopicPatterns([])
