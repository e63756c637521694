"""The relay contract, on MemoryRelay and on RedisRelay (a real redis-server)."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import reactivex
from _relay_helpers import Endless, events, items, read_all, read_until_error, until_done
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from redis.asyncio.cluster import RedisCluster

from kagura import operators as ops
from kagura.errors import (
    ConfigError,
    EntriesTrimmed,
    ParseError,
    ProducerLost,
    RateLimitError,
    RelayError,
    StreamError,
    StreamNotFound,
    ToolLoopError,
)
from kagura.events import (
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from kagura.pipes import from_async_iterable, to_async_iterator
from kagura.relay import (
    MemoryRelay,
    RedisRelay,
    Relay,
    RelayEntry,
    from_relay,
    new_stream_id,
    to_relay,
)
from kagura.relay._base import RelayBase

pytestmark = pytest.mark.timeout(60)

MakeRelay = Callable[..., RelayBase]


class Answer(BaseModel):
    title: str
    score: int


def parse_id(entry_id: str) -> tuple[int, int]:
    ms, number = entry_id.split("-")
    return int(ms), int(number)


def open_parts(relay: RelayBase) -> dict[str, int]:
    """What a relay holds for readers: registered readers, followed streams, busy connections."""
    found = {"readers": len(relay._readers)}
    if isinstance(relay, MemoryRelay):
        found["watchers"] = sum(len(s.watchers) for s in relay._streams.values())
    if isinstance(relay, RedisRelay):
        found["watchers"] = sum(len(f._watched) for f in relay._followers.values())
        found["busy connections"] = busy_connections(relay._client)
    return found


def busy_connections(client: Any) -> int:
    """Connections taken from a redis-py client's pool (of every node, for a Cluster)."""
    if isinstance(client, RedisCluster):
        return sum(len(n._connections) - len(n._free) for n in client.get_nodes())
    return len(client.connection_pool._in_use_connections)


def nothing_open(relay: RelayBase) -> dict[str, int]:
    return dict.fromkeys(open_parts(relay), 0)


async def settled(relay: RelayBase, within: float = 2.0) -> dict[str, int]:
    """:func:`open_parts` once nothing is open, or after ``within`` seconds. redis-py's
    Cluster client disconnects a connection left mid-reply by a cancellation in a task of
    its own, and only then gives it back to its pool: free soon after, not at once."""
    deadline = asyncio.get_running_loop().time() + within
    while (parts := open_parts(relay)) != nothing_open(relay):
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.01)
    return parts


# -- round trip and ids -------------------------------------------------------------------
EVERY_KIND: list[object] = [
    TextDelta("Hel"),
    TextDelta("lo"),
    ReasoningDelta("thinking"),
    ToolCallDelta(0, "call_1", "search", '{"q": '),
    ToolCallDelta(0, None, None, '"x"}'),
    'plain text, with "quotes" and\nlines and ☃',
    {"key": [1, 2.5, None, True]},
    3,
    None,
    Usage(3, 5, 8),
    Usage(1, 1, 2, estimated=True),
    Finish("stop"),
    Finish(None),
]


async def test_every_kind_of_item_reads_back_as_published(relay: RelayBase) -> None:
    stream_id = new_stream_id()
    assert await relay.publish(stream_id, items(EVERY_KIND, delay=0.001, every=4))
    entries = await read_all(relay, stream_id)
    assert [entry.event for entry in entries] == EVERY_KIND
    ids = [parse_id(entry.id) for entry in entries]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert len({ms for ms, _ in ids}) == 1, "one stream, one time part"


async def test_a_model_arrives_as_its_json_or_validated_with_model(relay: RelayBase) -> None:
    stream_id = new_stream_id()
    await relay.publish(stream_id, items([Answer(title="Hi", score=3)]))
    assert await events(relay, stream_id) == [{"title": "Hi", "score": 3}]
    assert await events(relay, stream_id, model=Answer) == [Answer(title="Hi", score=3)]

    class Other(BaseModel):
        name: str

    with pytest.raises(ParseError, match="not a valid Other"):
        await events(relay, stream_id, model=Other)


