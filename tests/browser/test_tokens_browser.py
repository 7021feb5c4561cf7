"""hub.js with connection tokens, in Chromium against the real server.

The page's token function calls into Python (``expose_function``), which mints
a fresh JWT with PyJWT each time, as an app's backend endpoint would.
"""

from __future__ import annotations

import time

import pytest

from tests.browser.pages import FrameLog, chat_url, say, wait_connected
from tests.browser.test_hub_client import run

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect
jwt = pytest.importorskip("jwt", reason="PyJWT is not installed")

SECRET = "browser-test-secret-of-32-bytes-or-more"

OPEN = """async () => {
    const hub = await import("/static/hub.js");
    window.states = [];
    const c = hub.connect("/ws", { name: "ann", token: TOKEN, minDelay: 100, maxDelay: 400 });
    c.on("state", (s) => window.states.push(s.state));
    window.client = c;
    await new Promise((ok) => c.on("state", (s) => s.state === STOP && ok()));
    return c.user;
}"""


class Minter:
    """Tokens for user "ann"; the first ``short`` of them expire in ``ttl`` seconds."""

    def __init__(self, short: int = 0, ttl: int = 3) -> None:
        self.tokens: list[str] = []
        self.short = short
        self.ttl = ttl

    def __call__(self) -> str:
        life = self.ttl if len(self.tokens) < self.short else 3600
        token = jwt.encode(
            {"sub": "ann", "exp": int(time.time()) + life, "n": len(self.tokens)},
            SECRET,
            algorithm="HS256",
        )
        self.tokens.append(token)
        return token


def open_client(page, token_js: str, stop: str = "open"):
    return run(page, OPEN.replace("TOKEN", token_js).replace("STOP", repr(stop)))


def test_token_function_is_called_again_on_reconnect(start_server, make_proxy, open_page):
    server = start_server(f"--token_secret={SECRET}")
    proxy = make_proxy(server.port)
    page = open_page(f"{proxy.url}/")
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    minter = Minter()
    page.expose_function("mintToken", minter)
    assert open_client(page, "() => window.mintToken()") == "ann"
    assert len(minter.tokens) == 1

    assert proxy.sever() >= 1
    page.wait_for_function("window.states.slice(1).includes('open')", timeout=10_000)
    assert "reconnecting" in page.evaluate("window.states")
    assert len(minter.tokens) == 2  # asked again, not the first token re-sent
    assert [url.split("token=")[1] for url in sockets] == minter.tokens
    assert page.evaluate("window.client.user") == "ann"


def test_a_refused_fixed_token_is_not_retried(start_server, open_page):
    server = start_server(f"--token_secret={SECRET}")
    page = open_page(f"{server.url}/")
    forged = jwt.encode({"sub": "ann"}, "not-the-server-secret-32-bytes-long", algorithm="HS256")
    open_client(page, repr(forged), stop="unauthorized")
    assert page.evaluate("window.states") == ["unauthorized"]
    # No retry is scheduled: the same token would be refused again.
    assert page.evaluate("window.client.nextRetryAt") is None
    assert page.evaluate("window.client.state") == "unauthorized"


def test_token_is_refreshed_in_band_before_it_expires(start_server, open_page):
    server = start_server(f"--token_secret={SECRET}")
    frames = FrameLog()
    page = open_page(f"{server.url}/", frames=frames)
    minter = Minter(short=1, ttl=3)
    page.expose_function("mintToken", minter)
    open_client(page, "() => window.mintToken()")
    first = minter.tokens[0]
    # About half-way through its 3 s, the client sends a fresh token on the
    # same socket and takes it once the server answers "refreshed".
    page.wait_for_function(f"window.client._token !== {first!r}", timeout=8_000)
    refresh = next(f for f in frames.sent if f.get("type") == "refresh")
    assert refresh["token"] == minter.tokens[1]
    assert any(f.get("type") == "refreshed" for f in frames.received)
    # Past the first token's expiry the same connection is still served.
    first_exp = jwt.decode(first, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    page.wait_for_function(f"Date.now() / 1000 > {first_exp['exp'] + 1}", timeout=8_000)
    assert run(page, "async () => (await window.client.join('r')).room") == "r"
    assert page.evaluate("window.states") == ["open"]


def test_same_name_other_person_is_not_styled_as_mine(server, open_page):
    first = open_page(chat_url(server.url, "sam", "twins"))
    second = open_page(chat_url(server.url, "sam", "twins"))
    wait_connected(first)
    wait_connected(second)
    say(first, "from the first sam")
    for page in (first, second):
        expect(page.locator("#messages li.msg[data-seq]")).to_have_count(1)
    expect(first.locator("#messages li.msg.mine")).to_have_count(1)
    expect(second.locator("#messages li.msg.mine")).to_have_count(0)
