"""kagura over Server-Sent Events: an answer token by token, and a structured object growing.

Run it from the repository root, then open http://127.0.0.1:8000::

    python -m examples.web.app          # or: uvicorn examples.web.app:app

With no key set it uses the offline model ``kagura/replay`` (the recipe is a canned
JSON document, streamed word by word). ``OPENAI_API_KEY`` (and optionally
``KAGURA_MODEL``, ``KAGURA_API_BASE``) switches to a real model.

Routes:

- ``GET /``: the page (``index.html``: plain HTML and a little JavaScript).
- ``GET /api/answer?prompt=...``: the answer as ``delta`` events, then ``usage``, ``done``.
- ``GET /api/recipe?dish=...``: a :class:`Recipe` as ``partial`` events from
  ``parse_model(Recipe, partial=True)``, then ``usage``, ``done``.
- ``GET /api/info``: which model the app uses.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from kagura import AgentStream, LLMConfig
from kagura.operators import parse_model
from kagura.web import sse_response

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


# What kagura/replay streams for /api/recipe when no real model is configured.
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


def create_app(
    *, model: str | None = None, tokens_per_s: float = 30.0, ttft: float = 0.3
) -> Starlette:
    """The demo app; ``tokens_per_s`` and ``ttft`` pace the offline model."""
    config = LLMConfig(
        model=model or default_model(), api_base=os.environ.get("KAGURA_API_BASE") or None
    )
    # The offline model's pacing (and, below, its canned answer): a real model never gets
    # these arguments, kagura drops them from its requests.
    pace: dict[str, Any] = {"ttft": ttft, "tokens_per_s": tokens_per_s}

    async def index(request: Request) -> Response:
        return FileResponse(PAGE, media_type="text/html")

    async def info(request: Request) -> Response:
        return JSONResponse({"model": config.model, "offline": config.is_offline})

    async def answer(request: Request) -> Response:
        prompt = request.query_params.get("prompt") or DEFAULT_PROMPT
        return sse_response(AgentStream.from_llm(prompt, config, **pace))

    async def recipe(request: Request) -> Response:
        dish = request.query_params.get("dish") or "pancakes"
        messages = [
            {
                "role": "system",
                "content": "Answer with one JSON object, and nothing else, matching this "
                f"JSON schema: {json.dumps(Recipe.model_json_schema())}",
            },
            {"role": "user", "content": f"A recipe for {dish}."},
        ]
        stream = AgentStream.from_llm(
            messages,
            config,
            pipeline=parse_model(Recipe, partial=True),
            replay_text=RECIPE_JSON,
            **pace,
        )
        return sse_response(stream)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/info", info),
            Route("/api/answer", answer),
            Route("/api/recipe", recipe),
        ]
    )


app = create_app()

if __name__ == "__main__":
    import uvicorn

    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    print(f"kagura web demo on http://{host}:{port} (model {default_model()})")
    uvicorn.run(app, host=host, port=port, log_level="warning")
