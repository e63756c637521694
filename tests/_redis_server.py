"""A redis-server process for the relay and web tests (started by the conftest fixtures)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

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
        self._client: Any = None

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
        client, self._client = self._client, None
        if client is not None:
            client.close()
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def kill(self) -> None:
        """SIGKILL: no goodbye to its clients (or its cluster peers)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> Any:
        """A synchronous redis-py client (for INFO, CLIENT LIST, keys): one per server,
        closed by :meth:`stop`, so that no test leaves a socket for the collector."""
        import redis

        if self._client is None:
            self._client = redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=1)
        return self._client


class Monitor:
    """Every command the server runs while it is open (``MONITOR``), as (server time, args):
    what a client really sent, not what it says it sent.

        with Monitor(server.port) as seen:
            ...
        xreads = [args for _, args in seen.commands if args[0] == "XREAD"]
    """

    _LINE = re.compile(r"^\+(\d+\.\d+) \[[^\]]*\] (.*)$")
    _ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')

    def __init__(self, port: int) -> None:
        self.commands: list[tuple[float, list[str]]] = []
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> Self:
        self._sock.sendall(b"MONITOR\r\n")
        reply = b""
        while len(reply) < 5:
            reply += self._sock.recv(5 - len(reply))
        assert reply == b"+OK\r\n"  # from now on, every command is seen
        self._sock.settimeout(0.1)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        time.sleep(0.05)  # what the server ran last is on its way
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _follow(self) -> None:
        pending = b""
        while not self._stop.is_set():
            try:
                data = self._sock.recv(1 << 16)
            except TimeoutError:
                continue
            if not data:
                return
            *lines, pending = (pending + data).split(b"\r\n")
            for raw in lines:
                matched = self._LINE.match(raw.decode("utf-8", "replace"))
                if matched is not None:
                    args = [arg.group(1) for arg in self._ARG.finditer(matched.group(2))]
                    self.commands.append((float(matched.group(1)), args))


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


class RedisClusterServers:
    """A Redis Cluster of ``size`` primaries (redis-server processes) on 127.0.0.1.

    The slots are shared out evenly with ``CLUSTER ADDSLOTSRANGE`` and the nodes meet;
    :meth:`start` returns once every node sees the whole cluster and says it is ok.
    """

    def __init__(self, directory: Path, size: int = 3) -> None:
        # Each node's cluster bus on a free port of its own (the default, port + 10000,
        # may be taken or above 65535).
        self.bus_ports = [free_port() for _ in range(size)]
        self.nodes = [
            RedisServer(
                directory / f"node{i}",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(directory / f"node{i}" / "nodes.conf"),
                "--cluster-node-timeout",
                "2000",
                "--cluster-port",
                str(self.bus_ports[i]),
            )
            for i in range(size)
        ]

    @property
    def url(self) -> str:
        """The URL of one node (a cluster client finds the others from it)."""
        return self.nodes[0].url

    def start(self) -> None:
        size = len(self.nodes)
        for i, node in enumerate(self.nodes):
            node.directory.mkdir(parents=True, exist_ok=True)
            node.start()
            node.client().execute_command(
                "CLUSTER", "ADDSLOTSRANGE", i * 16384 // size, (i + 1) * 16384 // size - 1
            )
        for node in self.nodes:  # every node meets every other: the cluster forms sooner
            for other, bus_port in zip(self.nodes, self.bus_ports, strict=True):
                if other is not node:
                    node.client().execute_command(
                        "CLUSTER", "MEET", "127.0.0.1", other.port, bus_port
                    )
        try:
            self.wait_ready()
        except RuntimeError:
            self.stop()
            raise

    def wait_ready(self) -> None:
        """Return once every node sees the whole cluster and says it is ok."""
        deadline = time.monotonic() + _START_TIMEOUT
        while not all(self._ready(node) for node in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not come up")
            time.sleep(0.02)

    def _ready(self, node: RedisServer) -> bool:
        if node.process is None:
            return False
        client = node.client()
        info = client.execute_command("CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        known = client.execute_command("CLUSTER", "NODES")
        nodes = known.decode() if isinstance(known, bytes) else str(known)
        return "cluster_state:ok" in text and nodes.count("connected") == len(self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def keys(self, pattern: str) -> list[bytes]:
        """The keys matching ``pattern`` on every node."""
        return [key for node in self.nodes for key in node.client().keys(pattern)]

    def node_of(self, slot: int) -> int:
        """The index of the node that serves ``slot`` now."""
        slots = self.nodes[0].client().execute_command("CLUSTER", "SLOTS")
        ports = [node.port for node in self.nodes]
        for low, high, primary, *_ in slots:
            if low <= slot <= high:
                return ports.index(int(primary[1]))
        raise LookupError(slot)

    def migrate_slot(self, slot: int, target: int, *, pause: float = 0.0) -> None:
        """Move ``slot`` to node ``target`` the way a reshard does, key by key (``pause``
        seconds after each key, so that clients meet the slot half moved)."""
        source = self.node_of(slot)
        src, dst = self.nodes[source].client(), self.nodes[target].client()
        src_id, dst_id = src.execute_command("CLUSTER MYID"), dst.execute_command("CLUSTER MYID")
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1):
            src.execute_command(
                "MIGRATE", "127.0.0.1", self.nodes[target].port, "", 0, 5000, "KEYS", *keys
            )
            time.sleep(pause)
        for node in self.nodes:
            node.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
