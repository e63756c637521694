"""Import litellm on first use, configured for kagura.

``import litellm`` takes seconds and a lot of memory (the cold-start table of
``docs/en/guides/performance-streaming.md``; ``make bench``), and without
``LITELLM_LOCAL_MODEL_COST_MAP=True`` it first fetches a cost map over the
network. ``import kagura`` therefore never imports it; the first call does,
with the local cost map, per-chunk streaming logging off (what that saves depends
on litellm's version: the same page) unless ``KAGURA_LITELLM_LOGGING=1``, and
kagura's offline models registered as a custom provider.
"""

from __future__ import annotations

import importlib
import os
import threading
from typing import Any

__all__ = ["load_litellm"]

_lock = threading.Lock()
_module: Any = None


def load_litellm() -> Any:
    """Return the litellm module (typed Any: litellm ships no usable types), configured once."""
    global _module
    if _module is not None:
        return _module
    with _lock:
        if _module is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            litellm: Any = importlib.import_module("litellm")
            litellm.suppress_debug_info = True
            litellm.telemetry = False
            if os.environ.get("KAGURA_LITELLM_LOGGING", "") not in ("1", "true", "True"):
                litellm.disable_streaming_logging = True
            from kagura.llm.transports.offline_litellm import register_offline_provider

            register_offline_provider(litellm)
            _module = litellm
    return _module
