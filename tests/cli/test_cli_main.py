"""The ``ssehub`` dispatcher: subcommands, ``--version``, and no command at all."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ssehub import __version__
from ssehub.cli import build_parser, main


def test_every_subcommand_is_registered() -> None:
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(choices) == {"serve", "publish", "listen", "status"}


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"ssehub {__version__}\n"


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("usage: ssehub")
    assert "publish" in err
    assert "listen" in err


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ssehub.cli", "listen", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0
    assert "--last-event-id" in done.stdout
    assert "--json" in done.stdout


WITHOUT_HUB_EXTRA = """
import sys
sys.modules["msgspec"] = None  # as if only ssehub[client] were installed
from ssehub.cli import main
for argv in (["--help"], ["listen", "--help"], ["serve", "--port", "1"], ["serve"]):
    try:
        code = main(argv)
    except SystemExit as exit:
        code = exit.code
    print("exit", argv[0], code, flush=True)
"""


def test_without_the_hub_extra_the_client_commands_work_and_serve_says_what_to_install() -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_HUB_EXTRA],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    exits = [line for line in result.stdout.splitlines() if line.startswith("exit ")]
    assert exits == ["exit --help 0", "exit listen 0", "exit serve 1", "exit serve 1"]
    assert "Traceback" not in result.stderr
    assert result.stderr.count("install it with: pip install 'ssehub[hub]'") == 2


def test_an_unknown_option_is_still_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", "--no-such-option"])
    assert info.value.code == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_ctrl_c_in_any_command_exits_130_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `ssehub status` against a slow hub printed a KeyboardInterrupt traceback.
    from ssehub.cli import status

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(status, "run", interrupted)
    assert main(["status", "--url", "http://127.0.0.1:9"]) == 130
    assert capsys.readouterr().err == ""
