"""kagura: stream LLM output as reactive pipelines.

>>> import asyncio, kagura
>>> async def main():
...     config = kagura.LLMConfig(model="kagura/echo")
...     return [chunk async for chunk in kagura.call_llm_stream("Hello, stream.", config)]
>>> asyncio.run(main())
['Hello, ', 'stream.']

``import kagura`` is cheap: names load on first use, and litellm is imported
only by the first call that needs it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that defines it, loaded on first access (a submodule maps to
# itself). This table is the export list: __all__ below and, for type checkers,
# __init__.pyi, which `python -m kagura._exports` writes from it.
_EXPORTS: dict[str, str] = {
    "errors": "kagura.errors",
    "operators": "kagura.operators",
    "pipes": "kagura.pipes",
    "relay": "kagura.relay",
    "testing": "kagura.testing",
    "LLMConfig": "kagura.llm.config",
    "call_llm": "kagura.llm.call",
    "call_llm_stream": "kagura.llm.streaming",
    "stream_events": "kagura.llm.streaming",
    "stream_to_string": "kagura.llm.streaming",
    "StreamMetrics": "kagura.llm.metrics",
    "AgentStream": "kagura.pipes",
    "Partial": "kagura.operators._partial",
    "from_llm": "kagura.pipes",
    "from_llm_events": "kagura.pipes",
    "to_async_iterator": "kagura.pipes",
    "Finish": "kagura.events",
    "ReasoningDelta": "kagura.events",
    "StreamEvent": "kagura.events",
    "TextDelta": "kagura.events",
    "ToolCall": "kagura.events",
    "ToolCallDelta": "kagura.events",
    "ToolResult": "kagura.events",
    "Usage": "kagura.events",
    "AuthError": "kagura.errors",
    "ConfigError": "kagura.errors",
    "ContentFilterError": "kagura.errors",
    "FirstTokenTimeout": "kagura.errors",
    "IdleTimeout": "kagura.errors",
    "KaguraError": "kagura.errors",
    "LLMError": "kagura.errors",
    "ParseError": "kagura.errors",
    "ProducerLost": "kagura.errors",
    "RelayError": "kagura.errors",
    "RelayUnavailable": "kagura.errors",
    "EntriesTrimmed": "kagura.errors",
    "StreamNotFound": "kagura.errors",
    "StreamError": "kagura.errors",
    "ToolLoopError": "kagura.errors",
    "agent": "kagura.agents.decorator",
    "Agent": "kagura.agents.decorator",
    "StreamingAgent": "kagura.agents.decorator",
    "ConversationMemory": "kagura.agents.memory",
    "Tool": "kagura.agents.tools",
    "tool": "kagura.agents.tools",
    "redact": "kagura._redact",
    "remember_secret": "kagura._redact",
}

# Built from the table, so pyright cannot read it here; it reads the stub's list instead.
__all__ = [*_EXPORTS, "__version__"]  # pyright: ignore[reportUnsupportedDunderAll]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kagura' has no attribute {name!r}")
    value: Any = importlib.import_module(module)
    if module != f"kagura.{name}":  # a name defined in that module, not the module itself
        value = getattr(value, name)
        globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
