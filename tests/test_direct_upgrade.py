"""Plain upgrades answered straight off the accepted socket (handlers/direct_upgrade.py),
and everything else left to Tornado's HTTP/1 path unchanged, against real server
processes. /healthz's ``direct_upgrades`` says which path served a request.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Iterator

import pytest
from tornado.web import Application

from handlers.direct_upgrade import DirectUpgrade, Outcome
from tests.hostile.checks import assert_no_errors_logged
from tests.hostile.proc import HubProcess
from tests.hostile.wire import Wire, connect_tcp, encode_frame, handshake_request
from tests.support import HANDOFF, TIMEOUT, LiveServer, wait_until

pytestmark = pytest.mark.skipif(not HANDOFF, reason="--handoff=off keeps every upgrade on Tornado")


@pytest.fixture(scope="module")
def server() -> Iterator[HubProcess]:
    with HubProcess("--logging=debug") as running:
        yield running


@pytest.fixture(autouse=True)
def logs_no_error(server: HubProcess) -> Iterator[None]:
    mark = server.mark()
    yield
    assert server.alive()
    assert_no_errors_logged(server, since=mark)


def direct_upgrades(server: HubProcess) -> int:
    return server.health()["direct_upgrades"]


def frames_json(wire: Wire, count: int) -> list[dict]:
    return [json.loads(wire.recv_data().payload) for _ in range(count)]


def test_a_plain_upgrade_is_answered_directly_and_works(server: HubProcess) -> None:
    before = direct_upgrades(server)
    with Wire(server.port, "/ws?name=ann") as ann, Wire(server.port, "/ws?name=bob") as bob:
        assert ann.status == bob.status == 101, ann.response_head
        assert "Sec-WebSocket-Accept" in ann.response_head
        assert direct_upgrades(server) == before + 2
        (welcome,) = frames_json(ann, 1)
        assert welcome["type"] == "welcome" and welcome["client_id"]
        frames_json(bob, 1)
        ann.send(json.dumps({"type": "join", "room": "r"}))
        assert frames_json(ann, 1)[0]["type"] == "joined"
        bob.send(json.dumps({"type": "join", "room": "r"}))
        assert frames_json(bob, 1)[0]["type"] == "joined"
        presence = frames_json(ann, 1)[0]
        assert (presence["type"], presence["event"]) == ("presence", "join")
        bob.send(json.dumps({"type": "publish", "room": "r", "data": "hi", "id": "m1"}))
        message = frames_json(ann, 1)[0]
        assert (message["type"], message["data"]) == ("message", "hi")


def test_frames_sent_with_the_head_are_read_after_the_101(server: HubProcess) -> None:
    """The path consumes the head only: a join in the same packet is answered."""
    before = direct_upgrades(server)
    sock = connect_tcp(server.port)
    try:
        join = encode_frame(json.dumps({"type": "join", "room": "early"}).encode(), 1)
        sock.sendall(handshake_request(server.port, "/ws?name=early") + join)
        received = b""
        while received.count(b'"type":"joined"') == 0:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        assert received.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert received.index(b'"type":"welcome"') < received.index(b'"type":"joined"')
    finally:
        sock.close()
    assert direct_upgrades(server) == before + 1


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/ws?name=lf", {}),  # the same upgrade with bare-LF line ends (sent with eol="\n")
        ("/ws?name=body", {"Content-Length": "0"}),  # a body, even an empty one
        ("/ws?name=v8", {"Sec-WebSocket-Version": "8"}),  # Tornado answers 426
        ("/elsewhere", {}),  # not a WebSocket route: 404
    ],
)
def test_other_heads_go_to_tornado_unchanged(
    server: HubProcess, path: str, headers: dict[str, str]
) -> None:
    before = direct_upgrades(server)
    eol = "\n" if path.endswith("=lf") else "\r\n"
    with Wire(server.port, path, headers=headers, eol=eol) as wire:
        expected = {"/elsewhere": 404, "/ws?name=v8": 426}.get(path, 101)
        assert wire.status == expected, wire.response_head
        if expected == 101:
            assert json.loads(wire.recv_data().payload)["type"] == "welcome"
    assert direct_upgrades(server) == before


def response(server: HubProcess, headers: dict[str, str], eol: str) -> str:
    """The whole answer to an upgrade with ``headers``, without its Date and
    Connection lines (the direct path closes after a refusal)."""
    sock = connect_tcp(server.port)
    try:
        sock.sendall(handshake_request(server.port, "/ws?name=x", headers, eol))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            assert chunk, head
            head += chunk
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
        while len(head.split(b"\r\n\r\n", 1)[1]) < length:
            head += sock.recv(65536)
    finally:
        sock.close()
    lines = head.decode("latin-1").split("\r\n")
    return "\r\n".join(line for line in lines if not line.startswith(("Date:", "Connection:")))


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": "http://evil.example"}, "403 origin not allowed"),
        ({"Host": "evil.example"}, "400 host not allowed"),
    ],
)
def test_refusals_are_tornados_own_on_both_paths(
    server: HubProcess, headers: dict[str, str], status: str
) -> None:
    before = direct_upgrades(server)
    direct = response(server, headers, "\r\n")
    assert direct_upgrades(server) == before + 1
    tornado = response(server, headers, "\n")
    assert direct_upgrades(server) == before + 1
    assert direct.startswith(f"HTTP/1.1 {status}\r\n"), direct
    assert direct == tornado


def test_the_path_takes_nothing_it_does_not_serve() -> None:
    """What `DirectUpgrade.try_serve` leaves to Tornado stays in the socket, byte
    for byte: nothing yet, and a head that has not ended."""
    upgrade = DirectUpgrade(Application(), {"/ws": (object, {})})
    ours, theirs = socket.socketpair()
    try:
        assert upgrade.try_serve(ours, ("127.0.0.1", 1)) is Outcome.NOT_YET
        partial = handshake_request(80, "/ws")[:-2]
        theirs.sendall(partial)
        assert upgrade.try_serve(ours, ("127.0.0.1", 1)) is Outcome.TORNADO
        assert ours.recv(65536, socket.MSG_PEEK) == partial
    finally:
        ours.close()
        theirs.close()


async def test_stopping_closes_the_sockets_still_waiting_for_their_request(
    live: LiveServer,
) -> None:
    """A socket accepted before its request came is watched for it; at shutdown it
    is closed (an upgrade answered after the hub's 1001s would miss them)."""
    direct = live.http.direct
    assert direct is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    try:
        await wait_until(lambda: len(direct.waiting) == 1)
        pending = live.http.pending
        live.http.stop()
        assert (len(direct.waiting), live.http.pending) == (0, pending - 1)
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    finally:
        writer.close()
