"""kagura.telemetry: spans and GenAI client metrics, read back from the SDK's in-memory exporters.

Every call goes over HTTP to the loopback server (kagura's direct transport); the names
checked are the installed ``opentelemetry-semantic-conventions``' own constants.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as gm
from opentelemetry.semconv.attributes import error_attributes, server_attributes
from opentelemetry.trace import SpanKind, StatusCode

import kagura.telemetry
from kagura import LLMConfig, agent, call_llm, call_llm_stream
from kagura.errors import RateLimitError, StreamError
from kagura.llm import observe
from kagura.llm.cache import LLMCache, set_llm_cache
from kagura.testing.loopback import LoopbackServer, Script, ScriptedToolCall

MODEL = "openai/gpt-4o-mini"
KEY = "sk-kagura-telemetry-0123456789"


@dataclass
class Recorded:
    """What the SDK received: spans (through ``tracer_provider``) and metrics."""

    tracer_provider: TracerProvider
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        found = [s for s in self.finished() if s.name == name]
        assert len(found) == 1, [s.name for s in self.finished()]
        return found[0]

    def points(self, metric: str) -> list[HistogramDataPoint]:
        data = self.metrics.get_metrics_data()
        found: list[HistogramDataPoint] = []
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name == metric:
                        found += [
                            p for p in m.data.data_points if isinstance(p, HistogramDataPoint)
                        ]
        return found


def instrument(capture_content: bool = False) -> Recorded:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    kagura.telemetry.instrument(
        tracer_provider=tracer_provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
        capture_content=capture_content,
    )
    return Recorded(tracer_provider, spans, reader)


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    yield instrument()
    kagura.telemetry.uninstrument()


@pytest.fixture
def captured() -> Iterator[Recorded]:
    yield instrument(capture_content=True)
    kagura.telemetry.uninstrument()


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    set_llm_cache(LLMCache())
    yield
    set_llm_cache(None)
    assert observe.observer is None, "a test left telemetry instrumented"


def config(loopback: LoopbackServer, model: str = MODEL, **fields: Any) -> LLMConfig:
    return LLMConfig.model_validate(
        {
            "model": model,
            "api_base": loopback.base_url,
            "api_key": KEY,
            "max_retries": 0,
            "transport": "direct",
            **fields,
        }
    )


USAGE = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}


# -- one call ----------------------------------------------------------------------------------
async def test_a_streamed_call_is_one_span_named_and_attributed_by_the_conventions(
    loopback: LoopbackServer, recorded: Recorded
) -> None:
    loopback.enqueue(Script.text("Hello there, world.", usage=USAGE, chunk_delay=0.01))
    cfg = config(loopback, temperature=0.3, max_tokens=50)
    assert "".join([c async for c in call_llm_stream("hi", cfg)]) == "Hello there, world."

    span = recorded.span(f"chat {MODEL}")
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    attributes = dict(span.attributes or {})
    assert {k: attributes[k] for k in CONVENTION_KEYS if k in attributes} == {
        ga.GEN_AI_OPERATION_NAME: ga.GenAiOperationNameValues.CHAT.value,
        ga.GEN_AI_PROVIDER_NAME: ga.GenAiProviderNameValues.OPENAI.value,
        ga.GEN_AI_REQUEST_MODEL: MODEL,
        ga.GEN_AI_REQUEST_STREAM: True,
        ga.GEN_AI_REQUEST_TEMPERATURE: 0.3,
        ga.GEN_AI_REQUEST_TOP_P: 1.0,
        ga.GEN_AI_REQUEST_MAX_TOKENS: 50,
        ga.GEN_AI_RESPONSE_MODEL: MODEL,
        ga.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",),
        ga.GEN_AI_USAGE_INPUT_TOKENS: 7,
        ga.GEN_AI_USAGE_OUTPUT_TOKENS: 5,
        server_attributes.SERVER_ADDRESS: "127.0.0.1",
        server_attributes.SERVER_PORT: loopback.port,
    }
    assert 0 < number(attributes[ga.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]) < duration_s(span)
    assert number(attributes["kagura.response.tokens_per_second"]) > 0
    assert attributes["kagura.usage.estimated"] is False
    assert attributes["kagura.outcome"] == "completed"
    assert attributes["kagura.attempts"] == 1
    assert error_attributes.ERROR_TYPE not in attributes
    assert ga.GEN_AI_INPUT_MESSAGES not in attributes  # no content unless asked
    assert ga.GEN_AI_OUTPUT_MESSAGES not in attributes

    tokens = recorded.points(gm.GEN_AI_CLIENT_TOKEN_USAGE)
    by_type = {p.attributes[ga.GEN_AI_TOKEN_TYPE]: p for p in tokens if p.attributes}
    assert {t: (p.count, p.sum) for t, p in by_type.items()} == {"input": (1, 7), "output": (1, 5)}
    metric_attributes = dict(by_type["input"].attributes or {})
    assert metric_attributes == {
        ga.GEN_AI_OPERATION_NAME: "chat",
        ga.GEN_AI_PROVIDER_NAME: "openai",
        ga.GEN_AI_REQUEST_MODEL: MODEL,
        ga.GEN_AI_RESPONSE_MODEL: MODEL,
        ga.GEN_AI_TOKEN_TYPE: "input",
        server_attributes.SERVER_ADDRESS: "127.0.0.1",
        server_attributes.SERVER_PORT: loopback.port,
    }
    (duration,) = recorded.points(gm.GEN_AI_CLIENT_OPERATION_DURATION)
    assert duration.count == 1
    assert 0 < duration.sum <= duration_s(span)
    assert error_attributes.ERROR_TYPE not in (duration.attributes or {})
    (first,) = recorded.points(gm.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK)
    assert first.count == 1


CONVENTION_KEYS = (
    ga.GEN_AI_OPERATION_NAME,
    ga.GEN_AI_PROVIDER_NAME,
    ga.GEN_AI_REQUEST_MODEL,
    ga.GEN_AI_REQUEST_STREAM,
    ga.GEN_AI_REQUEST_TEMPERATURE,
    ga.GEN_AI_REQUEST_TOP_P,
    ga.GEN_AI_REQUEST_MAX_TOKENS,
    ga.GEN_AI_RESPONSE_MODEL,
    ga.GEN_AI_RESPONSE_FINISH_REASONS,
    ga.GEN_AI_USAGE_INPUT_TOKENS,
    ga.GEN_AI_USAGE_OUTPUT_TOKENS,
    server_attributes.SERVER_ADDRESS,
    server_attributes.SERVER_PORT,
)


def duration_s(span: ReadableSpan) -> float:
    assert span.start_time is not None
    assert span.end_time is not None
    return (span.end_time - span.start_time) / 1e9


async def test_a_whole_call_is_one_span_with_its_usage(
    loopback: LoopbackServer, recorded: Recorded
) -> None:
    loopback.enqueue(Script.text("All at once.", usage=USAGE, finish_reason="length"))
    assert await call_llm("hi", config(loopback)) == "All at once."
    span = recorded.span(f"chat {MODEL}")
    attributes = dict(span.attributes or {})
    assert attributes[ga.GEN_AI_REQUEST_STREAM] is False
    assert attributes[ga.GEN_AI_RESPONSE_FINISH_REASONS] == ("length",)
    assert (
        attributes[ga.GEN_AI_USAGE_INPUT_TOKENS],
        attributes[ga.GEN_AI_USAGE_OUTPUT_TOKENS],
    ) == (
        7,
        5,
    )
    assert attributes["kagura.outcome"] == "completed"
    assert ga.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK not in attributes  # nothing streamed
    assert len(recorded.points(gm.GEN_AI_CLIENT_TOKEN_USAGE)) == 2
    assert len(recorded.points(gm.GEN_AI_CLIENT_OPERATION_DURATION)) == 1
    assert recorded.points(gm.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK) == []


async def test_an_answer_from_the_cache_makes_no_span(
    loopback: LoopbackServer, recorded: Recorded
) -> None:
    loopback.enqueue(Script.text("Cached."))
    cfg = config(loopback, enable_cache=True)
    assert await call_llm("hi", cfg) == await call_llm("hi", cfg) == "Cached."
    assert [s.name for s in recorded.finished()] == [f"chat {MODEL}"]  # one request, one span


async def test_the_current_span_is_the_parent_of_a_call(
    loopback: LoopbackServer, recorded: Recorded
) -> None:
    loopback.enqueue(Script.text("one"), Script.text("two"))
    tracer = recorded.tracer_provider.get_tracer("the application")
    with tracer.start_as_current_span("request handler") as outer:
        await call_llm("hi", config(loopback))
        assert "".join([c async for c in call_llm_stream("hi", config(loopback))]) == "two"
    calls = [s for s in recorded.finished() if s.name.startswith("chat")]
    assert len(calls) == 2
    assert all(
        s.parent is not None and s.parent.span_id == outer.get_span_context().span_id for s in calls
    )


# -- an agent's tree ---------------------------------------------------------------------------
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"12 degrees in {city}"


def weather_scripts() -> tuple[Script, Script]:
    call = ScriptedToolCall.of("get_weather", {"city": "Oslo"}, id="call_w1")
    return Script.tools(call, usage=USAGE), Script.text("It is 12 degrees.", usage=USAGE)


def assert_agent_tree(recorded: Recorded, stream: bool) -> None:
    run = recorded.span("invoke_agent weather")
    chats = sorted(
        (s for s in recorded.finished() if s.name == f"chat {MODEL}"),
        key=lambda s: s.start_time or 0,
    )
    tool = recorded.span("execute_tool get_weather")
    assert len(chats) == 2
    assert run.parent is None
    assert run.kind is SpanKind.INTERNAL
    assert all(parent_id(c) == span_id(run) for c in chats)
    assert parent_id(tool) == span_id(chats[0])  # the call that asked for it
    assert {trace_id(s) for s in (run, tool, *chats)} == {trace_id(run)}
    run_attributes = dict(run.attributes or {})
    assert run_attributes[ga.GEN_AI_OPERATION_NAME] == "invoke_agent"
    assert run_attributes[ga.GEN_AI_AGENT_NAME] == "weather"
    assert run_attributes[ga.GEN_AI_REQUEST_MODEL] == MODEL
    assert run_attributes[ga.GEN_AI_REQUEST_STREAM] is stream
    tool_attributes = dict(tool.attributes or {})
    assert tool_attributes == {
        ga.GEN_AI_OPERATION_NAME: "execute_tool",
        ga.GEN_AI_TOOL_NAME: "get_weather",
        ga.GEN_AI_TOOL_CALL_ID: "call_w1",
        ga.GEN_AI_TOOL_TYPE: "function",
        "kagura.outcome": "completed",
    }
    assert [dict(c.attributes or {})[ga.GEN_AI_RESPONSE_FINISH_REASONS] for c in chats] == [
        ("tool_calls",),
        ("stop",),
    ]


async def test_an_agent_run_is_the_parent_of_its_calls_and_a_call_of_its_tools(
    loopback: LoopbackServer, recorded: Recorded
) -> None:
    loopback.enqueue(*weather_scripts())

    @agent(config=config(loopback), tools=[get_weather])
    async def weather(city: str) -> str:
        """Weather in {{ city }}?"""
        ...

    assert await weather("Oslo") == "It is 12 degrees."
    assert_agent_tree(recorded, stream=False)


async def test_a_streamed_agent_run_makes_the_same_tree_with_summed_usage(
    loopback: LoopbackServer, recorded: Recorded
) -> None:
    loopback.enqueue(*weather_scripts())

    @agent(stream=True, config=config(loopback), tools=[get_weather])
    async def weather(city: str) -> AsyncIterator[str]:
        """Weather in {{ city }}?"""
        ...

    assert await weather("Oslo").text() == "It is 12 degrees."
    assert_agent_tree(recorded, stream=True)
    run = dict(recorded.span("invoke_agent weather").attributes or {})
    assert (run[ga.GEN_AI_USAGE_INPUT_TOKENS], run[ga.GEN_AI_USAGE_OUTPUT_TOKENS]) == (14, 10)
    assert run[ga.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert run["kagura.attempts"] == 2
    # The agent's usage is its calls': the token metric counts each call once.
    inputs = [
        p
        for p in recorded.points(gm.GEN_AI_CLIENT_TOKEN_USAGE)
        if p.attributes and p.attributes[ga.GEN_AI_TOKEN_TYPE] == "input"
    ]
    assert sum(p.sum for p in inputs) == 14


# -- however a stream ends ---------------------------------------------------------------------
async def test_a_cancelled_stream_ends_its_span_with_its_partial_usage(
    loopback: LoopbackServer, recorded: Recorded
) -> None:
    loopback.enqueue(Script.text("x" * 400, chunk_size=4, chunk_delay=0.02))
    received: list[str] = []
    three = asyncio.Event()

    async def consume() -> None:
        async for chunk in call_llm_stream("hi", config(loopback)):
            received.append(chunk)
            if len(received) == 3:
                three.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(three.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    span = recorded.span(f"chat {MODEL}")
    attributes = dict(span.attributes or {})
    assert attributes["kagura.outcome"] == "cancelled"
    assert span.status.status_code is StatusCode.UNSET  # stopped, not failed
    assert attributes["kagura.usage.estimated"] is True
    assert attributes[ga.GEN_AI_USAGE_OUTPUT_TOKENS] == len("".join(received)) // 4
    assert attributes[ga.GEN_AI_USAGE_INPUT_TOKENS] == 1  # "hi"
    assert ga.GEN_AI_RESPONSE_FINISH_REASONS not in attributes
    (output,) = [
        p
        for p in recorded.points(gm.GEN_AI_CLIENT_TOKEN_USAGE)
        if p.attributes and p.attributes[ga.GEN_AI_TOKEN_TYPE] == "output"
    ]
    assert output.sum == len(received)


@pytest.mark.parametrize("how", ["aclosing", "break"])
async def test_a_consumer_that_stops_early_ends_the_span(
    loopback: LoopbackServer, recorded: Recorded, how: str
) -> None:
    loopback.enqueue(Script.text("y" * 200, chunk_size=4, chunk_delay=0.01))
    if how == "aclosing":
        async with aclosing(call_llm_stream("hi", config(loopback))) as stream:
            async for _ in stream:
                break
    else:
        async for _ in call_llm_stream("hi", config(loopback)):
            break  # no aclosing: the loop's async-generator finalizer closes it
        for _ in range(10):
            if recorded.finished():
                break
            await asyncio.sleep(0.01)
    span = recorded.span(f"chat {MODEL}")
    attributes = dict(span.attributes or {})
    assert attributes["kagura.outcome"] == "closed"
    assert attributes[ga.GEN_AI_USAGE_OUTPUT_TOKENS] == 1
    assert span.status.status_code is StatusCode.UNSET


async def test_an_error_sets_error_type_and_status(
    loopback: LoopbackServer, recorded: Recorded
) -> None:
    loopback.enqueue(Script.error(429), Script.error(429))
    with pytest.raises(RateLimitError):
        await anext(call_llm_stream("hi", config(loopback)))
    with pytest.raises(RateLimitError):
        await call_llm("hi", config(loopback))
    spans = recorded.finished()
    assert len(spans) == 2
    for span in spans:
        attributes = dict(span.attributes or {})
        assert attributes[error_attributes.ERROR_TYPE] == "RateLimitError"
        assert attributes["kagura.outcome"] == "failed"
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description
        assert "rate limited" in span.status.description
        (event,) = span.events
        assert event.name == "exception"
        assert dict(event.attributes or {})["exception.type"] == "kagura.errors.RateLimitError"
    durations = recorded.points(gm.GEN_AI_CLIENT_OPERATION_DURATION)
    assert [(p.attributes or {})[error_attributes.ERROR_TYPE] for p in durations] == [
        "RateLimitError"
    ]  # one point: both calls share their attributes
    assert durations[0].count == 2


async def test_a_stream_cut_mid_answer_is_a_failed_span_with_its_partial_usage(
    loopback: LoopbackServer, recorded: Recorded
) -> None:
    loopback.enqueue(Script.text("abcdefgh" * 4, chunk_size=4, drop_after=2))
    with pytest.raises(StreamError) as raised:
        async for _ in call_llm_stream("hi", config(loopback)):
            pass
    attributes = dict(recorded.span(f"chat {MODEL}").attributes or {})
    assert attributes[error_attributes.ERROR_TYPE] == "StreamError"
    assert attributes[ga.GEN_AI_USAGE_OUTPUT_TOKENS] == len(raised.value.partial_text) // 4


# -- content and credentials -------------------------------------------------------------------
async def test_content_is_recorded_only_when_asked(
    loopback: LoopbackServer, captured: Recorded
) -> None:
    loopback.enqueue(*weather_scripts())

    @agent(stream=True, config=config(loopback), tools=[get_weather])
    async def weather(city: str) -> AsyncIterator[str]:
        """Weather in {{ city }}?"""
        ...

    assert await weather("Oslo").text() == "It is 12 degrees."
    first, second = sorted(
        (s for s in captured.finished() if s.name.startswith("chat")),
        key=lambda s: s.start_time or 0,
    )
    assert json.loads(str(dict(first.attributes or {})[ga.GEN_AI_INPUT_MESSAGES])) == [
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Oslo?"}]}
    ]
    assert json.loads(str(dict(first.attributes or {})[ga.GEN_AI_OUTPUT_MESSAGES])) == [
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": "call_w1",
                    "name": "get_weather",
                    "arguments": {"city": "Oslo"},
                }
            ],
            "finish_reason": "tool_calls",
        }
    ]
    history = json.loads(str(dict(second.attributes or {})[ga.GEN_AI_INPUT_MESSAGES]))
    assert history[-1] == {
        "role": "tool",
        "parts": [
            {"type": "tool_call_response", "id": "call_w1", "response": "12 degrees in Oslo"}
        ],
    }
    assert json.loads(str(dict(second.attributes or {})[ga.GEN_AI_OUTPUT_MESSAGES]))[0][
        "parts"
    ] == [{"type": "text", "content": "It is 12 degrees."}]
    tool = dict(captured.span("execute_tool get_weather").attributes or {})
    assert tool[ga.GEN_AI_TOOL_CALL_ARGUMENTS] == '{"city": "Oslo"}'
    assert tool[ga.GEN_AI_TOOL_CALL_RESULT] == "12 degrees in Oslo"


async def test_whole_answers_are_recorded_when_asked(
    loopback: LoopbackServer, captured: Recorded
) -> None:
    loopback.enqueue(Script.text("Whole."))
    await call_llm(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        config(loopback),
    )
    attributes = dict(captured.span(f"chat {MODEL}").attributes or {})
    assert json.loads(str(attributes[ga.GEN_AI_INPUT_MESSAGES])) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "hi"}]},
    ]
    assert json.loads(str(attributes[ga.GEN_AI_OUTPUT_MESSAGES])) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Whole."}],
            "finish_reason": "stop",
        }
    ]


def everything_recorded(recorded: Recorded) -> str:
    """Every name and value of every span, event and metric point, as one text."""
    texts: list[str] = []
    for span in recorded.finished():
        texts += [span.name, repr(dict(span.attributes or {})), str(span.status.description)]
        texts += [repr(dict(e.attributes or {})) for e in span.events]
    data = recorded.metrics.get_metrics_data()
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                texts += [repr(dict(p.attributes or {})) for p in metric.data.data_points]
    return "\n".join(texts)


async def test_credentials_are_never_recorded_even_with_content(
    loopback: LoopbackServer, captured: Recorded
) -> None:
    secrets = ("pa55-w0rd-telemetry", "qk-telemetry-secret-42", KEY)
    loopback.enqueue(Script.text("Echoing sk-kagura-telemetry-0123456789 back."))
    await call_llm(f"My key is {KEY}.", config(loopback))
    failing = [  # endpoints with credentials in them (requests that fail here)
        config(
            loopback, api_base=loopback.url.replace("http://", f"http://u:{secrets[0]}@") + "/v1"
        ),
        config(loopback, api_base=loopback.base_url + f"?api_key={secrets[1]}"),
    ]
    for cfg in failing:
        with pytest.raises(Exception):  # noqa: B017, PT011 (any failure: what is recorded matters)
            await anext(call_llm_stream(f"key {secrets[0]} {secrets[1]}", cfg))
    recorded = everything_recorded(captured)
    assert "[REDACTED]" in recorded  # the prompts and the answer were recorded, scrubbed
    assert len([s for s in captured.finished() if s.status.status_code is StatusCode.ERROR]) == 2
    for secret in secrets:
        assert secret not in recorded


# -- fallbacks, and switching it off -----------------------------------------------------------
async def test_fallbacks_record_the_model_that_answered(
    loopback: LoopbackServer, recorded: Recorded
) -> None:
    loopback.enqueue(Script.error(503), Script.text("from the fallback"))
    cfg = config(loopback, fallbacks=[config(loopback, "openai/backup-model")])
    assert "".join([c async for c in call_llm_stream("hi", cfg)]) == "from the fallback"
    attributes = dict(recorded.span(f"chat {MODEL}").attributes or {})
    assert attributes[ga.GEN_AI_REQUEST_MODEL] == MODEL
    assert attributes[ga.GEN_AI_RESPONSE_MODEL] == "openai/backup-model"
    assert attributes["kagura.attempts"] == 2
    points = recorded.points(gm.GEN_AI_CLIENT_OPERATION_DURATION)
    assert [(p.attributes or {})[ga.GEN_AI_RESPONSE_MODEL] for p in points] == [
        "openai/backup-model"
    ]


async def test_uninstrument_stops_recording(loopback: LoopbackServer) -> None:
    recorded = instrument()
    assert kagura.telemetry.is_instrumented()
    kagura.telemetry.uninstrument()
    assert not kagura.telemetry.is_instrumented()
    loopback.enqueue(Script.text("quiet"), Script.text("quiet"))
    assert await call_llm("hi", config(loopback)) == "quiet"
    assert "".join([c async for c in call_llm_stream("hi", config(loopback))]) == "quiet"
    assert recorded.finished() == []
    assert recorded.points(gm.GEN_AI_CLIENT_TOKEN_USAGE) == []


async def test_without_providers_it_records_to_the_global_ones_and_runs(
    loopback: LoopbackServer,
) -> None:
    kagura.telemetry.instrument()  # OpenTelemetry's global (no-op) providers: nothing to see
    try:
        loopback.enqueue(Script.text("still works"))
        assert "".join([c async for c in call_llm_stream("hi", config(loopback))]) == "still works"
    finally:
        kagura.telemetry.uninstrument()


def test_names_are_the_installed_conventions() -> None:
    from kagura.telemetry import _genai as g

    assert (g.OPERATION_NAME, g.PROVIDER_NAME, g.REQUEST_MODEL, g.RESPONSE_MODEL) == (
        ga.GEN_AI_OPERATION_NAME,
        ga.GEN_AI_PROVIDER_NAME,
        ga.GEN_AI_REQUEST_MODEL,
        ga.GEN_AI_RESPONSE_MODEL,
    )
    assert (g.TOKEN_USAGE, g.OPERATION_DURATION, g.TIME_TO_FIRST_CHUNK) == (
        gm.GEN_AI_CLIENT_TOKEN_USAGE,
        gm.GEN_AI_CLIENT_OPERATION_DURATION,
        gm.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK,
    )
    names = {v for k, v in vars(ga).items() if k.startswith("GEN_AI_") and isinstance(v, str)}
    ours = {v for k, v in vars(g).items() if isinstance(v, str) and v.startswith("gen_ai.")}
    assert ours <= names | {
        gm.GEN_AI_CLIENT_TOKEN_USAGE,
        gm.GEN_AI_CLIENT_OPERATION_DURATION,
        gm.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK,
    }
    providers = {p.value for p in ga.GenAiProviderNameValues}
    for model in (
        "gpt-4o",
        "anthropic/c",
        "gemini/g",
        "vertex_ai/g",
        "bedrock/b",
        "groq/l",
        "mistral/m",
        "xai/g",
    ):
        assert g.provider_name(model) in providers, model


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


def number(value: object) -> float:
    assert isinstance(value, int | float)
    return float(value)


async def test_a_failure_to_record_never_fails_the_call(
    loopback: LoopbackServer,
    recorded: Recorded,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from kagura.telemetry import _otel

    def broken(*args: object) -> Any:
        raise RuntimeError("a bug in the recorder")

    loopback.enqueue(Script.text("still answered"), Script.text("and again"))
    monkeypatch.setattr(_otel, "_response_attributes", broken)  # at the end of a stream
    assert "".join([c async for c in call_llm_stream("hi", config(loopback))]) == "still answered"
    monkeypatch.setattr(_otel.g, "provider_name", broken)  # at the start of a call
    assert await call_llm("hi", config(loopback)) == "and again"
    failures = [r.getMessage() for r in caplog.records if r.name == "kagura.telemetry._otel"]
    assert failures == [
        "kagura.telemetry could not record stream_ended",
        "kagura.telemetry could not start a span (llm_call)",
    ]
