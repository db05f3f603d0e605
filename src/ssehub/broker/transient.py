"""Events delivered live to every subscriber and kept in no history.

For notices whose replay has no value and whose topics must not compete with real topics for
the history's bounds: the hub's Mercure subscription events, published on a new topic per
subscriber and selector, would otherwise push other topics' history out (a client opening
and closing subscriptions could empty it). See :func:`ssehub.backends.base.publish_transient`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..backends.base import publish_transient as backend_publish_transient
from .publication import prepare_publication

if TYPE_CHECKING:
    from .broker import Broker
    from .events import StoredEvent

__all__ = ["publish_transient"]


async def publish_transient(
    broker: Broker,
    topics: str | Iterable[str],
    data: Any,
    *,
    event: str | None = None,
    private: bool = False,
) -> StoredEvent:
    """Publish one event to the current subscribers of ``topics`` (in every process of a shared
    backend) without keeping it in history: it is never replayed, and a resume on its topics
    is answered as on a topic without history. A backend without transient events stores it.

    Args:
        broker: a running broker.
        topics: the topic or topics.
        data: as :meth:`ssehub.Broker.publish`.
        event: the event type.
        private: whether the event is private.

    Returns:
        The event, with its id.

    Raises:
        As :meth:`ssehub.Broker.publish` (there is no idempotency key).
    """
    broker._check_running()
    pending = prepare_publication(topics, data, event, None, private, max_topics=broker.max_topics)
    await broker._ready_to_store(pending[0])  # as Broker.publish: nothing after the store
    stored = await backend_publish_transient(broker.backend, (pending,))
    broker._published += 1
    return stored[0]
