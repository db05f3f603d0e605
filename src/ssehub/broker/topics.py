"""Topic names: what a topic may look like, and normalising a topic argument.

A topic is 1-256 characters allowed in a URI (RFC 3986: letters, digits and
``-._~:/?#[]@!$&'()*+,;=%``), so a topic can be a plain name (``orders``), a path
(``orders/42``) or a full URL as in Mercure. Whitespace and control characters are refused, so a
topic can always be written in a query string, a log line or a Redis key without escaping
surprises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from .._exceptions import InvalidTopic

__all__ = ["MAX_TOPIC_LENGTH", "TOPIC_PATTERN", "normalize_topics", "validate_topic"]

MAX_TOPIC_LENGTH: Final = 256
"""Characters. Long enough for URL topics, short enough to keep per-topic bookkeeping small."""

TOPIC_PATTERN: Final = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
"""A whole topic must match this pattern (and be at most :data:`MAX_TOPIC_LENGTH` long)."""


def validate_topic(topic: object) -> str:
    """Return ``topic`` if it is a valid topic name.

    Args:
        topic: the candidate.

    Returns:
        The topic, unchanged.

    Raises:
        InvalidTopic: not a ``str``, empty, longer than 256 characters, or a character outside
            the URI character set.
    """
    if not isinstance(topic, str):
        raise InvalidTopic(repr(topic)[:64], f"must be str, not {type(topic).__name__}")
    if not topic:
        raise InvalidTopic(topic, "must not be empty")
    if len(topic) > MAX_TOPIC_LENGTH:
        raise InvalidTopic(topic[:64], f"longer than {MAX_TOPIC_LENGTH} characters")
    if TOPIC_PATTERN.fullmatch(topic) is None:
        raise InvalidTopic(topic, "only URI characters (RFC 3986) are allowed")
    return topic


def normalize_topics(topics: str | Iterable[str], *, limit: int) -> tuple[str, ...]:
    """Validate a topic or an iterable of topics; return them in order without duplicates.

    Args:
        topics: one topic or several.
        limit: the most distinct topics allowed.

    Returns:
        A non-empty tuple of distinct, valid topics in first-seen order.

    Raises:
        InvalidTopic: a topic is invalid, none was given, or more than ``limit`` were given.
    """
    if isinstance(topics, str):
        return (validate_topic(topics),)
    if not isinstance(topics, Iterable):
        raise InvalidTopic(repr(topics)[:64], "expected a topic or an iterable of topics")
    result = tuple(dict.fromkeys(validate_topic(topic) for topic in topics))
    if not result:
        raise InvalidTopic("", "at least one topic is required")
    if len(result) > limit:
        raise InvalidTopic(result[limit], f"too many topics (at most {limit})")
    return result
