"""A redis-server process for the relay and web tests (started by the conftest fixtures)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

_START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process on 127.0.0.1 (start, stop, restart on the same port)."""

    def __init__(self, directory: Path, *extra: str) -> None:
        self.directory = directory
        self.port = free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.process = subprocess.Popen(
            [
                binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            try:
                if self.client().ping():
                    return
            except Exception as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not answer PING on {self.port}") from exc
                time.sleep(0.02)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> Any:
        """A synchronous redis-py client (for INFO, CLIENT LIST, keys)."""
        import redis

        return redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=1)


def need_redis() -> None:
    missing = []
    if shutil.which("redis-server") is None:
        missing.append("redis-server (make redis, or apt-get install redis-server)")
    try:
        import redis  # noqa: F401 -- only whether it imports
    except ImportError:
        missing.append("redis-py (pip install 'kagura[relay]')")
    if missing:
        reason = "the relay tests need " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set: they may not skip)")
        pytest.skip(reason)
