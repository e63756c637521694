"""The SSE demo page (examples/web) in a real headless Chromium, driven by playwright.

Uses Debian's chromium (``/usr/bin/chromium``); playwright never downloads a browser.
Skipped, saying how to install it, when that browser is missing.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from _live_server import serve
from kagura.llm.transports.offline import BUNDLED_STORY
from kagura.testing.loopback import LoopbackServer, Script

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
]
DEMO_APP = Path(__file__).resolve().parents[1] / "examples" / "web" / "app.py"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"no Chromium at {CHROMIUM}: install it with `apt-get install chromium` "
    "(or `make browser`) to run the browser tests",
)


def load_demo() -> ModuleType:
    """examples/web/app.py, imported from its path (examples/ is not a package on sys.path)."""
    spec = importlib.util.spec_from_file_location("kagura_web_demo", DEMO_APP)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the models' annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo() -> ModuleType:
    return load_demo()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=30_000
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        context.close()


def test_the_page_streams_text_and_a_growing_object(page: Page, demo: ModuleType) -> None:
    app = demo.create_app(model="kagura/replay", tokens_per_s=30, ttft=0.1)
    with serve(app) as base_url:
        page.goto(base_url)  # the page starts both streams on load
        page.wait_for_function("document.getElementById('answer').textContent.length > 0")
        early = page.text_content("#answer") or ""
        page.wait_for_timeout(600)
        later = page.text_content("#answer") or ""
        assert later.startswith(early)
        assert len(later) > len(early), "the answer did not grow"
        assert len(later) < len(BUNDLED_STORY), "the answer arrived all at once"

        page.wait_for_function("document.getElementById('recipe-title').textContent.length > 0")
        partial = json.loads(page.text_content("#recipe-json") or "{}")
        expected = json.loads(demo.RECIPE_JSON)
        assert partial != expected
        assert set(partial) <= set(expected)

        page.wait_for_selector("#recipe-panel[data-state=completed]")
        page.wait_for_selector("#answer-panel[data-state=completed]")
        assert json.loads(page.text_content("#recipe-json") or "{}") == expected
        assert page.text_content("#recipe-title") == expected["title"]
        assert page.locator("#recipe-ingredients li").count() == len(expected["ingredients"])
        assert page.text_content("#answer") == BUNDLED_STORY
        usage = page.text_content("#answer-usage") or ""
        assert "tokens" in usage
        assert "finish: stop" in usage
        assert "?stream=" in page.url  # the answers' name, for a reload or another tab
        assert "tokens" in (page.text_content("#recipe-usage") or "")


def test_stop_closes_the_upstream_requests(
    page: Page, demo: ModuleType, loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAGURA_API_BASE", loopback.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    for _ in range(2):  # the answer and the recipe
        loopback.enqueue(Script.text("word " * 400, chunk_size=5, chunk_delay=0.02))
    app = demo.create_app(model="openai/x")
    with serve(app) as base_url:
        page.goto(base_url)
        page.wait_for_function("document.getElementById('answer').textContent.includes('word')")
        assert loopback.wait_idle_sync(0.1) is False  # both still streaming
        page.click("#stop")
        assert page.get_attribute("#answer-panel", "data-state") == "stopped"
        assert loopback.wait_idle_sync(5.0), "closing the EventSource left the LLM request open"
        assert loopback.stats().streams_closed_by_client == 2
        assert loopback.stats().streams_completed == 0


# -- answers through the relay: reload, a second tab, a dropped connection ------------------
def relay_scripts(loopback: LoopbackServer, demo: ModuleType) -> str:
    """Queue the same slow answer for both requests (the answer's and the recipe's, in
    whichever order they come): the recipe JSON, whose line breaks and indentation must
    reach the page exactly. Returns it."""
    text: str = demo.RECIPE_JSON
    for _ in range(2):
        loopback.enqueue(Script.text(text, chunk_size=3, chunk_delay=0.015))  # about 4 s
    return text


def answer_of(page: Page) -> str:
    return str(page.evaluate("document.getElementById('answer').textContent"))


def test_a_reload_mid_answer_shows_the_same_answer_and_a_second_tab_follows_it(
    page: Page, demo: ModuleType, loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAGURA_API_BASE", loopback.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    monkeypatch.delenv("KAGURA_REDIS_URL", raising=False)  # the default: MemoryRelay
    text = relay_scripts(loopback, demo)
    with serve(demo.create_app(model="openai/x"), lifespan="on") as base_url:
        page.goto(base_url)
        page.wait_for_function("document.getElementById('answer').textContent.length > 60")
        assert "?stream=" in page.url
        before = answer_of(page)
        assert text.startswith(before)
        page.reload()
        assert loopback.stats().streams_completed == 0, "the reload came after the answer"
        page.wait_for_function("document.getElementById('answer').textContent.length > 0")
        assert text.startswith(answer_of(page))

        second = page.context.new_page()
        second.goto(page.url)
        for tab in (page, second):
            tab.wait_for_selector("#answer-panel[data-state=completed]", timeout=30_000)
            tab.wait_for_selector("#recipe-panel[data-state=completed]", timeout=30_000)
            assert answer_of(tab) == text  # no character lost or repeated
            assert json.loads(tab.text_content("#recipe-json") or "{}") == json.loads(text)
            assert "finish: stop" in (tab.text_content("#answer-usage") or "")
        assert len(loopback.requests) == 2, "one LLM request per answer, whoever reads it"


def cut_once(app: Any, *, prefix: str, after: int, seen: list[str | None]) -> Any:
    """``app``, except that the first response under ``prefix`` ends (cleanly, as a
    proxy's timeout would) after ``after`` body messages; ``seen`` gets each such
    request's ``Last-Event-ID``."""
    cut_done = False

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal cut_done
        if scope["type"] != "http" or not scope["path"].startswith(prefix):
            await app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        seen.append(headers[b"last-event-id"].decode() if b"last-event-id" in headers else None)
        if cut_done:
            await app(scope, receive, send)
            return
        cut_done = True
        cut = asyncio.Event()
        sent = 0

        async def cutting_send(message: dict[str, Any]) -> None:
            nonlocal sent
            if cut.is_set():
                return
            await send(message)
            if message["type"] == "http.response.body" and message.get("body"):
                sent += 1
                if sent >= after:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    cut.set()

        async def cut_receive() -> dict[str, Any]:
            if cut.is_set():
                return {"type": "http.disconnect"}
            message = asyncio.ensure_future(receive())
            ended = asyncio.ensure_future(cut.wait())
            done, pending = await asyncio.wait({message, ended}, return_when="FIRST_COMPLETED")
            for task in pending:
                task.cancel()
            return message.result() if message in done else {"type": "http.disconnect"}

        await app(scope, cut_receive, cutting_send)

    return wrapped


def test_the_event_source_resumes_a_dropped_connection_exactly(
    page: Page, demo: ModuleType, loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAGURA_API_BASE", loopback.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    monkeypatch.delenv("KAGURA_REDIS_URL", raising=False)
    text = relay_scripts(loopback, demo)
    seen: list[str | None] = []
    app = cut_once(demo.create_app(model="openai/x"), prefix="/api/answer/", after=40, seen=seen)
    with serve(app, lifespan="on") as base_url:
        page.goto(base_url)
        page.wait_for_selector("#answer-panel[data-state=completed]", timeout=30_000)
        assert answer_of(page) == text
        assert len(seen) == 2, "the EventSource did not reconnect once"
        assert seen[0] is None
        assert seen[1] is not None, "the reconnect did not send Last-Event-ID"
        assert len(loopback.requests) == 2
