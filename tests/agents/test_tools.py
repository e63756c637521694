"""Tools: schemas from signatures and docstrings, running calls, the tool loop over real HTTP."""

from __future__ import annotations

import asyncio
import threading
from contextlib import aclosing
from typing import Any

import pytest
from pydantic import BaseModel

from kagura.agents.tools import (
    Tool,
    ToolLoopError,
    as_tools,
    complete_with_tools,
    execute_tool_call,
    parse_docstring,
    stream_with_tools,
    tool,
)
from kagura.errors import ConfigError, LLMError
from kagura.events import Finish, TextDelta, ToolCall, ToolCallDelta, Usage
from kagura.llm.config import LLMConfig
from kagura.llm.metrics import StreamMetrics
from kagura.llm.request import prepare_request
from kagura.testing.loopback import LoopbackServer, Script, ScriptedToolCall


class Location(BaseModel):
    city: str
    country: str = "UK"


def get_weather(city: str, units: str = "c") -> str:
    """Current weather in a city.

    Args:
        city: The city's name.
        units: "c" or "f",
            Celsius by default.

    Returns:
        A short report.
    """
    return f"12{units} in {city}"


async def get_stock_price(ticker: str, exchange: str) -> dict[str, Any]:
    """The last price of a stock.

    :param ticker: The ticker symbol.
    :param exchange: Where it trades.
    :returns: the price.
    """
    await asyncio.sleep(0)
    return {"ticker": ticker, "exchange": exchange, "price": 187.5}


def find(location: Location, limit: int = 3) -> list[str]:
    """Find places.

    Parameters
    ----------
    location : Location
        Where to look.
    limit : int
        How many.
    """
    return [f"{location.city}-{i}" for i in range(limit)]


def test_schema_from_google_docstring() -> None:
    weather = Tool.from_function(get_weather)
    assert weather.definition() == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city's name."},
                    "units": {
                        "type": "string",
                        "description": '"c" or "f", Celsius by default.',
                        "default": "c",
                    },
                },
                "required": ["city"],
            },
        },
    }


def test_schema_from_rest_and_numpy_docstrings() -> None:
    stock = Tool.from_function(get_stock_price)
    assert stock.description == "The last price of a stock."
    assert stock.parameters["properties"]["exchange"]["description"] == "Where it trades."
    assert stock.parameters["required"] == ["ticker", "exchange"]
    places = Tool.from_function(find)
    assert places.description == "Find places."
    assert places.parameters["properties"]["limit"] == {
        "type": "integer",
        "description": "How many.",
        "default": 3,
    }
    location = places.parameters["properties"]["location"]
    assert location["description"] == "Where to look."
    assert "Location" in places.parameters["$defs"]


def test_parse_docstring_without_sections() -> None:
    assert parse_docstring("Just a summary.\n\nMore text.") == ("Just a summary.\n\nMore text.", {})
    assert parse_docstring(None) == ("", {})


def test_undocumented_and_unannotated_parameters() -> None:
    def anything(x, y: int = 1):  # type: ignore[no-untyped-def] (missing annotations are the test)
        return x

    schema = Tool.from_function(anything).parameters  # pyright: ignore[reportUnknownArgumentType]
    assert schema["required"] == ["x"]
    assert schema["properties"]["y"] == {"type": "integer", "default": 1}
    assert Tool.from_function(anything).description == ""  # pyright: ignore[reportUnknownArgumentType]


def test_bad_tools_are_config_errors() -> None:
    def variadic(*args: int) -> int:
        return sum(args)

    with pytest.raises(ConfigError, match=r"\*args"):
        Tool.from_function(variadic)
    with pytest.raises(ConfigError, match="tool name"):
        Tool.from_function(get_weather, name="get weather!")
    with pytest.raises(ConfigError, match="share the name 'get_weather'"):
        as_tools([get_weather, tool(find, name="get_weather")])


def test_tool_decorator_forms() -> None:
    plain = tool(get_weather)
    renamed = tool(name="weather", description="Weather now.")(get_weather)
    assert (plain.name, renamed.name, renamed.description) == (
        "get_weather",
        "weather",
        "Weather now.",
    )
    assert renamed("Oslo") == "12c in Oslo"
    assert as_tools([plain, find])[1].name == "find"


def call(name: str, arguments: str) -> ToolCall:
    return ToolCall(id="call_1", name=name, arguments=arguments)


async def test_execute_sync_tool_in_a_worker_thread() -> None:
    seen: list[int] = []

    def where() -> str:
        """Which thread runs me."""
        seen.append(threading.get_ident())
        return "ok"

    result = await execute_tool_call(call("where", ""), {"where": Tool.from_function(where)})
    assert result == "ok"
    assert seen != [threading.get_ident()]


async def test_execute_async_tool_and_serialize_its_result() -> None:
    tools = {t.name: t for t in as_tools([get_stock_price, find])}
    result = await execute_tool_call(
        call("get_stock_price", '{"ticker": "AAPL", "exchange": "NASDAQ"}'), tools
    )
    assert result == '{"ticker":"AAPL","exchange":"NASDAQ","price":187.5}'
    result = await execute_tool_call(
        call("find", '{"location": {"city": "Oslo"}, "limit": 2}'), tools
    )
    assert result == '["Oslo-0","Oslo-1"]'


