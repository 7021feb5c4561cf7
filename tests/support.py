"""Test helpers: a live in-process server on a loopback port, a JSON client,
and a server run as a real subprocess (for signals and process-level checks)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import tornado.netutil
from tornado.httpclient import HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.websocket import WebSocketClientConnection, websocket_connect

import server as server_module
from handlers.diagnostics import Diagnostics
from handlers.fanout.batch_writer import default_threads, make_batch_writer
from hub.heartbeat import Heartbeat
from hub.hub import Hub
from hub.settings import HubSettings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 5.0
"""Upper bound for one expected event; tests wait for conditions, never for fixed times."""
HANDOFF = os.environ.get("WSHUB_HANDOFF", "on") != "off"
"""``WSHUB_HANDOFF=off`` runs every live server and server process with
``--handoff=off`` (CI runs the end-to-end tests in both modes)."""


def handoff_args() -> list[str]:
    """The server.py arguments that select the mode under test."""
    return [] if HANDOFF else ["--handoff=off"]


@dataclass
class LiveServer:
    """The real application served on 127.0.0.1 in the test's IOLoop."""

    hub: Hub
    port: int
    http: HTTPServer
    heartbeat: Heartbeat
    clients: list[JsonClient] = field(default_factory=list)
    diagnostics: Diagnostics = field(default_factory=Diagnostics)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ws_url(self, path: str = "/ws") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    async def connect(self, name: str | None = "alice", path: str = "/ws", **kw: Any) -> JsonClient:
        """Open a client on ``path``; for /ws, read and check the welcome."""
        if path == "/ws" and name is not None:
            path = f"/ws?name={name}"
        client = await JsonClient.open(self.ws_url(path), **kw)
        self.clients.append(client)
        if path.startswith("/ws?") or path == "/ws":
            welcome = await client.expect("welcome")
            client.client_id = welcome["client_id"]
        return client

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.heartbeat.stop()
        self.http.stop()
        self.hub.close_all()
        self.diagnostics.uninstall()


def start_live_server(
    settings: HubSettings | None = None,
    allowed_origins: frozenset[str] = frozenset(),
    compression: bool = False,
    max_message_size: int = 64 * 1024,
    send_threads: int | None = None,
    handoff: bool | None = None,
    verifier: Any = None,
    api_keys: tuple[str, ...] = (),
) -> LiveServer:
    """Wired as `server.serve` wires it; ``send_threads`` defaults to the server's
    default, ``handoff`` to the mode under test (`HANDOFF`); ``verifier`` (a
    `hub.auth.TokenVerifier`) makes /ws require tokens."""
    threads = default_threads() if send_threads is None else send_threads
    hub = Hub(settings or HubSettings(), write_batch=make_batch_writer(threads))
    hub.verifier = verifier
    diagnostics = Diagnostics()
    diagnostics.install()
    handoff = HANDOFF if handoff is None else handoff
    app = server_module.make_app(
        hub,
        allowed_origins,
        compression,
        max_message_size,
        handoff,
        diagnostics,
        api_keys=api_keys,
    )
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    http = server_module.make_http_server(app)
    http.add_sockets(sockets)
    heartbeat = Heartbeat(hub)
    heartbeat.start()
    return LiveServer(hub, sockets[0].getsockname()[1], http, heartbeat, diagnostics=diagnostics)


class JsonClient:
    """A tornado WebSocket client that speaks the hub's JSON frames."""

    client_id: str = ""

    def __init__(self, connection: WebSocketClientConnection) -> None:
        self.connection = connection

    @classmethod
    async def open(cls, url: str, headers: dict[str, str] | None = None) -> JsonClient:
        request = HTTPRequest(url, headers=headers or {})
        connection = await asyncio.wait_for(websocket_connect(request), TIMEOUT)
        return cls(connection)

    def send(self, message: dict[str, Any] | str) -> None:
        text = message if isinstance(message, str) else json.dumps(message)
        self.connection.write_message(text)

    async def recv_raw(self, timeout: float = TIMEOUT) -> str | bytes | None:
        return await asyncio.wait_for(self.connection.read_message(), timeout)

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        raw = await self.recv_raw(timeout)
        assert raw is not None, f"connection closed ({self.connection.close_code})"
        return json.loads(raw)

    async def expect(self, kind: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next frame, which must be of type ``kind``."""
        message = await self.recv(timeout)
        assert message["type"] == kind, f"expected {kind}, got {message}"
        return message

    async def join(self, room: str, **extra: Any) -> dict[str, Any]:
        self.send({"type": "join", "room": room, **extra})
        return await self.expect("joined")

    async def closed(self, timeout: float = TIMEOUT) -> tuple[int | None, str | None]:
        """Read until the server closes; return (close code, reason)."""
        deadline = time.monotonic() + timeout
        while await self.recv_raw(max(deadline - time.monotonic(), 0.01)) is not None:
            pass
        return self.connection.close_code, self.connection.close_reason

    def close(self) -> None:
        self.connection.close()


async def pair_in_room(live: LiveServer, room: str = "r") -> tuple[JsonClient, JsonClient]:
    """ann and bob, both joined to ``room``; ann has seen bob's presence event."""
    ann = await live.connect("ann")
    bob = await live.connect("bob")
    await ann.join(room)
    await bob.join(room)
    await ann.expect("presence")
    return ann, bob


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = TIMEOUT
) -> None:
    """Poll ``condition`` until true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
