"""Reading a child process's output line by line with a deadline (no sleeps, no hangs)."""

from __future__ import annotations

import io
import os
import select
import time

__all__ = ["read_line", "read_to_end"]


def read_line(stream: io.BufferedReader, timeout: float) -> bytes:
    """One line from a child's pipe, failing the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no complete line within {timeout} s (got {line!r})"
        ready, _, _ = select.select([stream], [], [], remaining)
        if ready:
            byte = os.read(stream.fileno(), 1)
            assert byte, f"the child closed its output (got {line!r})"
            line += byte
    return line


def read_to_end(stream: io.BufferedReader, timeout: float) -> bytes:
    """Everything a child writes to a pipe until it closes it, failing after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"the pipe stayed open for {timeout} s (got {data!r})"
        ready, _, _ = select.select([stream], [], [], remaining)
        if ready:
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                return data
            data += chunk
