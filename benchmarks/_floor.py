"""The floor every benchmark compares with: a bare httpx loop reading SSE text deltas."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any


async def raw_httpx_texts(client: Any, url: str, *, model: str, prompt: str) -> AsyncIterator[str]:
    """POST a streamed chat request with ``client`` (an httpx.AsyncClient) and yield the text.

    ``aiter_lines`` + ``json.loads``: what a careful user writes with httpx alone.
    """
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with client.stream("POST", url, json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            for choice in json.loads(data).get("choices") or ():
                content = (choice.get("delta") or {}).get("content")
                if content:
                    yield content
