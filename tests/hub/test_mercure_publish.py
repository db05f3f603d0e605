"""Mercure publish through the ASGI app: the form, the ids, authorization, limits, settings."""

from __future__ import annotations

import argparse

import pytest

from security.support import public_pem, rsa_key
from ssehub._exceptions import ConfigurationError
from ssehub.cli.serve import add_parser
from ssehub.hub import HubSettings

from .conftest import client_for, hub_of, running_hub
from .mercure_support import (
    HUB,
    PUBLISHER_KEY,
    SUBSCRIBER_KEY,
    mercure_settings,
    mercure_token,
    post_update,
    publisher,
)

pytestmark = pytest.mark.anyio


async def test_publish_answers_the_id_as_text() -> None:
    async with running_hub(mercure_settings()) as app, client_for(app) as client:
        response = await post_update(
            client, {"topic": "https://example.com/books/1", "data": "hi"}, token=publisher()
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        stored = await hub_of(app).broker.topics()
        assert [t.topic for t in stored] == ["https://example.com/books/1"]
        assert response.text  # the hub's own id


async def test_a_publisher_chosen_id_is_kept_and_names_one_update() -> None:
    async with running_hub(mercure_settings()) as app, client_for(app) as client:
        fields = {"topic": "t", "data": "v1", "id": "urn:uuid:42"}
        first = await post_update(client, fields, token=publisher())
        assert (first.status_code, first.text) == (200, "urn:uuid:42")
        again = await post_update(client, fields, token=publisher())  # a retry: stored once
        assert (again.status_code, again.text) == (200, "urn:uuid:42")
        assert (await hub_of(app).broker.backend.history_sizes(["t"])) == {"t": 1}
        other = await post_update(client, {**fields, "data": "v2"}, token=publisher())
        assert other.status_code == 409


@pytest.mark.parametrize(
    ("fields", "status", "text"),
    [
        ({"data": "x"}, 400, 'missing "topic"'),
        ({"topic": "t", "id": "#1"}, 400, "must not start with '#'"),
        ({"topic": "t", "id": "a b"}, 400, "visible ASCII"),
        ({"topic": "t", "id": "a\nid: b"}, 400, "visible ASCII"),
        ({"topic": "t", "id": "x" * 257}, 400, "1-256"),
        ({"topic": "t", "id": "7b6ce767-1"}, 400, "ids this hub assigns"),  # memory's form
        ({"topic": "t", "id": "7b6ce767-1796616376337-0"}, 400, "ids this hub assigns"),  # Redis
        ({"topic": "t", "retry": "1s"}, 400, "retry"),
        ({"topic": "t", "type": "a\nb"}, 400, "CR or LF"),
        ({"topic": "t", "type": "ssehub.reset"}, 400, "reserved"),
        ({"topic": "a b"}, 400, "RFC 3986"),
        ({"topic": "/.well-known/mercure/subscriptions/x/y"}, 403, "hub's own"),
        ({"topic": "https://h/.well-known/mercure/x"}, 403, "hub's own"),
    ],
)
async def test_bad_forms_are_refused(fields: dict[str, str], status: int, text: str) -> None:
    async with running_hub(mercure_settings()) as app, client_for(app) as client:
        response = await post_update(client, fields, token=publisher())
        assert response.status_code == status, response.text
        assert text in response.text
        assert response.headers["content-type"].startswith("text/plain")


async def test_alternate_topics_and_private_flag() -> None:
    async with running_hub(mercure_settings()) as app, client_for(app) as client:
        fields = [("topic", "a"), ("topic", "b"), ("data", "x"), ("private", "")]
        response = await post_update(client, fields, token=publisher())
        assert response.status_code == 200
        backend = hub_of(app).broker.backend
        replay = await backend.replay(["a", "b"], backend.epoch + "-0")  # type: ignore[attr-defined]
        (event,) = replay.events
        assert event.topics == ("a", "b")  # the canonical topic, then the alternate
        assert event.private


async def test_body_media_type_and_size_limits() -> None:
    async with running_hub(mercure_settings(max_body_size=100)) as app, client_for(app) as client:
        headers = {"Authorization": f"Bearer {publisher()}"}
        wrong = await client.post(HUB, json={"topic": "t"}, headers=headers)
        assert wrong.status_code == 415
        big = await post_update(client, {"topic": "t", "data": "x" * 200}, token=publisher())
        assert big.status_code == 413
    async with running_hub(mercure_settings(max_event_size=64)) as app, client_for(app) as client:
        large = await post_update(client, {"topic": "t", "data": "x" * 100}, token=publisher())
        assert large.status_code == 413
    async with running_hub(mercure_settings(max_topics=2)) as app, client_for(app) as client:
        many = [("topic", "a"), ("topic", "b"), ("topic", "c")]
        assert (await post_update(client, many, token=publisher())).status_code == 400


@pytest.mark.parametrize(
    ("token", "status"),
    [
        (None, 401),
        ("not-a-token", 401),
        (mercure_token(["*"], key=SUBSCRIBER_KEY), 401),  # the subscribers' key
        (mercure_token(subscribe=["*"]), 401),  # no mercure.publish claim
        (mercure_token(["https://example.com/books/{id}"]), 403),
        (mercure_token(["*"], lifetime=-60), 401),  # expired
        (mercure_token(["https://example.com/{+any}"]), 200),
        (mercure_token(["*"], lifetime=None), 200),  # no exp, as the Mercure hub accepts
    ],
)
async def test_publish_authorization(token: str | None, status: int) -> None:
    async with running_hub(mercure_settings()) as app, client_for(app) as client:
        response = await post_update(
            client, {"topic": "https://example.com/authors/1"}, token=token
        )
        assert response.status_code == status, response.text
        if status == 401:
            assert response.headers["www-authenticate"].startswith("Bearer")
        assert (await hub_of(app).broker.topics() != []) == (status == 200)


async def test_publish_with_every_topic_granted_only() -> None:
    token = mercure_token(["a"])
    async with running_hub(mercure_settings()) as app, client_for(app) as client:
        both = await post_update(client, [("topic", "a"), ("topic", "b")], token=token)
        assert both.status_code == 403


async def test_token_in_query_parameter_and_cookie() -> None:
    async with running_hub(mercure_settings()) as app, client_for(app) as client:
        by_query = await client.post(
            HUB, params={"authorization": publisher()}, data={"topic": "t"}
        )
        assert by_query.status_code == 200
        client.cookies.set("mercureAuthorization", publisher())
        foreign = await client.post(HUB, data={"topic": "t"}, headers={"Origin": "https://evil"})
        assert foreign.status_code == 403  # a cookie publishes from allowed origins only
        own = await client.post(HUB, data={"topic": "t"}, headers={"Origin": "http://hub"})
        assert own.status_code == 200


async def test_rs256_tokens() -> None:
    settings = mercure_settings(
        mercure_jwt_alg="RS256",
        mercure_publisher_jwt_key=public_pem(rsa_key()),
        mercure_subscriber_jwt_key=None,
        mercure_anonymous=True,
    )
    async with running_hub(settings) as app, client_for(app) as client:
        signed = mercure_token(["*"], key=rsa_key(), algorithm="RS256")
        assert (await post_update(client, {"topic": "t"}, token=signed)).status_code == 200
        hs = mercure_token(["*"], key=PUBLISHER_KEY)  # another algorithm: refused
        assert (await post_update(client, {"topic": "t"}, token=hs)).status_code == 401


async def test_publish_rate_applies_per_token() -> None:
    settings = mercure_settings(publish_rate=1.0, publish_burst=1)
    async with running_hub(settings) as app, client_for(app) as client:
        assert (await post_update(client, {"topic": "t"}, token=publisher())).status_code == 200
        limited = await post_update(client, {"topic": "t"}, token=publisher())
        assert limited.status_code == 429
        assert "retry-after" in limited.headers


async def test_ssehub_auth_does_not_apply_to_mercure_routes() -> None:
    settings = mercure_settings(
        auth="jwt",
        jwt_key="s" * 40,
        cors_origins=("https://a.example",),
        mercure_topics=("*",),  # both APIs share every topic, on purpose
    )
    async with running_hub(settings) as app, client_for(app) as client:
        response = await post_update(client, {"topic": "t"}, token=publisher())
        assert response.status_code == 200
        assert (await client.get("/status")).status_code == 401  # ssehub's API keeps its auth
        unknown = await client.get(HUB + "/nothing")
        assert unknown.status_code == 404
        assert (await client.delete(HUB)).status_code == 405


async def test_mercure_is_off_by_default() -> None:
    async with running_hub() as app, client_for(app) as client:
        assert (await client.get(HUB, params={"topic": "t"})).status_code == 404


def test_settings_from_the_mercure_environment() -> None:
    env = {"MERCURE_PUBLISHER_JWT_KEY": "a" * 32, "MERCURE_SUBSCRIBER_JWT_KEY": "b" * 32}
    settings = HubSettings.from_sources({"mercure": "true"}, env)
    assert settings.mercure_publisher_jwt_key == "a" * 32
    assert settings.mercure_subscriber_jwt_key == "b" * 32
    ours = HubSettings.from_sources(
        {"mercure": "true"}, {**env, "SSEHUB_MERCURE_PUBLISHER_JWT_KEY": "c" * 32}
    )
    assert ours.mercure_publisher_jwt_key == "c" * 32  # the SSEHUB_ variable wins
    assert HubSettings.from_environment({"SSEHUB_MERCURE": "1", **env}).mercure


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mercure": True}, "key for publishers"),
        (
            {"mercure": True, "mercure_jwt_key": None, "mercure_publisher_jwt_key": "k" * 32},
            "key for subscribers",
        ),
        ({"mercure_jwt_alg": "ES256"}, "mercure_jwt_alg"),
    ],
)
def test_settings_checks(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        HubSettings(**changes)  # type: ignore[arg-type]


def test_bad_keys_are_refused_when_the_app_is_built() -> None:
    from ssehub.hub import create_app

    with pytest.raises(ConfigurationError, match="Mercure JWT key"):
        create_app(mercure_settings(mercure_publisher_jwt_key="short"))


def test_mercure_flags_are_bare_switches() -> None:
    parser = argparse.ArgumentParser()
    add_parser(parser)
    args = parser.parse_args(["--mercure", "--mercure-anonymous", "--port", "1"])
    assert (args.mercure, args.mercure_anonymous, args.port) == ("true", "true", "1")
    assert parser.parse_args(["--mercure", "false"]).mercure == "false"


async def test_metrics_label_mercure_routes() -> None:
    async with running_hub(mercure_settings()) as app, client_for(app) as client:
        assert (await post_update(client, {"topic": "t"}, token=publisher())).status_code == 200
        assert (await client.get(HUB, params={"topic": "t"})).status_code == 401
        text = (await client.get("/metrics")).text
        assert 'route="/.well-known/mercure",status="200"' in text
        assert 'route="/.well-known/mercure",status="401"' in text


async def test_create_app_reads_the_mercure_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSEHUB_MERCURE", "true")
    monkeypatch.setenv("SSEHUB_MERCURE_ANONYMOUS", "1")
    monkeypatch.setenv("MERCURE_PUBLISHER_JWT_KEY", PUBLISHER_KEY)
    async with running_hub() as app, client_for(app) as client:
        assert (await post_update(client, {"topic": "t"}, token=publisher())).status_code == 200
