"""The demo page as a person uses it: a real headless Chromium (Debian's package, driven
by Playwright for Python; no browser download) against the example served by uvicorn.

``make test`` installs chromium first (``apt-get``); a dev run without it skips, and a CI
run (``CI=true``) fails instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _server import EXAMPLES, serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must run this test: `make test` installs it)")
    pytest.skip(reason)


pytest.importorskip("numpy")
try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the test extra installs playwright
    missing("playwright is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The ML example under uvicorn on a free port of 127.0.0.1, stopped by its PID. It
    trains in its lifespan, before uvicorn listens: the port answering means it is ready."""
    with serving(
        "uvicorn-httptools",
        "ml_serving:router",
        tmp_dir=tmp_path_factory.mktemp("uvicorn"),
        cwd=EXAMPLES,
        extra_args=["--log-level", "warning"],
        ready_timeout=60,  # training takes a few seconds
    ) as running:
        assert httpx.get(f"{running.url}/readyz", timeout=5).status_code == 200
        yield running.url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        missing(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


# Installed before the page's own script: a MutationObserver on the token list records
# every state the DOM goes through, with the stream's state at that moment (the page's
# `source` EventSource; readyState 1 = OPEN). With `window.stopAfter` set, it clicks the
# page's Stop button as soon as that many tokens are shown.
RECORD_TOKEN_STATES = """
window.tokenStates = [];
document.addEventListener("DOMContentLoaded", () => {
  const tokens = document.getElementById("tokens");
  if (!tokens) return;  // another page (an API link)
  new MutationObserver(() => {
    window.tokenStates.push({
      count: tokens.children.length,
      status: document.getElementById("status").textContent,
      readyState: (typeof source !== "undefined" && source) ? source.readyState : -1,
    });
    if (window.stopAfter && tokens.children.length >= window.stopAfter) {
      window.stopAfter = 0;
      document.getElementById("stop").click();
    }
  }).observe(tokens, { childList: true });
});
"""


@pytest.fixture
def page(browser: Browser, server: str) -> Iterator[Page]:
    context = browser.new_context(base_url=server)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.add_init_script(RECORD_TOKEN_STATES)
    page.goto("/")
    try:
        yield page
    finally:
        context.close()
    assert errors == []


def test_the_page_classifies_what_is_typed(page: Page) -> None:
    expect(page).to_have_title("asgikit ML serving demo")
    page.fill("#text", "for key, value in sorted(items.items()):")
    page.click("#classify")
    expect(page.locator("#label")).to_have_text("code")
    expect(page.locator("#probability")).to_contain_text("p = ")
    page.fill("#text", "Return the number of items in the list.")
    page.click("#classify")
    expect(page.locator("#label")).to_have_text("prose")


def test_tokens_stream_into_the_page_one_by_one(page: Page) -> None:
    max_tokens = 120
    page.fill("#prompt", "Return the")
    page.fill("#max-tokens", str(max_tokens))
    page.click("#generate")
    expect(page.locator("#status")).to_have_text("done", timeout=30_000)
    expect(page.locator("#tokens .token")).to_have_count(max_tokens)
    states: list[dict[str, Any]] = page.evaluate("window.tokenStates")
    # Partial token lists, shown while the EventSource was still open and before "done":
    # each token appended on its own (1, 2, 3, ...), not the whole answer at once.
    partial = [
        state["count"]
        for state in states
        if 0 < state["count"] < max_tokens
        and state["status"] == "streaming"
        and state["readyState"] == 1
    ]
    assert partial == list(range(1, max_tokens)), states[:10]
    text = page.locator("#tokens").inner_text()
    assert len(text.split()) >= max_tokens


def test_stop_closes_the_stream_mid_answer(page: Page, server: str) -> None:
    before = httpx.get(f"{server}/stats").json()
    page.evaluate("window.stopAfter = 5")
    page.fill("#max-tokens", "2000")
    page.click("#generate")
    expect(page.locator("#status")).to_have_text("stopped", timeout=30_000)
    # Stop ran in the observer right after the 5th token: the closed EventSource
    # dispatches nothing more, so the page keeps exactly those tokens and never "done".
    expect(page.locator("#tokens .token")).to_have_count(5)
    states: list[dict[str, Any]] = page.evaluate("window.tokenStates")
    assert [state["count"] for state in states] == [1, 2, 3, 4, 5]
    expect(page.locator("#generate")).to_be_enabled()
    after = httpx.get(f"{server}/stats").json()
    assert after["generated_tokens"] > before["generated_tokens"]


def test_the_api_links_answer(page: Page, server: str) -> None:
    expect(page.locator("#curl-predict")).to_contain_text(f"curl -s {server}/predict")
    for path, expected in (("/healthz", '"ok"'), ("/readyz", '"ready"'), ("/stats", "tokens")):
        page.goto("/")
        page.click(f'a[href="{path}"]')
        expect(page.locator("body")).to_contain_text(expected)
    page.goto("/")
    with page.expect_response(lambda response: "/generate?" in response.url) as generate:
        page.click('a[href^="/generate?"]')
    assert generate.value.status == 200
    assert generate.value.headers["content-type"] == "text/event-stream"
