"""The broker: topics and patterns, bounded subscriptions, history and exact ``Last-Event-ID``
resume."""

from __future__ import annotations

from .broker import (
    DEFAULT_MAX_AGE_JITTER,
    DEFAULT_MAX_PATTERNS,
    DEFAULT_MAX_TOPICS,
    DEFAULT_QUEUE_SIZE,
    Broker,
    Publication,
)
from .events import (
    DROPPED_EVENT_TYPE,
    RESERVED_EVENT_PREFIX,
    RESET_EVENT_TYPE,
    Dropped,
    Position,
    Reset,
    ResetReason,
    StoredEvent,
)
from .history import DEFAULT_HISTORY_SIZE, DEFAULT_HISTORY_TTL
from .ids import MAX_ID_LENGTH, is_valid_event_id, validate_last_event_id
from .patterns import TopicMatcher, TopicPattern
from .policy import OverflowPolicy
from .stats import BrokerStatistics, SubscriptionStatistics, TopicInfo
from .subscription import EndReason, Item, Subscription
from .topics import MAX_TOPIC_LENGTH, validate_topic

__all__ = [
    "DEFAULT_HISTORY_SIZE",
    "DEFAULT_HISTORY_TTL",
    "DEFAULT_MAX_AGE_JITTER",
    "DEFAULT_MAX_PATTERNS",
    "DEFAULT_MAX_TOPICS",
    "DEFAULT_QUEUE_SIZE",
    "DROPPED_EVENT_TYPE",
    "MAX_ID_LENGTH",
    "MAX_TOPIC_LENGTH",
    "RESERVED_EVENT_PREFIX",
    "RESET_EVENT_TYPE",
    "Broker",
    "BrokerStatistics",
    "Dropped",
    "EndReason",
    "Item",
    "OverflowPolicy",
    "Position",
    "Publication",
    "Reset",
    "ResetReason",
    "StoredEvent",
    "Subscription",
    "SubscriptionStatistics",
    "TopicInfo",
    "TopicMatcher",
    "TopicPattern",
    "is_valid_event_id",
    "validate_last_event_id",
    "validate_topic",
]
