"""HubSettings: defaults, environment variables, command-line precedence, validation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ssehub import ConfigurationError
from ssehub.broker import (
    DEFAULT_HISTORY_SIZE,
    DEFAULT_HISTORY_TTL,
    DEFAULT_MAX_PATTERNS,
    DEFAULT_MAX_TOPICS,
    DEFAULT_QUEUE_SIZE,
)
from ssehub.hub import HubSettings
from ssehub.hub._settings import options


def test_defaults_follow_the_broker_and_are_documented() -> None:
    settings = HubSettings()
    assert (settings.host, settings.port, settings.broker) == ("127.0.0.1", 8000, "memory://")
    assert settings.history == DEFAULT_HISTORY_SIZE
    assert settings.history_ttl == DEFAULT_HISTORY_TTL
    assert settings.queue_size == DEFAULT_QUEUE_SIZE
    assert settings.max_topics == DEFAULT_MAX_TOPICS
    assert settings.max_patterns == DEFAULT_MAX_PATTERNS
    assert settings.ping == 15.0
    assert settings.max_connection_age is None
    assert settings.slow_policy == "disconnect"
    for spec in options():
        assert len(spec.help) > 10, spec.name


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        HubSettings().port = 1  # type: ignore[misc]


def test_every_option_has_a_flag_and_a_variable() -> None:
    specs = {spec.name: spec for spec in options()}
    assert set(specs) == {f.name for f in dataclasses.fields(HubSettings)}
    assert specs["max_connection_age"].flag == "--max-connection-age"
    assert specs["max_connection_age"].env == "SSEHUB_MAX_CONNECTION_AGE"
    assert specs["slow_policy"].flag == "--slow-policy"


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("host", "0.0.0.0", "0.0.0.0"),
        ("port", "9000", 9000),
        ("broker", "redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("history", "5_000", 5000),
        ("history_ttl", "60", 60.0),
        ("ping", "2.5", 2.5),
        ("max_connection_age", "300", 300.0),
        ("max_connection_age", "0", None),
        ("max_connection_age", "none", None),
        ("queue_size", "10", 10),
        ("slow_policy", "drop-oldest", "drop_oldest"),
        ("slow_policy", "BLOCK", "block"),
        ("send_timeout", "off", None),
        ("grace_period", "0", 0.0),
        ("max_body_size", "1024", 1024),
        ("max_topics", "4", 4),
        ("max_patterns", "2", 2),
        ("max_batch", "7", 7),
        ("docs", "no", False),
        ("log_level", "DEBUG", "debug"),
        ("access_log", "on", True),
    ],
)
def test_environment_variables(name: str, text: str, value: object) -> None:
    settings = HubSettings.from_sources(env={"SSEHUB_" + name.upper(): text})
    assert getattr(settings, name) == value


def test_command_line_wins_over_environment() -> None:
    settings = HubSettings.from_sources(
        {"port": "9001", "ping": None}, {"SSEHUB_PORT": "9000", "SSEHUB_PING": "3"}
    )
    assert (settings.port, settings.ping) == (9001, 3.0)


@pytest.mark.parametrize(
    ("cli", "env", "message"),
    [
        ({"port": "eighty"}, {}, "--port"),
        ({}, {"SSEHUB_PORT": "eighty"}, "SSEHUB_PORT"),
        ({}, {"SSEHUB_PORT": "70000"}, "port"),
        ({}, {"SSEHUB_PING": "nan"}, "SSEHUB_PING"),
        ({}, {"SSEHUB_PING": "0"}, "ping"),
        ({}, {"SSEHUB_HISTORY": "0"}, "history"),
        ({}, {"SSEHUB_HISTORY_TTL": "-1"}, "history_ttl"),
        ({}, {"SSEHUB_QUEUE_SIZE": "-1"}, "queue_size"),
        ({"slow_policy": "yolo"}, {}, "--slow-policy"),
        ({}, {"SSEHUB_DOCS": "maybe"}, "SSEHUB_DOCS"),
        ({}, {"SSEHUB_LOG_LEVEL": "loud"}, "SSEHUB_LOG_LEVEL"),
        ({}, {"SSEHUB_BROKER": "localhost"}, "broker"),
        ({}, {"SSEHUB_GRACE_PERIOD": "-1"}, "grace_period"),
        ({}, {"SSEHUB_SEND_TIMEOUT": "-3"}, "send_timeout"),
    ],
)
def test_invalid_values_name_their_source(
    cli: dict[str, str | None], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        HubSettings.from_sources(cli, env)


def test_replace_validates() -> None:
    settings = HubSettings().replace(port=0)
    assert settings.port == 0
    with pytest.raises(ConfigurationError):
        settings.replace(max_batch=0)


HUB_DOC = (Path(__file__).resolve().parents[2] / "docs" / "hub.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "name",
    [
        # the options of `ssehub serve` named by the hub's specification, and the base ones
        *("host", "port", "broker", "history", "history_ttl", "ping", "max_connection_age"),
        *("queue_size", "slow_policy", "send_timeout", "grace_period", "max_body_size"),
        *("max_topics", "max_patterns", "max_batch", "docs", "log_level", "access_log"),
        "gc_threshold",
    ],
)
def test_docs_settings_table_documents_the_option(name: str) -> None:
    spec = {spec.name: spec for spec in options()}[name]
    (row,) = [line for line in HUB_DOC.splitlines() if line.startswith(f"| `{spec.flag} ")]
    assert f"`{spec.env}`" in row
    default = getattr(HubSettings(), name)
    if isinstance(default, bool):
        text = "on" if default else "off"
    elif default is None:
        text = "none"
    elif isinstance(default, float) and default.is_integer():
        text = str(int(default))
    else:
        text = str(default)
    assert f"| `{text}` |" in row


def test_gc_threshold_changes_only_the_young_generation() -> None:
    import gc

    from ssehub.cli.serve import tune_garbage_collector

    before = gc.get_threshold()
    try:
        tune_garbage_collector(0)
        assert gc.get_threshold() == before
        tune_garbage_collector(12_345)
        assert gc.get_threshold() == (12_345, before[1], before[2])
    finally:
        gc.set_threshold(*before)
    with pytest.raises(ConfigurationError):
        HubSettings(gc_threshold=-1)


def test_direct_write_is_not_an_option_any_more() -> None:
    assert "direct_write" not in {spec.name for spec in options()}
    # A variable left over from an older deployment is ignored, like any unknown SSEHUB_ name.
    assert HubSettings.from_sources({}, {"SSEHUB_DIRECT_WRITE": "false"}) == HubSettings()


def test_from_environment_reads_the_variables_serve_reads() -> None:
    settings = HubSettings.from_environment({"SSEHUB_PORT": "9000", "SSEHUB_AUTH": "api-key"})
    assert (settings.port, settings.auth) == (9000, "api_key")
    with pytest.raises(ConfigurationError, match="SSEHUB_PING"):
        HubSettings.from_environment({"SSEHUB_PING": "soon"})


def test_from_environment_defaults_to_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSEHUB_HISTORY", "77")
    assert HubSettings.from_environment().history == 77
