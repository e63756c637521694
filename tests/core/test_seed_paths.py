"""The seed's import paths still work: they re-export the names that moved."""

from __future__ import annotations

import kagura


def test_call_llm_stream_keeps_its_seed_path() -> None:
    from kagura.core.streaming import call_llm_stream

    assert call_llm_stream is kagura.call_llm_stream


def test_agent_keeps_its_seed_path() -> None:
    from kagura.core.decorators import agent

    assert agent is kagura.agent


async def test_the_seed_path_streams() -> None:
    from kagura.core.streaming import call_llm_stream

    chunks = [c async for c in call_llm_stream("one two", kagura.LLMConfig(model="kagura/echo"))]
    assert "".join(chunks) == "one two"
