"""The seed's path for ``call_llm_stream``; it lives in :mod:`kagura.llm.streaming`.

>>> from kagura.core.streaming import call_llm_stream
>>> import kagura
>>> call_llm_stream is kagura.call_llm_stream
True
"""

from kagura.llm.streaming import call_llm_stream, stream_events, stream_to_string

__all__ = ["call_llm_stream", "stream_events", "stream_to_string"]
