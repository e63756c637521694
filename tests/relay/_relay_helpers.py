"""Sources and readers the relay tests share."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from kagura.relay import Relay, RelayEntry


async def items(
    values: Sequence[object],
    *,
    delay: float = 0.0,
    every: int = 1,
    error: BaseException | None = None,
) -> AsyncIterator[object]:
    """``values``, with a pause of ``delay`` after every ``every`` of them, then ``error``."""
    for i, value in enumerate(values):
        yield value
        if delay and (i + 1) % every == 0:
            await asyncio.sleep(delay)
    if error is not None:
        raise error


async def read_all(relay: Relay, stream_id: str, **options: Any) -> list[RelayEntry]:
    async with asyncio.timeout(20):
        return [entry async for entry in relay.read(stream_id, **options)]


async def events(relay: Relay, stream_id: str, **options: Any) -> list[Any]:
    return [entry.event for entry in await read_all(relay, stream_id, **options)]


async def read_until_error(
    relay: Relay, stream_id: str, **options: Any
) -> tuple[list[RelayEntry], Exception | None]:
    """The entries read, and the error the read ended with (None at the end)."""
    got: list[RelayEntry] = []
    try:
        async with asyncio.timeout(30):
            async for entry in relay.read(stream_id, **options):
                got.append(entry)
    except Exception as exc:
        return got, exc
    return got, None


async def until_done(relay: Relay, stream_id: str) -> str:
    """Wait while the stream runs; its status then."""
    async with asyncio.timeout(30):
        while (status := await relay.status(stream_id)) == "running":  # noqa: ASYNC110 -- polling the relay is the point
            await asyncio.sleep(0.02)
    return status


async def drain(entries: AsyncIterator[RelayEntry]) -> None:
    """Read to the end (with a timeout)."""
    async with asyncio.timeout(30):
        async for _ in entries:
            pass


class Endless:
    """A source that goes on until it is closed, and says when it was."""

    def __init__(self) -> None:
        self.sent = 0
        self.closed = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[str]:
        try:
            while True:
                yield f"w{self.sent} "
                self.sent += 1
                await asyncio.sleep(0.005)
        finally:
            self.closed.set()
