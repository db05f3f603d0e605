"""Publisher-chosen ids on every backend: the chosen id is the event's ``id:`` field (also in
history and through the Redis reader), the backend id keeps its place, a subscriber resumes
exactly after it, an id names one publication, and it is forgotten with its event."""

from __future__ import annotations

import pytest
from backend_runs import BackendFactory, collect, parametrize_backends

from ssehub import EventValidationError, IdempotencyKeyReused
from ssehub.broker import Broker, Reset, ResetReason, StoredEvent
from ssehub.broker.chosen_ids import chosen_id_key, publish_with_id, resolve_chosen_id

pytestmark = pytest.mark.anyio


@parametrize_backends
async def test_a_chosen_id_is_sent_and_resumed_after(backend_factory: BackendFactory) -> None:
    broker = Broker(backend_factory(100, 3600.0))
    async with broker, broker.subscribe(["books/1", "books/2"]) as live:
        one = await publish_with_id(broker, "books/1", "v1", event_id="urn:uuid:1")
        assert one.event.id == "urn:uuid:1"
        assert one.id != "urn:uuid:1"  # the backend's id: its place in history
        two = await broker.publish("books/2", "v2")
        three = await publish_with_id(broker, ["books/1", "books/2"], "v3", event_id="https://e/3")
        got = await collect(live, 3)
        assert [item.event.id for item in got] == ["urn:uuid:1", two.id, "https://e/3"]
        assert b"id: urn:uuid:1\n" in got[0].event.encode()

        resolved = await resolve_chosen_id(broker, "urn:uuid:1")
        assert resolved == one.id
        assert await resolve_chosen_id(broker, "urn:uuid:unknown") is None
        # The event itself is looked at (its topics), to refuse what a reader may not know of.
        topics_seen: list[tuple[str, ...]] = []

        def readable(event: StoredEvent) -> bool:
            topics_seen.append(event.topics)
            return False

        assert await resolve_chosen_id(broker, "https://e/3", readable=readable) is None
        assert topics_seen == [("books/1", "books/2")]
        with pytest.raises(EventValidationError):
            await publish_with_id(broker, "books/1", "v", event_id=two.id)  # the hub's id form
        async with broker.subscribe(["books/1", "books/2"], resolved) as resumed:
            replayed = await collect(resumed, 2)
            assert all(isinstance(item, StoredEvent) for item in replayed)
            assert [(i.event.id, i.event.data) for i in replayed] == [
                (two.id, "v2"),
                ("https://e/3", "v3"),
            ]
        assert three.event.id == "https://e/3"


@parametrize_backends
async def test_a_chosen_id_names_one_publication(backend_factory: BackendFactory) -> None:
    broker = Broker(backend_factory(100, 3600.0))
    async with broker:
        first = await publish_with_id(broker, "t", "same", event_id="id-1")
        again = await publish_with_id(broker, "t", "same", event_id="id-1")
        assert again.id == first.id
        with pytest.raises(IdempotencyKeyReused):
            await publish_with_id(broker, "t", "other", event_id="id-1")
        assert (await broker.backend.history_sizes(["t"])) == {"t": 1}


@parametrize_backends
async def test_an_evicted_chosen_id_never_resumes_silently(backend_factory: BackendFactory) -> None:
    broker = Broker(backend_factory(1, 3600.0))
    async with broker:
        await publish_with_id(broker, "t", "old", event_id="gone")
        await broker.publish("t", "newer")  # history_size 1: the first event is evicted
        await broker.publish("t", "newest")
        resolved = await resolve_chosen_id(broker, "gone")
        # Memory forgets the id with its event; Redis remembers ids for history_ttl, and the
        # resume after it then reports the gap (a reset) instead of skipping "newer".
        if resolved is not None:
            async with broker.subscribe("t", resolved) as resumed:
                (first,) = await collect(resumed, 1)
                assert isinstance(first, Reset)
                assert first.reason is ResetReason.EXPIRED


def test_keys_of_chosen_ids_are_valid_idempotency_keys() -> None:
    from ssehub.broker.publication import check_idempotency_key

    key = chosen_id_key("https://example.com/é?x=1")
    assert check_idempotency_key(key) == key
    assert chosen_id_key("a") != chosen_id_key("b")
