# Written by `python -m kagura._exports` from _EXPORTS in __init__.py: do not edit.
# Type checkers read this stub; at run time __init__.py imports each name on first use.

from kagura import errors as errors
from kagura import operators as operators
from kagura import pipes as pipes
from kagura import relay as relay
from kagura import testing as testing
from kagura._redact import redact as redact
from kagura._redact import remember_secret as remember_secret
from kagura.agents.decorator import Agent as Agent
from kagura.agents.decorator import StreamingAgent as StreamingAgent
from kagura.agents.decorator import agent as agent
from kagura.agents.memory import ConversationMemory as ConversationMemory
from kagura.agents.tools import Tool as Tool
from kagura.agents.tools import tool as tool
from kagura.errors import AuthError as AuthError
from kagura.errors import ConfigError as ConfigError
from kagura.errors import ContentFilterError as ContentFilterError
from kagura.errors import EntriesTrimmed as EntriesTrimmed
from kagura.errors import FirstTokenTimeout as FirstTokenTimeout
from kagura.errors import IdleTimeout as IdleTimeout
from kagura.errors import KaguraError as KaguraError
from kagura.errors import LLMError as LLMError
from kagura.errors import ParseError as ParseError
from kagura.errors import ProducerLost as ProducerLost
from kagura.errors import RelayError as RelayError
from kagura.errors import RelayUnavailable as RelayUnavailable
from kagura.errors import StreamError as StreamError
from kagura.errors import StreamNotFound as StreamNotFound
from kagura.errors import ToolLoopError as ToolLoopError
from kagura.events import Finish as Finish
from kagura.events import ReasoningDelta as ReasoningDelta
from kagura.events import StreamEvent as StreamEvent
from kagura.events import TextDelta as TextDelta
from kagura.events import ToolCall as ToolCall
from kagura.events import ToolCallDelta as ToolCallDelta
from kagura.events import ToolResult as ToolResult
from kagura.events import Usage as Usage
from kagura.llm.call import call_llm as call_llm
from kagura.llm.config import LLMConfig as LLMConfig
from kagura.llm.metrics import StreamMetrics as StreamMetrics
from kagura.llm.streaming import call_llm_stream as call_llm_stream
from kagura.llm.streaming import stream_events as stream_events
from kagura.llm.streaming import stream_to_string as stream_to_string
from kagura.operators._partial import Partial as Partial
from kagura.pipes import AgentStream as AgentStream
from kagura.pipes import from_llm as from_llm
from kagura.pipes import from_llm_events as from_llm_events
from kagura.pipes import to_async_iterator as to_async_iterator

__version__: str

__all__ = [
    "Agent",
    "AgentStream",
    "AuthError",
    "ConfigError",
    "ContentFilterError",
    "ConversationMemory",
    "EntriesTrimmed",
    "Finish",
    "FirstTokenTimeout",
    "IdleTimeout",
    "KaguraError",
    "LLMConfig",
    "LLMError",
    "ParseError",
    "Partial",
    "ProducerLost",
    "ReasoningDelta",
    "RelayError",
    "RelayUnavailable",
    "StreamError",
    "StreamEvent",
    "StreamMetrics",
    "StreamNotFound",
    "StreamingAgent",
    "TextDelta",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolLoopError",
    "ToolResult",
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
    "relay",
    "remember_secret",
    "stream_events",
    "stream_to_string",
    "testing",
    "to_async_iterator",
    "tool",
]
