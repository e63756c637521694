"""Relay: resumable, shareable streams, in this process or across processes through Redis.

A producer publishes a stream under an id; any number of readers, in any process that
shares the relay's storage, read it from the start or from any event id, follow it while
it runs, and see how it ended: the end, the producer's typed error, or
:class:`~kagura.errors.ProducerLost` when the producer died without one.

- :class:`MemoryRelay`: one process, no server (the default).
- :class:`RedisRelay`: Redis Streams, shared by every process and machine that reaches
  the server; one producer per id across all of them.
- :func:`from_relay` and :func:`to_relay`: the same streams as Observables, so operators
  (``buffer_sentences``, ``parse_model``...) run before or after the relay.

>>> import asyncio
>>> from kagura.events import TextDelta
>>> async def main():
...     async def answer():
...         for word in ("Hello, ", "relay."):
...             yield TextDelta(word)
...     async with MemoryRelay() as relay:
...         stream_id = new_stream_id()
...         await relay.publish(stream_id, answer())
...         entries = [entry async for entry in relay.read(stream_id)]
...         rest = [entry.event async for entry in relay.read(stream_id, after=entries[0].id)]
...         return [entry.event for entry in entries], rest
>>> asyncio.run(main())
([TextDelta(text='Hello, '), TextDelta(text='relay.')], [TextDelta(text='relay.')])
"""

from kagura.relay._base import Relay, RelayEntry, StreamStatus
from kagura.relay._entry import new_stream_id
from kagura.relay._memory import MemoryRelay
from kagura.relay._redis import RedisRelay
from kagura.relay._rx import from_relay, to_relay

__all__ = [
    "MemoryRelay",
    "RedisRelay",
    "Relay",
    "RelayEntry",
    "StreamStatus",
    "from_relay",
    "new_stream_id",
    "to_relay",
]
