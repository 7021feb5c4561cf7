"""Host, Origin and upgrade-header leniency, and what the access log keeps
(issue 11, finding 7), against real server processes.

Each upgrade check runs on every upgrade path: our own 101 answered straight off
the accepted socket (the default, handlers/direct_upgrade.py), our own 101 from
Tornado's request handling (a head with bare-LF line ends, which the direct path
leaves to Tornado) and Tornado's 101 (``--compression`` with permessage-deflate
offered).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator

import pytest

from tests.hostile.checks import assert_no_errors_logged
from tests.hostile.proc import HubProcess, wait_for
from tests.hostile.wire import Wire, abort_socket, connect_tcp, handshake_request

DEFLATE = {"Sec-WebSocket-Extensions": "permessage-deflate"}


@pytest.fixture(scope="module", params=["direct-101", "own-101", "tornado-101"])
def server(request: pytest.FixtureRequest) -> Iterator[HubProcess]:
    args = ("--compression=true",) if request.param == "tornado-101" else ()
    with HubProcess("--logging=debug", *args) as running:
        running.offer = DEFLATE if args else {}  # type: ignore[attr-defined]
        running.eol = "\n" if request.param == "own-101" else "\r\n"  # type: ignore[attr-defined]
        yield running


@pytest.fixture(autouse=True)
def serves_and_logs_no_error(server: HubProcess) -> Iterator[None]:
    mark = server.mark()
    yield
    assert server.alive()
    with Wire(server.port, "/ws/echo", headers=server.offer, eol=server.eol) as fresh:  # type: ignore[attr-defined]
        assert fresh.status == 101, fresh.response_head
    assert_no_errors_logged(server, since=mark)


def status(server: HubProcess, headers: dict[str, str], path: str = "/ws/echo") -> int:
    """The status line's code for an upgrade with ``headers`` added or replaced."""
    offer = server.offer  # type: ignore[attr-defined]
    with Wire(server.port, path, headers={**offer, **headers}, eol=server.eol) as wire:  # type: ignore[attr-defined]
        return wire.status


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("http://127.0.0.1:{port}", 101),
        ("http://127.0.0.1:{port}/", 101),
        ("https://127.0.0.1:{port}", 403),  # another scheme is another origin
        ("ws://127.0.0.1:{port}", 403),  # never a page's origin
        ("ftp://127.0.0.1:{port}", 403),
        ("javascript://127.0.0.1:{port}", 403),
        ("http://evil.example@127.0.0.1:{port}", 403),  # user info is no origin
        ("http://127.0.0.1:{port}/path", 403),
    ],
)
def test_origins_are_compared_as_scheme_host_and_port(
    server: HubProcess, origin: str, expected: int
) -> None:
    assert status(server, {"Origin": origin.format(port=server.port)}) == expected


@pytest.mark.parametrize(
    ("host", "origin", "expected"),
    [
        ("attacker.example:{port}", "http://attacker.example:{port}", 400),  # DNS rebinding
        ("attacker.example:{port}", None, 400),
        ("localhost:{port}", "http://localhost:{port}", 101),
        ("127.0.0.1:{port}", None, 101),
    ],
)
def test_only_the_servers_own_names_are_accepted_as_host(
    server: HubProcess, host: str, origin: str | None, expected: int
) -> None:
    headers = {"Host": host.format(port=server.port)}
    if origin is not None:
        headers["Origin"] = origin.format(port=server.port)
    assert status(server, headers) == expected


@pytest.mark.parametrize(
    "key",
    [
        "not base64 at all!!!!!!!",  # 24 characters, not base64
        base64.b64encode(os.urandom(3000)).decode(),  # 4,000 characters
        base64.b64encode(os.urandom(12)).decode(),  # base64, but 12 bytes
        "A" * 24,  # 24 characters of base64 that decode to 18 bytes
    ],
    ids=["not-base64", "4000-chars", "12-bytes", "18-bytes"],
)
def test_a_malformed_websocket_key_gets_400(server: HubProcess, key: str) -> None:
    assert status(server, {"Sec-WebSocket-Key": key}) == 400


def test_an_http_1_0_upgrade_gets_400(server: HubProcess) -> None:
    request = handshake_request(server.port, headers=server.offer, eol=server.eol)  # type: ignore[attr-defined]
    sock = connect_tcp(server.port)
    try:
        sock.sendall(request.replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        head = b""
        while b"\r\n\r\n" not in head and (chunk := sock.recv(4096)):
            head += chunk
    finally:
        abort_socket(sock)
    assert head.split(b" ", 2)[1] == b"400", head[:200]


def test_access_log_lines_are_bounded_and_never_carry_the_query(server: HubProcess) -> None:
    secret = os.urandom(8).hex()
    mark = server.mark()
    # A refused request with a 60 KB query, and one with a token and a long path.
    assert status(server, {"Sec-WebSocket-Key": "bad"}, "/ws?name=" + "n" * 60_000) == 400
    assert status(server, {"Sec-WebSocket-Key": "bad"}, f"/ws/{'p' * 5000}?token={secret}") >= 400
    # A successful upgrade, logged at debug, with a token in its query.
    assert status(server, {}, f"/ws?name=ok&token={secret}") == 101
    wait_for(lambda: sum(" 101 " in line for line in server.lines[mark:]) >= 1, what="101 logged")
    logged = server.lines[mark:]
    assert secret not in "".join(logged)
    assert "nnnnnnnnnn" not in "".join(logged)
    assert all(len(line) < 400 for line in logged), max(map(len, logged))
