"""Offline models: ``kagura/echo`` and ``kagura/replay``, for demos and tests with no key.

They run wherever a model name is accepted. Through litellm they are a custom
provider (see :mod:`kagura.llm.transports.offline_litellm`), so the whole
litellm path runs; this module holds the models themselves, free of litellm.

- ``kagura/echo`` streams the last user message back, word by word.
- ``kagura/replay`` streams ``replay_text`` (or a bundled story) word by word.

Both take ``ttft`` (seconds before the first token, default 0) and
``tokens_per_s`` (default: as fast as possible) as extra call arguments::

    await call_llm("hi", LLMConfig(model="kagura/replay"), replay_text="Hello.", ttft=0.1)

These arguments (:data:`OFFLINE_PARAMS`) are the offline models' alone: a request to any
other model drops them (:class:`kagura.llm.request.ChatRequest`), so code that switches
between offline and real models passes them unconditionally.

>>> import asyncio
>>> from kagura.llm.transports.offline import offline_events
>>> async def texts():
...     messages = [{"role": "user", "content": "a b"}]
...     events = offline_events("kagura/echo", messages, {})
...     return [e.text async for e in events if hasattr(e, "text")]
>>> asyncio.run(texts())
['a ', 'b']

Their usage counts those tokens (words), in the prompt as in the answer:

>>> async def usage(prompt):
...     events = offline_events("kagura/echo", [{"role": "user", "content": prompt}], {})
...     return [e async for e in events if isinstance(e, Usage)]
>>> asyncio.run(usage("a b c"))
[Usage(prompt_tokens=3, completion_tokens=3, total_tokens=6, estimated=False)]
>>> asyncio.run(usage(""))
[Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0, estimated=False)]
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, cast

from kagura.errors import ModelNotFoundError
from kagura.events import Finish, StreamEvent, TextDelta, Usage
from kagura.llm.request import OFFLINE_PARAMS

__all__ = ["BUNDLED_STORY", "OFFLINE_MODELS", "OFFLINE_PARAMS", "offline_events", "tokenize"]

OFFLINE_MODELS = ("kagura/echo", "kagura/replay")

BUNDLED_STORY = (
    "Once upon a time, a dragon named Ember guarded the valley of St. Aldric. "
    "Every morning at 7 a.m. she counted her treasure: 3.5 tons of gold, "
    "a map drawn by Dr. Okafor, and one very old kettle. "
    "The villagers were not afraid of her! Why would they be? "
    "She had saved them from the floods of 1842... and she made excellent tea. "
    "When travellers asked for directions, Ember simply pointed a claw toward the river. "
    "And that, the villagers said, is how the valley got its name."
)

_TOKEN = re.compile(r"\S+\s*|\s+")


def tokenize(text: str) -> list[str]:
    """Split text into word tokens that keep their trailing whitespace (lossless)."""
    return _TOKEN.findall(text)


def _last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):  # OpenAI content parts
                parts = cast(list[Any], content)
                return "".join(
                    str(cast(dict[str, Any], p).get("text", ""))
                    for p in parts
                    if isinstance(p, dict)
                )
    return ""


async def offline_events(
    model: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
) -> AsyncIterator[StreamEvent]:
    """Stream an offline model's answer as events: text deltas, usage, finish."""
    name = model.removeprefix("kagura/")
    if name == "echo":
        text = _last_user_text(messages)
    elif name == "replay":
        text = str(params.get("replay_text") or BUNDLED_STORY)
    else:
        raise ModelNotFoundError(
            f"unknown offline model {model!r}; offline models are {', '.join(OFFLINE_MODELS)}",
            model=model,
        )
    ttft = float(params.get("ttft") or 0.0)
    tokens_per_s = params.get("tokens_per_s")
    interval = 1.0 / float(tokens_per_s) if tokens_per_s else 0.0
    tokens = tokenize(text)
    if ttft > 0:
        await asyncio.sleep(ttft)
    for i, token in enumerate(tokens):
        if i and interval:
            await asyncio.sleep(interval)
        yield TextDelta(token)
    # An offline model's tokens are the words tokenize() yields, in the prompt as in the answer:
    # counted, not estimated.
    prompt_tokens = len(tokenize(" ".join(str(m.get("content") or "") for m in messages)))
    yield Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=len(tokens),
        total_tokens=prompt_tokens + len(tokens),
    )
    yield Finish("stop")
