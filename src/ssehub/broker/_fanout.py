"""The broker's subscriber index and fan-out: exact topics, pattern groups, the match cache.

Exact subscribers are indexed by topic (``topic -> {state: None}``): placing an event is one
dict lookup per topic of the event, the hot path. Pattern subscribers are grouped by their
matcher's key (``key -> group``: the matcher and its ``{state: None}``), so a thousand
subscribers of ``orders/*`` are one group, matched once. Which groups an event topic belongs
to is kept in a bounded LRU cache (``topic -> tuple of groups``), cleared whenever a group
appears or goes. So a publish never scans every topic or every subscriber: it costs one cache
lookup per topic plus one push per matching subscriber, and a cache miss costs one match per
distinct pattern.

An event that reaches a subscriber through several of its topics or patterns is pushed once.
Only :class:`~ssehub.broker._state.SubscriptionState` objects are held, never handles (see
``_release.py``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from ._state import EndReason

if TYPE_CHECKING:
    from ._state import SubscriptionState
    from .events import StoredEvent
    from .patterns import TopicMatcher

__all__ = ["DEFAULT_MATCH_CACHE_SIZE", "Fanout", "Group"]

logger = logging.getLogger("ssehub.broker")

DEFAULT_MATCH_CACHE_SIZE: Final = 10_000
"""Event topics whose matching pattern groups are remembered: as many as the topics history
keeps by default (``history_topics``), at about 100 bytes each."""


class Group:
    """The subscribers of one pattern (one matcher key), matched once for all of them.

    Attributes:
        matcher: the first subscriber's matcher (every member's has the same key).
        states: the subscribers, in subscription order.
    """

    __slots__ = ("matcher", "states")

    def __init__(self, matcher: TopicMatcher) -> None:
        self.matcher = matcher
        self.states: dict[SubscriptionState, None] = {}


def _matches(group: Group, topic: str) -> bool:
    try:
        return group.matcher.matches(topic)
    except Exception:
        # A matcher is user code and runs inside the backend's sink (the Redis reader's task):
        # its failure must not stop the delivery of this event to others, or the reader.
        logger.exception("ssehub topic matcher %r failed on a topic", group.matcher)
        return False


class Fanout:
    """Who receives an event, and pushing it to them (the backend's sink is :meth:`deliver`).

    Args:
        cache_size: event topics whose matching groups are remembered (LRU).

    Attributes:
        exact: exact topic -> its subscribers.
        groups: matcher key -> its :class:`Group`.
        topic_events: events fanned out per exact topic with subscribers (the entry goes with
            its last subscriber): the dashboard's per-topic rates.
    """

    __slots__ = ("_cache", "cache_size", "exact", "groups", "topic_events")

    def __init__(self, cache_size: int = DEFAULT_MATCH_CACHE_SIZE) -> None:
        self.exact: dict[str, dict[SubscriptionState, None]] = {}
        self.groups: dict[str, Group] = {}
        self._cache: OrderedDict[str, tuple[Group, ...]] = OrderedDict()
        self.cache_size = cache_size
        self.topic_events: dict[str, int] = {}

    @property
    def cached_topics(self) -> int:
        """How many event topics the match cache holds now (at most ``cache_size``)."""
        return len(self._cache)

    # -- registry ------------------------------------------------------------------------------

    def add(self, state: SubscriptionState) -> None:
        """Index a new subscription under its exact topics and its patterns."""
        exact = self.exact
        for topic in state.topics:
            targets = exact.get(topic)
            if targets is None:
                targets = exact[topic] = {}
            targets[state] = None
        groups = self.groups
        for matcher in state.patterns:
            group = groups.get(matcher.key)
            if group is None:
                group = groups[matcher.key] = Group(matcher)
                self._cache.clear()  # a topic may match the new group
            group.states[state] = None

    def remove(self, state: SubscriptionState) -> None:
        """Forget an ended subscription (idempotent)."""
        exact = self.exact
        for topic in state.topics:
            targets = exact.get(topic)
            if targets is not None:
                targets.pop(state, None)
                if not targets:
                    del exact[topic]
                    self.topic_events.pop(topic, None)
        groups = self.groups
        for matcher in state.patterns:
            group = groups.get(matcher.key)
            if group is not None:
                group.states.pop(state, None)
                if not group.states:
                    del groups[matcher.key]
                    self._cache.clear()  # cached tuples would keep the dead group

    def matching(self, topic: str) -> tuple[Group, ...]:
        """Return the pattern groups matching ``topic`` (cached; a miss matches every group)."""
        cache = self._cache
        found = cache.get(topic)
        if found is None:
            groups = self.groups.values()
            try:
                found = tuple(group for group in groups if group.matcher.matches(topic))
            except Exception:  # noqa: BLE001 - retried one by one below, which logs it
                found = tuple(group for group in groups if _matches(group, topic))
            cache[topic] = found
            if len(cache) > self.cache_size:
                cache.popitem(last=False)
        else:
            cache.move_to_end(topic)
        return found

    def count(self, topics: Iterable[str]) -> int:
        """Return how many subscribers an event on ``topics`` reaches (each once)."""
        sources: list[dict[SubscriptionState, None]] = []
        for topic in topics:
            targets = self.exact.get(topic)
            if targets:
                sources.append(targets)
            if self.groups:
                sources.extend(group.states for group in self.matching(topic))
        if len(sources) == 1:  # the common case: no set to build
            return len(sources[0])
        return len(set().union(*sources))

    def receivers(self, topics: Iterable[str]) -> dict[SubscriptionState, None]:
        """Return every subscriber an event on ``topics`` reaches, once each, in push order."""
        found: dict[SubscriptionState, None] = {}
        groups = self.groups
        for topic in topics:
            found.update(self.exact.get(topic, ()))
            if groups:
                for group in self.matching(topic):
                    found.update(group.states)
        return found

    # -- fan-out -------------------------------------------------------------------------------

    def deliver(self, stored: StoredEvent) -> None:
        """The backend's sink: queue ``stored`` on every subscriber of its topics, once each."""
        sources: list[dict[SubscriptionState, None]] = []
        exact = self.exact
        groups = self.groups
        counts = self.topic_events
        for topic in stored.topics:
            targets = exact.get(topic)
            if targets:
                counts[topic] = counts.get(topic, 0) + 1
                sources.append(targets)
            if groups:
                sources.extend(group.states for group in self.matching(topic))
        if sources:
            _push(stored, sources)


def _push(stored: StoredEvent, sources: list[dict[SubscriptionState, None]]) -> None:
    """Queue ``stored`` on each subscriber of ``sources`` once; shed those that are full."""
    shed: list[SubscriptionState] | None = None
    # Over copies: a consumer's on_ready callback may close a subscription or open one.
    if len(sources) == 1:  # one set of subscribers (the common case): nobody is reached twice
        for subscription in tuple(sources[0]):
            if not subscription._push(stored):
                if shed is None:
                    shed = []
                shed.append(subscription)
    else:
        seen: set[SubscriptionState] = set()
        for targets in sources:
            for subscription in tuple(targets):
                if subscription in seen:
                    continue
                seen.add(subscription)
                if not subscription._push(stored):
                    if shed is None:
                        shed = []
                    shed.append(subscription)
    if shed is not None:
        for subscription in shed:
            subscription._end(EndReason.SHED)
