"""``--handoff=off``: connections stay on Tornado's public WebSocket API, with
the same protocol, heartbeat, limits and close codes as the hand-off path.
(CI also runs the end-to-end suite with WSHUB_HANDOFF=off.)"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from tornado.httpclient import AsyncHTTPClient

from handlers.public_transport import PublicApiTransport
from handlers.socket_connection import SocketConnection
from tests.hostile.proc import HubProcess
from tests.hostile.wire import OP_PING, Wire
from tests.support import REPO, JsonClient, LiveServer, wait_until


async def health(live: LiveServer) -> dict:
    response = await AsyncHTTPClient().fetch(live.url("/healthz"))
    return json.loads(response.body)


@pytest.mark.parametrize("handoff", [True, False], ids=["handoff-on", "handoff-off"])
async def test_both_modes_speak_the_same_protocol_and_heartbeat(make_server, handoff) -> None:
    live = make_server(handoff=handoff, ping_interval=0.2, ping_timeout=0.2)
    ann = await live.connect("ann")
    await ann.join("r")
    mute = await asyncio.to_thread(Wire, live.port, "/ws?name=mute")  # never answers pings
    mute.send('{"type":"join","room":"r"}')
    await ann.expect("presence")
    ann.send({"type": "publish", "room": "r", "data": "hi", "id": 7})
    assert (await ann.expect("message"))["data"] == "hi"
    assert await ann.expect("ack") == {"type": "ack", "id": 7, "seq": 1}
    transports = {type(peer.transport) for peer in live.hub.peers.values()}
    assert transports == ({SocketConnection} if handoff else {PublicApiTransport})
    assert (await health(live))["handed_off_sockets"] == (2 if handoff else 0)

    ending = await asyncio.to_thread(mute.ending, 5.0, False)
    assert any(frame.opcode == OP_PING for frame in ending.frames)  # the hub's pings came
    assert [json.loads(f.payload)["type"] for f in ending.frames if f.opcode == 1] == [
        "welcome",
        "joined",
        "message",
    ]
    assert ending.code == 4000 and ending.close.payload[2:] == b"ping timeout"
    left = await ann.expect("presence")
    assert left["event"] == "leave" and left["member"]["name"] == "mute"
    assert ann.connection.close_code is None  # it answers pings: still served
    mute.close()


async def test_public_api_backlog_settles_and_bounds_a_reader_that_stops(make_server) -> None:
    """Bytes in flight are counted from write_message's futures: they return to
    0 for a reader that keeps up, and a reader that stops is dropped (4001)
    before the count passes the limit by more than one write."""
    limit = 256 * 1024
    live = make_server(handoff=False, send_buffer_limit=limit, rate_limit=0)
    ann = await live.connect("ann")
    await ann.join("flood")
    stuck = await asyncio.to_thread(Wire, live.port, "/ws?name=stuck")
    stuck.send('{"type":"join","room":"flood"}')
    await ann.expect("presence")
    ann_peer = next(p for p in live.hub.peers.values() if p.name == "ann")
    stuck_peer = next(p for p in live.hub.peers.values() if p.name == "stuck")
    payload = "s" * 16 * 1024
    sent = 0
    while not stuck_peer.closed and sent < 2000:  # bounded: 32 MB at most
        ann.send({"type": "publish", "room": "flood", "data": payload, "id": sent})
        while (await ann.recv())["type"] != "ack":
            pass
        sent += 1
        assert stuck_peer.transport.backlog() <= 2 * limit
    assert stuck_peer.closed and live.hub.counters.slow_consumers_dropped == 1
    await wait_until(lambda: ann_peer.transport.backlog() == 0)
    assert (await ann.expect("presence"))["event"] == "leave"
    ann.send({"type": "publish", "room": "flood", "data": "still here", "id": "last"})
    assert (await ann.expect("message"))["data"] == "still here"
    assert (await health(live))["connections"] == 1
    stuck.close()


@pytest.mark.parametrize("flag", ["--handoff=off", "--handoff=on"])
async def test_the_server_process_honours_the_flag(flag: str) -> None:
    with HubProcess(flag) as proc:
        client = await JsonClient.open(f"ws://127.0.0.1:{proc.port}/ws?name=c")
        await client.expect("welcome")
        body = await asyncio.to_thread(proc.health)
        assert body["connections"] == 1
        assert body["handed_off_sockets"] == (0 if flag == "--handoff=off" else 1)
        client.close()
    assert ("stays on Tornado's public WebSocket API" in proc.log()) == (flag == "--handoff=off")


def test_a_value_other_than_on_or_off_is_a_clear_startup_error() -> None:
    done = subprocess.run(
        [sys.executable, "server.py", "--port=0", "--handoff=maybe"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == "handoff: 'maybe' is neither on nor off"
