"""``--handoff=off``: connections stay on Tornado's public WebSocket API, with
the same protocol, heartbeat, limits and close codes as the hand-off path.

The limits (the slow-consumer bound counted from write_message's futures
included) are proved by the end-to-end suite, which CI runs a second time
with WSHUB_HANDOFF=off; these tests pin down the switch itself."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from tornado.httpclient import AsyncHTTPClient

from handlers.public_sink import PublicApiSink
from handlers.socket_connection import SocketConnection
from tests.hostile.proc import HubProcess
from tests.hostile.wire import OP_PING, Wire
from tests.support import REPO, JsonClient, LiveServer


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
    transports = {type(peer.sink) for peer in live.hub.peers.values()}
    assert transports == ({SocketConnection} if handoff else {PublicApiSink})
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
    assert (
        done.stderr.strip().splitlines()[-1]
        == "wshub: error: handoff: 'maybe' is neither on nor off"
    )
