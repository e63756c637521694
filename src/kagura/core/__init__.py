"""The seed's import paths, kept as thin re-exports.

``kagura.core.streaming.call_llm_stream`` and ``kagura.core.decorators.agent`` still work;
new code imports from :mod:`kagura` (or :mod:`kagura.llm`, :mod:`kagura.agents`).
"""
