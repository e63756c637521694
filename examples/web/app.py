"""kagura over Server-Sent Events: an answer token by token, and a structured object growing.

Run it from the repository root, then open http://127.0.0.1:8000::

    python -m examples.web.app          # or: uvicorn examples.web.app:app

With no key set it uses the offline model ``kagura/replay`` (the recipe is a canned
JSON document, streamed word by word). ``OPENAI_API_KEY`` (and optionally
``KAGURA_MODEL``, ``KAGURA_API_BASE``) switches to a real model.

Both answers go through a relay (:mod:`kagura.relay`): the page's URL names them
(``?stream=<id>``), so reloading it mid-answer, or opening the URL in a second tab,
shows the same answers from one LLM request each, and a dropped connection resumes at
the exact event (``EventSource`` sends ``Last-Event-ID``). The relay is in memory, or on
Redis with ``KAGURA_REDIS_URL`` (then any number of workers serve the same streams).

Routes:

- ``GET /``: the page (``index.html``: plain HTML and a little JavaScript).
- ``POST /api/streams`` with ``{"prompt": ..., "dish": ...}``: starts the answer and the
  recipe; ``{"stream": <id>}``.
- ``GET /api/answer/<id>``: the answer as ``delta`` events, then ``usage``, ``done``.
- ``GET /api/recipe/<id>``: a :class:`Recipe` as ``partial`` events from
  ``parse_model(Recipe, partial=True)``, then ``usage``, ``done``.
- ``POST /api/stop/<id>``: stops both, on whichever worker runs them (``relay.stop``).
- ``GET /api/info``: which model the app uses.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from kagura import AgentStream, LLMConfig, StreamMetrics
from kagura.errors import ConfigError
from kagura.operators import parse_model
from kagura.pipes import from_llm_events
from kagura.relay import MemoryRelay, RedisRelay, Relay, new_stream_id
from kagura.web import publish_stream, relay_response

PAGE = Path(__file__).with_name("index.html")
DEFAULT_PROMPT = "Tell me a short story about a dragon."


class Ingredient(BaseModel):
    name: str
    quantity: str


class Recipe(BaseModel):
    title: str
    servings: int
    minutes: int
    ingredients: list[Ingredient]
    steps: list[str]


# What kagura/replay streams for the recipe when no real model is configured.
RECIPE_JSON = json.dumps(
    {
        "title": "Fluffy buttermilk pancakes",
        "servings": 4,
        "minutes": 25,
        "ingredients": [
            {"name": "flour", "quantity": "200 g"},
            {"name": "buttermilk", "quantity": "300 ml"},
            {"name": "eggs", "quantity": "2"},
            {"name": "sugar", "quantity": "2 tbsp"},
            {"name": "baking powder", "quantity": "2 tsp"},
            {"name": "butter, melted", "quantity": "30 g"},
        ],
        "steps": [
            "Whisk the flour, sugar and baking powder in a large bowl.",
            "Beat the eggs into the buttermilk, then stir in the melted butter.",
            "Fold the wet mix into the dry one: a few lumps are fine.",
            "Cook ladlefuls on a hot buttered pan until bubbles pop, then flip.",
        ],
    },
    indent=2,
)


def default_model() -> str:
    """``$KAGURA_MODEL``, else gpt-4o-mini with ``OPENAI_API_KEY``, else offline."""
    if os.environ.get("KAGURA_MODEL"):
        return os.environ["KAGURA_MODEL"]
    return "gpt-4o-mini" if os.environ.get("OPENAI_API_KEY") else "kagura/replay"


def default_relay() -> Relay:
    """A :class:`RedisRelay` on ``$KAGURA_REDIS_URL``, else a :class:`MemoryRelay`."""
    url = os.environ.get("KAGURA_REDIS_URL")
    return RedisRelay(url) if url else MemoryRelay()


def recipe_id(stream_id: str) -> str:
    """The relay id of the recipe that goes with the answer ``stream_id``."""
    return f"{stream_id}-recipe"


def create_app(
    *,
    model: str | None = None,
    tokens_per_s: float = 30.0,
    ttft: float = 0.3,
    relay: Relay | None = None,
) -> Starlette:
    """The demo app; ``tokens_per_s`` and ``ttft`` pace the offline model.

    ``relay`` defaults to :func:`default_relay` (closed with the app).
    """
    config = LLMConfig(
        model=model or default_model(), api_base=os.environ.get("KAGURA_API_BASE") or None
    )
    # The offline model's pacing (and, below, its canned answer): a real model never gets
    # these arguments, kagura drops them from its requests.
    pace: dict[str, Any] = {"ttft": ttft, "tokens_per_s": tokens_per_s}
    own_relay = relay is None
    streams = default_relay() if relay is None else relay

    def llm_stream(prompt: Any, *pipeline: Any, **options: Any) -> AgentStream[Any]:
        """One LLM call as an AgentStream (with its metrics, for the usage event)."""
        metrics = StreamMetrics()
        events = from_llm_events(prompt, config, metrics=metrics, **pace, **options)
        return AgentStream.from_events(events, metrics=metrics, pipeline=pipeline)

    async def index(request: Request) -> Response:
        return FileResponse(PAGE, media_type="text/html")

    async def info(request: Request) -> Response:
        return JSONResponse({"model": config.model, "offline": config.is_offline})

    async def start(request: Request) -> Response:
        body: Any = await request.json()
        options = body if isinstance(body, dict) else {}
        prompt = str(options.get("prompt") or DEFAULT_PROMPT)
        dish = str(options.get("dish") or "pancakes")
        stream_id = new_stream_id()
        await publish_stream(streams, stream_id, llm_stream(prompt))
        messages = [
            {
                "role": "system",
                "content": "Answer with one JSON object, and nothing else, matching this "
                f"JSON schema: {json.dumps(Recipe.model_json_schema())}",
            },
            {"role": "user", "content": f"A recipe for {dish}."},
        ]
        recipe = llm_stream(messages, parse_model(Recipe, partial=True), replay_text=RECIPE_JSON)
        await publish_stream(streams, recipe_id(stream_id), recipe)
        return JSONResponse({"stream": stream_id})

    async def answer(request: Request) -> Response:
        return await relay_response(streams, request.path_params["stream_id"], request)

    async def recipe(request: Request) -> Response:
        stream_id = recipe_id(request.path_params["stream_id"])
        return await relay_response(streams, stream_id, request)

    async def stop(request: Request) -> Response:
        stream_id: str = request.path_params["stream_id"]
        try:  # the producers stop in whichever process runs them, closing their LLM requests
            for name in (stream_id, recipe_id(stream_id)):
                await streams.stop(name)
        except ConfigError as exc:  # not a stream id
            return JSONResponse({"error": str(exc)}, status_code=400)
        return Response(status_code=204)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if own_relay:
            await streams.aclose()

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/info", info),
            Route("/api/streams", start, methods=["POST"]),
            Route("/api/answer/{stream_id}", answer),
            Route("/api/recipe/{stream_id}", recipe),
            Route("/api/stop/{stream_id}", stop, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


app = create_app()

if __name__ == "__main__":
    import uvicorn

    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    print(f"kagura web demo on http://{host}:{port} (model {default_model()})")
    uvicorn.run(app, host=host, port=port, log_level="warning")
