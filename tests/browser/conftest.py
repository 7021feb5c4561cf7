"""Fixtures for the browser tests: Debian's Chromium driven by Playwright
against the real hub server started as a subprocess.

Everything stays on 127.0.0.1: the browser is started with flags that stop
its background networking, and pages come from the real server (Chromium
refuses WebSockets to 127.0.0.1 from a page made with ``set_content``).
Without /usr/bin/chromium or the playwright package, these tests skip.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.pages import FrameLog
from tests.browser.proxy import LoopbackProxy
from tests.browser.server_process import REPO, SERVER_SCRIPT, ServerProcess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "tests" / "artifacts"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 10_000


def _skip_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; never `playwright install`)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    if not SERVER_SCRIPT.exists():
        return f"{SERVER_SCRIPT} is missing"
    return None


SKIP_REASON = _skip_reason()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SKIP_REASON is None:
        return
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).parent == here:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    # Remember the outcome so page fixtures can screenshot failures.
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Screenshots and server logs land here (git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for stale in ARTIFACTS.glob("FAILED-*.png"):  # from an earlier run
        stale.unlink()
    return ARTIFACTS


@pytest.fixture(scope="session")
def browser(artifacts: Path) -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    # One time limit for every wait: page actions and expect() alike.
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=30_000
        )
        yield browser
        browser.close()


def _slug(node_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", node_name)[:80]


@pytest.fixture
def start_server(
    request: pytest.FixtureRequest, artifacts: Path
) -> Iterator[Callable[..., ServerProcess]]:
    """``start_server("--history_size=5")``: the real server; stopped after the test."""
    started: list[ServerProcess] = []

    def start(*options: str) -> ServerProcess:
        log = artifacts / f"server-{_slug(request.node.name)}-{len(started)}.log"
        log.unlink(missing_ok=True)
        server = ServerProcess(log, *options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_server()


@pytest.fixture
def make_proxy() -> Iterator[Callable[[int], LoopbackProxy]]:
    """``make_proxy(server.port)``: a loopback proxy the test can sever."""
    proxies: list[LoopbackProxy] = []

    def make(port: int) -> LoopbackProxy:
        proxy = LoopbackProxy(port)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


@pytest.fixture
def open_page(
    request: pytest.FixtureRequest, browser: Any, artifacts: Path
) -> Iterator[Callable[..., Any]]:
    """``open_page(url, viewport=PHONE, frames=FrameLog())``: a page in a fresh context.

    Each page gets its own context (no shared storage), like two people on
    two machines. JavaScript errors on a page fail the test; on failure every
    page is screenshotted into the artifacts folder.
    """
    contexts: list[Any] = []
    pages: list[Any] = []
    errors: list[str] = []

    def open_(
        url: str, viewport: dict[str, int] | None = None, frames: FrameLog | None = None
    ) -> Any:
        context = browser.new_context(viewport=viewport or DESKTOP)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(f"{url}: {exc}"))
        if frames is not None:
            page.on("websocket", frames.attach)
        page.goto(url)
        pages.append(page)
        return page

    yield open_
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for n, page in enumerate(pages):
            # A page the test closed has nothing to show.
            with contextlib.suppress(Exception):
                page.screenshot(path=str(artifacts / f"FAILED-{_slug(request.node.name)}-{n}.png"))
    for context in contexts:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
