"""Every rule of the hub server, through real sockets on a loopback port."""

from __future__ import annotations

import asyncio
import json
import zlib

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.websocket import WebSocketClosedError

from tests.hostile.wire import Wire
from tests.support import JsonClient, LiveServer, pair_in_room, wait_until


async def health(live: LiveServer) -> dict:
    response = await AsyncHTTPClient().fetch(live.url("/healthz"), ssl_options=live.client_tls)
    return json.loads(response.body)


async def test_echo_returns_text_as_text_and_binary_as_binary(live: LiveServer) -> None:
    client = await live.connect(path="/ws/echo")
    client.connection.write_message("héllo")
    assert await client.recv_raw() == "héllo"
    client.connection.write_message(b"\x00\xffbin", binary=True)
    assert await client.recv_raw() == b"\x00\xffbin"


async def test_healthz_counts_connections_of_every_endpoint(live: LiveServer) -> None:
    await live.connect("ann")
    await live.connect(path="/ws/echo")
    body = await health(live)
    assert body["status"] == "ok" and body["connections"] == 2
    for key in ("rooms", "slow_consumers_dropped", "stale_evicted", "rejected_at_capacity"):
        assert body[key] == 0


async def test_protocol_errors_answer_and_keep_the_connection(live: LiveServer) -> None:
    ann, bob = await pair_in_room(live)
    cases = [
        ("nope", "bad_json"),
        ("[]", "bad_request"),
        ('{"type":"fly"}', "unknown_type"),
        ('{"type":"publish","room":"r"}', "bad_request"),
        ('{"type":"publish","room":"elsewhere","data":1}', "not_joined"),
        ('{"type":"join","room":"white space"}', "bad_request"),
    ]
    for text, code in cases:
        bob.send(text)
        error = await bob.expect("error")
        assert error["code"] == code and error["detail"]
    bob.connection.write_message(b"\x01", binary=True)
    assert (await bob.expect("error"))["code"] == "bad_request"
    bob.send({"type": "publish", "room": "r", "data": "still here"})
    assert (await ann.expect("message"))["data"] == "still here"
    assert (await bob.expect("message"))["seq"] == 1


async def test_name_longer_than_64_is_refused_at_the_handshake(live: LiveServer) -> None:
    with pytest.raises(HTTPClientError) as refused:
        await JsonClient.open(live.ws_url("/ws?name=" + "n" * 65))
    assert refused.value.code == 400
    ok = await live.connect("n" * 64)
    assert ok.client_id


@pytest.mark.parametrize(
    ("path", "tls"), [("/ws", False), ("/ws/echo", False), ("/ws", True)], ids=["ws", "echo", "wss"]
)
async def test_oversized_message_closes_with_1009_and_others_go_on(
    make_server, path: str, tls: bool
) -> None:
    live = make_server(max_message_size=1024, tls=tls)
    other = await live.connect("other", path="/ws/echo")
    big = await live.connect("big", path=path)
    big.connection.write_message("x" * 2000)
    code, _ = await big.closed()
    assert code == 1009
    other.connection.write_message("fine")
    assert await other.recv_raw() == "fine"


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
async def test_silent_peer_is_evicted_with_4000_and_its_rooms_hear_it(make_server, tls) -> None:
    live = make_server(ping_interval=0.2, ping_timeout=0.2, tls=tls)
    ann = await live.connect("ann")
    await ann.join("r")
    raw = await asyncio.to_thread(live.wire, "/ws?name=mute")
    raw.send('{"type":"join","room":"r"}')
    presence = await ann.expect("presence")
    assert presence["event"] == "join"
    ending = await asyncio.to_thread(raw.ending, 5.0, False)  # never answers pings
    assert ending.code == 4000 and ending.close.payload[2:] == b"ping timeout"
    left = await ann.expect("presence")
    assert left["event"] == "leave" and left["member"]["name"] == "mute"
    assert (await health(live))["stale_evicted"] == 1
    assert ann.connection.close_code is None  # the tornado client answers pings: still open
    raw.close()


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
async def test_capacity_guard_closes_with_1013_and_never_exceeds(make_server, tls) -> None:
    live = make_server(max_connections=3, tls=tls)
    clients = [await live.connect(f"c{i}") for i in range(2)]
    clients.append(await live.connect(path="/ws/echo"))
    refused = await JsonClient.open(live.ws_url("/ws?name=late"), ssl_options=live.client_tls)
    code, _ = await refused.closed()
    assert code == 1013
    body = await health(live)
    assert body["connections"] == 3 and body["rejected_at_capacity"] == 1
    clients[0].close()
    await wait_until(lambda: len(live.hub.peers) == 2)
    assert (await live.connect("now-fits")).client_id


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),
        ("http://127.0.0.1:{port}", True),
        ("https://app.example.com", True),
        ("https://evil.example.com", False),
        ("http://127.0.0.1:1", False),
        ("null", False),
    ],
)
async def test_origin_policy(make_server, origin: str | None, allowed: bool) -> None:
    live = make_server(allowed_origins=frozenset({"https://app.example.com"}))
    headers = {} if origin is None else {"Origin": origin.format(port=live.port)}
    if allowed:
        client = await JsonClient.open(live.ws_url("/ws/echo"), headers=headers)
        client.connection.write_message("ok")
        assert await client.recv_raw() == "ok"
        client.close()
    else:
        with pytest.raises(HTTPClientError) as refused:
            await JsonClient.open(live.ws_url("/ws/echo"), headers=headers)
        assert refused.value.code == 403


