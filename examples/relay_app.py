"""Resumable answers served by any number of workers: kagura.relay behind Starlette.

Every worker runs this app on the same Redis; an answer started on one can be read, and
resumed at the exact event, on any other::

    export KAGURA_REDIS_URL=redis://localhost:6379/0   # without it: one process, in memory
    uvicorn examples.relay_app:app --port 8001 &
    uvicorn examples.relay_app:app --port 8002 &
    curl -s -X POST localhost:8001/answers -d '{"prompt": "Tell me a story."}'
    # {"stream": "<id>"}: follow it from either worker, with an EventSource or:
    curl -sN localhost:8002/answers/<id>
    curl -sN localhost:8002/answers/<id> -H 'Last-Event-ID: <an id: line seen>'
    curl -s -X POST localhost:8002/answers/<id>/stop   # whichever worker runs it stops

The model is ``$KAGURA_MODEL`` (default ``kagura/replay``, offline), at
``$KAGURA_API_BASE`` if set.

Routes:

- ``POST /answers`` with ``{"prompt": ...}``: starts the answer through the relay,
  detached from the request; ``{"stream": <id>}``.
- ``GET /answers/<id>``: the answer as Server-Sent Events (``delta``, ``usage``,
  ``done``), each with its event id; ``Last-Event-ID`` (or ``?after=``) continues after it.
- ``POST /answers/<id>/stop``: asks the answer's producer, on whichever worker, to stop
  (closing its LLM request); its readers get the text so far and a ``usage`` event whose
  ``finish_reason`` is ``"stopped"``. ``{"stopped": true}``, or false if it was not running.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kagura import AgentStream, LLMConfig
from kagura.errors import ConfigError
from kagura.relay import MemoryRelay, RedisRelay, Relay, new_stream_id
from kagura.web import publish_stream, relay_response


def create_app(*, relay: Relay | None = None, config: LLMConfig | None = None) -> Starlette:
    """The app; ``relay`` defaults to Redis at ``$KAGURA_REDIS_URL``, else memory."""
    url = os.environ.get("KAGURA_REDIS_URL")
    streams = relay or (RedisRelay(url) if url else MemoryRelay())
    llm = config or LLMConfig(
        model=os.environ.get("KAGURA_MODEL") or "kagura/replay",
        api_base=os.environ.get("KAGURA_API_BASE") or None,
    )

    async def ask(request: Request) -> Response:
        body: Any = await request.json()
        prompt = body.get("prompt") if isinstance(body, dict) else None
        if not isinstance(prompt, str) or not prompt:
            return JSONResponse({"error": "the body is {'prompt': '...'}"}, status_code=400)
        stream_id = new_stream_id()
        await publish_stream(streams, stream_id, AgentStream.from_llm(prompt, llm))
        return JSONResponse({"stream": stream_id})

    async def answer(request: Request) -> Response:
        return await relay_response(streams, request.path_params["stream_id"], request)

    async def stop(request: Request) -> Response:
        try:
            stopped = await streams.stop(request.path_params["stream_id"])
        except ConfigError as exc:  # not a stream id
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"stopped": stopped})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await streams.aclose()  # its running answers stop: their readers see ProducerLost

    return Starlette(
        routes=[
            Route("/answers", ask, methods=["POST"]),
            Route("/answers/{stream_id}", answer),
            Route("/answers/{stream_id}/stop", stop, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


app = create_app()
