"""The admin dashboard (/admin) in Chromium against the real server with real traffic."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.admin import LONG_ROOM, Traffic, busiest
from tests.browser.conftest import DESKTOP, PHONE, TIMEOUT_MS
from tests.browser.server_process import ServerProcess
from tests.hostile.hubwire import HubWire

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect

KEY = "dashboard-test-key"
REFUSED_LOAD = "the server responded with a status of 401"
"""Chromium's console line for a fetch answered 401: expected after a wrong key only."""


class AdminPage:
    """One dashboard tab, with every console error and failed page script kept."""

    def __init__(self, browser: Any, url: str, viewport: dict[str, int]) -> None:
        self.context = browser.new_context(viewport=viewport)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.api_requests: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        self.page.on("request", lambda r: "/api/" in r.url and self.api_requests.append(r.url))
        self.page.goto(url)

    def sign_in(self, key: str) -> None:
        self.page.fill("#key", key)
        self.page.click("#login button[type=submit]")

    def text(self, selector: str) -> str:
        return self.page.inner_text(selector)

    def chart(self) -> dict[str, Any]:
        """What uPlot is drawing: its x values and both series."""
        return self.page.evaluate(
            "() => { const d = window.hubAdmin.chart ? window.hubAdmin.chart.data : [[],[],[]];"
            " return {xs: d[0], messages: d[1], deliveries: d[2]}; }"
        )

    def horizontal_overflow(self) -> int:
        return self.page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )


@pytest.fixture
def admin_page(browser: Any) -> Iterator[Callable[..., AdminPage]]:
    pages: list[AdminPage] = []

    def open_(url: str, viewport: dict[str, int] | None = None) -> AdminPage:
        page = AdminPage(browser, url, viewport or DESKTOP)
        pages.append(page)
        return page

    yield open_
    for page in pages:
        with contextlib.suppress(Exception):
            page.context.close()


def test_the_dashboard_shows_the_hub_and_plots_its_traffic(
    start_server: Callable[..., ServerProcess], admin_page: Callable[..., AdminPage]
) -> None:
    server = start_server(f"--api_key={KEY}", "--rate_limit=0")
    with Traffic(server.port) as traffic:
        tab = admin_page(server.url + "/admin")
        expect(tab.page.locator("#login")).to_be_visible()
        tab.sign_in(KEY)
        expect(tab.page.locator("#dashboard")).to_be_visible()
        expect(tab.page.locator("#conn")).to_have_attribute("data-state", "open")
        expect(tab.page.locator("#v-connections")).to_have_text(str(len(traffic.members)))
        expect(tab.page.locator("#v-rooms")).to_have_text("3")
        rooms = tab.page.locator("#t-rooms tr")
        expect(rooms.first).to_contain_text("lobby")
        expect(rooms.first).to_contain_text("4")
        expect(tab.page.locator("#t-rooms")).to_contain_text(LONG_ROOM)
        expect(tab.page.locator("#v-broker")).to_have_text("memory ✓")
        # Quiet so far: whatever was plotted is zero.
        tab.page.wait_for_function("() => window.hubAdmin.xs.length >= 1")
        quiet = tab.chart()
        assert all(not v for v in quiet["messages"] + quiet["deliveries"]), quiet

        traffic.error_and_close()
        traffic.start()
        # The numbers move...
        tab.page.wait_for_function(
            "() => parseFloat(document.getElementById('v-messages-rate').textContent) > 0"
        )
        tab.page.wait_for_function(
            "() => parseFloat(document.getElementById('v-deliveries-rate').textContent) > 0"
        )
        expect(tab.page.locator("#t-errors")).to_contain_text("not_joined")
        expect(tab.page.locator("#t-disconnects")).to_contain_text("1000")
        # ...and so do the plotted series: new points, messages and deliveries above 0.
        tab.page.wait_for_function(
            "() => { const d = window.hubAdmin.chart.data;"
            " return d[1].some((v) => v > 0) && d[2].some((v) => v > 0); }"
        )
        traffic.stop()
        busy = tab.chart()
        assert len(busy["xs"]) > len(quiet["xs"])
        assert max(v or 0 for v in busy["deliveries"]) > max(v or 0 for v in busy["messages"])
        assert tab.page.evaluate("() => sessionStorage.getItem('wshub.admin.key')") == KEY

        tab.page.reload()  # the key is remembered for this tab
        expect(tab.page.locator("#dashboard")).to_be_visible()
        expect(tab.page.locator("#login")).to_be_hidden()
    assert tab.errors == []


