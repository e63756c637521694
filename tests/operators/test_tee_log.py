"""tee_log: structured lifecycle events, the stream untouched, secrets redacted."""

from __future__ import annotations

from typing import Any

import pytest
import reactivex
import structlog
from reactivex import operators as rx
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.marbles import marbles_testing
from structlog.testing import capture_logs

from kagura import LLMConfig, StreamMetrics
from kagura.errors import AuthError, ConfigError
from kagura.events import TextDelta, Usage
from kagura.llm.metrics import estimate_tokens
from kagura.operators import tee_log
from kagura.pipes import AgentStream, from_llm_events, to_async_iterator
from kagura.testing.scripted import marble_chunks

KEY = "sk-proj-abcdefghijklmnop1234"


def by_event(logs: list[Any]) -> dict[str, dict[str, Any]]:
    return {entry["event"]: entry for entry in logs}


def test_never_alters_the_stream() -> None:
    with capture_logs(), marbles_testing() as (start, cold, _, exp):
        results = start(cold("-a-b--c|").pipe(tee_log(every_chunk=True)))
        assert results == exp("-a-b--c|")


def test_logs_start_first_token_and_end_with_timings() -> None:
    scheduler = TestScheduler()
    source = marble_chunks("--a---b-|", {"a": "Hello, ", "b": "world!"}, scheduler=scheduler)
    with capture_logs() as logs:
        scheduler.start(lambda: source.pipe(tee_log(name="summary")))
    assert [entry["event"] for entry in logs] == [
        "stream.start",
        "stream.first_token",
        "stream.end",
    ]
    events = by_event(logs)
    assert all(entry["stream"] == "summary" for entry in logs)
    assert all(entry["log_level"] == "debug" for entry in logs)
    assert events["stream.first_token"]["ttft_s"] == 2.0
    end = events["stream.end"]
    assert end["chunks"] == 2
    assert end["chars"] == 13
    assert end["duration_s"] == 8.0
    assert end["ttft_s"] == 2.0
    assert end["tokens_per_s"] == pytest.approx(estimate_tokens(13) / 6)  # the one rule: 4
    assert end["tokens_estimated"] is True


def test_a_usage_item_gives_the_tokens_and_says_if_they_were_estimated() -> None:
    for estimated in (False, True):
        scheduler = TestScheduler()
        usage = Usage(prompt_tokens=3, completion_tokens=9, total_tokens=12, estimated=estimated)
        events = {"a": TextDelta("Hello, "), "b": TextDelta("world!"), "u": usage}
        source = marble_chunks("--a---b-u-|", events, scheduler=scheduler)
        with capture_logs() as logs:
            scheduler.start(lambda source=source: source.pipe(tee_log()))
        end = by_event(logs)["stream.end"]
        assert end["tokens_per_s"] == pytest.approx(9 / 8)
        assert end["tokens_estimated"] is estimated


def test_a_text_pipeline_reads_the_usage_from_the_metrics_its_source_fills_in() -> None:
    scheduler = TestScheduler()
    metrics = StreamMetrics()
    source = marble_chunks("--a---b-|", {"a": "Hello, ", "b": "world!"}, scheduler=scheduler)
    filled = source.pipe(
        rx.do_action(on_completed=lambda: setattr(metrics, "usage", Usage(completion_tokens=3)))
    )
    with capture_logs() as logs:
        scheduler.start(lambda: filled.pipe(tee_log(metrics=metrics)))
    end = by_event(logs)["stream.end"]
    assert end["tokens_per_s"] == pytest.approx(3 / 6)
    assert end["tokens_estimated"] is False


async def test_the_log_says_what_the_streams_usage_says() -> None:
    # The offline model reports its usage (estimated=False); tee_log used to say estimated.
    metrics = StreamMetrics()
    events = from_llm_events("one two three", LLMConfig(model="kagura/echo"), metrics=metrics)
    with capture_logs() as logs:
        # a text pipeline: the Usage event stays before it, in the metrics
        stream = AgentStream.from_events(events, metrics=metrics, pipeline=tee_log(metrics=metrics))
        assert await stream.text() == "one two three"
        # a pipeline of events: tee_log sees the Usage event itself
        assert len([e async for e in to_async_iterator(events.pipe(tee_log()))]) == 5
        # a text pipeline that cannot see the usage: an estimate, and says so
        await AgentStream.from_events(events, pipeline=tee_log()).text()
    assert stream.usage == Usage(prompt_tokens=3, completion_tokens=3, total_tokens=6)
    ends = [entry for entry in logs if entry["event"] == "stream.end"]
    assert [end["tokens_estimated"] for end in ends] == [False, False, True]


