"""A throwaway redis-server for the relay benchmark, and what it says about its own work.

Debian's ``redis-server`` (``make redis``) on a free loopback port, in a temporary
directory, without persistence; stopped (and the directory removed) on exit::

    with RedisProcess() as server:
        before = server.stats()
        ...  # traffic
        spent = server.stats() - before  # commands by name, CPU seconds, bytes

The counters come from ``INFO all``: ``commandstats`` (calls by command),
``used_cpu_user`` + ``used_cpu_sys``, ``total_net_input_bytes`` and
``total_net_output_bytes``. The benchmark reads them on a raw connection of its own
that counts every byte it sends and receives, so its own requests (``INFO``, ``CLIENT
LIST``) are taken out of every reading: a difference of two readings is the traffic of
everyone else in between.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

_START_TIMEOUT_S = 10.0
_OWN_NAME = "bench-main"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_path() -> str | None:
    """The ``redis-server`` binary, or ``None`` when it is not installed."""
    found = shutil.which("redis-server")
    if found is None and Path("/usr/bin/redis-server").exists():
        found = "/usr/bin/redis-server"
    return found


@dataclass(frozen=True, slots=True)
class Stats:
    """The server's counters at one moment (or the difference of two readings)."""

    commands: Counter[str] = field(default_factory=Counter[str])  # calls by command name
    cpu_s: float = 0.0  # used_cpu_user + used_cpu_sys
    bytes_in: int = 0
    bytes_out: int = 0
    at: float = 0.0  # time.monotonic() of the reading (of a difference: seconds between)

    def __sub__(self, before: Stats) -> Stats:
        commands = Counter(self.commands)
        commands.subtract(before.commands)
        return Stats(
            +commands,  # without the zeros
            self.cpu_s - before.cpu_s,
            self.bytes_in - before.bytes_in,
            self.bytes_out - before.bytes_out,
            self.at - before.at,
        )

    @property
    def calls(self) -> int:
        return sum(self.commands.values())


class _Raw:
    """A bare RESP connection that counts the bytes it moves (for the readings only)."""

    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._file = self._sock.makefile("rb")
        self.sent = 0
        self.received = 0

    def call(self, *args: str) -> bytes | None:
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg.encode()
            parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
        request = b"".join(parts)
        self._sock.sendall(request)
        self.sent += len(request)
        line = self._file.readline()
        self.received += len(line)
        kind, rest = line[:1], line[1:-2]
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            body = self._file.read(size + 2)
            self.received += len(body)
            return body[:-2]
        return rest  # +OK, :1

    def close(self) -> None:
        self._file.close()
        self._sock.close()


class RedisProcess:
    """One redis-server on 127.0.0.1, no persistence, for the length of a ``with`` block."""

    def __init__(self, *extra: str) -> None:
        self.extra = extra
        self.port = 0
        self.version = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        self._raw: _Raw | None = None
        self._own = Counter[str]()  # commands this object sent (INFO aside)

    def url(self, client_name: str | None = None) -> str:
        """The server's URL; ``client_name`` names every connection made from it."""
        query = f"?client_name={client_name}" if client_name else ""
        return f"redis://127.0.0.1:{self.port}/0{query}"

    def __enter__(self) -> Self:
        binary = redis_server_path()
        if binary is None:
            raise RuntimeError("redis-server is not installed (make redis)")
        self._directory = tempfile.TemporaryDirectory(prefix="kagura-bench-redis-")
        self.port = free_port()
        self._process = subprocess.Popen(
            [
                binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self._directory.name,
                "--maxclients", "10000",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + _START_TIMEOUT_S
        while self._raw is None:
            try:
                self._raw = _Raw(self.port)
            except OSError as exc:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.__exit__(None, None, None)
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from exc
                time.sleep(0.02)
        self._call("CLIENT", "SETNAME", _OWN_NAME)
        self.version = self._info("server")["redis_version"]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = None

    def _call(self, *args: str) -> bytes | None:
        assert self._raw is not None
        self._own[args[0].lower() + (f"|{args[1].lower()}" if args[0] == "CLIENT" else "")] += 1
        return self._raw.call(*args)

    def _info(self, section: str) -> dict[str, str]:
        assert self._raw is not None
        body = self._raw.call("INFO", section) or b""
        fields: dict[str, str] = {}
        for line in body.decode().splitlines():
            key, sep, value = line.partition(":")
            if sep and not line.startswith("#"):
                fields[key] = value
        return fields

    def stats(self) -> Stats:
        """The server's counters now, less this object's own traffic."""
        assert self._raw is not None
        received = self._raw.received  # this INFO's reply is not in the server's count
        info = self._info("all")
        commands = Counter[str]()
        for key, value in info.items():
            if key.startswith("cmdstat_") and key != "cmdstat_info":
                name = key.removeprefix("cmdstat_")
                calls = int(value.split(",", 1)[0].removeprefix("calls="))
                commands[name] = calls - self._own.get(name, 0)
        # This INFO request is already in the server's input count; its reply is not yet
        # in the output count (the reply is counted when written).
        return Stats(
            +commands,
            float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            int(info["total_net_input_bytes"]) - self._raw.sent,
            int(info["total_net_output_bytes"]) - received,
            time.monotonic(),
        )

    def clients(self) -> Counter[str]:
        """Open connections by client name (``""``: unnamed), this object's left out."""
        body = self._call("CLIENT", "LIST") or b""
        found = Counter[str]()
        for line in body.decode().splitlines():
            fields: dict[str, str] = {}
            for part in line.split(" "):
                key, _, value = part.partition("=")
                fields[key] = value
            if fields.get("name") != _OWN_NAME:
                found[fields.get("name", "")] += 1
        return found

    def flush(self) -> None:
        self._call("FLUSHALL")
