"""Typing of relay reads: checked by pyright strict, and run by pytest.

``relay.read(...)`` is an async generator, so ``contextlib.aclosing`` takes it and a
reader that stops early can close it; ``stop`` and ``status`` are on the protocol.
"""

# pyright: reportUnnecessaryTypeIgnoreComment=true

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from kagura.relay import MemoryRelay, Relay, RelayEntry, new_stream_id


async def words() -> AsyncIterator[str]:
    for word in ("one ", "two ", "three"):
        yield word


async def first_event(relay: Relay, stream_id: str) -> RelayEntry:
    async with contextlib.aclosing(relay.read(stream_id)) as entries:
        async for entry in entries:
            return entry
    raise AssertionError("no event")


async def test_a_read_closes_with_aclosing() -> None:
    async with MemoryRelay() as relay:
        stream_id = new_stream_id()
        await relay.publish(stream_id, words())
        assert (await first_event(relay, stream_id)).event == "one "
        stopped: bool = await relay.stop(stream_id)
        assert stopped in (True, False)  # False if it had ended already
