"""Auto-pipelining: the Redis commands of many tasks, sent together.

A relay's producers each append a few entries now and then; sent one round trip each,
100 streams of 50 chunks a second cost redis-py about 200 µs of CPU per command, which
one process cannot afford. :class:`AutoPipeline` keeps at most one exchange in flight:
the commands that arrive meanwhile wait and go together in the next one (as ioredis's
``enableAutoPipelining`` does). An idle relay thus sends each command at once, and a
busy one many per round trip, at a fraction of the cost each.

A caller may ask for a bell to be rung after its commands: each exchange ends with one
``XADD`` per bell key named, listing the members rung (readers learn which streams changed
without reading them all). A bell is a hint: its reply is not checked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from kagura.errors import RelayError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

__all__ = ["AutoPipeline"]

Command = Sequence[Any]
"""A command as redis-py's ``execute_command`` takes it: ``("XADD", key, ...)``."""

_MAX_COMMANDS: Final = 1024  # per exchange
BELL_MAXLEN: Final = 1000  # entries a bell keeps (MAXLEN ~)

Ring = tuple[str, str]
"""(bell key, member): an ``XADD <bell> * <member> ""`` after the caller's commands."""
_Waiting = tuple[Sequence[Command], "Ring | None", "asyncio.Future[list[Any]]"]


class AutoPipeline:
    """Sends the commands that tasks hand it in as few exchanges as it can.

    :meth:`send` returns a caller's replies in order, a command's error reply as a
    value (a redis-py ``ResponseError``); a failed exchange raises, in every caller of it,
    what ``guard`` makes of the failure. A caller cancelled while waiting may still have
    its commands sent, as with any command cancelled after it was written.
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        guard: Callable[[], contextlib.AbstractAsyncContextManager[None]],
    ) -> None:
        self._client = client
        self._guard = guard
        self._queue: deque[_Waiting] = deque()
        self._runner: asyncio.Task[None] | None = None
        self.exchanges = 0  # how many exchanges it made (for tests and benchmarks)

    def send(
        self, commands: Sequence[Command], *, ring: Ring | None = None
    ) -> asyncio.Future[list[Any]]:
        """The replies to ``commands``, sent with whatever else is waiting (and ``ring``'s
        bell rung after them, in the same exchange): a future to await (no coroutine of its
        own: a producer sends one per batch)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._queue.append((commands, ring, future))
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._run(), name="kagura.relay pipeline")
        return future

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
            every += _bells(ring for _, ring, _ in batch)
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
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(RelayError("the relay is closed"))
                raise
            except Exception as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for commands, _, future in batch:
                if not future.done():
                    future.set_result(replies[start : start + len(commands)])
                start += len(commands)

    async def aclose(self) -> None:
        """Stop sending; callers still waiting get :class:`~kagura.errors.RelayError`."""
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        while self._queue:
            _, _, future = self._queue.popleft()
            if not future.done():
                future.set_exception(RelayError("the relay is closed"))


def _bells(rings: Iterable[Ring | None]) -> list[Command]:
    """One ``XADD`` per bell key, naming each member once.

    >>> _bells([("b", "s1"), None, ("b", "s2"), ("b", "s1")])
    [('XADD', 'b', 'MAXLEN', '~', 1000, '*', 's1', '', 's2', '')]
    """
    members: dict[str, dict[str, None]] = {}
    for ring in rings:
        if ring is not None:
            members.setdefault(ring[0], {})[ring[1]] = None
    return [
        ("XADD", bell, "MAXLEN", "~", BELL_MAXLEN, "*", *(x for m in rung for x in (m, "")))
        for bell, rung in members.items()
    ]
