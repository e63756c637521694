"""The observer that turns kagura's calls into OpenTelemetry spans and GenAI client metrics.

Imported by :func:`kagura.telemetry.instrument` only. One span per LLM call, agent run and
tool call, started when the operation starts and ended when it ends; attributes are read
from the call's :class:`~kagura.llm.metrics.StreamMetrics` at the end, never per chunk.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from contextvars import Token
from types import TracebackType
from typing import Concatenate, ParamSpec, TypeVar

from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.metrics import Histogram, Meter, MeterProvider, get_meter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.util.types import AttributeValue

from kagura import __version__
from kagura._redact import redact
from kagura.events import Completion, ToolCall, Usage
from kagura.llm import observe
from kagura.llm.config import LLMConfig
from kagura.llm.metrics import StreamMetrics, estimate_tokens
from kagura.llm.request import ChatRequest
from kagura.telemetry import _genai as g

__all__ = ["OTelObserver"]

Attributes = dict[str, AttributeValue]

_SCOPE = "kagura"
_log = logging.getLogger(__name__)

P = ParamSpec("P")
S = TypeVar("S")


def _quiet(method: Callable[Concatenate[S, P], None]) -> Callable[Concatenate[S, P], None]:
    """A recording method that logs its own failure instead of raising it into the call."""

    @functools.wraps(method)
    def quiet(self: S, *args: P.args, **kwargs: P.kwargs) -> None:
        try:
            method(self, *args, **kwargs)
        except Exception:
            _log.exception("kagura.telemetry could not record %s", method.__name__)

    return quiet


def _or_unrecorded(
    method: Callable[Concatenate[S, P], _Observation],
) -> Callable[Concatenate[S, P], _Observation]:
    """A starting method that, if it fails, logs it and lets the operation run unrecorded."""

    @functools.wraps(method)
    def start(self: S, *args: P.args, **kwargs: P.kwargs) -> _Observation:
        try:
            return method(self, *args, **kwargs)
        except Exception:
            _log.exception("kagura.telemetry could not start a span (%s)", method.__name__)
            return _Observation(trace.INVALID_SPAN)

    return start


class OTelObserver:
    """An :class:`~kagura.llm.observe.Observer` recording to OpenTelemetry."""

    __slots__ = ("capture_content", "duration", "time_to_first_chunk", "token_usage", "tracer")

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        capture_content: bool,
    ) -> None:
        self.tracer: Tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider)
        meter: Meter = get_meter(_SCOPE, __version__, meter_provider)
        self.token_usage: Histogram = meter.create_histogram(
            g.TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=g.TOKEN_BUCKETS,
        )
        self.duration: Histogram = meter.create_histogram(
            g.OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=g.SECONDS_BUCKETS,
        )
        self.time_to_first_chunk: Histogram = meter.create_histogram(
            g.TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Time to receive the first chunk of a streamed answer.",
            explicit_bucket_boundaries_advisory=g.SECONDS_BUCKETS,
        )
        self.capture_content = capture_content

    @_or_unrecorded
    def llm_call(
        self, request: ChatRequest, *, stream: bool, parent: observe.Observation | None = None
    ) -> _Observation:
        config = request.config
        provider = g.provider_name(config.model)
        common: Attributes = {
            g.OPERATION_NAME: g.CHAT,
            g.PROVIDER_NAME: provider,
            g.REQUEST_MODEL: config.model,
        }
        address = g.server(config.api_base, provider)
        if address is not None:
            common[g.SERVER_ADDRESS], common[g.SERVER_PORT] = address
        attributes: Attributes = {
            **common,
            g.REQUEST_STREAM: stream,
            g.REQUEST_TEMPERATURE: config.temperature,
            g.REQUEST_TOP_P: config.top_p,
        }
        if config.max_tokens is not None:
            attributes[g.REQUEST_MAX_TOKENS] = config.max_tokens
        seed = request.params.get("seed")
        if isinstance(seed, int):
            attributes[g.REQUEST_SEED] = seed
        span = self._start(f"{g.CHAT} {config.model}", SpanKind.CLIENT, attributes, parent)
        if self.capture_content and span.is_recording():
            span.set_attribute(g.INPUT_MESSAGES, g.input_messages(request.messages))
        return _LLMCall(self, span, request, common)

    @_or_unrecorded
    def agent_run(self, name: str, config: LLMConfig, *, stream: bool) -> _Observation:
        attributes: Attributes = {
            g.OPERATION_NAME: g.INVOKE_AGENT,
            g.AGENT_NAME: name,
            g.PROVIDER_NAME: g.provider_name(config.model),
            g.REQUEST_MODEL: config.model,
            g.REQUEST_STREAM: stream,
        }
        return _AgentRun(self._start(f"{g.INVOKE_AGENT} {name}", SpanKind.INTERNAL, attributes))

    @_or_unrecorded
    def tool_call(
        self, call: ToolCall, *, parent: observe.Observation | None = None
    ) -> _Observation:
        attributes: Attributes = {
            g.OPERATION_NAME: g.EXECUTE_TOOL,
            g.TOOL_NAME: call.name,
            g.TOOL_TYPE: "function",
        }
        if call.id:
            attributes[g.TOOL_CALL_ID] = call.id
        if self.capture_content:
            attributes[g.TOOL_CALL_ARGUMENTS] = redact(call.arguments)
        span = self._start(f"{g.EXECUTE_TOOL} {call.name}", SpanKind.INTERNAL, attributes, parent)
        return _ToolCall(self, span)

    def _start(
        self,
        name: str,
        kind: SpanKind,
        attributes: Attributes,
        parent: observe.Observation | None = None,
    ) -> Span:
        ctx = trace.set_span_in_context(parent.span) if isinstance(parent, _Observation) else None
        return self.tracer.start_span(name, ctx, kind, attributes)


class _Observation:
    """A span, ended once: by ``with`` (made current inside), or by :meth:`stream_ended`."""

    __slots__ = ("_token", "span", "started")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.started = time.perf_counter()
        self._token: Token[Context] | None = None

    def __enter__(self) -> _Observation:
        self._token = context.attach(trace.set_span_in_context(self.span))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._end(exc)
        finally:
            if self._token is not None:
                context.detach(self._token)

    @_quiet
    def answered(self, completion: Completion) -> None:
        pass

    @_quiet
    def tool_returned(self, result: str) -> None:
        pass

    @_quiet
    def stream_ended(
        self, metrics: StreamMetrics, text: Sequence[str], error: BaseException | None
    ) -> None:
        self._ended(error)

    @_quiet
    def _end(self, error: BaseException | None) -> None:
        self._ended(error)

    def _ended(self, error: BaseException | None) -> None:
        _finish(self.span, error)
        self.span.end()


class _AgentRun(_Observation):
    __slots__ = ()

    @_quiet
    def stream_ended(
        self, metrics: StreamMetrics, text: Sequence[str], error: BaseException | None
    ) -> None:
        span = self.span
        _finish(span, error)
        if span.is_recording():
            attributes = _response_attributes(metrics)
            if metrics.usage is not None:
                attributes |= _usage_attributes(metrics.usage)
            span.set_attributes(attributes)
        span.end()


class _ToolCall(_Observation):
    __slots__ = ("_observer",)

    def __init__(self, observer: OTelObserver, span: Span) -> None:
        super().__init__(span)
        self._observer = observer

    @_quiet
    def tool_returned(self, result: str) -> None:
        if self._observer.capture_content:
            self.span.set_attribute(g.TOOL_CALL_RESULT, redact(result))


class _LLMCall(_Observation):
    __slots__ = ("_common", "_observer", "_request")

    def __init__(
        self, observer: OTelObserver, span: Span, request: ChatRequest, common: Attributes
    ) -> None:
        super().__init__(span)
        self._observer = observer
        self._request = request
        self._common = common  # the attributes of its metrics

    @_quiet
    def answered(self, completion: Completion) -> None:
        span = self.span
        usage = completion.usage or _estimated(
            self._request, completion.text + completion.reasoning
        )
        model = self._request.config.model
        if span.is_recording():
            attributes: Attributes = {g.RESPONSE_MODEL: model, **_usage_attributes(usage)}
            if completion.finish_reason:
                attributes[g.RESPONSE_FINISH_REASONS] = (completion.finish_reason,)
            if self._observer.capture_content:
                attributes[g.OUTPUT_MESSAGES] = g.output_messages(
                    completion.text,
                    completion.tool_calls,
                    completion.finish_reason or "stop",
                    completion.reasoning,
                )
            span.set_attributes(attributes)
        self._record_usage(usage, model)

    def _ended(self, error: BaseException | None) -> None:
        error_type = _finish(self.span, error)
        self.span.end()
        attributes = dict(self._common)
        attributes[g.RESPONSE_MODEL] = self._request.config.model
        if error_type is not None:
            attributes[g.ERROR_TYPE] = error_type
        self._observer.duration.record(time.perf_counter() - self.started, attributes)

    @_quiet
    def stream_ended(
        self, metrics: StreamMetrics, text: Sequence[str], error: BaseException | None
    ) -> None:
        span = self.span
        outcome = _outcome(error)
        error_type = _finish(span, error)
        usage = metrics.usage or _estimated(self._request, metrics.chars + metrics.reasoning_chars)
        model = metrics.model or self._request.config.model
        if span.is_recording():
            attributes = _response_attributes(metrics) | _usage_attributes(usage)
            attributes[g.RESPONSE_MODEL] = model
            if self._observer.capture_content:
                finish = metrics.finish_reason or ("stop" if outcome == "completed" else outcome)
                attributes[g.OUTPUT_MESSAGES] = g.output_messages(
                    "".join(text), metrics.tool_calls, finish
                )
            span.set_attributes(attributes)
        span.end()
        self._record_usage(usage, model)
        attributes = dict(self._common)
        attributes[g.RESPONSE_MODEL] = model
        if error_type is not None:
            attributes[g.ERROR_TYPE] = error_type
        duration = metrics.duration_s
        if duration is not None:
            self._observer.duration.record(duration, attributes)
        ttft = metrics.ttft_s
        if ttft is not None:
            self._observer.time_to_first_chunk.record(ttft, attributes)

    def _record_usage(self, usage: Usage, model: str) -> None:
        histogram = self._observer.token_usage
        attributes = dict(self._common)
        attributes[g.RESPONSE_MODEL] = model
        histogram.record(usage.prompt_tokens, {**attributes, g.TOKEN_TYPE: g.INPUT})
        histogram.record(usage.completion_tokens, {**attributes, g.TOKEN_TYPE: g.OUTPUT})


def _response_attributes(metrics: StreamMetrics) -> Attributes:
    attributes: Attributes = {g.ATTEMPTS: metrics.attempts}
    if metrics.model is not None:
        attributes[g.RESPONSE_MODEL] = metrics.model
    if metrics.finish_reason is not None:
        attributes[g.RESPONSE_FINISH_REASONS] = (metrics.finish_reason,)
    ttft = metrics.ttft_s
    if ttft is not None:
        attributes[g.RESPONSE_TIME_TO_FIRST_CHUNK] = ttft
    rate = metrics.tokens_per_s
    if rate is not None:
        attributes[g.TOKENS_PER_SECOND] = rate
    return attributes


def _usage_attributes(usage: Usage) -> Attributes:
    return {
        g.USAGE_INPUT_TOKENS: usage.prompt_tokens,
        g.USAGE_OUTPUT_TOKENS: usage.completion_tokens,
        g.USAGE_ESTIMATED: usage.estimated,
    }


def _estimated(request: ChatRequest, output: str | int) -> Usage:
    """The usage of a call the provider reported none for (yet): kagura's estimate."""
    prompt = estimate_tokens(sum(len(str(m.get("content") or "")) for m in request.messages))
    chars = output if isinstance(output, int) else len(output)
    completion = estimate_tokens(chars)
    return Usage(prompt, completion, prompt + completion, estimated=True)


def _outcome(error: BaseException | None) -> str:
    if error is None:
        return "completed"
    if isinstance(error, GeneratorExit):
        return "closed"  # the consumer stopped early (break, aclose)
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    return "failed"


def _finish(span: Span, error: BaseException | None) -> str | None:
    """Record how the operation ended; ``error.type`` for a failure (None otherwise)."""
    outcome = _outcome(error)
    if error is None or outcome != "failed":
        span.set_attribute(g.OUTCOME, outcome)
        return None
    error_type = type(error).__qualname__
    if span.is_recording():
        message = redact(str(error))
        span.set_attributes({g.OUTCOME: outcome, g.ERROR_TYPE: error_type})
        span.set_status(Status(StatusCode.ERROR, message))
        span.add_event(
            "exception",
            {
                "exception.type": f"{type(error).__module__}.{error_type}",
                "exception.message": message,
                "exception.stacktrace": redact("".join(traceback.format_exception(error))),
            },
        )
    return error_type
