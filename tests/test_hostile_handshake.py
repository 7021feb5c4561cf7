"""Garbage, malformed and half-finished HTTP handshakes against a real server process.

The server must answer (or drop) every one of them promptly, keep serving a
canary connection and newcomers, hold no file descriptor for a client that
has gone, and log no exception.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile.checks import (
    assert_echoes,
    assert_fresh_client_served,
    assert_no_errors_logged,
    open_fds,
    wait_connections,
    wait_fds,
)
from tests.hostile.proc import HubProcess
from tests.hostile.wire import Wire, abort_socket, connect_tcp, handshake_request

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
HEADER_TIMEOUT = 30.0  # server.py: HTTPServer(idle_connection_timeout=30)


@pytest.fixture(scope="module")
def server() -> Iterator[HubProcess]:
    with HubProcess() as running:
        yield running


@pytest.fixture(scope="module")
def idle_fds(server: HubProcess, canary: Wire) -> int:
    """The server's descriptors with just the canary connected (after an echo,
    so its hand-off, which may open a descriptor of the event loop's, is done)."""
    assert_echoes(canary)
    return open_fds(server)


@pytest.fixture(autouse=True)
def still_serving(server: HubProcess, canary: Wire, idle_fds: int) -> Iterator[None]:
    mark = server.mark()
    yield
    assert server.alive(), server.log()[-3000:]
    assert_echoes(canary)
    assert_fresh_client_served(server)
    wait_connections(server, 1)
    wait_fds(server, idle_fds)
    assert_no_errors_logged(server, since=mark)


def exchange(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send ``request``; return what the server says before closing, or its
    response head if it keeps the connection open.

    A request without a complete head is followed by FIN, so the server knows
    nothing more comes (a complete one is not: Tornado drops a half-closed
    connection before answering). Fails on socket timeout if the server
    neither answers nor drops us.
    """
    sock = connect_tcp(port, timeout)
    received = b""
    try:
        try:
            sock.sendall(request)
            if b"\r\n\r\n" not in request:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            return b""
        while b"\r\n\r\n" not in received:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        return received
    finally:
        abort_socket(sock)


def status_of(response: bytes) -> int | None:
    if not response.startswith(b"HTTP/1."):
        return None
    return int(response.split(b" ", 2)[1])


@FUZZ
@given(junk=st.binary(min_size=1, max_size=3000))
def test_random_bytes_instead_of_a_request(server: HubProcess, junk: bytes) -> None:
    status = status_of(exchange(server.port, junk))
    assert status is None or 400 <= status < 500


@FUZZ
@given(
    line=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
    headers=st.lists(
        st.tuples(
            st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=20),
            st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=60),
        ),
        max_size=8,
    ),
)
def test_random_request_lines_and_headers(
    server: HubProcess, line: str, headers: list[tuple[str, str]]
) -> None:
    request = (line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode(
        "latin-1"
    )
    status = status_of(exchange(server.port, request))
    assert status is None or 200 <= status < 500


MUTATIONS = st.fixed_dictionaries(
    {},
    optional={
        "Upgrade": st.sampled_from(["websocket", "WebSocket", "h2c", ""]) | st.text(max_size=20),
        "Connection": st.sampled_from(["Upgrade", "keep-alive, Upgrade", "close", ""]),
        "Sec-WebSocket-Key": st.sampled_from(["", "short", "dGhlIHNhbXBsZSBub25jZQ=="])
        | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40),
        "Sec-WebSocket-Version": st.sampled_from(["13", "8", "0", "", "13, 8", "999999999999"]),
        "Sec-WebSocket-Extensions": st.sampled_from(
            [
                "permessage-deflate",
                "permessage-deflate; server_max_window_bits=8",
                "permessage-deflate; bogus=1",
                "x-webkit-deflate-frame",
                ";;;,,,=",
            ]
        ),
        "Sec-WebSocket-Protocol": st.text(st.characters(min_codepoint=33, max_codepoint=126)),
        "Origin": st.sampled_from(["http://evil.example", "null", "", "not a url", "http://x:0"]),
        "Host": st.sampled_from(["", "[::1", "a" * 300, "127.0.0.1:99999"]),
    },
)


@FUZZ
@given(
    path=st.sampled_from(["/ws/echo", "/ws?name=x", "/ws?name=" + "n" * 80, "/nope"]), m=MUTATIONS
)
def test_mutated_websocket_handshakes(server: HubProcess, path: str, m: dict[str, str]) -> None:
    response = exchange(server.port, handshake_request(server.port, path, m))
    status = status_of(response)
    assert status is None or status == 101 or 400 <= status < 500, response[:200]


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (lambda p: handshake_request(p, headers={"Sec-WebSocket-Version": "8"}), 426),
        (lambda p: handshake_request(p, headers={"Sec-WebSocket-Key": ""}), 400),
        (lambda p: handshake_request(p, headers={"Upgrade": "h2c"}), 400),
        (lambda p: handshake_request(p, headers={"Origin": "http://evil.example"}), 403),
        (lambda p: handshake_request(p, headers={"Origin": "http://["}), 403),
        (lambda p: handshake_request(p).replace(b"GET", b"POST", 1), 405),
        (lambda p: handshake_request(p, headers={"X-Pad": "a" * 70_000}), None),
        (lambda p: b"GET /ws/echo HTTP/1.1\r\n" + b"X: y\r\n" * 5000 + b"\r\n", None),
    ],
    ids=[
        "version-8",
        "no-key",
        "not-websocket",
        "foreign-origin",
        "bad-origin",
        "post",
        "huge-header",
        "many",
    ],
)
def test_malformed_handshakes_are_refused(
    server: HubProcess, request_bytes, expected: int | None
) -> None:
    status = status_of(exchange(server.port, request_bytes(server.port)))
    if expected is None:
        assert status is None or 400 <= status < 500
    else:
        assert status == expected


@pytest.mark.parametrize("cut", [1, 10, 40, -20, -2, -1], ids=lambda c: f"cut{c}")
def test_half_finished_handshakes_do_not_block_others_and_vanish_cleanly(
    server: HubProcess, canary: Wire, idle_fds: int, cut: int
) -> None:
    request = handshake_request(server.port)
    stalled = []
    try:
        for _ in range(100):
            sock = connect_tcp(server.port)
            sock.sendall(request[:cut])
            stalled.append(sock)
        wait_fds(server, idle_fds + 100, timeout=5)  # accepted (or at least not refused)
        assert_echoes(canary)
        assert_fresh_client_served(server)
    finally:
        for sock in stalled:
            abort_socket(sock)
    wait_fds(server, idle_fds)


def test_a_stalled_handshake_is_dropped_by_the_server(server: HubProcess, idle_fds: int) -> None:
    """Slowloris: a request that never finishes is cut after the header timeout."""
    sock = connect_tcp(server.port, timeout=HEADER_TIMEOUT + 10)
    try:
        sock.sendall(b"GET /ws/echo HTTP/1.1\r\nHost: x\r\n")
        assert sock.recv(1024) == b""  # EOF from the server, within the socket timeout
    finally:
        sock.close()


def test_connections_that_open_and_vanish(server: HubProcess, idle_fds: int) -> None:
    """TCP connect then gone, with FIN or RST, before sending a byte."""
    for i in range(300):
        sock = connect_tcp(server.port)
        if i % 2:
            abort_socket(sock)
        else:
            sock.close()
    wait_fds(server, idle_fds)