@pytest.mark.parametrize(
    ("send_threads", "tls"),
    [(0, False), (2, False), (2, True)],
    ids=["transports", "direct-sends", "wss"],
)
async def test_slow_consumer_is_dropped_and_memory_stays_bounded(
    make_server, send_threads: int, tls: bool
) -> None:
    limit = 256 * 1024
    live = make_server(send_buffer_limit=limit, rate_limit=0, send_threads=send_threads, tls=tls)
    members = [await live.connect(name) for name in ("ann", "bob", "cy", "di")]
    for i, client in enumerate(members):
        await client.join("flood")
        for earlier in members[:i]:
            await earlier.expect("presence")
    ann = members[0]
    stuck = await asyncio.to_thread(live.wire, "/ws?name=stuck")
    stuck.send('{"type":"join","room":"flood"}')
    for client in members:
        await client.expect("presence")
    stuck_peer = next(p for p in live.hub.peers.values() if p.name == "stuck")

    progress = asyncio.Event()  # set whenever a well-behaved reader takes a message
    received: list[list[int]] = [[] for _ in members]

    async def read_all(client: JsonClient, seqs: list[int]) -> list[int]:
        while True:
            message = await client.recv()
            if message["type"] == "message":
                seqs.append(message["seq"])
                progress.set()
                if message["data"] == "end":
                    return seqs

    readers = [
        asyncio.ensure_future(read_all(c, r)) for c, r in zip(members, received, strict=True)
    ]
    payload = "z" * 1000
    window = 64  # ~64 KB in flight to the readers, well under the limit: they keep up
    sent = 0
    while not stuck_peer.closed and sent < 20_000:  # bounded; kernel buffers absorb some MB
        while sent - min(map(len, received)) >= window:
            progress.clear()
            await asyncio.wait_for(progress.wait(), 5)
        ann.send({"type": "publish", "room": "flood", "data": payload})
        sent += 1
        if sent % 16 == 0:
            await asyncio.sleep(0)  # let the server run
            # Within the limit while it is served; the turn that drops it may have
            # gone past (the bound after the drop is checked below).
            assert stuck_peer.closed or stuck_peer.backlog + stuck_peer.pending <= limit
    ann.send({"type": "publish", "room": "flood", "data": "end"})
    for seqs in await asyncio.gather(*readers):  # the others get every message, in order
        assert seqs == list(range(1, sent + 2))
    # Judged once its queue was offered to the socket: at most the limit it held
    # before plus one queue's worth (the limit and a frame).
    assert stuck_peer.closed and stuck_peer.backlog <= 2 * limit + 1100
    body = await health(live)
    assert body["slow_consumers_dropped"] == 1 and body["connections"] == len(members)
    stuck.close()


