"""OpenTelemetry traces and metrics of LLM calls, agent runs and tool calls (GenAI conventions).

Off until :func:`instrument` is called: until then nothing imports OpenTelemetry and the
core pays one ``is None`` check per call. Needs the ``otel`` extra
(``pip install 'kagura[otel]'``, which brings ``opentelemetry-api`` only); an SDK or a
distribution (Logfire, Langfuse, Phoenix, an OTLP exporter) decides where spans go.

>>> import kagura.telemetry
>>> kagura.telemetry.instrument()  # the global providers, no prompts or answers
>>> kagura.telemetry.is_instrumented()
True
>>> kagura.telemetry.uninstrument()
>>> kagura.telemetry.is_instrumented()
False
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kagura.llm import observe

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = ["instrument", "is_instrumented", "uninstrument"]


def instrument(
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    capture_content: bool = False,
) -> None:
    """Record a span for every LLM call, agent run and tool call, and the GenAI client metrics.

    ``tracer_provider`` and ``meter_provider`` default to OpenTelemetry's global ones
    (those that ``trace.set_tracer_provider`` set, or that set later). Spans follow the
    GenAI semantic conventions: ``chat <model>`` (one per request, streamed or not),
    ``invoke_agent <name>`` (one per ``@agent`` call) and ``execute_tool <name>``. With
    ``capture_content=True`` the spans also carry the prompts, answers, tool arguments
    and tool results (``gen_ai.input.messages``, ``gen_ai.output.messages``,
    ``gen_ai.tool.call.arguments``, ``gen_ai.tool.call.result``), redacted like every
    kagura log line; credentials are never recorded. Calling it again replaces the
    settings; calls already running keep the ones they started with.

    Raises ``ImportError`` without ``opentelemetry-api``.
    """
    try:
        from kagura.telemetry._otel import OTelObserver
    except ImportError as exc:
        raise ImportError(
            "kagura.telemetry needs opentelemetry-api: pip install 'kagura[otel]'"
        ) from exc
    observe.install(
        OTelObserver(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            capture_content=capture_content,
        )
    )


def uninstrument() -> None:
    """Stop recording: calls started afterwards make no spans and no metrics."""
    observe.install(None)


def is_instrumented() -> bool:
    """Whether :func:`instrument` is in effect."""
    return observe.observer is not None
