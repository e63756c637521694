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
    from kagura._redact import redact as redact
    from kagura._redact import remember_secret as remember_secret
    from kagura.agents.decorator import Agent as Agent
    from kagura.agents.decorator import StreamingAgent as StreamingAgent
    from kagura.agents.decorator import agent as agent
    from kagura.agents.memory import ConversationMemory as ConversationMemory
    from kagura.agents.tools import Tool as Tool
    from kagura.agents.tools import tool as tool
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
    from kagura.errors import (
        ToolLoopError as ToolLoopError,
    )
    from kagura.events import (
        Finish as Finish,
    )
    from kagura.events import (
        StreamEvent as StreamEvent,
    )
    from kagura.events import (
        TextDelta as TextDelta,
    )
    from kagura.events import (
        ToolCall as ToolCall,
    )
    from kagura.events import (
        ToolCallDelta as ToolCallDelta,
    )
    from kagura.events import (
        Usage as Usage,
    )
    from kagura.llm.call import call_llm as call_llm
    from kagura.llm.config import LLMConfig as LLMConfig
    from kagura.llm.metrics import StreamMetrics as StreamMetrics
    from kagura.llm.streaming import call_llm_stream as call_llm_stream
    from kagura.llm.streaming import stream_events as stream_events
    from kagura.llm.streaming import stream_to_string as stream_to_string
    from kagura.pipes import AgentStream as AgentStream
    from kagura.pipes import from_llm as from_llm
    from kagura.pipes import from_llm_events as from_llm_events
    from kagura.pipes import to_async_iterator as to_async_iterator

__version__ = "0.1.0"

# public name -> module that defines it (loaded on first access)
_EXPORTS: dict[str, str] = {
    "LLMConfig": "kagura.llm.config",
    "call_llm": "kagura.llm.call",
    "call_llm_stream": "kagura.llm.streaming",
    "stream_events": "kagura.llm.streaming",
    "stream_to_string": "kagura.llm.streaming",
    "StreamMetrics": "kagura.llm.metrics",
    "AgentStream": "kagura.pipes",
    "from_llm": "kagura.pipes",
    "from_llm_events": "kagura.pipes",
    "to_async_iterator": "kagura.pipes",
    "Finish": "kagura.events",
    "StreamEvent": "kagura.events",
    "TextDelta": "kagura.events",
    "ToolCall": "kagura.events",
    "ToolCallDelta": "kagura.events",
    "Usage": "kagura.events",
    "AuthError": "kagura.errors",
    "ConfigError": "kagura.errors",
    "FirstTokenTimeout": "kagura.errors",
    "IdleTimeout": "kagura.errors",
    "KaguraError": "kagura.errors",
    "LLMError": "kagura.errors",
    "ParseError": "kagura.errors",
    "StreamError": "kagura.errors",
    "agent": "kagura.agents.decorator",
    "Agent": "kagura.agents.decorator",
    "StreamingAgent": "kagura.agents.decorator",
    "ConversationMemory": "kagura.agents.memory",
    "Tool": "kagura.agents.tools",
    "ToolLoopError": "kagura.errors",
    "redact": "kagura._redact",
    "remember_secret": "kagura._redact",
    "tool": "kagura.agents.tools",
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
    "redact",
    "remember_secret",
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