def test_a_wrong_key_is_refused_and_the_page_says_so(
    start_server: Callable[..., ServerProcess], admin_page: Callable[..., AdminPage]
) -> None:
    server = start_server(f"--api_key={KEY}")
    tab = admin_page(server.url + "/admin")
    assert tab.api_requests == []  # nothing asked before there is a key
    tab.sign_in("not-the-key")
    notice = tab.page.locator("#notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("refused")
    expect(notice).to_contain_text("--api_key")
    expect(tab.page.locator("#dashboard")).to_be_hidden()
    expect(tab.page.locator("#login")).to_be_visible()
    expect(tab.page.locator("#conn")).to_have_attribute("data-state", "closed")
    assert tab.page.evaluate("() => sessionStorage.getItem('wshub.admin.key')") is None
    assert tab.errors and all(REFUSED_LOAD in e for e in tab.errors), tab.errors

    tab.sign_in(KEY)  # the right one opens it
    expect(tab.page.locator("#dashboard")).to_be_visible()
    expect(notice).to_be_hidden()


def test_with_the_api_off_the_page_says_how_to_turn_it_on(
    start_server: Callable[..., ServerProcess], admin_page: Callable[..., AdminPage]
) -> None:
    server = start_server()
    tab = admin_page(server.url + "/admin")
    off = tab.page.locator("#api-off")
    expect(off).to_be_visible()
    expect(off).to_contain_text("--api_key=")
    expect(tab.page.locator("#login")).to_be_hidden()
    expect(tab.page.locator("#dashboard")).to_be_hidden()
    assert tab.api_requests == [] and tab.errors == []
    assert tab.horizontal_overflow() == 0


def test_readable_on_a_phone_without_horizontal_scroll(
    start_server: Callable[..., ServerProcess],
    admin_page: Callable[..., AdminPage],
    artifacts: Path,
) -> None:
    server = start_server(f"--api_key={KEY}", "--rate_limit=0")
    with Traffic(server.port) as traffic:
        traffic.error_and_close()
        traffic.start()
        tab = admin_page(server.url + "/admin", PHONE)
        tab.sign_in(KEY)
        expect(tab.page.locator("#t-rooms")).to_contain_text(LONG_ROOM)
        tab.page.wait_for_function("() => window.hubAdmin.xs.length >= 2")
        expect(tab.page.locator("#t-errors")).to_contain_text("not_joined")
        assert tab.horizontal_overflow() == 0
        chart = tab.page.locator("#chart canvas").bounding_box()
        assert chart is not None and chart["x"] >= 0 and chart["x"] + chart["width"] <= 390
        tab.page.screenshot(path=str(artifacts / "admin-phone.png"), full_page=True)
    assert tab.errors == []


def test_with_redis_every_node_is_listed(
    redis_server: Any,
    start_server: Callable[..., ServerProcess],
    admin_page: Callable[..., AdminPage],
) -> None:
    nodes = [start_server(f"--broker={redis_server.url}", f"--api_key={KEY}") for _ in range(2)]
    members = [HubWire(node.port) for node in nodes]
    try:
        ids = [member.welcome["node"] for member in members]
        assert ids[0] != ids[1]
        tab = admin_page(nodes[0].url + "/admin")
        tab.sign_in(KEY)
        expect(tab.page.locator("#nodes-panel")).to_be_visible()
        rows = tab.page.locator("#t-nodes tr")
        expect(rows).to_have_count(2, timeout=TIMEOUT_MS * 2)  # nodes report once a second
        for node_id in ids:
            expect(tab.page.locator("#t-nodes")).to_contain_text(node_id)
        expect(tab.page.locator("#v-broker")).to_have_text("redis ✓")
    finally:
        for member in members:
            member.abort()
    assert tab.errors == []


RATE_WINDOW_S = 9.0
"""static/admin.js: with nodes, the rates are averaged over at least this long."""
REPORT_AGE_S = 2.0
"""How much older than the poll one node's report may be, with room for a loaded machine
(a node writes its report each second)."""


def node_stats(node: ServerProcess) -> dict[str, Any]:
    request = urllib.request.Request(
        node.url + "/api/stats", headers={"Authorization": f"Bearer {KEY}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def test_with_redis_the_totals_and_rates_are_the_whole_hubs(
    redis_server: Any,
    start_server: Callable[..., ServerProcess],
    admin_page: Callable[..., AdminPage],
) -> None:
    """The page on node 0 while most traffic goes through node 1: the totals are the
    sum over both nodes, the plotted messages/s is the hub's (never negative, never
    above what the test sent), also while node 1 goes away and comes back as a new node."""
    options = (f"--broker={redis_server.url}", f"--api_key={KEY}", "--rate_limit=0")
    nodes = [start_server(*options, "--node_timeout=3") for _ in range(2)]
    here, there = Traffic(nodes[0].port, interval=0.03), Traffic(nodes[1].port, interval=0.005)
    try:
        tab = admin_page(nodes[0].url + "/admin")
        tab.sign_in(KEY)
        scope = tab.page.locator("#v-scope")
        expect(scope).to_have_attribute("data-view", "all", timeout=TIMEOUT_MS * 2)
        expect(scope).to_contain_text("All 2 nodes", timeout=TIMEOUT_MS * 2)
        # A full rate window of quiet first, so every busy sample spans RATE_WINDOW_S.
        quiet = tab.page.evaluate("() => window.hubAdmin.xs.length")
        tab.page.wait_for_function(
            f"() => window.hubAdmin.xs.length >= {quiet + 7}", timeout=TIMEOUT_MS * 3
        )
        started = tab.page.evaluate("() => window.hubAdmin.xs.length")
        here.start(), there.start()
        tab.page.wait_for_function(
            f"() => window.hubAdmin.xs.length >= {started + 10}", timeout=TIMEOUT_MS * 3
        )
        here.stop(), there.stop()
        published = here.published + there.published
        assert here.published and there.published > here.published
        total = tab.page.locator("#v-published")
        expect(total).to_have_attribute("data-total", str(published), timeout=TIMEOUT_MS * 2)
        delivered = sum(node_stats(node)["deliveries"] for node in nodes)
        expect(tab.page.locator("#v-deliveries-note")).to_have_attribute(
            "data-total", str(delivered), timeout=TIMEOUT_MS * 2
        )

        sent_at = sorted(here.sent_at + there.sent_at)
        ceiling = busiest(sent_at, RATE_WINDOW_S + 1.5 + REPORT_AGE_S) / RATE_WINDOW_S
        mean = published / (sent_at[-1] - sent_at[0])
        busy = tab.chart()["messages"][started:]
        assert all(v is not None and 0 <= v <= ceiling for v in busy), (busy, ceiling)
        assert max(busy) >= 0.5 * mean, (busy, mean)  # node 1's share is in it

        # Node 1 goes away (its report expires), then comes back as a new node.
        gone = tab.page.evaluate("() => window.hubAdmin.xs.length")
        nodes[1].stop()
        expect(scope).to_contain_text("All 1 node:", timeout=TIMEOUT_MS * 3)
        expect(total).to_have_attribute("data-total", str(here.published))
        nodes[1].start()
        expect(scope).to_contain_text("All 2 nodes", timeout=TIMEOUT_MS * 3)
        tab.page.wait_for_function(
            f"() => window.hubAdmin.xs.length >= {gone + 10}", timeout=TIMEOUT_MS * 3
        )
        after = tab.chart()["messages"][gone:]
        assert all(v is not None and 0 <= v <= ceiling for v in after), after
        expect(tab.page.locator("#t-nodes tr")).to_have_count(2)
    finally:
        here.close()
        there.close()
    assert tab.errors == []
