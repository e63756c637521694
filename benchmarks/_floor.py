"""The floors every benchmark compares with: bare loops reading SSE text deltas.

Two clients a careful user might write without kagura, doing the same work: POST
the request, split the body into lines, ``json.loads`` each ``data:`` line, pick
``choices[*].delta.content``, stop at ``[DONE]``. One over httpx (``aiter_lines``),
one over aiohttp (``async for line in resp.content``), the library kagura's direct
transport stands on.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any


def _body(model: str, prompt: str) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def raw_httpx_texts(client: Any, url: str, *, model: str, prompt: str) -> AsyncIterator[str]:
    """POST a streamed chat request with ``client`` (an httpx.AsyncClient) and yield the text.

    ``aiter_lines`` + ``json.loads``: what a careful user writes with httpx alone.
    """
    async with client.stream("POST", url, json=_body(model, prompt)) as response:
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


async def raw_aiohttp_texts(
    session: Any, url: str, *, model: str, prompt: str
) -> AsyncIterator[str]:
    """POST a streamed chat request with ``session`` (an aiohttp.ClientSession); yield the text.

    ``async for line in resp.content`` + ``json.loads``: what a careful user writes with
    aiohttp alone (lines arrive as bytes, which ``json.loads`` takes as they are).
    """
    async with session.post(url, json=_body(model, prompt)) as response:
        async for line in response.content:
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            for choice in json.loads(data).get("choices") or ():
                content = (choice.get("delta") or {}).get("content")
                if content:
                    yield content


async def openai_sdk_texts(sdk: Any, *, model: str, prompt: str) -> AsyncIterator[str]:
    """The openai SDK as users stream with it: ``create(stream=True)``, each delta's text."""
    stream = await sdk.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    )
    async with stream:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content
