"""The SSE demo page (examples/web) in a real headless Chromium, driven by playwright.

Uses Debian's chromium (``/usr/bin/chromium``); playwright never downloads a browser.
Skipped, saying how to install it, when that browser is missing.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

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
        assert "time to first token" in usage
        assert "tokens/s" in usage
        assert "finish: stop" in usage
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