async def test_a_reader_that_caught_up_is_not_dropped_for_its_old_backlog(make_server) -> None:
    # The hub remembers a member's backlog from its last write. A reader that
    # fell behind, then read everything, must be judged by its socket, not
    # by that figure, when the next message comes.
    limit = 256 * 1024
    live = make_server(send_buffer_limit=limit, rate_limit=0)
    ann = await live.connect("ann")
    await ann.join("r")
    lagger = await asyncio.to_thread(Wire, live.port, "/ws?name=lagger")
    lagger.send('{"type":"join","room":"r"}')
    await ann.expect("presence")
    lag_peer = next(p for p in live.hub.peers.values() if p.name == "lagger")
    payload = "q" * 32 * 1024

    async def publish(n: int) -> None:  # one at a time: ann's ack follows its own copy
        ann.send({"type": "publish", "room": "r", "data": payload, "id": n})
        while (await ann.recv())["type"] != "ack":
            pass

    sent = 0
    while lag_peer.backlog <= limit - 40 * 1024 and sent < 400:  # bounded: ~13 MB at most
        await publish(sent)
        sent += 1
    assert not lag_peer.closed and lag_peer.backlog > limit - 40 * 1024

    def read_messages(count: int) -> int:
        got = 0
        while got < count:
            if json.loads(lagger.recv_data(10).payload)["type"] == "message":
                got += 1
        return got

    assert await asyncio.to_thread(read_messages, sent) == sent
    await wait_until(lambda: lag_peer.sink.backlog() == 0)
    assert lag_peer.backlog > limit - 40 * 1024  # what the hub last saw: stale now
    await publish(sent)
    assert await asyncio.to_thread(read_messages, 1) == 1
    assert not lag_peer.closed
    assert (await health(live))["slow_consumers_dropped"] == 0
    lagger.close()


async def test_resume_after_a_drop_replays_exactly_what_was_missed(live: LiveServer) -> None:
    ann = await live.connect("ann")
    joined = await ann.join("r")
    bob = await live.connect("bob")
    first = await bob.join("r")
    assert first["epoch"] == joined["epoch"]
    bob.close()
    for n in range(3):
        ann.send({"type": "publish", "room": "r", "data": n})
    bob = await live.connect("bob")
    bob.send({"type": "join", "room": "r", "since": 0, "epoch": first["epoch"]})
    rejoined = await bob.expect("joined")
    assert rejoined["seq"] == 3
    assert [(await bob.expect("message"))["data"] for _ in range(3)] == [0, 1, 2]
    ann.send({"type": "publish", "room": "r", "data": "new"})
    assert (await bob.expect("message"))["seq"] == 4


async def test_client_id_tells_apart_duplicate_names(live: LiveServer) -> None:
    one = await live.connect("same")
    two = await live.connect("same")
    assert one.client_id != two.client_id
    await one.join("r")
    joined = await two.join("r")
    assert {m["client_id"] for m in joined["members"]} == {one.client_id, two.client_id}


async def test_closed_client_leaves_its_rooms_at_once(live: LiveServer) -> None:
    ann, bob = await pair_in_room(live)
    bob.close()
    left = await ann.expect("presence")
    assert left["event"] == "leave" and left["member"]["client_id"] == bob.client_id
    await wait_until(lambda: len(live.hub.peers) == 1)
    with pytest.raises(WebSocketClosedError):
        await bob.connection.write_message("gone")


async def test_plain_upgrades_get_our_101_deflate_offers_get_tornados(make_server) -> None:
    live = make_server(compression=True)
    plain = await asyncio.to_thread(Wire, live.port, "/ws?name=plain")
    deflate = await asyncio.to_thread(
        Wire,
        live.port,
        "/ws?name=deflate",
        headers={"Sec-WebSocket-Extensions": "permessage-deflate"},
    )
    for wire in (plain, deflate):
        head = wire.response_head.lower()  # header names are case-insensitive
        assert wire.status == 101 and "server: tornadoserver/" in head
        assert "sec-websocket-accept:" in head
        welcome = await asyncio.to_thread(wire.recv_data)
        payload = welcome.payload
        if welcome.rsv & 0x4:  # compressed by Tornado (write_message under --handoff=off)
            payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
        assert b'"welcome"' in payload
        wire.close()
    assert "permessage-deflate" not in plain.response_head
    assert "permessage-deflate" in deflate.response_head
