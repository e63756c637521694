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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kagura import errors as errors
    from kagura import operators as operators
    from kagura import pipes as pipes
    from kagura import testing as testing
    from kagura.core.config import LLMConfig as LLMConfig
    from kagura.core.decorators import Agent as Agent
    from kagura.core.decorators import StreamingAgent as StreamingAgent
    from kagura.core.decorators import agent as agent
    from kagura.core.events import (
        Finish as Finish,
    )
    from kagura.core.events import (
        StreamEvent as StreamEvent,
    )
    from kagura.core.events import (
        TextDelta as TextDelta,
    )
    from kagura.core.events import (
        ToolCall as ToolCall,
    )
    from kagura.core.events import (
        ToolCallDelta as ToolCallDelta,
    )
    from kagura.core.events import (
        Usage as Usage,
    )
    from kagura.core.llm import call_llm as call_llm
    from kagura.core.memory import ConversationMemory as ConversationMemory
    from kagura.core.metrics import StreamMetrics as StreamMetrics
    from kagura.core.streaming import call_llm_stream as call_llm_stream
    from kagura.core.streaming import stream_events as stream_events
    from kagura.core.streaming import stream_to_string as stream_to_string
    from kagura.core.tools import Tool as Tool
    from kagura.core.tools import ToolLoopError as ToolLoopError
    from kagura.core.tools import tool as tool
    from kagura.errors import (
        AuthError as AuthError,
    )
    from kagura.errors import (
        ConfigError as ConfigError,
    )
    from kagura.errors import (
        FirstTokenTimeout as FirstTokenTimeout,
    )
    from kagura.errors import (
        IdleTimeout as IdleTimeout,
    )
    from kagura.errors import (
        KaguraError as KaguraError,
    )
    from kagura.errors import (
        LLMError as LLMError,
    )
    from kagura.errors import (
        ParseError as ParseError,
    )
    from kagura.errors import (
        StreamError as StreamError,
    )
    from kagura.pipes import AgentStream as AgentStream
    from kagura.pipes import from_llm as from_llm
    from kagura.pipes import from_llm_events as from_llm_events
    from kagura.pipes import to_async_iterator as to_async_iterator

__version__ = "0.1.0"

# public name -> module that defines it (loaded on first access)
_EXPORTS: dict[str, str] = {
    "LLMConfig": "kagura.core.config",
    "call_llm": "kagura.core.llm",
    "call_llm_stream": "kagura.core.streaming",
    "stream_events": "kagura.core.streaming",
    "stream_to_string": "kagura.core.streaming",
    "StreamMetrics": "kagura.core.metrics",
    "AgentStream": "kagura.pipes",
    "from_llm": "kagura.pipes",
    "from_llm_events": "kagura.pipes",
    "to_async_iterator": "kagura.pipes",
    "Finish": "kagura.core.events",
    "StreamEvent": "kagura.core.events",
    "TextDelta": "kagura.core.events",
    "ToolCall": "kagura.core.events",
    "ToolCallDelta": "kagura.core.events",
    "Usage": "kagura.core.events",
    "AuthError": "kagura.errors",
    "ConfigError": "kagura.errors",
    "FirstTokenTimeout": "kagura.errors",
    "IdleTimeout": "kagura.errors",
    "KaguraError": "kagura.errors",
    "LLMError": "kagura.errors",
    "ParseError": "kagura.errors",
    "StreamError": "kagura.errors",
    "agent": "kagura.core.decorators",
    "Agent": "kagura.core.decorators",
    "StreamingAgent": "kagura.core.decorators",
    "ConversationMemory": "kagura.core.memory",
    "Tool": "kagura.core.tools",
    "ToolLoopError": "kagura.core.tools",
    "tool": "kagura.core.tools",
}
_SUBMODULES = frozenset({"errors", "operators", "pipes", "testing"})

__all__ = [
    "Agent",
    "AgentStream",
    "AuthError",
    "ConfigError",
    "ConversationMemory",
    "Finish",
    "FirstTokenTimeout",
    "IdleTimeout",
    "KaguraError",
    "LLMConfig",
    "LLMError",
    "ParseError",
    "StreamError",
    "StreamEvent",
    "StreamMetrics",
    "StreamingAgent",
    "TextDelta",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolLoopError",
    "Usage",
    "__version__",
    "agent",
    "call_llm",
    "call_llm_stream",
    "errors",
    "from_llm",
    "from_llm_events",
    "operators",
    "pipes",
    "stream_events",
    "stream_to_string",
    "testing",
    "to_async_iterator",
    "tool",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"kagura.{name}")
    raise AttributeError(f"module 'kagura' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
