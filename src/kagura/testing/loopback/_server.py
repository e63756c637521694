"""The server: its thread and event loop, its connections, its routes and settings."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from types import TracebackType
from typing import ClassVar, Self

from kagura.testing.loopback import _wire
from kagura.testing.loopback._anthropic import AnthropicDialect
from kagura.testing.loopback._chat import ChatEmulator
from kagura.testing.loopback._dialect import Dialect
from kagura.testing.loopback._gemini import GeminiDialect
from kagura.testing.loopback._http import BadRequest, ClientGone, Connection, RecordedRequest
from kagura.testing.loopback._oauth import TokenEndpoint
from kagura.testing.loopback._openai import OpenAIDialect
from kagura.testing.loopback._script import Script
from kagura.testing.loopback._stats import Counters, LoopbackStats

__all__ = ["LoopbackServer"]

_OPENAI = OpenAIDialect()
_ANTHROPIC = AnthropicDialect()
_GEMINI = GeminiDialect()


def _dialect_for(path: str) -> Dialect | None:
    """The protocol a chat request speaks, from its path (``None``: not a chat request)."""
    if path in ("/v1/chat/completions", "/chat/completions"):
        return _OPENAI
    if path in ("/v1/messages", "/messages"):
        return _ANTHROPIC
    if path.endswith((":streamGenerateContent", ":generateContent")) and "/models/" in path:
        return _GEMINI
    return None


class LoopbackServer:
    """An OpenAI-compatible HTTP/1.1 server on 127.0.0.1, in its own thread.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. :meth:`stats`,
    ``requests`` and ``errors`` may be read from any thread. The settings below are
    plain attributes; :meth:`reset` restores them.

    ``default``: the script for requests that find the queue empty (``None``: echo).
    ``always_include_usage``: send the usage chunk even when not asked.
    ``api_keys``: if set, chat requests need ``Authorization: Bearer <key>`` with a key
    from this set or a live token from ``/oauth/token``, else they get a 401.
    ``models``: what ``GET /v1/models`` lists.
    ``oauth_clients``: client id to secret, for ``/oauth/token``.
    ``token_expires_in``, ``token_delay`` (seconds before answering) and
    ``token_fail_status`` (answer every token request with this status) shape it.
    """

    DEFAULT_OAUTH_CLIENTS: ClassVar[Mapping[str, str]] = {"test-client": "test-secret"}
    DEFAULT_MODELS: ClassVar[tuple[str, ...]] = ("gpt-4o-mini", "gpt-4o")

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, backlog: int = 1024) -> None:
        self._host = host
        self._port = port
        self._backlog = backlog  # asyncio's default (100) overflows at ~1000 concurrent clients
        self._counters = Counters()
        self._chat = ChatEmulator(self._counters)
        self._oauth = TokenEndpoint(self._counters)
        self._requests: list[RecordedRequest] = []
        self._errors: list[BaseException] = []
        self._connections: set[Connection] = set()
        self._connection_ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.default: Script | None = None
        self.always_include_usage = False
        self.api_keys: frozenset[str] | None = None
        self.models: tuple[str, ...] = self.DEFAULT_MODELS
        self.oauth_clients: dict[str, str] = dict(self.DEFAULT_OAUTH_CLIENTS)
        self.token_expires_in = 3600
        self.token_delay = 0.0
        self.token_fail_status: int | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        """Bind a port and serve in a daemon thread; returns once it accepts connections."""
        if self._thread is not None:
            return self
        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(target=self._run, name="kagura-loopback", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise self._startup_error
        return self

    def stop(self) -> None:
        """Close every connection (stalled streams included) and end the thread."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None:
            loop.call_soon_threadsafe(stopping.set)
        thread.join()
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Abort responses in flight, empty the queue and ``requests``, zero the counters
        and restore the settings. Idle keep-alive connections stay open."""
        loop = self._loop
        if self._thread is not None and loop is not None:
            asyncio.run_coroutine_threadsafe(self._abort_busy(), loop).result(timeout=5)
        self._chat.reset()
        self._oauth.revoke()
        with self._counters.lock:
            self._requests.clear()
            self._errors.clear()
        self._counters.reset()
        self.default = None
        self.always_include_usage = False
        self.api_keys = None
        self.models = self.DEFAULT_MODELS
        self.oauth_clients = dict(self.DEFAULT_OAUTH_CLIENTS)
        self.token_expires_in = 3600
        self.token_delay = 0.0
        self.token_fail_status = None

    # -- scripting and observation -----------------------------------------------------

    def enqueue(self, *scripts: Script) -> None:
        """Queue scripts; each chat request consumes the next one, in order."""
        self._chat.enqueue(scripts)

    def revoke_tokens(self) -> None:
        """Make every issued OAuth2 token invalid (as if expired)."""
        self._oauth.revoke()

    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`start`)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self._host}:{self._port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ``http://127.0.0.1:PORT/v1``."""
        return self.url + "/v1"

    @property
    def token_url(self) -> str:
        """The OAuth2 token endpoint, ``http://127.0.0.1:PORT/oauth/token``."""
        return self.url + "/oauth/token"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received since the last reset (a copy)."""
        with self._counters.lock:
            return list(self._requests)

    @property
    def errors(self) -> list[BaseException]:
        """Unexpected exceptions inside the server (each also answered with a 500)."""
        with self._counters.lock:
            return list(self._errors)

    def stats(self) -> LoopbackStats:
        """The counters now: streams, connections, token requests, queued scripts."""
        with self._counters.lock:
            return replace(self._counters.now, scripts_pending=self._chat.pending)

    def wait_idle_sync(self, timeout: float = 1.0) -> bool:
        """Block until no SSE response is in progress; False if ``timeout`` passes first."""
        counters = self._counters
        with counters.idle:
            return counters.idle.wait_for(lambda: not counters.now.streams_in_progress, timeout)

    async def wait_idle(self, timeout: float = 1.0) -> bool:  # noqa: ASYNC109 -- mirrors wait_idle_sync
        """Like :meth:`wait_idle_sync`, polling from the caller's event loop."""
        deadline = time.monotonic() + timeout
        while self._counters.now.streams_in_progress:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.002)
        return True

    # -- the server thread -------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._startup_error = exc
        finally:
            self._ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(
            self._on_connect, self._host, self._port, backlog=self._backlog
        )
        self._port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        server.close()
        tasks = [c.task for c in self._connections if c.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    async def _abort_busy(self) -> None:
        tasks = [c.task for c in self._connections if c.busy and c.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _record_error(self, exc: BaseException) -> None:
        with self._counters.lock:
            self._errors.append(exc)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._counters.add(connections_opened=1, connections_open=1)
        conn = Connection(next(self._connection_ids), reader, writer, asyncio.current_task())
        self._connections.add(conn)
        try:
            while not conn.eof:
                try:
                    request = await conn.read_request()
                except BadRequest as exc:
                    await conn.send_json(400, {"error": _wire.error(400, str(exc))}, keep=False)
                    break
                if request is None:
                    break
                with self._counters.lock:
                    self._requests.append(request)
                conn.busy = True
                keep = await conn.respond(self._route(conn, request))
                conn.busy = False
                if not keep:
                    break
        except (ConnectionError, ClientGone, asyncio.CancelledError):
            # The client left, or reset()/stop() cancelled us: end quietly (asyncio's
            # stream callback reports a cancelled handler task as an error on 3.11).
            pass
        except Exception as exc:  # a bug here: in ``errors`` for the test, not in asyncio's log
            self._record_error(exc)
        finally:
            self._connections.discard(conn)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()
            self._counters.add(connections_open=-1)

    async def _route(self, conn: Connection, req: RecordedRequest) -> bool:
        path = req.path.rstrip("/")
        try:
            dialect = _dialect_for(path) if req.method == "POST" else None
            if dialect is not None:
                return await self._chat.answer(
                    conn,
                    req,
                    dialect,
                    default=self.default,
                    always_include_usage=self.always_include_usage,
                    authorized=lambda credential: self._oauth.accepts(credential, self.api_keys),
                )
            if path in ("/v1/models", "/models") and req.method == "GET":
                models = [_wire.model_entry(m) for m in self.models]
                return await conn.send_json(200, {"object": "list", "data": models})
            if path.startswith(("/v1/models/", "/models/")) and req.method == "GET":
                name = path.split("/models/", 1)[1]
                if name in self.models:
                    return await conn.send_json(200, _wire.model_entry(name))
                return await conn.send_json(404, {"error": _wire.error(404, model=name)})
            if path == "/oauth/token" and req.method == "POST":
                return await self._oauth.answer(
                    conn,
                    req,
                    clients=self.oauth_clients,
                    expires_in=self.token_expires_in,
                    delay=self.token_delay,
                    fail_status=self.token_fail_status,
                )
            message = f"Unknown request URL: {req.method} {req.path}."
            return await conn.send_json(404, {"error": _wire.error(404, message, code=None)})
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:
            self._record_error(exc)
            body = {"error": _wire.error(500, f"loopback server error: {exc!r}")}
            return await conn.send_json(500, body, keep=False)
