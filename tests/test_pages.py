"""The demo pages are served by the real server and their scripts speak the
hub protocol (the real-browser tests live in tests/browser/)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.support import TIMEOUT, LiveServer


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


DRIVER = """
import { connect } from "./hub.mjs";
const hub = connect(process.argv[2], { name: "node", minDelay: 100, maxDelay: 1000 });
const got = [];
hub.on("message", (m) => got.push(m));
await new Promise((ok) => hub.on("state", (s) => s.state === "open" && ok()));
const joined = await hub.join("r");
const ack = await hub.publish("r", { text: "from node" });
while (!got.some((m) => m.from === "py")) await new Promise((ok) => setTimeout(ok, 10));
console.log(JSON.stringify({ joined, ack, got }));
hub.close();
"""


async def test_hub_client_speaks_the_protocol(live: LiveServer, tmp_path: Path) -> None:
    """The served hub.js, run in Node against the live server, joins, publishes
    (and gets its ack) and receives what a Python client publishes."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (apt-get install nodejs)")
    (tmp_path / "hub.mjs").write_text(await fetch_text(live, "/static/hub.js"))
    (tmp_path / "drive.mjs").write_text(DRIVER)
    py = await live.connect("py")
    await py.join("r")
    process = await asyncio.create_subprocess_exec(
        node,
        "--experimental-websocket",
        "--no-warnings",
        str(tmp_path / "drive.mjs"),
        live.ws_url("/ws"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert (await py.expect("presence"))["member"]["name"] == "node"
        message = await py.expect("message")
        assert (message["from"], message["data"]) == ("node", {"text": "from node"})
        py.send({"type": "publish", "room": "r", "data": "from py"})
        out, err = await asyncio.wait_for(process.communicate(), 2 * TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["joined"]["seq"] == 0 and result["ack"] == {"seq": 1}
    assert [(m["from"], m["seq"], m["data"]) for m in result["got"]] == [
        ("node", 1, {"text": "from node"}),
        ("py", 2, "from py"),
    ]


async def test_whiteboard_page_is_served(live: LiveServer) -> None:
    page = await fetch_text(live, "/whiteboard")
    assert "<canvas" in page


async def test_unknown_static_file_is_404(live: LiveServer) -> None:
    response = await AsyncHTTPClient().fetch(live.url("/static/nope.js"), raise_error=False)
    assert response.code == 404
