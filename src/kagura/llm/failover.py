"""Fallbacks and hedging: more than one request, until one of them produces a first token.

``LLMConfig(fallbacks=[...])`` tries the next config when a request fails before its
first token (after that request's own retries); ``hedge_after=<seconds>`` starts a
second request (the next fallback, or the same config again) when no first token has
come by then, and another each ``hedge_after`` after that, up to ``max_hedges``
(gRPC's hedging policy, in LLM terms). The first request to produce a token wins and
every other one is closed at once. After the first token nothing is retried: a
failure is the winner's, with the text received so far, as without failover.

A first token is the first text, reasoning or tool-call delta. Each request keeps its
own config's ``first_token_timeout`` (a timed-out request counts as failed).

>>> import asyncio
>>> from kagura.llm.config import LLMConfig
>>> from kagura.llm.metrics import StreamMetrics
>>> from kagura.llm.request import ChatRequest
>>> broken = LLMConfig(model="kagura/echo", api_base="http://127.0.0.1:9", transport="direct",
...                    max_retries=0)
>>> config = broken.model_copy(update={"fallbacks": (LLMConfig(model="kagura/echo"),)})
>>> request = ChatRequest([{"role": "user", "content": "hi there"}], config)
>>> async def main():
...     metrics = StreamMetrics()
...     events = [e async for e in failover_events(request, metrics)]
...     return events[0], metrics.model, metrics.attempts
>>> asyncio.run(main())
(TextDelta(text='hi '), 'kagura/echo', 2)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from kagura._redact import redact
from kagura.errors import FirstTokenTimeout, KaguraError, LLMError, StreamError
from kagura.events import ReasoningDelta, StreamEvent, TextDelta, ToolCallDelta
from kagura.llm.config import LLMConfig
from kagura.llm.metrics import StreamMetrics
from kagura.llm.request import ChatRequest
from kagura.llm.transports import resolve_transport

__all__ = ["failover_events", "uses_failover"]

_TOKENS = (TextDelta, ReasoningDelta, ToolCallDelta)


def uses_failover(config: LLMConfig) -> bool:
    """Whether a config asks for more than one request (fallbacks or hedging)."""
    return bool(config.fallbacks) or config.hedge_after is not None


@dataclass(slots=True)
class _Attempt:
    """One request in flight: its events, and the task reading up to its first token."""

    config: LLMConfig
    events: AsyncGenerator[StreamEvent, None]
    task: asyncio.Task[list[StreamEvent]]


async def _until_first_token(
    events: AsyncGenerator[StreamEvent, None], config: LLMConfig
) -> list[StreamEvent]:
    """The events up to and including the first token (all of them if none came)."""
    seen: list[StreamEvent] = []
    try:
        async with asyncio.timeout(config.first_token_timeout):
            async for event in events:
                seen.append(event)
                if isinstance(event, _TOKENS):
                    break
    except TimeoutError:
        raise FirstTokenTimeout(
            f"no token from {config.model!r} within {config.first_token_timeout} s",
            model=config.model,
        ) from None
    return seen


async def _close(attempt: _Attempt) -> None:
    """Stop an attempt and close its HTTP response (the server sees it close)."""
    attempt.task.cancel()
    with contextlib.suppress(BaseException):
        await attempt.task
    with contextlib.suppress(Exception):
        await attempt.events.aclose()


def _as_llm_error(exc: BaseException, config: LLMConfig) -> LLMError:
    if isinstance(exc, LLMError):
        return exc
    return StreamError(
        f"request to {config.model!r} failed: {type(exc).__name__}: {redact(str(exc))[:200]}",
        model=config.model,
    )


async def failover_events(
    request: ChatRequest, metrics: StreamMetrics
) -> AsyncGenerator[StreamEvent, None]:
    """The events of the first request, among the config and its fallbacks, to answer.

    ``metrics.attempts`` counts the requests started and ``metrics.model`` names the
    model that answered. When every request fails before its first token, the last
    failure is raised, with a note naming each attempt's failure.
    """
    primary = request.config
    queue = list(primary.fallbacks)
    hedges_left = primary.max_hedges if primary.hedge_after is not None else 0
    running: list[_Attempt] = []
    failures: list[str] = []
    last_error: LLMError | None = None
    winner: _Attempt | None = None
    head: list[StreamEvent] = []

    def start(config: LLMConfig) -> None:
        attempt_request = ChatRequest(request.messages, config, request.params)
        events = resolve_transport(config).stream(attempt_request)
        task = asyncio.ensure_future(_until_first_token(events, config))
        running.append(_Attempt(config, events, task))
        metrics.attempts += 1

    def next_config(*, hedge: bool) -> LLMConfig | None:
        """The next fallback, or for a hedge when none is left, the primary once more."""
        nonlocal hedges_left
        if hedge:
            if not hedges_left:
                return None
            hedges_left -= 1
        if queue:
            return queue.pop(0)
        return primary if hedge else None

    try:
        start(primary)
        hedge_at = (
            asyncio.get_running_loop().time() + primary.hedge_after
            if primary.hedge_after is not None
            else None
        )
        while winner is None:
            timeout = None
            if hedge_at is not None:
                timeout = max(0.0, hedge_at - asyncio.get_running_loop().time())
            done, _ = await asyncio.wait(
                [a.task for a in running], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:  # the hedge timer: one more request races the others
                hedged = next_config(hedge=True)
                if hedged is not None:
                    start(hedged)
                hedge_at = (
                    asyncio.get_running_loop().time() + primary.hedge_after
                    if hedges_left and primary.hedge_after is not None
                    else None
                )
                continue
            for attempt in [a for a in running if a.task in done]:
                exc = attempt.task.exception()
                if exc is None:  # a first token, or an answer that ended without one
                    if winner is None:
                        winner, head = attempt, attempt.task.result()
                        running.remove(attempt)
                    continue
                if isinstance(exc, KaguraError) and not isinstance(exc, LLMError):
                    raise exc  # a ConfigError: the caller's mistake, not the provider's
                running.remove(attempt)
                with contextlib.suppress(Exception):
                    await attempt.events.aclose()
                last_error = _as_llm_error(exc, attempt.config)
                failures.append(f"{attempt.config.model!r}: {type(last_error).__name__}")
                following = next_config(hedge=False)
                if following is not None:
                    start(following)
            if winner is None and not running:
                assert last_error is not None
                if len(failures) > 1:
                    last_error.add_note("every attempt failed: " + "; ".join(failures))
                raise last_error
        for loser in running:
            await _close(loser)
        running.clear()
        metrics.model = winner.config.model
        for event in head:
            yield event
        async for event in winner.events:
            yield event
    finally:
        for attempt in running:
            await _close(attempt)
        if winner is not None:
            await winner.events.aclose()
