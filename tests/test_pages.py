"""The demo pages are served by the real server and their scripts speak the
hub protocol (the real-browser tests live in tests/browser/)."""

from __future__ import annotations

import re

from tornado.httpclient import AsyncHTTPClient

from tests.support import LiveServer


async def fetch_text(live: LiveServer, path: str) -> str:
    response = await AsyncHTTPClient().fetch(live.url(path))
    assert response.code == 200
    return response.body.decode()


async def test_chat_page_loads_its_module_which_uses_the_hub_client(live: LiveServer) -> None:
    page = await fetch_text(live, "/")
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', page)
    assert scripts, "the chat page loads no script"
    sources = [await fetch_text(live, src) for src in scripts]
    assert any("hub.js" in source for source in sources)


async def test_hub_client_speaks_the_protocol(live: LiveServer) -> None:
    client = await fetch_text(live, "/static/hub.js")
    for word in ('"join"', '"leave"', '"publish"', "since", "epoch", "history_gap", "/ws"):
        assert word in client, f"hub.js never mentions {word}"
    for kind in ("welcome", "joined", "message", "ack", "presence", "error"):
        assert f'"{kind}"' in client, f"hub.js does not handle {kind}"


async def test_whiteboard_page_is_served(live: LiveServer) -> None:
    page = await fetch_text(live, "/whiteboard")
    assert "<canvas" in page


async def test_unknown_static_file_is_404(live: LiveServer) -> None:
    response = await AsyncHTTPClient().fetch(live.url("/static/nope.js"), raise_error=False)
    assert response.code == 404
