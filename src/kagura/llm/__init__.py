"""The LLM layer: one call to a model, streamed or whole.

:class:`~kagura.llm.config.LLMConfig` says which model and how;
:mod:`kagura.llm.request` checks a call's arguments into a request;
:func:`~kagura.llm.call.call_llm` returns a whole answer (cached);
:func:`~kagura.llm.streaming.call_llm_stream` and :func:`~kagura.llm.streaming.stream_events`
stream it; :mod:`kagura.llm.transports` holds one module per wire protocol. OAuth2 token
providers are in :mod:`kagura.llm.oauth`, the answer cache in :mod:`kagura.llm.cache`.

This layer imports nothing above it (pipes, operators, agents, web, cli, testing).
"""
