"""Observable plumbing between a transport and Python code.

- :func:`from_llm`, :func:`from_llm_events`, :func:`from_async_iterable`: cold sources.
- :func:`to_async_iterator`: back to ``async for``, bounded, cancellable.
- :func:`share_stream`: one request for several subscribers.
- :class:`AgentStream`: the result object of ``@agent(stream=True)``.
"""

from kagura.pipes.adapter import ObservableIterator, to_async_iterator
from kagura.pipes.share import share_stream
from kagura.pipes.source import from_async_iterable, from_llm, from_llm_events, text_deltas
from kagura.pipes.stream import AgentStream, StreamOutcome

__all__ = [
    "AgentStream",
    "ObservableIterator",
    "StreamOutcome",
    "from_async_iterable",
    "from_llm",
    "from_llm_events",
    "share_stream",
    "text_deltas",
    "to_async_iterator",
]
