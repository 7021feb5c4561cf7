"""The traffic counters /healthz and /api/stats report (and /metrics exports),
compared with what real clients sent and received on a live server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from tests.hostile.wire import Wire, abort_socket
from tests.support import JsonClient, LiveServer, wait_until

KEY = "counters-key"
QUIET = {"ping_interval": 600.0, "ping_timeout": 600.0}
"""No heartbeat pings during a test: every byte sent is one the client reads."""


def wire_size(payload: str | bytes) -> int:
    """Bytes of one unmasked server frame carrying ``payload`` (RFC 6455 5.2)."""
    size = len(payload.encode() if isinstance(payload, str) else payload)
    return size + (2 if size < 126 else 4 if size < 1 << 16 else 10)


class CountingClient(JsonClient):
    """A JSON client that adds up the wire size of every frame it reads."""

    received_bytes = 0

    async def recv_raw(self, timeout: float = 5.0) -> str | bytes | None:
        raw = await super().recv_raw(timeout)
        if raw is not None:
            self.received_bytes += wire_size(raw)
        return raw

    async def read(self, count: int) -> list[dict[str, Any]]:
        return [await self.recv() for _ in range(count)]


async def fetch_json(live: LiveServer, path: str, **kw: Any) -> dict[str, Any]:
    response = await AsyncHTTPClient().fetch(live.url(path), **kw)
    return json.loads(response.body)


async def test_traffic_counters_equal_what_the_clients_saw(make_server) -> None:
    live = make_server(api_keys=(KEY,), **QUIET)
    clients = []
    for name in ("ann", "bob", "cy"):
        client = await CountingClient.open(live.ws_url(f"/ws?name={name}"))
        live.clients.append(client)
        await client.expect("welcome")
        await client.join("r")
        for earlier in clients:
            await earlier.expect("presence")
        clients.append(client)
    ann, bob, cy = clients
    for i in range(4):
        ann.send({"type": "publish", "room": "r", "data": i, "id": i})
    bob.send({"type": "publish", "room": "r", "data": "fleeting", "ephemeral": True})
    cy.connection.write_message(b"\x00", binary=True)
    cy.send("not json")
    await fetch_json(
        live,
        "/api/publish",
        method="POST",
        body=json.dumps({"room": "r", "data": "from the backend"}),
        headers={"Authorization": f"Bearer {KEY}"},
    )
    ann_frames = await ann.read(4 * 2 + 2)  # messages and acks, the ephemeral, the API's
    assert [f["type"] for f in ann_frames].count("ack") == 4
    await bob.read(4 + 2)
    cy_frames = await cy.read(4 + 2 + 2)
    assert sorted(f["code"] for f in cy_frames if f["type"] == "error") == [
        "bad_json",
        "bad_request",
    ]

    stats = await fetch_json(live, "/healthz")
    assert stats["messages_received"] == 3 + 4 + 1 + 2  # joins, publishes, ephemeral, junk
    assert stats["deliveries"] == 3 * (4 + 1 + 1)  # presence, acks and errors are not
    assert stats["published"] == 6 and stats["published_from_api"] == 1
    assert stats["errors_by_code"] == {"bad_request": 1, "bad_json": 1}
    assert stats["bytes_sent"] == sum(c.received_bytes for c in clients)
    api_stats = await fetch_json(live, "/api/stats", headers={"Authorization": f"Bearer {KEY}"})
    for name in ("messages_received", "deliveries", "bytes_sent", "errors_by_code"):
        assert api_stats[name] == stats[name]


async def test_disconnects_are_counted_by_close_code(make_server) -> None:
    live = make_server(max_message_size=1024, rate_limit=1.0, rate_burst=1, **QUIET)
    polite = await live.connect("polite")
    polite.connection.close(1000)
    too_big = await live.connect("big")
    too_big.send("x" * 2000)
    assert (await too_big.closed())[0] == 1009
    flooder = await live.connect("flooder")
    for _ in range(3):  # one allowed, one refused, the next one closes it
        flooder.send({"type": "join", "room": "r"})
    assert (await flooder.closed())[0] == 1008
    vanisher = await asyncio.to_thread(Wire, live.port, "/ws?name=vanisher")
    await wait_until(lambda: len(live.hub.peers) == 1)
    abort_socket(vanisher.sock)
    await wait_until(lambda: not live.hub.peers)
    assert live.hub.counters.disconnects_by_code == {"1000": 1, "1009": 1, "1008": 1, "1006": 1}
    assert (await fetch_json(live, "/healthz"))["disconnects_by_code"] == {
        "1000": 1,
        "1009": 1,
        "1008": 1,
        "1006": 1,
    }


async def test_slow_consumer_disconnect_is_counted_once_as_4001(make_server) -> None:
    live = make_server(send_buffer_limit=16 * 1024, rate_limit=0, **QUIET)
    ann = await live.connect("ann")
    await ann.join("flood")
    stuck = await asyncio.to_thread(Wire, live.port, "/ws?name=stuck", rcvbuf=4096)
    stuck.send('{"type":"join","room":"flood"}')
    await ann.expect("presence")
    stuck_peer = next(p for p in live.hub.peers.values() if p.name == "stuck")
    sent = 0
    while not stuck_peer.closed and sent < 2000:  # bounded; kernel buffers absorb some
        ann.send({"type": "publish", "room": "flood", "data": "z" * 4000})
        await ann.expect("message")
        sent += 1
    assert stuck_peer.closed
    stuck.close()
    await wait_until(lambda: len(live.hub.peers) == 1)
    assert live.hub.counters.disconnects_by_code == {"4001": 1}
    assert live.hub.counters.slow_consumers_dropped == 1


async def test_a_foreign_origin_is_counted_as_rejected(live: LiveServer) -> None:
    headers = {"Origin": "https://evil.example"}
    for _ in range(2):
        try:
            await JsonClient.open(live.ws_url("/ws"), headers=headers)
        except HTTPClientError as refused:
            assert refused.code == 403
        else:
            raise AssertionError("a foreign origin was let in")
    assert (await fetch_json(live, "/healthz"))["rejected_origin"] == 2
