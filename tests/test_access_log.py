"""The access log: one line per connection at open and at close, read from a real
server process's stderr (docs/logging.md). CI runs these with the hand-off on and
off (WSHUB_HANDOFF), so both connection paths count bytes and close codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.hostile.hubwire import HubWire
from tests.hostile.proc import REPO, HubProcess, wait_for
from tests.hostile.wire import OP_TEXT, Wire

ACCESS = re.compile(r"\b(open|close|refused) (client_id=\S+ .*)$")
FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def access_lines(server: HubProcess, since: int = 0) -> list[dict[str, Any]]:
    """The access-log lines of a text-format log, each as {"event": ..., field: value}."""
    found = []
    for line in server.lines[since:]:
        match = ACCESS.search(line.rstrip("\n"))
        if match:
            fields: dict[str, Any] = {"event": match.group(1)}
            for name, value in FIELD.findall(match.group(2)):
                fields[name] = json.loads(value) if value.startswith('"') else value
            found.append(fields)
    return found


def closes_of(server: HubProcess, client_id: str) -> list[dict[str, Any]]:
    return [
        f for f in access_lines(server) if f["event"] == "close" and f["client_id"] == client_id
    ]


def wait_close(server: HubProcess, client_id: str, timeout: float = 10.0) -> dict[str, Any]:
    closes = wait_for(
        lambda: closes_of(server, client_id), timeout, what=f"the close line of {client_id}"
    )
    assert len(closes) == 1, closes
    return closes[0]


def test_open_and_close_lines_name_the_connection_its_code_duration_and_bytes() -> None:
    payload = "p" * 5000
    with HubProcess() as server:
        client = HubWire(server.port, name="ann")
        client.join("r")
        client.send_json({"type": "publish", "room": "r", "data": payload, "id": 1})
        received = client.until_id(1)
        assert any(m.get("data") == payload for m in received)
        opened = [f for f in access_lines(server) if f["event"] == "open"]
        assert opened == [
            {"event": "open", "client_id": client.client_id, "addr": "127.0.0.1", "endpoint": "/ws"}
        ]
        client.send_close(1000)
        assert client.ending().code == 1000

        closed = wait_close(server, client.client_id)
        assert closed["code"] == "1000"
        assert closed["endpoint"] == "/ws" and closed["addr"] == "127.0.0.1"
        assert 0 <= float(closed["duration_s"]) < 60
        # In: the publish (5 KB, plus framing and, handed off, the handshake). Out:
        # the welcome, joined, the message back and the ack.
        assert 5000 < int(closed["bytes_in"]) < 6000, closed
        assert 5000 < int(closed["bytes_out"]) < 7000, closed

        echo = Wire(server.port, "/ws/echo")
        echo.send("hello")
        assert echo.recv_data().payload == b"hello"
        echo_id = wait_for(
            lambda: [f for f in access_lines(server) if f.get("endpoint") == "/ws/echo"],
            what="the echo connection's open line",
        )[0]["client_id"]
        echo.send_close(4321)
        echo.ending()
        closed = wait_close(server, echo_id)
        assert closed["code"] == "4321"


def test_a_connection_refused_at_capacity_is_one_refused_line() -> None:
    with HubProcess("--max_connections=1") as server:
        first = HubWire(server.port)
        second = Wire(server.port, "/ws")
        assert second.ending().code == 1013
        refused = wait_for(
            lambda: [f for f in access_lines(server) if f["event"] == "refused"],
            what="the refused line",
        )
        assert [(f["code"], f["endpoint"]) for f in refused] == [("1013", "/ws")]
        assert refused[0]["client_id"] != first.client_id
        # Neither an open nor a close line for it: it never was a connection of the hub.
        events = [(f["event"], f["client_id"]) for f in access_lines(server)]
        assert ("open", refused[0]["client_id"]) not in events
        assert ("close", refused[0]["client_id"]) not in events
        first.abort()
        second.abort()


def test_a_client_that_vanishes_is_logged_with_1006() -> None:
    with HubProcess() as server:
        client = HubWire(server.port)
        client.still_open()
        client.abort()  # RST, no close frame
        closed = wait_close(server, client.client_id)
        assert closed["code"] == "1006"


def test_a_stale_client_is_logged_with_4000() -> None:
    with HubProcess("--ping_interval=0.2", "--ping_timeout=0.3") as server:
        silent = HubWire(server.port)  # reads nothing, answers no ping
        closed = wait_close(server, silent.client_id)
        assert closed["code"] == "4000"
        silent.abort()


def test_a_slow_consumer_is_logged_with_4001() -> None:
    limit = 64 * 1024
    with HubProcess(f"--send_buffer_limit={limit}", "--rate_limit=0") as server:
        stuck = Wire(server.port, "/ws?name=stuck", rcvbuf=4096)
        stuck.send('{"type":"join","room":"flood"}')
        publisher = HubWire(server.port, name="pub")
        publisher.join("flood")
        data = "z" * 30_000
        for i in range(2000):  # bounded: the kernel's buffers absorb a few MB at most
            if server.health()["slow_consumers_dropped"]:
                break
            publisher.send_json({"type": "publish", "room": "flood", "data": data, "id": i})
            publisher.until_id(i)
        stuck_id = next(
            f["client_id"]
            for f in access_lines(server)
            if f["event"] == "open" and f["client_id"] != publisher.client_id
        )
        closed = wait_close(server, stuck_id)
        assert closed["code"] == "4001"
        # What it acknowledged (handed off) or what was written to it (on Tornado's
        # path): at least what its receive window took, less than all that was sent.
        assert 4096 <= int(closed["bytes_out"]) < (i + 1) * 31_000, (closed, i)
        assert closes_of(server, publisher.client_id) == []  # the others stay
        publisher.still_open()
        stuck.abort()


def test_shutdown_closes_are_logged_with_1001() -> None:
    server = HubProcess()
    try:
        clients = [HubWire(server.port) for _ in range(3)]
        endings: list[int | None] = []
        readers = [
            threading.Thread(target=lambda c=c: endings.append(c.ending(timeout=10).code))
            for c in clients
        ]
        for reader in readers:
            reader.start()
        server.stop()  # SIGTERM: every client gets 1001 and answers it
        for reader in readers:
            reader.join(15)
        assert endings == [1001, 1001, 1001]
        for client in clients:
            closed = closes_of(server, client.client_id)
            assert [c["code"] for c in closed] == ["1001"]
    finally:
        server.stop()


def test_no_line_per_message_at_the_default_level() -> None:
    with HubProcess("--rate_limit=0") as server:
        client = HubWire(server.port)
        client.join("r")
        echo = Wire(server.port, "/ws/echo")
        wait_for(lambda: len(access_lines(server)) == 2, what="both open lines")
        mark = server.mark()
        for i in range(300):
            client.send_json({"type": "publish", "room": "r", "data": i, "id": i})
            echo.send(f"m{i}")
        client.until_id(299)
        for _ in range(300):
            assert echo.recv_data().opcode == OP_TEXT
        client.still_open()
        assert server.lines[mark:] == []
        client.abort()
        echo.abort()


def test_json_format_writes_every_record_as_one_object() -> None:
    with HubProcess("--log_format=json") as server:
        client = HubWire(server.port)
        client.send_close(1000)
        client.ending()
        # A Tornado-side record too: an unknown path is logged at warning.
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(server.url("/nowhere?secret=1"), timeout=5)

        def records() -> list[dict[str, Any]]:
            return [json.loads(line) for line in server.lines]

        wait_for(
            lambda: (
                any(r.get("event") == "close" for r in records())
                and any("/nowhere" in r["message"] for r in records())
            ),
            what="the close record and the 404 record",
        )
        every = records()  # each line parses on its own
        assert all({"time", "level", "logger", "message"} <= set(r) for r in every)
        start = next(r for r in every if "listening on" in r["message"])
        assert "memory broker" in start["message"] and "TLS off" in start["message"]
        opened = next(r for r in every if r.get("event") == "open")
        closed = next(r for r in every if r.get("event") == "close")
        assert opened["logger"] == "wshub.access" and opened["client_id"] == client.client_id
        assert closed["code"] == 1000
        assert isinstance(closed["bytes_in"], int) and isinstance(closed["duration_s"], float)
        assert "secret=1" not in server.log()


def test_start_up_line_says_processes_auth_and_tls() -> None:
    with HubProcess("--api_key=k") as server:
        start = next(line for line in server.lines if "listening on" in line)
    assert "memory broker; 1 process, tokens off, API on, TLS off" in start


def test_a_bad_log_format_is_a_start_up_error() -> None:
    done = subprocess.run(
        [sys.executable, "server.py", "--log_format=xml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "wshub: error: --log_format=xml: use text or json"


SECRET = "access-log-secret-of-32-bytes-or-more"


def test_the_user_is_logged_never_the_token_and_a_forged_user_cannot_forge_a_line() -> None:
    jwt = pytest.importorskip("jwt", reason="PyJWT is not installed (pip install '.[auth]')")
    forger = 'eve\n[I 000000 00:00:00 access_log:1] close client_id=x code=1000 user="ann"'
    with HubProcess(f"--token_secret={SECRET}") as server:
        tokens = {
            "alice": jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256"),
            forger: jwt.encode({"sub": forger}, SECRET, algorithm="HS256"),
        }
        clients = []
        for user, token in tokens.items():
            client = Wire(server.port, f"/ws?name=n&token={token}")
            clients.append(client)
            welcome = json.loads(client.recv_data().payload)
            assert welcome["user"] == user
            client.send_close(1000)
            client.ending()
            wait_close(server, welcome["client_id"])
        log = server.log()
    for token in tokens.values():
        assert token not in log
    assert "token=" not in log and [line for line in log.splitlines() if "?" in line] == []
    lines = access_lines(server)
    assert [(f["event"], f.get("user")) for f in lines] == [
        ("open", "alice"),
        ("close", "alice"),
        ("open", forger),  # JSON-quoted: the newline stays inside the value
        ("close", forger),
    ]
    assert len([line for line in log.splitlines() if "client_id=x" in line]) == 2