def test_every_chunk_logs_each_item_redacted() -> None:
    scheduler = TestScheduler()
    source = marble_chunks("-a-b-|", {"a": "key ", "b": KEY}, scheduler=scheduler)
    with capture_logs() as logs:
        scheduler.start(lambda: source.pipe(tee_log(every_chunk=True, level="info")))
    chunks = [entry for entry in logs if entry["event"] == "stream.chunk"]
    assert [(c["index"], c["chars"], c["text"]) for c in chunks] == [
        (0, 4, "key "),
        (1, len(KEY), "[REDACTED]"),
    ]
    assert all(entry["log_level"] == "info" for entry in logs)


def test_errors_are_logged_redacted_at_warning_or_above() -> None:
    boom = RuntimeError(f"401 for api_key={KEY}")
    scheduler = TestScheduler()
    source = marble_chunks("-a-#", scheduler=scheduler, error=boom)
    with capture_logs() as logs:
        observer = scheduler.start(lambda: source.pipe(tee_log()))
    assert observer.messages[-1] == ReactiveTest.on_error(203, boom)
    error = by_event(logs)["stream.error"]
    assert error["error_type"] == "RuntimeError"
    assert KEY not in error["error"]
    assert "[REDACTED]" in error["error"]
    assert error["log_level"] == "warning"
    assert (error["chunks"], error["chars"], error["duration_s"]) == (1, 1, 3.0)
    assert "stream.end" not in by_event(logs)


def test_error_level_follows_a_higher_level() -> None:
    with capture_logs() as logs:
        reactivex.throw(ValueError("x")).pipe(tee_log(level="critical")).subscribe(
            on_error=lambda _: None
        )
    assert by_event(logs)["stream.error"]["log_level"] == "critical"


def test_a_cancelled_stream_logs_cancel() -> None:
    scheduler = TestScheduler()
    source = marble_chunks("-a-b-c-|", scheduler=scheduler)
    with capture_logs() as logs:
        scheduler.start(lambda: source.pipe(tee_log()), disposed=204)
    cancel = by_event(logs)["stream.cancel"]
    assert (cancel["chunks"], cancel["duration_s"]) == (2, 4.0)
    assert "stream.end" not in by_event(logs)


def test_an_empty_stream_has_no_first_token_and_no_rate() -> None:
    with capture_logs() as logs:
        reactivex.empty().pipe(tee_log()).subscribe()
    events = by_event(logs)
    assert "stream.first_token" not in events
    assert events["stream.end"]["chunks"] == 0
    assert events["stream.end"]["ttft_s"] is None
    assert events["stream.end"]["tokens_per_s"] is None


def test_non_text_items_count_as_chunks_not_chars() -> None:
    with capture_logs() as logs:
        reactivex.of({"a": 1}, "ab").pipe(tee_log()).run()
    end = by_event(logs)["stream.end"]
    assert (end["chunks"], end["chars"]) == (2, 2)


def test_uses_the_given_logger() -> None:
    with capture_logs() as logs:
        logger = structlog.get_logger("mine").bind(request_id="r1")
        reactivex.of("a").pipe(tee_log(logger)).run()
    assert logs
    assert all(entry["request_id"] == "r1" for entry in logs)


class _BrokenLogger:
    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("logging is down")

        return fail


def test_a_failing_logger_never_breaks_the_stream() -> None:
    out = reactivex.of("a", "b").pipe(tee_log(_BrokenLogger(), every_chunk=True), rx.to_list())
    assert out.run() == ["a", "b"]
    failing = reactivex.throw(ValueError("x")).pipe(tee_log(_BrokenLogger()))
    with pytest.raises(ValueError, match="x"):
        failing.run()


def test_the_name_is_redacted_too() -> None:
    with capture_logs() as logs:
        reactivex.empty().pipe(tee_log(name=f"call with {KEY}")).subscribe()
    assert all(KEY not in entry["stream"] for entry in logs)


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ConfigError):
        tee_log(level="loud")  # type: ignore[arg-type]  # the error under test


PLAIN_KEY = "my-plain-key-1234"  # not sk-shaped: scrubbed because the config remembers it


def test_a_remembered_key_never_reaches_the_log() -> None:
    LLMConfig(api_key=PLAIN_KEY)  # what every call does with its key
    boom = AuthError(f"401: Incorrect API key provided: {PLAIN_KEY}", status_code=401)
    scheduler = TestScheduler()
    source = marble_chunks(
        "-a-b-#", {"a": "echo ", "b": f"{PLAIN_KEY}!"}, scheduler=scheduler, error=boom
    )
    with capture_logs() as logs:
        scheduler.start(lambda: source.pipe(tee_log(every_chunk=True, name=f"for {PLAIN_KEY}")))
    assert PLAIN_KEY not in repr(logs)
    events = by_event(logs)
    assert events["stream.error"]["error"] == "401: Incorrect API key provided: [REDACTED]"
    assert [e["text"] for e in logs if e["event"] == "stream.chunk"] == ["echo ", "[REDACTED]!"]
