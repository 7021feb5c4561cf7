"""The server as a user runs it: ``python server.py`` in its own process."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from collections.abc import Iterator

import pytest

import server as server_module
from handlers.fanout import batch_writer
from tests.hostile.proc import HubProcess
from tests.hostile.wire import Wire
from tests.support import JsonClient


@pytest.fixture
def proc() -> Iterator[HubProcess]:
    with HubProcess("--ping_interval=30", "--logging=info") as running:
        yield running


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_closes_clients_with_1001_and_exits_0(proc, signum) -> None:
    clients = [await JsonClient.open(f"ws://127.0.0.1:{proc.port}/ws?name=c") for _ in range(3)]
    clients.append(await JsonClient.open(f"ws://127.0.0.1:{proc.port}/ws/echo"))
    await clients[0].expect("welcome")
    mute = await asyncio.to_thread(Wire, proc.port, "/ws?name=mute")  # never answers the close
    proc.proc.send_signal(signum)
    for client in clients:
        code, reason = await client.closed()
        assert (code, reason) == (1001, "server shutdown")
    started = time.monotonic()
    assert await asyncio.to_thread(proc.proc.wait, 10) == 0
    assert time.monotonic() - started < 5
    assert (await asyncio.to_thread(mute.ending, 5.0, False)).code == 1001
    mute.close()
    proc.stop()  # collects the rest of the log
    log = proc.log()
    assert "Traceback" not in log and "stopped" in log


async def test_healthz_and_pages_are_served(proc) -> None:
    """What a user opens first, fetched from the real process, and the hub spoken on /ws."""
    health = json.loads(await asyncio.to_thread(fetch, proc.url("/healthz")))
    assert health["status"] == "ok" and health["connections"] == 0
    assert "<script" in (await asyncio.to_thread(fetch, proc.url("/"))).decode()
    assert "<canvas" in (await asyncio.to_thread(fetch, proc.url("/whiteboard"))).decode()
    assert b"export function connect" in await asyncio.to_thread(fetch, proc.url("/static/hub.js"))
    ann = await JsonClient.open(f"ws://127.0.0.1:{proc.port}/ws?name=ann")
    bob = await JsonClient.open(f"ws://127.0.0.1:{proc.port}/ws?name=bob")
    for client in (ann, bob):
        await client.expect("welcome")
        await client.join("lobby")
    await ann.expect("presence")
    bob.send({"type": "publish", "room": "lobby", "data": "hi", "id": 1})
    message = await ann.expect("message")
    assert (message["from"], message["data"], message["seq"]) == ("bob", "hi", 1)
    assert (await bob.expect("message"))["seq"] == 1
    assert await bob.expect("ack") == {"type": "ack", "id": 1, "seq": 1}
    health = json.loads(await asyncio.to_thread(fetch, proc.url("/healthz")))
    assert (health["connections"], health["rooms"], health["published"]) == (2, 1, 1)
    assert "listening on http://127.0.0.1:" in proc.log()
    if batch_writer.send_many is not None:  # the C helper is built: the server uses it
        assert f"fan-out sends on {batch_writer.default_threads()} thread(s)" in proc.log()
    ann.close()
    bob.close()


def fetch(url: str) -> bytes:
    """GET ``url``; it must answer 200."""
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        return response.read()


def test_config_file_is_read_and_flags_override_it(tmp_path, restore_options) -> None:
    config = tmp_path / "hub.conf"
    config.write_text(
        "ping_interval = 7.5\nhistory_size = 42\nallowed_origins = 'https://a.example'\n"
    )
    server_module.load_options(["server.py", f"--config={config}", "--history_size=9", "--port=0"])
    options = restore_options
    assert options.ping_interval == 7.5  # from the file
    assert options.history_size == 9  # the flag wins
    assert server_module.parse_origins(options.allowed_origins) == {"https://a.example"}


def test_bad_allowed_origin_is_a_clear_startup_error() -> None:
    with pytest.raises(server_module.StartupError, match="not a full origin"):
        server_module.parse_origins("app.example.com")


def test_max_connections_is_kept_below_the_open_file_limit(caplog, restore_options) -> None:
    server_module.load_options(["server.py", "--max_connections=50000"])
    settings = server_module.hub_settings(fd_limit=1000)
    assert settings.max_connections == 1000 - server_module.FD_RESERVE
    assert "max_connections 50000 lowered" in caplog.text
