"""https:// and wss:// with ``--certfile`` and ``--keyfile``: a certificate made
in the test (trustme), trusted by the clients that should get in.

The hub's own rules over TLS (fan-out, heartbeat eviction, the slow-consumer
bound, shutdown with 1001) run in their own files, parametrized with ``tls``
(test_fanout_e2e, test_server_e2e, test_process).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import sys
import time
import urllib.request

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

from tests.certificates import Certificates, make_certificates
from tests.command import SERVER, Command, run_server_command
from tests.hostile.hubwire import HubWire
from tests.hostile.proc import HubProcess, wait_for
from tests.support import JsonClient
from tests.test_ipv6 import _ipv6_loopback, talk
from tests.test_startup import assert_one_line_error


def plain_http_answer(port: int) -> bytes:
    """What a plain-HTTP request to ``port`` gets back (b"" when cut or reset)."""
    with socket.create_connection(("127.0.0.1", port), 5) as plain:
        plain.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            return plain.recv(1024)
        except ConnectionResetError:
            return b""


async def test_wss_works_with_the_ca_trusted_and_fails_without(make_server) -> None:
    live = make_server(tls=True)
    ann = await live.connect("ann")
    await ann.join("r")
    ann.send({"type": "publish", "room": "r", "data": "over tls", "id": 1})
    assert (await ann.expect("message"))["data"] == "over tls"
    untrusted = ssl.create_default_context()  # the system's CAs: ours is not among them
    with pytest.raises(ssl.SSLCertVerificationError):
        await JsonClient.open(live.ws_url("/ws?name=eve"), ssl_options=untrusted)
    answer = await asyncio.to_thread(plain_http_answer, live.port)
    assert not answer.startswith(b"HTTP/")  # http:// to the TLS port: refused, not served
    assert list(live.hub.peers.values())[0].name == "ann" and len(live.hub.peers) == 1


async def test_tls_connections_stay_on_tornados_stream(make_server) -> None:
    """The hand-off cannot take an SSL socket: TLS connections work without it
    (plain and compressed upgrades alike), and /healthz shows none handed off."""
    live = make_server(tls=True, compression=True)
    plain = await live.connect("plain")
    await plain.join("r")
    request = HTTPRequest(live.ws_url("/ws/echo"), ssl_options=live.client_tls)
    deflated = await websocket_connect(request, compression_options={})
    assert "permessage-deflate" in deflated.headers.get("Sec-WebSocket-Extensions", "")
    deflated.write_message("back " * 100)
    assert await deflated.read_message() == "back " * 100
    response = await AsyncHTTPClient().fetch(live.url("/healthz"), ssl_options=live.client_tls)
    health = json.loads(response.body)
    assert health["connections"] == 2 and health["handed_off_sockets"] == 0
    assert live.hub.peers and all(p.sink.fd == -1 for p in live.hub.peers.values())
    deflated.close()


def test_a_client_that_never_completes_the_tls_handshake_is_cut(certificates) -> None:
    """The handshake runs under idle_connection_timeout, like a request's headers."""
    context = certificates.client_context()
    with HubProcess(
        *certificates.server_args(), "--idle_connection_timeout=0.5", client_tls=context
    ) as server:
        silent = socket.create_connection(("127.0.0.1", server.port), 5)
        half_hello = socket.create_connection(("127.0.0.1", server.port), 5)
        half_hello.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello's start
        started = time.monotonic()
        for sock in (silent, half_hello):
            sock.settimeout(5)
            assert sock.recv(1024) == b""  # closed by the server
        assert time.monotonic() - started < 4
        assert server.health()["status"] == "ok"
        silent.close()
        half_hello.close()
        assert server.errors() == []


def test_past_the_pending_cap_a_tls_newcomer_is_closed_without_a_plaintext_503(
    certificates,
) -> None:
    """Handshakes in progress count as pending; the refused get no 503 in clear."""
    context = certificates.client_context()
    args = (*certificates.server_args(), "--max_pending_connections=2")
    with HubProcess(*args, client_tls=context) as server:
        holders = [socket.create_connection(("127.0.0.1", server.port), 5) for _ in range(2)]
        try:

            def refused_at_once() -> bool:
                with socket.create_connection(("127.0.0.1", server.port), 5) as late:
                    late.settimeout(1)
                    try:
                        return late.recv(1024) == b""  # closed, nothing sent
                    except ConnectionResetError:
                        return True
                    except TimeoutError:  # accepted before the holders were: pending too
                        return False

            wait_for(refused_at_once, what="a refusal past the cap")
        finally:
            for holder in holders:
                holder.close()
        wire = wait_for(lambda: _try_hub_wire(server.port, context), what="room again")
        assert wire.welcome["type"] == "welcome"
        wire.close()


def _try_hub_wire(port: int, context: ssl.SSLContext) -> HubWire | None:
    try:
        return HubWire(port, "after", tls=context)
    except (OSError, ssl.SSLError):
        return None


