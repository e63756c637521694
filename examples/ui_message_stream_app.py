"""kagura behind the AI SDK's ``useChat``: a FastAPI app that speaks its UI message stream.

Run it from the repository root::

    python -m examples.ui_message_stream_app   # or: uvicorn examples.ui_message_stream_app:app

then point a React app's ``useChat`` at it (``docs/en/ui.md``, "The AI SDK's useChat").
With no key set it uses the offline model ``kagura/replay`` (canned answers, streamed word
by word); ``OPENAI_API_KEY`` (and optionally ``KAGURA_MODEL``, ``KAGURA_API_BASE``)
switches to a real model, which can call the weather tool.

Routes, each a POST of the body ``DefaultChatTransport`` sends:

- ``/api/chat``: the conversation answered by the model with a ``get_weather`` tool: text,
  reasoning (if the model thinks aloud) and, for each call, a ``tool-get_weather`` part
  with its input and output.
- ``/api/recipe``: a :class:`Recipe` as one ``data-recipe`` part, replaced by each partial
  object from ``parse_model(Recipe, partial=True)`` until it is complete.

An invalid body is answered 400 with what is wrong.
"""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sse_starlette import EventSourceResponse

from kagura import AgentStream, LLMConfig, StreamMetrics
from kagura.agents.tools import as_tools, stream_with_tools
from kagura.errors import ConfigError
from kagura.llm.request import prepare_request
from kagura.operators import parse_model
from kagura.pipes import from_async_iterable
from kagura.web import messages_from_ui, ui_message_stream_response


class Recipe(BaseModel):
    title: str
    minutes: int
    steps: list[str]


# What kagura/replay streams when no real model is configured.
CHAT_ANSWER = "I run offline, so I cannot look the weather up; set OPENAI_API_KEY for that."
RECIPE_JSON = json.dumps(
    {
        "title": "Green tea",
        "minutes": 5,
        "steps": ["Boil the water", "Let it cool to 80 degrees", "Steep for three minutes"],
    },
    indent=2,
)


def get_weather(city: str) -> str:
    """The current weather in a city.

    Args:
        city: The city's name, e.g. "Oslo".
    """
    return f"sunny and 21 degrees in {city}"  # a real app asks a weather service


def default_model() -> str:
    """``$KAGURA_MODEL``, else gpt-4o-mini with ``OPENAI_API_KEY``, else offline."""
    if os.environ.get("KAGURA_MODEL"):
        return os.environ["KAGURA_MODEL"]
    return "gpt-4o-mini" if os.environ.get("OPENAI_API_KEY") else "kagura/replay"


def create_app(config: LLMConfig | None = None) -> FastAPI:
    """The app, answering with ``config`` (default: :func:`default_model`)."""
    llm = config or LLMConfig(
        model=default_model(), api_base=os.environ.get("KAGURA_API_BASE") or None
    )
    tools = as_tools([get_weather])
    app = FastAPI()

    @app.exception_handler(ConfigError)
    async def bad_request(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.post("/api/chat")
    async def chat(request: Request) -> EventSourceResponse:
        messages = messages_from_ui(await request.body())
        # The tool loop as an AgentStream: it runs the calls the model makes, and the
        # response shows each call and its result. (An @agent with tools= does the same
        # for a prompt template.)
        chat_request = prepare_request(messages, llm, {"replay_text": CHAT_ANSWER})
        metrics = StreamMetrics()
        events = from_async_iterable(
            lambda: stream_with_tools(chat_request, tools, metrics=metrics)
        )
        return ui_message_stream_response(AgentStream.from_events(events, metrics=metrics))

    @app.post("/api/recipe")
    async def recipe(request: Request) -> EventSourceResponse:
        messages: list[dict[str, Any]] = [
            {
                "role": "system",
                "content": "Answer with one JSON object, and nothing else, matching this "
                f"JSON schema: {json.dumps(Recipe.model_json_schema())}",
            },
            *messages_from_ui(await request.body()),
        ]
        stream = AgentStream.from_llm(
            messages,
            llm,
            pipeline=parse_model(Recipe, partial=True),
            replay_text=RECIPE_JSON,
        )
        return ui_message_stream_response(stream)

    return app


app = create_app()

if __name__ == "__main__":
    import uvicorn

    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    print(f"kagura's useChat backend on http://{host}:{port} (model {default_model()})")
    uvicorn.run(app, host=host, port=port, log_level="warning")