async def test_an_observable_source_is_published_too(relay: RelayBase) -> None:
    stream_id = new_stream_id()
    assert await relay.publish(stream_id, reactivex.of("a", "b", "c"))
    assert await events(relay, stream_id) == ["a", "b", "c"]


async def test_an_item_that_cannot_be_stored_fails_the_stream(relay: RelayBase) -> None:
    stream_id = new_stream_id()
    await relay.publish(stream_id, items(["ok", object()]))
    with pytest.raises(StreamError, match=r"failed \(TypeError\)") as caught:
        await events(relay, stream_id)
    assert caught.value.partial_text == "ok"


async def test_a_live_reader_checks_the_stream_itself_when_nothing_comes(
    relay: RelayBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The safety net under a backend's live delivery: a reader that has waited its idle
    check (here 0.2 s) with nothing delivered reads the stream from storage. With a
    backend that never delivers, every word still arrives, each within about that."""
    monkeypatch.setattr(relay, "_watch", lambda watcher: None)
    monkeypatch.setattr(relay, "_idle_check", lambda: 0.2)
    stream_id = new_stream_id()
    await relay.publish(stream_id, items(["a ", "b ", "c "], delay=0.3))
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(10):
        assert await events(relay, stream_id) == ["a ", "b ", "c "]
    assert loop.time() - started < 3.0


# -- resume -----------------------------------------------------------------------------
WORDS = [f"w{i} " for i in range(40)]


async def test_resume_after_any_event_gives_exactly_the_rest(relay: RelayBase) -> None:
    stream_id = new_stream_id()
    await relay.publish(stream_id, items(WORDS, delay=0.002, every=7))
    entries = await read_all(relay, stream_id)
    assert [entry.event for entry in entries] == WORDS
    for i, entry in enumerate(entries):
        assert await events(relay, stream_id, after=entry.id) == WORDS[i + 1 :], i
    start = f"{parse_id(entries[0].id)[0]}-0"
    assert await events(relay, stream_id, after=start) == WORDS


async def test_resume_while_the_stream_runs(relay: RelayBase) -> None:
    stream_id = new_stream_id()
    await relay.publish(stream_id, items(WORDS, delay=0.005, every=3))
    got: list[str] = []
    after: str | None = None
    async with asyncio.timeout(20):
        for stop in (3, 4, 1, 10, 2):  # read a few, disconnect, resume from the last id
            reader = relay.read(stream_id, after=after)
            async for entry in reader:
                got.append(entry.event)
                after = entry.id
                stop -= 1
                if stop == 0:
                    break
            await reader.aclose()
        got += await events(relay, stream_id, after=after)
    assert got == WORDS


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(reads=st.lists(st.integers(min_value=0, max_value=12), max_size=8))
def test_any_sequence_of_disconnects_yields_each_event_once_in_order(
    backend: str, request: pytest.FixtureRequest, reads: list[int]
) -> None:
    server = {"redis": "redis_server", "cluster": "redis_cluster"}.get(backend)
    url = request.getfixturevalue(server).url if server else ""

    async def scenario() -> list[str]:
        relay: RelayBase = (
            MemoryRelay()
            if backend == "memory"
            else RedisRelay(url, cluster=server == "redis_cluster")
        )
        try:
            stream_id = new_stream_id()
            await relay.publish(stream_id, items(WORDS, delay=0.001, every=5))
            got: list[str] = []
            after: str | None = None
            for count in reads:
                async with asyncio.timeout(10):
                    reader = relay.read(stream_id, after=after)
                    try:
                        while count > 0:
                            entry = await anext(reader)
                            got.append(entry.event)
                            after = entry.id
                            count -= 1
                    except StopAsyncIteration:
                        pass
                    finally:
                        await reader.aclose()
            return got + await events(relay, stream_id, after=after)
        finally:
            await relay.aclose()

    assert asyncio.run(scenario()) == WORDS


# -- many readers -----------------------------------------------------------------------
async def test_many_readers_each_get_every_event(make_relay: MakeRelay) -> None:
    producer, reader = make_relay(), make_relay()
    stream_id = new_stream_id()
    words = [f"{i} " for i in range(120)]
    with pytest.raises(StreamNotFound):  # read before it exists
        await events(reader, stream_id)
    await producer.publish(stream_id, items(words, delay=0.003, every=4))
    readers = [asyncio.create_task(events(reader, stream_id)) for _ in range(30)]
    await asyncio.sleep(0.05)  # some join late, while it runs
    readers += [asyncio.create_task(events(reader, stream_id)) for _ in range(20)]
    done = await asyncio.gather(*readers)
    assert all(got == words for got in done)


async def test_a_reader_that_stops_reading_slows_nobody(relay: RelayBase) -> None:
    stream_id = new_stream_id()
    words = [f"{i} " for i in range(3000)]
    await relay.publish(stream_id, items(words, delay=0.0005, every=5))
    stalled = relay.read(stream_id)
    assert (await anext(stalled)).event == "0 "  # then reads nothing more
    assert await events(relay, stream_id) == words
    assert await relay.status(stream_id) == "ended"
    rest = [entry.event async for entry in stalled]  # it resumes from storage
    assert rest == words[1:]


async def test_a_source_faster_than_the_relay_waits_for_it(relay: RelayBase) -> None:
    stream_id = new_stream_id()
    words = [f"{i}" for i in range(20_000)]
    await relay.publish(stream_id, items(words))  # never awaits between items
    assert await events(relay, stream_id) == words


# -- endings ----------------------------------------------------------------------------
async def test_the_producers_typed_error_is_raised_at_its_place(relay: RelayBase) -> None:
    stream_id = new_stream_id()
    error = RateLimitError(
        "429 from the provider, api_key=abc123secret",
        model="gpt-x",
        status_code=429,
        partial_text="Hello",
        usage=Usage(1, 2, 3),
    )
    await relay.publish(stream_id, items([TextDelta("Hel"), TextDelta("lo")], error=error))
    entries, raised = await read_until_error(relay, stream_id)
    assert [entry.event for entry in entries] == [TextDelta("Hel"), TextDelta("lo")]
    assert isinstance(raised, RateLimitError)
    assert type(raised) is RateLimitError
    assert (raised.partial_text, raised.usage) == ("Hello", Usage(1, 2, 3))
    assert (raised.model, raised.status_code) == ("gpt-x", 429)
    assert "abc123secret" not in str(raised)
    assert "[REDACTED]" in str(raised)
    with pytest.raises(RateLimitError):  # resumed after the last event: the error at once
        await read_all(relay, stream_id, after=entries[-1].id)
    assert await relay.status(stream_id) == "failed"


async def test_the_relayed_text_and_usage_fill_an_error_that_has_none(relay: RelayBase) -> None:
    stream_id = new_stream_id()
    source = items([TextDelta("Hel"), Usage(2, 3, 5), "lo"], error=StreamError("cut"))
    await relay.publish(stream_id, source)
    with pytest.raises(StreamError) as caught:
        await read_all(relay, stream_id)
    assert (caught.value.partial_text, caught.value.usage) == ("Hello", Usage(2, 3, 5))


async def test_another_exception_becomes_a_stream_error_naming_its_type(relay: RelayBase) -> None:
    stream_id = new_stream_id()
    await relay.publish(stream_id, items(["Hi"], error=KeyError("sk-proj-internal-detail")))
    with pytest.raises(StreamError) as caught:
        await read_all(relay, stream_id)
    assert type(caught.value) is StreamError
    assert str(caught.value) == "the stream's producer failed (KeyError)"
    assert caught.value.partial_text == "Hi"


async def test_errors_keep_their_own_attributes(relay: RelayBase) -> None:
    parse = ParseError("not JSON", raw_text="{oops", errors=[{"type": "json_invalid"}])
    loop = ToolLoopError("too many", rounds=3, tool_calls=[ToolCall("c1", "f", "{}")])
    for error in (parse, loop):
        stream_id = new_stream_id()
        await relay.publish(stream_id, items([], error=error))
        with pytest.raises(type(error)) as caught:
            await read_all(relay, stream_id)
        assert type(caught.value) is type(error)
        assert str(caught.value) == str(error)
        if isinstance(error, ParseError):
            assert vars(caught.value) == vars(error)
        else:
            assert isinstance(caught.value, ToolLoopError)
            assert (caught.value.rounds, caught.value.tool_calls) == (3, error.tool_calls)


async def test_a_cancelled_producer_is_reported_lost(relay: RelayBase) -> None:
    stream_id = new_stream_id()

    async def cancelled() -> AsyncIterator[str]:
        yield "a"
        yield "b"
        await asyncio.sleep(0.05)
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(10)
        yield "never"

    await relay.publish(stream_id, cancelled())
    entries, error = await read_until_error(relay, stream_id)
    assert isinstance(error, ProducerLost)
    assert [entry.event for entry in entries] == ["a", "b"]
    assert await relay.status(stream_id) == "lost"
    assert not await relay.publish(stream_id, items(["again"])), "kept until it expires"


async def test_closing_the_producing_relay_leaves_its_streams_lost(
    make_relay: MakeRelay, backend: str
) -> None:
    producer = make_relay(lease=1.0) if backend == "redis" else make_relay()
    reader = make_relay() if backend == "redis" else producer
    stream_id = new_stream_id()
    await producer.publish(stream_id, items(WORDS, delay=0.5, every=2))
    following = asyncio.create_task(events(reader, stream_id))
    await asyncio.sleep(0.1)
    await producer.aclose()
    with pytest.raises(ProducerLost if backend == "redis" else RelayError):
        await following
    with pytest.raises(RelayError, match="closed"):
        await producer.publish(new_stream_id(), items([]))


async def test_unknown_expired_and_other_owners_streams_are_not_found(relay: RelayBase) -> None:
    mine = new_stream_id()
    await relay.publish(mine, items(["secret"]), owner="alice", ttl=0.3)
    assert await events(relay, mine, owner="alice") == ["secret"]
    messages: set[str] = set()
    for stream_id, owner in ((new_stream_id(), None), (mine, "mallory"), (mine, None)):
        with pytest.raises(StreamNotFound) as caught:
            await read_all(relay, stream_id, owner=owner)
        messages.add(str(caught.value))
        assert await relay.status(stream_id, owner=owner) == "unknown"
    public = new_stream_id()
    await relay.publish(public, items(["open"]))
    with pytest.raises(StreamNotFound) as caught:
        await read_all(relay, public, owner="alice")
    messages.add(str(caught.value))
    assert len(messages) == 1, "one message: nothing tells the cases apart"
    await asyncio.sleep(0.5)  # ttl after the end
    with pytest.raises(StreamNotFound):
        await read_all(relay, mine, owner="alice")
    assert await relay.status(mine, owner="alice") == "unknown"
    assert await relay.publish(mine, items(["new"]), owner="bob"), "an expired id is free"
    assert await events(relay, mine, owner="bob") == ["new"]


async def test_entries_older_than_what_is_kept_raise_entries_trimmed(
    make_relay: MakeRelay,
) -> None:
    relay = make_relay(maxlen=16, batch_window=0)
    stream_id = new_stream_id()
    words = [f"{i} " for i in range(400)]
    early: list[RelayEntry] = []

    async def slow() -> AsyncIterator[str]:
        for word in words:
            yield word
            await asyncio.sleep(0.0005)

    await relay.publish(stream_id, slow())
    reader = relay.read(stream_id)
    early.append(await anext(reader))
    await reader.aclose()
    await until_done(relay, stream_id)
    with pytest.raises(EntriesTrimmed) as caught:
        await read_all(relay, stream_id)
    with pytest.raises(EntriesTrimmed):
        await read_all(relay, stream_id, after=early[0].id)
    resume_after = caught.value.resume_after
    rest = await events(relay, stream_id, after=resume_after)
    assert 0 < len(rest) < len(words)
    assert rest == words[-len(rest) :]


async def test_publish_starts_one_producer_per_id(make_relay: MakeRelay) -> None:
    first, second = make_relay(), make_relay()
    stream_id = new_stream_id()
    started: list[str] = []

    async def source(name: str) -> AsyncIterator[str]:
        started.append(name)
        yield name

    results = await asyncio.gather(
        *(relay.publish(stream_id, source(f"p{i}")) for i, relay in enumerate([first, second] * 3))
    )
    assert sorted(results) == [False] * 5 + [True]
    assert await events(second, stream_id) == started
    assert len(started) == 1
    assert not await first.publish(stream_id, source("late")), "ended, but still kept"
    assert len(started) == 1


# -- ids and arguments ------------------------------------------------------------------
def test_new_stream_ids_are_unguessable() -> None:
    ids = {new_stream_id() for _ in range(2000)}
    assert len(ids) == 2000
    for stream_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", stream_id)
    bits = sum(math.log2(64) for _ in range(22))
    assert bits >= 128


HOSTILE_IDS: list[object] = [
    "",
    "a" * 129,
    "a b",
    "x}{y",
    "{tag}",
    "../etc",
    "a:b",
    "a\r\nFLUSHALL",
    "é",
    "*",
    None,
    42,
    b"bytes",
]


@pytest.mark.parametrize("stream_id", HOSTILE_IDS)
async def test_hostile_stream_ids_are_refused(relay: RelayBase, stream_id: Any) -> None:
    with pytest.raises(ConfigError):
        await relay.publish(stream_id, items(["x"]))
    with pytest.raises(ConfigError):
        relay.read(stream_id)
    with pytest.raises(ConfigError):
        await relay.status(stream_id)
    with pytest.raises(ConfigError):
        from_relay(relay, stream_id)
    with pytest.raises(ConfigError):
        to_relay(relay, stream_id)


@pytest.mark.parametrize(
    "options",
    [
        {"after": "abc"},
        {"after": "1-2-3"},
        {"after": "-1"},
        {"after": "12"},
        {"after": f"{2**64}-0"},
        {"after": "1-2\r\n"},
        {"owner": ""},
        {"owner": "x" * 1025},
        {"owner": 5},
    ],
)
async def test_bad_read_arguments_are_refused(relay: RelayBase, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        relay.read(new_stream_id(), **options)


@pytest.mark.parametrize("ttl", [0, -1, math.nan, math.inf, True, "60", 10**9])
async def test_bad_ttls_are_refused(relay: RelayBase, ttl: Any) -> None:
    with pytest.raises(ConfigError):
        await relay.publish(new_stream_id(), items([]), ttl=ttl)


async def test_after_from_another_stream_is_refused(relay: RelayBase) -> None:
    one, other = new_stream_id(), new_stream_id()
    await relay.publish(one, items(["a"]))
    await asyncio.sleep(0.003)
    await relay.publish(other, items(["b"]))
    foreign = (await read_all(relay, one))[0].id
    with pytest.raises(ConfigError, match="not an event id of this stream"):
        await read_all(relay, other, after=foreign)


# -- Observables ------------------------------------------------------------------------
TEXT = "Hello there. This is a test! Is it? It is. Done."
CHUNKS = [TEXT[i : i + 3] for i in range(0, len(TEXT), 3)]
SENTENCES = ["Hello there. ", "This is a test! ", "Is it? ", "It is. ", "Done."]
JSON_CHUNKS = ['{"tit', 'le": "Hi', '", "sco', 're": 4', "2}"]


def chunk_source(chunks: list[str]) -> reactivex.Observable[str]:
    return from_async_iterable(lambda: items(chunks, delay=0.001, every=2))


async def collect(observable: reactivex.Observable[Any]) -> list[Any]:
    async with asyncio.timeout(20):
        return [item async for item in to_async_iterator(observable)]


async def test_sentences_before_the_relay(relay: RelayBase) -> None:
    stream_id = new_stream_id()
    passed = await collect(
        chunk_source(CHUNKS).pipe(ops.buffer_sentences(), to_relay(relay, stream_id))
    )
    assert passed == SENTENCES
    assert await collect(from_relay(relay, stream_id)) == SENTENCES


async def test_sentences_after_the_relay(relay: RelayBase) -> None:
    stream_id = new_stream_id()
    await relay.publish(stream_id, items(CHUNKS, delay=0.001, every=2))
    sentences = from_relay(relay, stream_id).pipe(ops.buffer_sentences())
    assert await collect(sentences) == SENTENCES
    assert await collect(sentences) == SENTENCES, "cold: each subscription reads again"


async def test_parse_model_on_either_side(relay: RelayBase) -> None:
    before, after = new_stream_id(), new_stream_id()
    await collect(chunk_source(JSON_CHUNKS).pipe(ops.parse_model(Answer), to_relay(relay, before)))
    assert await collect(from_relay(relay, before, model=Answer)) == [Answer(title="Hi", score=42)]
    await relay.publish(after, items(JSON_CHUNKS))
    parsed = await collect(from_relay(relay, after).pipe(ops.parse_model(Answer)))
    assert parsed == [Answer(title="Hi", score=42)]


async def test_from_relay_resumes_after_an_id(relay: RelayBase) -> None:
    stream_id = new_stream_id()
    await relay.publish(stream_id, items(CHUNKS))
    entries = await read_all(relay, stream_id)
    assert await collect(from_relay(relay, stream_id, after=entries[4].id)) == CHUNKS[5:]


async def test_to_relay_records_the_error_and_passes_it_on(relay: RelayBase) -> None:
    stream_id = new_stream_id()
    failing = (
        chunk_source(CHUNKS[:3])
        .pipe(ops.buffer_sentences(), to_relay(relay, stream_id))
        .pipe(lambda source: reactivex.concat(source, reactivex.throw(StreamError("cut"))))
    )
    with pytest.raises(StreamError):
        await collect(failing)
    stream_id = new_stream_id()
    erroring = reactivex.concat(reactivex.of("a", "b"), reactivex.throw(StreamError("cut")))
    with pytest.raises(StreamError, match="cut"):
        await collect(erroring.pipe(to_relay(relay, stream_id)))
    with pytest.raises(StreamError, match="cut") as caught:
        await collect(from_relay(relay, stream_id))
    assert caught.value.partial_text == "ab"


async def test_to_relay_disposed_early_leaves_the_stream_lost(relay: RelayBase) -> None:
    stream_id = new_stream_id()
    endless = from_async_iterable(lambda: items([f"{i}" for i in range(10_000)], delay=0.01))
    iterator = to_async_iterator(endless.pipe(to_relay(relay, stream_id)))
    assert [await anext(iterator) for _ in range(3)] == ["0", "1", "2"]
    await iterator.aclose()
    # Items pass on before the relay has the stream (a new Cluster client takes a few round
    # trips), and the producer abandons it: it shows up shortly, lost.
    async with asyncio.timeout(10):
        while await relay.status(stream_id) in ("unknown", "running"):  # noqa: ASYNC110 -- polling the relay is the point
            await asyncio.sleep(0.01)
    assert await relay.status(stream_id) == "lost"
    entries, error = await read_until_error(relay, stream_id)
    assert isinstance(error, ProducerLost)
    assert [entry.event for entry in entries] == ["0", "1", "2"]


async def test_to_relay_on_a_taken_id_fails(relay: RelayBase) -> None:
    stream_id = new_stream_id()
    await relay.publish(stream_id, items(["first"]))
    with pytest.raises(RelayError, match="taken"):
        await collect(chunk_source(["a", "b"] * 50).pipe(to_relay(relay, stream_id)))
    assert await events(relay, stream_id) == ["first"]


# -- stop -------------------------------------------------------------------------------
async def test_stop_closes_the_source_and_ends_the_stream_as_stopped(relay: RelayBase) -> None:
    source = Endless()
    stream_id = new_stream_id()
    await relay.publish(stream_id, aiter(source), owner="ann")
    reader = asyncio.create_task(events(relay, stream_id, owner="ann"))
    while source.sent < 5:  # noqa: ASYNC110 -- waiting for the source to get going
        await asyncio.sleep(0.005)
    assert await relay.stop(stream_id, owner="ann") is True
    async with asyncio.timeout(5):
        await source.closed.wait()
    got = await reader
    assert got[-1] == Finish("stopped")
    assert got[:-1] == [f"w{i} " for i in range(len(got) - 1)]
    assert len(got) - 1 >= 5
    assert await relay.status(stream_id, owner="ann") == "ended"
    assert await events(relay, stream_id, owner="ann") == got  # kept, like any ended stream
    assert await relay.stop(stream_id, owner="ann") is False  # no longer running


async def test_stop_refuses_unknown_ended_and_other_owners_streams(relay: RelayBase) -> None:
    source = Endless()
    stream_id = new_stream_id()
    await relay.publish(stream_id, aiter(source), owner="ann")
    assert await relay.stop(new_stream_id()) is False
    assert await relay.stop(stream_id) is False
    assert await relay.stop(stream_id, owner="bob") is False
    assert await relay.status(stream_id, owner="ann") == "running"
    assert not source.closed.is_set()
    ended = new_stream_id()
    await relay.publish(ended, items(["x"]))
    await until_done(relay, ended)
    assert await relay.stop(ended) is False
    assert await relay.stop(stream_id, owner="ann") is True
    assert await until_done_for(relay, stream_id, owner="ann") == "ended"
    with pytest.raises(ConfigError):
        await relay.stop("no/such id")


async def until_done_for(relay: RelayBase, stream_id: str, *, owner: str) -> str:
    async with asyncio.timeout(10):
        while (status := await relay.status(stream_id, owner=owner)) == "running":  # noqa: ASYNC110 -- polling the relay is the point
            await asyncio.sleep(0.02)
    return status


async def test_stop_during_a_cancellation_leaves_the_cancellation_alone(
    make_relay: MakeRelay,
) -> None:
    """A producer being stopped by its relay's aclose() is lost, not ended as stopped."""
    producer, reader = make_relay(batch_window=0.0), make_relay()
    source = Endless()
    stream_id = new_stream_id()
    await producer.publish(stream_id, aiter(source))
    while source.sent < 3:  # noqa: ASYNC110 -- waiting for the source to get going
        await asyncio.sleep(0.005)
    task = next(iter(producer._producers))
    task.cancel()  # as aclose() does
    await producer.stop(stream_id)  # True or False, as the cancellation is handled or not
    got, error = await read_until_error(reader, stream_id)
    assert isinstance(error, ProducerLost)
    assert Finish("stopped") not in [entry.event for entry in got]


# -- cleanup ----------------------------------------------------------------------------
async def test_cancelling_a_reader_at_any_await_leaves_nothing_open(make_relay: MakeRelay) -> None:
    producer, relay = make_relay(), make_relay()  # (two for Redis: the producer's connections)
    stream_id = new_stream_id()
    await producer.publish(stream_id, items([f"{i} " for i in range(400)], delay=0.002, every=2))

    async def consume() -> None:
        async for _ in relay.read(stream_id):
            pass

    for turns in range(0, 60, 3):
        task = asyncio.create_task(consume())
        for _ in range(turns):
            await asyncio.sleep(0)
        await asyncio.sleep(turns * 0.0003)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await settled(relay) == nothing_open(relay), turns


async def test_breaking_out_of_a_read_leaves_nothing_open(make_relay: MakeRelay) -> None:
    producer, relay = make_relay(), make_relay()
    stream_id = new_stream_id()
    await producer.publish(stream_id, items(WORDS, delay=0.01))
    for count in (1, 5):
        reader = relay.read(stream_id)
        async for _ in reader:
            count -= 1
            if count == 0:
                break
        await reader.aclose()
        assert await settled(relay) == nothing_open(relay)


def test_both_backends_are_relays() -> None:
    assert isinstance(MemoryRelay(), Relay)
    assert issubclass(RedisRelay, RelayBase)
