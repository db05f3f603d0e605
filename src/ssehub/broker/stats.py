"""Statistics snapshots of subscriptions, the broker and topics (plain immutable values)."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["BrokerStatistics", "SubscriptionStatistics", "TopicInfo"]


class SubscriptionStatistics(NamedTuple):
    """One subscription's counters.

    Attributes:
        queued: events waiting in its queue now.
        peak: the largest ``queued`` seen so far.
        dropped: events dropped by ``drop_oldest`` (or discarded when shed by ``disconnect``).
        delivered: events handed to the consumer (replayed and live).
    """

    queued: int
    peak: int
    dropped: int
    delivered: int


class BrokerStatistics(NamedTuple):
    """The broker's counters since it started.

    Attributes:
        topics: topics that have at least one exact subscriber in this process now (a
            pattern is not a topic: see :meth:`~ssehub.Broker.patterns`).
        subscribers: open subscriptions now (pattern subscriptions included).
        published: events published through this broker (a publish answered from its
            idempotency key, which stores nothing, counts too).
        delivered: events handed to subscribers' consumers (replayed and live).
        dropped: events dropped by ``drop_oldest`` or discarded by shedding.
        shed: subscriptions ended by the ``disconnect`` policy.
        replays: ``Last-Event-ID`` resumes served exactly from history.
        resets: ``Last-Event-ID`` values that could not be resumed (malformed, unknown or
            expired): those clients continued live after a reset notice.
        history_bytes: bytes the backend's history holds now, each event once (memory: what
            the events cost in this process; Redis: the byte count of its topic streams, as of
            this process's last ``history_usage``, which ``/status`` and ``/metrics`` call);
            0 for a backend that cannot tell.
    """

    topics: int
    subscribers: int
    published: int
    delivered: int
    dropped: int
    shed: int
    replays: int = 0
    resets: int = 0
    history_bytes: int = 0


class TopicInfo(NamedTuple):
    """Presence and history of one topic, for status pages.

    Attributes:
        topic: the topic name.
        subscribers: open subscriptions to it in this process, by its name (those whose
            pattern matches it are not counted here).
        history: events retained in its history (by the backend).
        events: events fanned out to its subscribers in this process since it last gained a
            first subscriber here (0 without subscribers); deltas give its event rate.
        history_bytes: bytes its history holds (an event under several topics counts in each;
            see :func:`~ssehub.broker.history.event_cost`); 0 for a backend that cannot tell.
    """

    topic: str
    subscribers: int
    history: int
    events: int = 0
    history_bytes: int = 0
