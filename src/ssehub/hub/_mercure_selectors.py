"""Mercure topic selectors: what a subscriber's ``topic=`` values and a token's grants mean.

draft-dunglas-mercure-07 §3: a topic selector is ``*`` (every topic), a URI template
(RFC 6570, :mod:`ssehub.hub._uri_template`) or any other string, matched exactly. The same
selectors fill the ``mercure.publish`` and ``mercure.subscribe`` lists of a token (§4).

:func:`parse_selectors` checks a subscription's selectors (count and length bounded, 400 when
over), and :func:`broker_targets` turns them into what :meth:`ssehub.Broker.subscribe` takes:
an exact selector is a plain topic (or an :class:`ExactMatcher` when it contains ``*``, which
the broker would read as a wildcard), ``*`` is the broker's match-everything pattern, a
template is a :class:`~ssehub.hub._uri_template.UriTemplateMatcher`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Final

from ..broker.topics import TOPIC_PATTERN
from ._uri_template import CACHE_SIZE, InvalidTemplate, UriTemplateMatcher, is_template

__all__ = [
    "MATCH_ALL",
    "ExactMatcher",
    "InvalidSelector",
    "SelectorSet",
    "Target",
    "broker_targets",
    "check_selectors",
    "parse_selectors",
]

MATCH_ALL: Final = "*"
"""The selector (and the broker pattern) that matches every topic."""


class InvalidSelector(ValueError):
    """A topic selector that cannot be used; the message says why, without the selector."""


class ExactMatcher:
    """A topic matcher for one exact topic that contains ``*`` (which, as a plain string, the
    broker would take as a wildcard pattern).

    Args:
        topic: the topic.
    """

    __slots__ = ("topic",)

    def __init__(self, topic: str) -> None:
        self.topic = topic

    @property
    def key(self) -> str:
        """A stable identity: equal keys match the same topics."""
        return "exact:" + self.topic

    def matches(self, topic: str) -> bool:
        """Return whether ``topic`` is exactly this one."""
        return topic == self.topic

    def __repr__(self) -> str:
        return f"ExactMatcher({self.topic!r})"


Target = str | ExactMatcher | UriTemplateMatcher
"""One item of what :meth:`ssehub.Broker.subscribe` is given for a Mercure subscription."""


@lru_cache(maxsize=CACHE_SIZE)
def _matcher(selector: str) -> UriTemplateMatcher | None:
    """The template matcher of ``selector``, or ``None`` when it is not a template."""
    if not is_template(selector):
        return None
    try:
        return UriTemplateMatcher(selector)
    except InvalidTemplate as exc:
        raise InvalidSelector(f"an invalid URI template: {exc}") from None


def _check(selector: str, max_length: int) -> None:
    if not selector:
        raise InvalidSelector("a topic selector is empty")
    if len(selector) > max_length:
        raise InvalidSelector(f"a topic selector is longer than {max_length} characters")
    if not is_template(selector) and TOPIC_PATTERN.fullmatch(selector) is None:
        # Topics are URI characters only (ssehub.broker.topics): an IRI with other characters
        # must be percent-encoded, as its URI form (RFC 3987 §3.1).
        raise InvalidSelector(
            "a topic has a character outside RFC 3986 (percent-encode IRIs, as URIs)"
        )


def parse_selectors(
    values: Sequence[str], *, max_count: int, max_length: int, max_patterns: int | None = None
) -> list[str]:
    """Check the ``topic`` selectors of a subscription; return them without duplicates.

    :func:`check_selectors`, then every template is compiled (and so checked).

    Args:
        values: the query's ``topic`` values, in order.
        max_count: the most selectors allowed (``max_topics``).
        max_length: the longest selector allowed (``max_topic_length``).
        max_patterns: the most selectors that are not exact topics (``*``, templates, topics
            with ``*``; ``max_patterns``), or ``None`` for no bound here.

    Returns:
        The distinct selectors, in order.

    Raises:
        InvalidSelector: none given, too many, too many patterns, one too long, an exact
            topic with a character a topic cannot have, or an invalid URI template.
    """
    unique = check_selectors(
        values, max_count=max_count, max_length=max_length, max_patterns=max_patterns
    )
    for selector in unique:
        _matcher(selector)
    return unique


def check_selectors(
    values: Sequence[str], *, max_count: int, max_length: int, max_patterns: int | None = None
) -> list[str]:
    """:func:`parse_selectors` without compiling templates: the checks that cost little, for
    a request that may still be refused (:func:`broker_targets` compiles them).

    Raises:
        InvalidSelector: as :func:`parse_selectors`, except for an invalid URI template.
    """
    if not values:
        raise InvalidSelector('missing "topic" parameter')
    unique = list(dict.fromkeys(values))
    if len(unique) > max_count:
        raise InvalidSelector(f"more than {max_count} topic selectors")
    for selector in unique:
        _check(selector, max_length)
    if max_patterns is not None:
        patterns = sum(1 for s in unique if "*" in s or is_template(s))
        if patterns > max_patterns:
            raise InvalidSelector(f"too many patterns (at most {max_patterns} per subscription)")
    return unique


def broker_targets(selectors: Iterable[str]) -> list[Target]:
    """What :meth:`ssehub.Broker.subscribe` is given for checked ``selectors``.

    Raises:
        InvalidSelector: an invalid URI template (when only :func:`check_selectors` ran).
    """
    targets: list[Target] = []
    for selector in selectors:
        if selector == MATCH_ALL:
            targets.append(MATCH_ALL)
            continue
        template = _matcher(selector)
        if template is not None:
            targets.append(template)
        elif "*" in selector:
            targets.append(ExactMatcher(selector))
        else:
            targets.append(selector)
    return targets


class SelectorSet:
    """The selectors of a token's ``mercure.publish`` or ``mercure.subscribe`` claim.

    Args:
        selectors: the claim's strings (templates are compiled once, cached).

    Raises:
        InvalidSelector: a selector is not a valid template.
    """

    __slots__ = ("_all", "_exact", "_templates", "selectors")

    def __init__(self, selectors: Iterable[str]) -> None:
        self.selectors = tuple(dict.fromkeys(selectors))
        self._all = MATCH_ALL in self.selectors
        self._exact = frozenset(s for s in self.selectors if not is_template(s))
        self._templates = tuple(
            m for m in (_matcher(s) for s in self.selectors if is_template(s)) if m is not None
        )

    def matches(self, topic: str) -> bool:
        """Return whether one selector matches ``topic``."""
        if self._all or topic in self._exact:
            return True
        return any(template.matches(topic) for template in self._templates)

    def matches_any(self, topics: Iterable[str]) -> bool:
        """Return whether one selector matches one of ``topics`` (a private update's rule)."""
        return any(self.matches(topic) for topic in topics)

    def matches_all(self, topics: Iterable[str]) -> bool:
        """Return whether every one of ``topics`` is matched (a publisher's rule)."""
        return all(self.matches(topic) for topic in topics)

    def __bool__(self) -> bool:
        return bool(self.selectors)
