"""Fallbacks and hedging before the first token, against the loopback server."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from kagura.errors import ConfigError, FirstTokenTimeout, RateLimitError, StreamError
from kagura.events import TextDelta
from kagura.llm.config import LLMConfig
from kagura.llm.metrics import StreamMetrics
from kagura.llm.streaming import call_llm_stream, stream_events, stream_to_string
from kagura.operators import tee_log
from kagura.pipes import from_llm, to_async_iterator
from kagura.testing.loopback import LoopbackServer, Script


def config(server: LoopbackServer, model: str = "gpt-4o-mini", **fields: object) -> LLMConfig:
    return LLMConfig.model_validate(
        {"model": model, "api_base": server.url, "api_key": "sk-test", "max_retries": 0, **fields}
    )


async def run(cfg: LLMConfig) -> tuple[str, StreamMetrics]:
    metrics = StreamMetrics()
    parts = [
        e.text async for e in stream_events("hi", cfg, metrics=metrics) if isinstance(e, TextDelta)
    ]
    return "".join(parts), metrics


async def test_a_failure_before_the_first_token_tries_the_next_config(
    loopback: LoopbackServer,
) -> None:
    loopback.enqueue(Script.error(503), Script.text("from the fallback"))
    cfg = config(loopback, fallbacks=[config(loopback, "backup-model")])
    text, metrics = await run(cfg)
    assert text == "from the fallback"
    assert (metrics.model, metrics.attempts) == ("backup-model", 2)
    assert [r.body["model"] for r in loopback.requests] == ["gpt-4o-mini", "backup-model"]


async def test_each_config_keeps_its_own_retries_before_the_next(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.error(500), Script.error(500), Script.text("second try"))
    cfg = config(loopback, max_retries=1, fallbacks=[config(loopback, "backup-model")])
    text, metrics = await run(cfg)
    assert text == "second try"
    assert [r.body["model"] for r in loopback.requests] == ["gpt-4o-mini"] * 2 + ["backup-model"]
    assert metrics.attempts == 2  # attempts count configs tried; retries are each one's own


async def test_when_every_config_fails_the_last_error_names_them_all(
    loopback: LoopbackServer,
) -> None:
    loopback.enqueue(Script.error(503), Script.error(429))
    cfg = config(loopback, fallbacks=[config(loopback, "backup-model")])
    with pytest.raises(RateLimitError) as caught:
        await run(cfg)
    note = "\n".join(caught.value.__notes__)
    assert "'gpt-4o-mini': ProviderError" in note
    assert "'backup-model': RateLimitError" in note


async def test_a_first_token_timeout_moves_on_to_the_fallback(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("late", ttft=5.0), Script.text("on time"))
    cfg = config(loopback, first_token_timeout=0.2, fallbacks=[config(loopback, "backup-model")])
    started = time.perf_counter()
    text, _ = await run(cfg)
    assert text == "on time"
    assert time.perf_counter() - started < 2.0
    assert await loopback.wait_idle(2.0)
    assert loopback.stats().streams_closed_by_client == 1


async def test_after_the_first_token_nothing_is_retried(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("abcdefgh", chunk_size=2, drop_after=1), Script.text("never"))
    cfg = config(loopback, fallbacks=[config(loopback, "backup-model")], hedge_after=5.0)
    with pytest.raises(StreamError) as caught:
        await run(cfg)
    assert caught.value.partial_text == "ab"
    assert len(loopback.requests) == 1


async def test_a_config_mistake_is_raised_not_failed_over(loopback: LoopbackServer) -> None:
    cfg = config(loopback, fallbacks=[config(loopback, "backup-model")])
    with pytest.raises(ConfigError):
        await stream_to_string(call_llm_stream("hi", cfg, extra_headers={"bad name": "x"}))
    assert loopback.requests == []


async def test_hedging_races_a_second_request_and_closes_the_slow_one(
    loopback: LoopbackServer,
) -> None:
    loopback.enqueue(Script.text("slow answer", ttft=3.0), Script.text("fast answer"))
    cfg = config(loopback, hedge_after=0.2)
    started = time.perf_counter()
    text, metrics = await run(cfg)
    elapsed = time.perf_counter() - started
    assert text == "fast answer"
    assert elapsed < 1.5
    assert (metrics.model, metrics.attempts) == ("gpt-4o-mini", 2)
    assert await loopback.wait_idle(2.0)
    assert loopback.stats().streams_closed_by_client == 1


async def test_hedging_prefers_the_next_fallback_and_the_first_keeps_its_chance(
    loopback: LoopbackServer,
) -> None:
    # The first request answers at 0.4 s, the hedge (the fallback) at 2 s: the first wins.
    loopback.enqueue(Script.text("first", ttft=0.4), Script.text("hedge", ttft=2.0))
    cfg = config(
        loopback, hedge_after=0.1, max_hedges=1, fallbacks=[config(loopback, "backup-model")]
    )
    text, metrics = await run(cfg)
    assert (text, metrics.model, metrics.attempts) == ("first", "gpt-4o-mini", 2)
    assert [r.body["model"] for r in loopback.requests] == ["gpt-4o-mini", "backup-model"]
    assert await loopback.wait_idle(3.0)
    assert loopback.stats().streams_closed_by_client == 1


async def test_each_further_delay_starts_one_more_hedge_up_to_max_hedges(
    loopback: LoopbackServer,
) -> None:
    loopback.enqueue(
        Script.text("first", ttft=3.0), Script.text("second", ttft=3.0), Script.text("third")
    )
    started = time.perf_counter()
    text, metrics = await run(config(loopback, hedge_after=0.2, max_hedges=2))
    assert (text, metrics.attempts) == ("third", 3)
    assert 0.35 < time.perf_counter() - started < 1.5  # the third began at about 0.4 s
    assert await loopback.wait_idle(2.0)
    assert loopback.stats().streams_closed_by_client == 2


async def test_no_more_than_max_hedges_start(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("slow", ttft=0.8), Script.text("slower", ttft=3.0))
    text, metrics = await run(config(loopback, hedge_after=0.1, max_hedges=1))
    assert (text, metrics.attempts, len(loopback.requests)) == ("slow", 2, 2)


async def test_a_fast_answer_starts_no_hedge(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("quick"))
    text, metrics = await run(config(loopback, hedge_after=0.5))
    await asyncio.sleep(0.7)
    assert (text, metrics.attempts, len(loopback.requests)) == ("quick", 1, 1)


async def test_a_failed_hedge_leaves_the_first_request_racing(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("patience", ttft=0.6), Script.error(500))
    text, metrics = await run(config(loopback, hedge_after=0.1, max_hedges=1))
    assert (text, metrics.attempts) == ("patience", 2)


@pytest.mark.parametrize("cancel_after", [0.05, 0.3])
async def test_cancelling_during_the_race_closes_every_request(
    loopback: LoopbackServer, cancel_after: float
) -> None:
    loopback.enqueue(Script.text("a", ttft=5.0), Script.text("b", ttft=5.0))
    cfg = config(
        loopback, hedge_after=0.1, max_hedges=1, fallbacks=[config(loopback, "backup-model")]
    )

    async def consume() -> None:
        async with aclosing(call_llm_stream("hi", cfg)) as chunks:
            async for _ in chunks:
                pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(cancel_after)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await loopback.wait_idle(2.0)
    assert loopback.stats().streams_in_progress == 0


async def test_without_fallbacks_or_hedging_the_metrics_name_the_one_request(
    loopback: LoopbackServer,
) -> None:
    loopback.enqueue(Script.text("plain"))
    text, metrics = await run(config(loopback))
    assert (text, metrics.model, metrics.attempts) == ("plain", "gpt-4o-mini", 1)


async def test_a_timeout_of_the_only_request_is_a_first_token_timeout(
    loopback: LoopbackServer,
) -> None:
    loopback.enqueue(Script.text("late", ttft=3.0))
    with pytest.raises(FirstTokenTimeout):
        await run(config(loopback, hedge_after=1.0, first_token_timeout=0.2))


def test_fallbacks_do_not_nest_and_hedging_needs_a_positive_delay() -> None:
    inner = LLMConfig(fallbacks=[LLMConfig(model="b")])
    with pytest.raises(ValidationError, match="fallbacks of its own"):
        LLMConfig(fallbacks=[inner])
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValidationError):
            LLMConfig(hedge_after=bad)


def test_a_fallbacks_key_is_hidden_like_the_primarys() -> None:
    cfg = LLMConfig(fallbacks=[LLMConfig(model="b", api_key="sk-fallback-secret")])
    assert "sk-fallback-secret" not in repr(cfg) + str(cfg) + cfg.model_dump_json()


async def test_an_unreachable_primary_falls_back(loopback: LoopbackServer) -> None:
    dead = LLMConfig(model="gpt-4o-mini", api_base="http://127.0.0.1:9", api_key="k" * 8)
    cfg = dead.model_copy(update={"max_retries": 0, "fallbacks": (config(loopback, "backup"),)})
    loopback.enqueue(Script.text("alive"))
    text, metrics = await run(cfg)
    assert (text, metrics.model) == ("alive", "backup")


async def test_tee_log_says_which_model_answered_after_how_many_attempts(
    loopback: LoopbackServer,
) -> None:
    loopback.enqueue(Script.error(503), Script.text("logged"))
    cfg = config(loopback, fallbacks=[config(loopback, "backup-model")])
    metrics = StreamMetrics()
    with capture_logs() as logs:
        text = await stream_to_string(
            to_async_iterator(from_llm("hi", cfg, metrics=metrics).pipe(tee_log(metrics=metrics)))
        )
    assert text == "logged"
    end = next(e for e in logs if e["event"] == "stream.end")
    assert (end["model"], end["attempts"]) == ("backup-model", 2)
