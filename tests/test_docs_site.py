"""The documentation site, built by mkdocs and looked at in a real headless Chromium.

mkdocs-material folds its navigation into a drawer below 1220 px; docs/en/stylesheets/nav.css
keeps it a sidebar from 960 px. Skipped, like tests/test_browser.py, without Debian's chromium.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from test_browser import CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"no Chromium at {CHROMIUM}: install it with `apt-get install chromium` "
    "(or `make browser`) to run the browser tests",
)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The site built into a temporary directory and served on 127.0.0.1: its base URL."""
    out = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=True,
        timeout=120,
    )
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(out))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


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


def _open(browser: Browser, url: str, width: int) -> Page:
    page = browser.new_page(viewport={"width": width, "height": 800})
    page.set_default_timeout(15_000)
    page.goto(url)
    return page


def _on_screen(page: Page, selector: str) -> bool:
    """Whether the element is displayed inside the window (not a drawer off its left edge)."""
    box = page.locator(selector).bounding_box()
    width = page.viewport_size["width"] if page.viewport_size else 0
    return (
        box is not None
        and page.locator(selector).is_visible()
        and box["x"] >= 0
        and box["x"] + box["width"] <= width
        and box["y"] + box["height"] <= 800
    )


QUICKSTART_LINK = '.md-sidebar--primary a.md-nav__link[href$="quickstart/"]'
CONCEPTS_LINK = '.md-sidebar--primary a.md-nav__link[href$="concepts/"]'
LAST_LINK = '.md-sidebar--primary a.md-nav__link[href$="reference/"]'
SECTION = ".md-sidebar--primary .md-nav__item--section > .md-nav__link"
DRAWER_BUTTON = '.md-header label.md-header__button[for="__drawer"]'


def test_the_navigation_is_visible_at_1200_px(site: str, browser: Browser) -> None:
    page = _open(browser, f"{site}/guides/performance-streaming/", 1200)
    try:
        assert _on_screen(page, QUICKSTART_LINK)
        assert _on_screen(page, LAST_LINK), "the sidebar is cut short"
        assert _on_screen(page, SECTION), "the Guides section is folded away"
        assert not page.locator(DRAWER_BUTTON).is_visible()
        page.locator(QUICKSTART_LINK).click()
        page.wait_for_url(f"{site}/quickstart/")

        # The stylesheet is what does it: without it, the navigation is in the drawer again.
        assert _on_screen(page, CONCEPTS_LINK)
        page.evaluate("document.querySelector('link[href$=\"nav.css\"]').disabled = true")
        assert not _on_screen(page, CONCEPTS_LINK)
        assert page.locator(DRAWER_BUTTON).is_visible()
    finally:
        page.close()


def test_a_narrow_window_keeps_the_drawer(site: str, browser: Browser) -> None:
    page = _open(browser, f"{site}/", 800)
    try:
        assert not _on_screen(page, QUICKSTART_LINK)
        page.locator(DRAWER_BUTTON).click()
        page.wait_for_timeout(400)  # the drawer slides in over 0.25 s
        assert _on_screen(page, QUICKSTART_LINK)
    finally:
        page.close()
