"""``ssehub serve`` without a server process: start-up refusals, and what it hands to uvicorn."""

from __future__ import annotations

import os
import types
from typing import Any

import pytest

from ssehub.cli import build_parser, main
from ssehub.cli import serve as serve_module
from ssehub.hub import HubSettings

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(autouse=True)
def _no_hub_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    # serve reads SSEHUB_* from the environment (and warns about unknown ones, such as the
    # test suite's own SSEHUB_REQUIRE_REDIS): one set where the tests run must not count.
    for name in list(os.environ):
        if name.startswith("SSEHUB_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--workers", "2", "--broker", REDIS], {}),
        ([], {"SSEHUB_WORKERS": "3", "SSEHUB_BROKER": "rediss://cache:6380/1"}),
        (["--workers", "2", "--broker", REDIS, "--channels", "on"], {"SSEHUB_CHANNELS": "off"}),
    ],
)
def test_workers_with_channels_on_redis_are_refused_in_one_line(
    argv: list[str],
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["serve", *argv]) == 2  # before any socket is bound or process started
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("ssehub serve: --workers ")
    assert "channels keep per-process state" in err
    assert "--no-channels" in err


@pytest.mark.parametrize(
    "changes",
    [
        {"workers": 2, "broker": REDIS, "channels": False},
        {"workers": 1, "broker": REDIS},
        {"workers": 2},  # the memory broker: refused by check_workers, with its own reason
    ],
)
def test_other_combinations_pass_the_channels_check(changes: dict[str, Any]) -> None:
    serve_module.check_channels_workers(HubSettings(**changes))


def test_the_memory_broker_keeps_its_own_refusal(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--workers", "2"]) == 2
    assert "needs a shared broker such as redis://" in capsys.readouterr().err


def test_direct_write_is_not_a_flag_any_more(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "--direct-write", "false"])
    assert exited.value.code == 2
    assert "--direct-write" in capsys.readouterr().err


def test_serve_hands_uvicorn_its_plain_http_implementation_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configs: list[dict[str, Any]] = []

    class Config:
        def __init__(self, app: object, **options: Any) -> None:
            configs.append(options)

    class Server:
        """Starts nothing: serve's subclass of it is only constructed and run."""

        def __init__(self, config: Config) -> None:
            self.started = False

        def run(self, sockets: object = None) -> None:
            self.started = True

    fake_uvicorn = types.SimpleNamespace(Config=Config, Server=Server)
    monkeypatch.setattr(serve_module, "load_uvicorn", lambda: fake_uvicorn)
    # gc_threshold 0: serve must not change this test process's garbage collector
    assert serve_module.serve(HubSettings(port=0, gc_threshold=0)) == 0
    (options,) = configs
    _, http, _ = serve_module.choose_implementations()
    assert options["http"] == http
    assert options["http"] in ("httptools", "h11")


def test_unknown_variables_are_named_before_a_refusal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # SSEHUB_AUHT=jwt would otherwise leave the hub open without a word.
    monkeypatch.setenv("SSEHUB_AUHT", "jwt")
    monkeypatch.setenv("SSEHUB_URL", "http://127.0.0.1:9")  # the client's: no warning
    monkeypatch.setenv("SSEHUB_MAX_BATCH", "many")
    assert main(["serve"]) == 2  # refused before anything starts
    assert capsys.readouterr().err.splitlines() == [
        (
            "ssehub serve: warning: SSEHUB_AUHT is not an ssehub setting and is ignored "
            "(did you mean SSEHUB_AUTH?)"
        ),
        "ssehub serve: SSEHUB_MAX_BATCH: expected an integer (got 'many')",
    ]
