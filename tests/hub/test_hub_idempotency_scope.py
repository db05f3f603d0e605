"""An idempotency key names a publication of one publisher only (found in review: one global
key space let a tenant block, and detect, another tenant's predictable keys)."""

from __future__ import annotations

from ssehub.hub._auth import Principal
from ssehub.hub._patterns import NOTHING
from ssehub.hub._publish import idempotency_keys, parse_publish_body, scoped_keys


def principal(subject: str | None) -> Principal:
    return Principal("api_key" if subject else "anonymous", NOTHING, NOTHING, subject=subject)


def test_the_same_key_of_two_publishers_names_two_publications() -> None:
    a, b = (
        scoped_keys(principal("tenant-a"), ["order-42"]),
        scoped_keys(principal("tenant-b"), ["order-42"]),
    )
    assert a != b
    assert scoped_keys(principal("tenant-a"), ["order-42"]) == a  # stable: retries match
    assert scoped_keys(principal(None), [None]) == [None]


def test_a_batch_item_key_from_the_header_never_equals_a_key_a_client_names() -> None:
    requests, batch = parse_publish_body(
        b'[{"topic": "t", "data": "a"}, {"topic": "t", "data": "b", "idempotency_key": "K:0"}]',
        max_topics=8,
        max_batch=10,
    )
    keys = idempotency_keys(["K"], requests, batch)
    assert keys[1] == "K:0"
    assert keys[0] != "K:0"  # derived for item 0 from the header K
    owner = principal("tenant-a")
    assert scoped_keys(owner, keys)[0] != scoped_keys(owner, ["K:0"])[0]
