"""hub.js against two real nodes sharing a real redis-server: a join refused
with ``unavailable`` while Redis is down is retried with backoff, and the
chat page counts members over the presence limit."""

from __future__ import annotations

import pytest

from tests.browser.test_hub_client import SETUP, run

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect


def test_a_join_refused_while_redis_is_down_is_retried_until_it_is_back(
    start_server, open_page, redis_server
):
    server = start_server(f"--broker={redis_server.url}")
    page = open_page(f"{server.url}/")
    page.evaluate(SETUP)
    run(page, """async () => { window.a = await open2("ann"); }""")
    redis_server.stop()
    page.evaluate("""() => { window.joining = a.join("r").then((j) => (window.joined = j)); }""")
    page.wait_for_function(
        """() => log.some((e) => e.ev === "error" && e.p.code === "unavailable")""", timeout=8000
    )
    assert page.evaluate("() => window.joined === undefined")
    redis_server.start()
    page.wait_for_function("() => window.joined !== undefined", timeout=10000)
    joined = page.evaluate("() => window.joined")
    assert joined["type"] == "joined" and joined["member_count"] == 1


def test_the_chat_shows_how_many_are_online_beyond_the_presence_limit(
    start_server, open_page, redis_server
):
    options = (f"--broker={redis_server.url}", "--presence_limit=2")
    a, b = start_server(*options), start_server(*options)
    viewer = open_page(f"{a.url}/?name=viewer#big")
    expect(viewer.locator("#room-count")).to_have_text("1 online")
    others = open_page(f"{b.url}/")
    others.evaluate(SETUP)
    run(
        others,
        """async () => {
        for (const name of ["b1", "b2", "b3"]) await (await open2(name)).join("big");
    }""",
    )
    expect(viewer.locator("#room-count")).to_have_text("4 online")
