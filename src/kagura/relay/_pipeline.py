"""Auto-pipelining: the Redis commands of many tasks, sent together.

A relay's producers each append a few entries now and then; sent one round trip each,
100 streams of 50 chunks a second cost redis-py about 200 µs of CPU per command, which
one process cannot afford. Two ways to send them together, with one interface (``send``):

- :class:`PipelinedConnection`, for one server: the commands handed in during a loop
  turn leave together, at once, on a connection of its own, without waiting for the
  replies to earlier ones (Redis answers in order; one task reads the replies and hands
  each caller its own), as ioredis and the node client do. An exchange thus never waits
  for another's round trip, nor for a connection from the pool.
- :class:`AutoPipeline`, through any client (a Cluster client routes each command to its
  node): at most one exchange in flight; the commands that arrive meanwhile wait and go
  together in the next one (as ioredis's ``enableAutoPipelining`` does).

A caller may ask for a bell to be rung after its commands: each exchange ends with one
``XADD`` per bell key named, listing the members rung, each with a value (the relay puts
there the entry just written, so that a reader following the bell need not read the
stream too). A bell is a hint: its reply is not checked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from kagura.errors import RelayError, RelayUnavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.connection import AbstractConnection

__all__ = ["AutoPipeline", "PipelinedConnection"]

Command = Sequence[Any]
"""A command as redis-py's ``execute_command`` takes it: ``("XADD", key, ...)``."""

_MAX_COMMANDS: Final = 1024  # per exchange
BELL_MAXLEN: Final = 1000  # entries a bell keeps (MAXLEN ~)

_BELL_BYTES: Final = 8 * 1024  # of values in one bell entry; beyond, members ring empty

Ring = tuple[str, str, bytes]
"""(bell key, member, value): an ``XADD <bell> * <member> <value>`` after the caller's
commands (the value is dropped, ``""``, for a member rung twice in one exchange, or past
``_BELL_BYTES`` of values in one entry)."""
_Waiting = tuple[Sequence[Command], Sequence[Ring], "asyncio.Future[list[Any]]"]


class _Sender:
    """What both kinds share: callers' commands queue up, and one task sends them.

    :meth:`send` returns a caller's replies in order, a command's error reply as a
    value (a redis-py ``ResponseError``); a failed exchange raises, in every caller of it,
    what ``guard`` makes of the failure. A caller cancelled while waiting may still have
    its commands sent, as with any command cancelled after it was written.
    """

    def __init__(self, guard: Callable[[], contextlib.AbstractAsyncContextManager[None]]) -> None:
        self._guard = guard
        self._queue: deque[_Waiting] = deque()
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        self.exchanges = 0  # how many exchanges it made (for tests and benchmarks)

    def send(
        self, commands: Sequence[Command], *, rings: Sequence[Ring] = ()
    ) -> asyncio.Future[list[Any]]:
        """The replies to ``commands``, sent with whatever else is waiting (and the bells of
        ``rings`` rung after them, in the same exchange): a future to await (no coroutine
        of its own: the relay's producers send one per tick)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        if self._closed:
            future.set_exception(RelayError("the relay is closed"))
            return future
        self._queue.append((commands, rings, future))
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._run(), name="kagura.relay pipeline")
        return future

    async def _run(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Stop sending; callers still waiting get :class:`~kagura.errors.RelayError`."""
        self._closed = True
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        _fail(self._queue, RelayError("the relay is closed"))
        self._queue.clear()


