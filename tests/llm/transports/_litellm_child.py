"""Answers through kagura's litellm transport, in a process of their own.

``python _litellm_child.py '<json: {"config": {...}, "prompts": ["...", ...]}>'`` makes
one streamed call per prompt, in turn, and prints each answer as one JSON line: text, tool
calls and usage. The Gemini tests use it for litellm, the reference: litellm's Gemini path leaves
connections to be collected at some later point, which in the test process would fail
whichever test was running then.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from kagura.events import TextDelta
from kagura.llm.config import LLMConfig
from kagura.llm.metrics import StreamMetrics
from kagura.llm.streaming import stream_events


async def answer(config: LLMConfig, prompt: str) -> dict[str, Any]:
    metrics = StreamMetrics()
    events = [e async for e in stream_events(prompt, config, metrics=metrics)]
    usage = metrics.usage
    return {
        "text": "".join(e.text for e in events if isinstance(e, TextDelta)),
        "calls": [[c.name, json.loads(c.arguments)] for c in metrics.tool_calls],
        "usage": None
        if usage is None
        else [usage.prompt_tokens, usage.completion_tokens, usage.total_tokens],
    }


async def main(args: dict[str, Any]) -> None:
    config = LLMConfig(**args["config"])
    for prompt in args["prompts"]:
        print(json.dumps(await answer(config, prompt)), flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
