"""HubClient and AsyncHubClient against the real hub on a loopback port.

``tests/client/test_client_hub.py`` pins the requests against a scripted server; here the same
calls go to ``create_app`` under uvicorn, so the two sides of the API are checked together:
ids, batches, errors as typed exceptions, and exact resume with ``Last-Event-ID``.
"""

from __future__ import annotations

import anyio
import pytest
from hub_server import HubServer

from ssehub import HubResponseError
from ssehub.client import AsyncHubClient, HubClient, Publication, ReconnectPolicy
from ssehub.wire import MessageEvent

pytestmark = pytest.mark.integration

FAST = ReconnectPolicy(initial_retry=0.01, max_delay=0.05)


def test_publish_batch_status_and_errors(hub: HubServer) -> None:
    with HubClient(hub.url) as client:
        one = client.publish("chat", {"n": 1}, event="tick")
        assert one.topics == ("chat",)
        assert one.subscribers == 0
        batch = client.publish_many(
            [Publication("chat", "a"), Publication(["chat", "news"], "b", event="both")]
        )
        assert [r.topics for r in batch] == [("chat",), ("chat", "news")]
        assert len({one.id, *(r.id for r in batch)}) == 3

        status = client.status()
        assert status["topics"]["chat"]["history"] == 3
        assert status["topics"]["news"]["history"] == 1

        with pytest.raises(HubResponseError) as info:
            client.publish("bad topic!", "x")
        assert info.value.status_code == 400
        assert info.value.error["error"] == "invalid_topic"
        assert info.value.error["detail"]

        # A batch is all or nothing: one invalid event, nothing published.
        with pytest.raises(HubResponseError):
            client.publish_many([Publication("chat", "ok"), Publication("chat", "x", "a\nb")])
        assert client.status()["topics"]["chat"]["history"] == 3

        with client.subscribe("chat", one.id, policy=FAST) as source:
            events = [next(source), next(source)]
    assert [(e.id, e.event, e.data) for e in events] == [
        (batch[0].id, "message", "a"),
        (batch[1].id, "both", "b"),
    ]


@pytest.mark.anyio
async def test_async_exact_resume_after_a_dropped_connection(hub: HubServer) -> None:
    async with AsyncHubClient(hub.url) as client:
        first = [(await client.publish("r", f"e{n}")).id for n in range(4)]
        seen: list[MessageEvent] = []
        with anyio.fail_after(10):
            async with client.subscribe("r", policy=FAST) as source:

                async def read_two() -> None:
                    seen.extend([await source.__anext__() for _ in range(2)])

                async with anyio.create_task_group() as tg:
                    tg.start_soon(read_two)  # connects: a source connects when iterated
                    await anyio.to_thread.run_sync(hub.stream_opened)
                    for n in range(4, 8):
                        await client.publish("r", f"e{n}")
            # Dropped after e5; e8..e9 are published while no one listens.
            later = [(await client.publish("r", f"e{n}")).id for n in range(8, 10)]
            async with client.subscribe("r", seen[-1].id, policy=FAST) as source:
                resumed = [await source.__anext__() for _ in range(4)]
    assert [e.data for e in seen] == ["e4", "e5"]
    # Exactly the events after e5, once each, in order: e6, e7 from history, then e8, e9.
    assert [e.data for e in resumed] == ["e6", "e7", "e8", "e9"]
    assert resumed[-1].id == later[-1]
    assert first[0] != seen[0].id