class AutoPipeline(_Sender):
    """Sends the commands that tasks hand it in as few exchanges as it can, one exchange in
    flight at a time, through ``client`` (a Cluster client routes each command)."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        guard: Callable[[], contextlib.AbstractAsyncContextManager[None]],
    ) -> None:
        super().__init__(guard)
        self._client = client

    async def _run(self) -> None:
        from redis.exceptions import ResponseError

        while self._queue:
            batch: list[_Waiting] = []
            count = 0
            while self._queue and (not batch or count + len(self._queue[0][0]) <= _MAX_COMMANDS):
                waiting = self._queue.popleft()
                if waiting[2].done():  # its caller was cancelled before it was sent
                    continue
                batch.append(waiting)
                count += len(waiting[0])
            if not batch:
                continue
            every = [command for commands, _, _ in batch for command in commands]
            every += _bells(ring for _, rings, _ in batch for ring in rings)
            try:
                async with self._guard():
                    if len(every) == 1:  # a pipeline of one costs twice a plain command
                        try:
                            replies: list[Any] = [
                                await self._client.execute_command(*every[0])  # pyright: ignore[reportUnknownMemberType]
                            ]
                        except ResponseError as exc:
                            replies = [exc]
                    else:
                        pipe = self._client.pipeline(transaction=False)
                        for command in every:
                            pipe.execute_command(*command)  # pyright: ignore[reportUnknownMemberType]
                        replies = await pipe.execute(raise_on_error=False)
                    self.exchanges += 1
            except asyncio.CancelledError:
                _fail(batch, RelayError("the relay is closed"))
                raise
            except Exception as exc:
                _fail(batch, exc)
                continue
            _answer(batch, replies)


class PipelinedConnection(_Sender):
    """Sends the commands that tasks hand it on one connection of its own, as
    :class:`AutoPipeline` does, but without waiting for the replies to earlier exchanges.

    ``connect()`` makes a new (unconnected) redis-py connection; one is made again after a
    failure, which fails every exchange written on the old one and not answered yet (their
    commands may have run). An exchange not answered within ``timeout`` seconds of being
    written fails the connection (one timer for the connection, not one per exchange);
    ``guard`` says what a failure is (it need not bound the time).
    """

    def __init__(
        self,
        connect: Callable[[], AbstractConnection],
        guard: Callable[[], contextlib.AbstractAsyncContextManager[None]],
        *,
        timeout: float,
    ) -> None:
        super().__init__(guard)
        self._connect = connect
        self._timeout = timeout
        self._link: _Link | None = None

    async def _run(self) -> None:
        while self._queue:
            batch = [waiting for waiting in self._queue if not waiting[2].done()]
            self._queue.clear()
            if not batch:
                continue
            commands = [command for commands, _, _ in batch for command in commands]
            commands += _bells(ring for _, rings, _ in batch for ring in rings)
            link = self._link
            try:
                async with self._guard():
                    if link is None or link.broken:
                        link = self._link = _Link(self._connect(), self._guard, self._timeout)
                        await link.connection.connect()
                    link.expect(batch, len(commands))
                    packed = link.connection.pack_commands(commands)
                    await link.connection.send_packed_command(packed, check_health=False)
            except asyncio.CancelledError:
                _fail(batch, RelayError("the relay is closed"))
                raise
            except Exception as exc:
                _fail(batch, exc)
                if link is not None:
                    link.fail(exc)
                continue
            self.exchanges += 1

    async def aclose(self) -> None:
        await super().aclose()
        link, self._link = self._link, None
        if link is not None:
            await link.aclose()


class _Link:
    """One connection of a :class:`PipelinedConnection`, and the exchanges written on it
    that wait for their replies, in order."""

    def __init__(
        self,
        connection: AbstractConnection,
        guard: Callable[[], contextlib.AbstractAsyncContextManager[None]],
        timeout: float,
    ) -> None:
        self.connection = connection
        self._guard = guard
        self._timeout = timeout
        self._waiting: deque[tuple[list[_Waiting], int, float]] = deque()
        self._reader: asyncio.Task[None] | None = None
        self._watch: asyncio.TimerHandle | None = None
        self.broken = False

    def expect(self, batch: list[_Waiting], replies: int) -> None:
        """``batch``'s exchange, of ``replies`` commands, is being written."""
        loop = asyncio.get_running_loop()
        self._waiting.append((batch, replies, loop.time()))
        if self._reader is None or self._reader.done():
            self._reader = loop.create_task(self._read(), name="kagura.relay pipeline replies")
        if self._watch is None:
            self._watch = loop.call_later(self._timeout, self._check)

    def _check(self) -> None:
        """Fail the connection if its oldest exchange waited ``timeout``; else look again
        when it will have."""
        self._watch = None
        if not self._waiting or self.broken:
            return
        due = self._waiting[0][2] + self._timeout
        loop = asyncio.get_running_loop()
        if loop.time() >= due:
            self.fail(
                RelayUnavailable(f"the relay's Redis server did not answer in {self._timeout:g} s")
            )
        else:
            self._watch = loop.call_at(due, self._check)

    async def _read(self) -> None:
        from redis.exceptions import ResponseError

        while self._waiting and not self.broken:
            batch, count, _ = self._waiting[0]
            replies: list[Any] = []
            try:
                async with self._guard():
                    for _ in range(count):
                        try:
                            replies.append(
                                await self.connection.read_response(disconnect_on_error=False)
                            )
                        except ResponseError as exc:
                            replies.append(exc)
            except asyncio.CancelledError:
                self.fail(RelayError("the relay is closed"))
                raise
            except Exception as exc:
                self.fail(exc)
                return
            self._waiting.popleft()
            _answer(batch, replies)

    def fail(self, error: Exception) -> None:
        """The connection is of no more use: every exchange waiting on it gets ``error``."""
        if self.broken:
            return
        self.broken = True
        while self._waiting:
            batch, _, _ = self._waiting.popleft()
            _fail(batch, error)
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        task = asyncio.get_running_loop().create_task(self.connection.disconnect(nowait=True))
        task.add_done_callback(_seen)

    async def aclose(self) -> None:
        self.fail(RelayError("the relay is closed"))
        reader = self._reader
        if reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        await self.connection.disconnect()


def _answer(batch: Iterable[_Waiting], replies: list[Any]) -> None:
    """Each caller's replies: the slice of ``replies`` its commands got."""
    start = 0
    for commands, _, future in batch:
        if not future.done():
            future.set_result(replies[start : start + len(commands)])
        start += len(commands)


def _fail(batch: Iterable[_Waiting], error: BaseException) -> None:
    for _, _, future in batch:
        if not future.done():
            future.set_exception(error)


def _seen(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


def _bells(rings: Iterable[Ring]) -> list[Command]:
    """One ``XADD`` per bell key, naming each member once.

    >>> _bells([("b", "s1", b"1"), ("b", "s2", b"2"), ("b", "s1", b"3")])
    [('XADD', 'b', 'MAXLEN', '~', 1000, '*', 's1', b'', 's2', b'2')]
    """
    members: dict[str, dict[str, bytes]] = {}
    for bell, member, value in rings:
        rung = members.setdefault(bell, {})
        rung[member] = b"" if member in rung else value
    commands: list[Command] = []
    for bell, rung in members.items():
        args: list[Any] = []
        size = 0
        for member, value in rung.items():
            size += len(value)
            args += (member, value if size <= _BELL_BYTES else b"")
        commands.append(("XADD", bell, "MAXLEN", "~", BELL_MAXLEN, "*", *args))
    return commands