async def test_positional_only_parameters() -> None:
    def power(base: int, /, exponent: int = 2) -> int:
        """Raise to a power."""
        return base**exponent

    assert (
        await execute_tool_call(call("power", '{"base": 3}'), {"power": Tool.from_function(power)})
        == "9"
    )


async def test_failures_become_the_tool_result() -> None:
    def broken(city: str) -> str:
        """Always fails."""
        raise ValueError(f"no weather for {city}")

    tools = {t.name: t for t in as_tools([broken, get_weather])}
    assert await execute_tool_call(call("broken", '{"city": "Oz"}'), tools) == (
        "Error: ValueError: no weather for Oz"
    )
    assert await execute_tool_call(call("nope", "{}"), tools) == (
        "Error: unknown tool 'nope' (available tools: broken, get_weather)"
    )
    bad_json = await execute_tool_call(call("get_weather", '{"city": '), tools)
    assert bad_json.startswith("Error: invalid arguments for get_weather: arguments: Invalid JSON")
    wrong_type = await execute_tool_call(call("get_weather", '{"city": ["a"]}'), tools)
    assert (
        wrong_type
        == "Error: invalid arguments for get_weather: city: Input should be a valid string"
    )


# -- the loop over real HTTP --------------------------------------------------------------------
def weather_round(city: str = "Oslo", **options: Any) -> Script:
    return Script.tools(ScriptedToolCall.of("get_weather", {"city": city}, id="call_w1"), **options)


async def test_complete_with_tools(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(weather_round(), Script.text("It is 12c in Oslo."))
    request = prepare_request("Weather in Oslo?", loopback_config, {})
    completion = await complete_with_tools(request, as_tools([get_weather]))
    assert completion.text == "It is 12c in Oslo."
    assert [c.name for c in completion.tool_calls] == ["get_weather"]
    first, second = (r.body for r in loopback.requests)
    assert first["tools"][0]["function"]["name"] == "get_weather"
    assert second["messages"][1]["tool_calls"][0]["id"] == "call_w1"
    assert second["messages"][2] == {
        "role": "tool",
        "tool_call_id": "call_w1",
        "content": "12c in Oslo",
    }


async def test_complete_with_tools_bounded(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(weather_round(), weather_round("Rome"))
    request = prepare_request("Weather?", loopback_config, {})
    with pytest.raises(ToolLoopError, match=r"get_weather.*after 1 round") as info:
        await complete_with_tools(request, as_tools([get_weather]), max_rounds=1)
    assert info.value.rounds == 1
    assert len(info.value.tool_calls) == 2
    assert len(loopback.requests) == 2


async def test_stream_with_tools_events_and_metrics(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(
        weather_round(content=["Let me check. "]),
        Script.text(
            "Sunny.", usage={"prompt_tokens": 30, "completion_tokens": 2, "total_tokens": 32}
        ),
    )
    request = prepare_request("Weather?", loopback_config, {})
    metrics = StreamMetrics()
    events = [e async for e in stream_with_tools(request, as_tools([get_weather]), metrics=metrics)]
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "Let me check. Sunny."
    assert any(isinstance(e, ToolCallDelta) for e in events)
    assert [e.reason for e in events if isinstance(e, Finish)] == ["tool_calls", "stop"]
    assert sum(isinstance(e, Usage) for e in events) == 2
    assert metrics.chars == len(text)
    assert metrics.finish_reason == "stop"
    assert [c.id for c in metrics.tool_calls] == ["call_w1"]
    assert metrics.usage is not None
    assert metrics.usage.completion_tokens > 2  # both rounds counted
    assert metrics.ttft_s is not None
    assert metrics.duration_s is not None


async def test_stream_with_tools_error_carries_all_text(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(weather_round(content=["Checking. "]), Script.text("Sunny and", drop_after=1))
    request = prepare_request("Weather?", loopback_config, {})

    async def drain() -> None:
        async with aclosing(stream_with_tools(request, as_tools([get_weather]))) as events:
            async for _ in events:
                pass

    with pytest.raises(LLMError) as info:
        await drain()
    assert info.value.partial_text.startswith("Checking. Sunn")
    assert info.value.__cause__ is not None or info.value.__context__ is not None


async def test_stream_with_tools_yields_each_call_before_it_runs_and_its_result(
    loopback: LoopbackServer,
) -> None:
    from kagura.events import ToolResult

    config = LLMConfig(
        model="openai/x", api_base=loopback.base_url, api_key="sk-test-0123456789", max_retries=0
    )
    loopback.enqueue(weather_round(), Script.text("Sunny."))
    request = prepare_request("Weather?", config, {})
    events = [e async for e in stream_with_tools(request, as_tools([get_weather]))]
    loop = [e for e in events if isinstance(e, ToolCall | ToolResult)]
    assert loop == [
        ToolCall("call_w1", "get_weather", '{"city": "Oslo"}'),
        ToolResult("call_w1", "get_weather", "12c in Oslo"),
    ]
    first_text = next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    assert events.index(loop[1]) < first_text  # the result before the next round's answer
