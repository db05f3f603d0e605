"""The memory backend's idempotency keys, remembered exactly as long as their event is in history.

A key is worth keeping while a retry could still find its event: once the event has left the
history of every topic it was published to, the key goes too, so the keys cost at most one
entry per retained keyed event, whatever the bounds of the history (count, age, or any later
one) and however they evict.

Eviction is first in, first out within each topic (by count, by age, or the whole topic at once),
so the events a topic retains are always the last ``size(topic)`` appended to it. Each topic
that has keyed events counts its appends (keyed or not) and keeps its keys in append order; a
key whose append number is at most ``appended - size(topic)`` has left that topic. That needs
nothing from the history but its per-topic sizes, and pruning is amortised O(1) per key.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..broker.events import StoredEvent

__all__ = ["KeyLog", "Remembered"]


class Remembered:
    """What a key names: the first publication's event and fingerprint.

    Attributes:
        event: the stored event.
        fingerprint: :func:`~ssehub.broker.publication.publication_fingerprint` of it.
    """

    __slots__ = ("event", "fingerprint", "refs")

    def __init__(self, event: StoredEvent, fingerprint: str) -> None:
        self.event = event
        self.fingerprint = fingerprint
        self.refs = len(event.topics)  # topics whose history still holds the event


class _TopicKeys:
    __slots__ = ("appended", "keys")

    def __init__(self) -> None:
        self.appended = 0
        self.keys: deque[tuple[int, str]] = deque()


class KeyLog:
    """Idempotency keys of the events a history retains.

    Args:
        size: the number of events a topic retains now (``History.size``); callers apply age
            eviction before asking, as they do before reading the history.
    """

    def __init__(self, size: Callable[[str], int]) -> None:
        self._size = size
        self._remembered: dict[str, Remembered] = {}
        self._topics: dict[str, _TopicKeys] = {}

    def __len__(self) -> int:
        return len(self._remembered)

    def peek(self, key: str) -> Remembered | None:
        """Return what ``key`` names, without checking that its event is still retained."""
        return self._remembered.get(key)

    def appended(self, event: StoredEvent, key: str | None, fingerprint: str | None) -> None:
        """Record that ``event`` was appended to the history of its topics (keyed or not).

        Events without a key are counted only on topics that have keys (nothing at all while
        no key is remembered), so unkeyed publishing pays one dict lookup per topic at most.
        """
        topics = self._topics
        if key is None or fingerprint is None:
            if topics:
                for topic in event.topics:
                    counted = topics.get(topic)
                    if counted is not None:
                        counted.appended += 1
            return
        self._remembered[key] = Remembered(event, fingerprint)
        for topic in event.topics:
            counted = topics.get(topic)
            if counted is None:
                counted = topics[topic] = _TopicKeys()
            counted.appended += 1
            counted.keys.append((counted.appended, key))

    def prune(self, names: Iterable[str] | None = None) -> None:
        """Forget the keys whose event has left the history of ``names`` (every topic with
        keys when ``None``); a key goes once its event is in no topic's history."""
        topics = self._topics
        remembered = self._remembered
        for topic in list(topics) if names is None else names:
            counted = topics.get(topic)
            if counted is None:
                continue
            evicted_upto = counted.appended - self._size(topic)
            queue = counted.keys
            while queue and queue[0][0] <= evicted_upto:
                _, key = queue.popleft()
                entry = remembered[key]
                entry.refs -= 1
                if entry.refs == 0:
                    del remembered[key]
            if not queue:
                # Counting starts again with the next key: only differences matter.
                del topics[topic]
