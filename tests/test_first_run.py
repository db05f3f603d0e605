"""The README's first command on a fresh clone: the hub answers, and nothing else was installed.

The repository is cloned at HEAD into a temporary folder (so only committed files count), the
README's first command runs there as a real process on a free loopback port, and the clone's
``.venv`` is then inspected: the serving packages are there, the test toolchain is not, and the
whole environment stays under 100 MB. uv's cache makes this fast (a few seconds when warm); the
test needs ``git`` and ``uv`` and skips without them, unless ``CI`` is set.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(sys.platform == "win32", reason="stops the hub with SIGINT"),
]

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 45.0  # creating the environment from a warm cache takes a few seconds
MAX_VENV_BYTES = 100 * 1024 * 1024
TEST_TOOLCHAIN = {"pytest", "mypy", "playwright", "hypothesis", "ruff"}
SERVING = {"uvicorn", "uvloop", "httptools", "prometheus-client", "pyjwt", "cryptography"}
# Settings that would make uv pick another environment or other groups than a new user gets.
UV_SETTINGS_TO_DROP = (
    "VIRTUAL_ENV",
    "UV_PROJECT_ENVIRONMENT",
    "UV_NO_DEFAULT_GROUPS",
    "UV_NO_DEV",
    "UV_DEV",
    "UV_GROUP",
    "UV_ALL_GROUPS",
    "UV_NO_SYNC",
    "UV_FROZEN",
    "UV_NO_EDITABLE",
    "UV_EXTRA",
    "UV_ALL_EXTRAS",
)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


def readme_first_command() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.findall(r"```console\n(.*?)```", readme, flags=re.DOTALL)[0]
    return shlex.split(block.splitlines()[0].split("#", 1)[0])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def installed(venv: Path) -> set[str]:
    site_packages = [str(path) for path in venv.glob("lib/python*/site-packages")]
    assert site_packages, f"no site-packages in {venv}"
    return {
        re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        for dist in importlib.metadata.distributions(path=site_packages)
    }


def size_in_bytes(folder: Path) -> int:
    total = 0
    for directory, _, files in os.walk(folder):
        for name in files:
            info = os.lstat(os.path.join(directory, name))  # symlinks count as links, not targets
            total += info.st_size
    return total


def test_readme_first_command_serves_with_only_the_serving_packages(tmp_path: Path) -> None:
    command = readme_first_command()
    assert command[:4] == ["uv", "run", "ssehub", "serve"], command
    if shutil.which("git") is None or shutil.which("uv") is None:
        _unavailable("needs git and uv on PATH")
    if not (ROOT / ".git").exists():
        _unavailable(f"{ROOT} is not a git repository")

    clone = tmp_path / "ssehub"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=TIMEOUT)
    env = {key: value for key, value in os.environ.items() if key not in UV_SETTINGS_TO_DROP}
    env["PYTHONUNBUFFERED"] = "1"
    port = free_port()
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=clone,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: cleanup reaches uv and the hub under it
    )
    lines: list[str] = []
    ready = threading.Event()

    def read_log() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "authentication is" in line:  # the last line of the hub's startup log
                ready.set()
        ready.set()  # the process ended: let the test fail with the log

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        assert ready.wait(TIMEOUT), "the hub did not start in time:\n" + "".join(lines)
        log = "".join(lines)
        assert f"listening on http://127.0.0.1:{port}" in log, log
        assert "broker memory://" in log, log  # in-memory by default, as the README says
        response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=TIMEOUT)
        assert (response.status_code, response.json()) == (200, {"status": "ok"})
        process.send_signal(signal.SIGINT)  # uv passes it on to the hub, as Ctrl-C would
        assert process.wait(TIMEOUT) == 0, "".join(lines)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(TIMEOUT)
        reader.join(TIMEOUT)
        if process.stderr is not None:
            process.stderr.close()

    venv = clone / ".venv"
    packages = installed(venv)
    assert not packages & TEST_TOOLCHAIN, f"test toolchain installed: {packages & TEST_TOOLCHAIN}"
    assert packages >= SERVING, f"serving packages missing: {SERVING - packages}"
    size = size_in_bytes(venv)
    assert size < MAX_VENV_BYTES, f".venv is {size / 2**20:.0f} MB: {sorted(packages)}"
    # The committed uv.lock was current: uv run did not have to rewrite it.
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True, check=True
    )
    assert status.stdout == "", status.stdout
