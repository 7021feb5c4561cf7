"""Tokens and query strings never reach the server's log, at any level."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest

jwt = pytest.importorskip("jwt", reason="PyJWT is not installed (pip install '.[auth]')")

from tests.hostile.proc import HubProcess, wait_for  # noqa: E402
from tests.hostile.wire import HOST, handshake_request  # noqa: E402

SECRET = "log-test-secret-of-32-bytes-or-more"
API_KEY = "api-key-that-must-not-be-logged"


def get(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def upgrade(port: int, target: str) -> int:
    """The HTTP status a WebSocket upgrade of ``target`` is answered with."""
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(handshake_request(port, target))
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            assert data, "closed before answering"
            answer += data
        return int(answer.split()[1])


def test_no_token_or_query_string_in_any_log_line() -> None:
    good = jwt.encode({"sub": "u1"}, SECRET, algorithm="HS256")
    forged = jwt.encode({"sub": "u1"}, "another-secret-of-32-bytes-or-more", algorithm="HS256")
    with HubProcess(f"--token_secret={SECRET}", f"--api_key={API_KEY}", "--logging=debug") as srv:
        assert upgrade(srv.port, f"/ws?name=ann&token={good}") == 101  # logged at debug
        assert upgrade(srv.port, f"/ws?token={forged}") == 101  # then 4003
        assert upgrade(srv.port, f"/ws?name={'n' * 65}&token={good}") == 400  # at warning
        assert get(srv.url(f"/api/stats?token={good}"), {"Authorization": "Bearer no"}) == 401
        assert get(srv.url(f"/nowhere?token={forged}")) == 404
        assert get(srv.url("/last-request")) == 404
        wait_for(lambda: "/last-request" in srv.log(), what="the access log line")
        log = srv.log()
    assert "/ws" in log and "/api/stats" in log and "/nowhere" in log
    for secret in (good, forged, API_KEY, SECRET, "token="):
        assert secret not in log
    assert [line for line in log.splitlines() if "?" in line] == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "/ws is open to anyone who can connect"),
        ((f"--token_secret={SECRET}",), "/ws requires connection tokens (HS256)"),
    ],
)
def test_start_up_log_says_whether_ws_is_open(args: tuple[str, ...], says: str) -> None:
    with HubProcess(*args) as server:
        wait_for(lambda: says in server.log(), what=says)