def test_https_pages_api_healthz_and_wss_from_the_real_process(certificates) -> None:
    context = certificates.client_context()
    with HubProcess(*certificates.server_args(), "--api_key=k", client_tls=context) as server:
        assert f"listening on https://127.0.0.1:{server.port}/" in server.log()
        wait_for(lambda: "TLS on" in server.log(), what="the TLS line")

        def fetch(path: str, **kw) -> bytes:
            request = urllib.request.Request(server.url(path), **kw)
            with urllib.request.urlopen(request, timeout=5, context=context) as response:
                return response.read()

        assert b"<script" in fetch("/") and b"<canvas" in fetch("/whiteboard")
        assert b"export function connect" in fetch("/static/hub.js")
        wire = HubWire(server.port, "ann", tls=context)
        wire.join("lobby")
        body = json.dumps({"room": "lobby", "data": "from the backend"}).encode()
        fetch("/api/publish", data=body, headers={"Authorization": "Bearer k"})
        message = wire.expect("message")
        assert message["data"] == "from the backend"
        assert server.health()["connections"] == 1
        wire.close()
        assert server.errors() == []


def test_tls_off_is_said_at_start_up() -> None:
    with HubProcess() as server:
        wait_for(lambda: "TLS off" in server.log(), what="the TLS line")
        assert f"listening on http://127.0.0.1:{server.port}/" in server.log()


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback")
async def test_wss_over_ipv6(certificates) -> None:
    argv = [sys.executable, SERVER, "--host=::1", "--port=0", *certificates.server_args()]
    with Command(argv) as proc:
        assert f"https://[::1]:{proc.port}/" in proc.log()
        await talk(f"wss://[::1]:{proc.port}", ssl_options=certificates.client_context())


def test_every_worker_of_processes_2_serves_tls(certificates, redis_server) -> None:
    context = certificates.client_context()
    args = (f"--broker={redis_server.url}", "--processes=2", *certificates.server_args())
    with HubProcess(*args, client_tls=context) as server:
        wait_for(lambda: server.log().count("listening on https://") == 2, 10, what="both up")
        wires = [HubWire(server.port, f"c{n}", tls=context) for n in range(16)]
        assert len({wire.welcome["node"] for wire in wires}) == 2
        for wire in wires:
            wire.join("r")
        wires[0].send_json({"type": "publish", "room": "r", "data": "all"})
        for wire in wires[1:]:
            while (message := wire.recv_json())["type"] != "message":
                pass
            assert message["data"] == "all"
        for wire in wires:
            wire.close()


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Files that must not start a TLS server: garbage, another certificate's key,
    an encrypted key, one that cannot be read."""
    from cryptography.hazmat.primitives import serialization

    directory = str(tmp_path_factory.mktemp("bad-tls"))
    other = make_certificates(os.path.join(directory))
    mine = make_certificates(str(tmp_path_factory.mktemp("mine")))
    garbage = os.path.join(directory, "garbage.pem")
    with open(garbage, "w") as file:
        file.write("not a certificate\n")
    with open(mine.keyfile, "rb") as file:
        key = serialization.load_pem_private_key(file.read(), None)
    encrypted = os.path.join(directory, "encrypted.pem")
    with open(encrypted, "wb") as file:
        file.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            )
        )
    unreadable = os.path.join(directory, "unreadable.pem")
    os.mkdir(unreadable)  # a directory: unreadable as a file, even for root
    return {
        "cert": mine.certfile,
        "key": mine.keyfile,
        "other_key": other.keyfile,
        "garbage": garbage,
        "encrypted": encrypted,
        "unreadable": unreadable,
        "missing": os.path.join(directory, "missing.pem"),
    }


@pytest.mark.parametrize(
    ("cert", "key", "words"),
    [
        ("cert", None, ("--certfile needs --keyfile",)),
        (None, "key", ("--keyfile needs --certfile",)),
        ("missing", "key", ("--certfile=", "cannot be read")),
        ("cert", "unreadable", ("--keyfile=", "cannot be read")),
        ("cert", "other_key", ("key values mismatch",)),
        ("garbage", "key", ("not a PEM certificate chain",)),
        ("cert", "garbage", ("not a PEM certificate chain",)),
        ("cert", "encrypted", ("encrypted",)),
    ],
)
def test_bad_tls_options_are_one_line_start_up_errors(bad_files, cert, key, words) -> None:
    args = ["--port=0"]
    if cert:
        args.append(f"--certfile={bad_files[cert]}")
    if key:
        args.append(f"--keyfile={bad_files[key]}")
    assert_one_line_error(run_server_command(*args), *words)


def test_the_server_context_refuses_tls_below_1_2(certificates: Certificates) -> None:
    context = certificates.server_context()
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE  # no client certificates asked for
