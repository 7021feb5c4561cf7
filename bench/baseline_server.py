"""The textbook Tornado chat hub, kept as the benchmark's baseline.

This is deliberately the code most tutorials show: one set of handlers per
room and, on publish, ``write_message(json.dumps(msg))`` for every member in a
loop. It speaks the subset of the hub protocol the benchmark uses (welcome,
join/joined, publish/message/ack) and serves ``/healthz``. Do not optimise it:
its only job is to be the honest "before" in every comparison.

Run: ``python -m bench.baseline_server --host=127.0.0.1 --port=8888``
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time

import tornado.web
import tornado.websocket
from tornado.options import define, options, parse_command_line

define("host", default="127.0.0.1", help="address to listen on")
define("port", default=8888, help="port to listen on")
define("ping_interval", default=0.0, help="seconds between server pings (0 = off)")
define("max_message_size", default=64 * 1024, help="largest accepted message")
define("nodelay", default=False, help="set TCP_NODELAY (the textbook hub does not)")

log = logging.getLogger("baseline")
rooms: dict[str, set[HubHandler]] = {}
clients: set[HubHandler] = set()
_ids = itertools.count(1)
_seqs: dict[str, int] = {}


class HubHandler(tornado.websocket.WebSocketHandler):
    """One client of the textbook hub."""

    def open(self) -> None:
        if options.nodelay:
            self.set_nodelay(True)
        self.client_id = f"c{next(_ids)}"
        self.name = self.get_argument("name", self.client_id)
        self.joined: set[str] = set()
        clients.add(self)
        self.write_message(json.dumps({"type": "welcome", "client_id": self.client_id}))

    def on_message(self, message: str | bytes) -> None:
        msg = json.loads(message)
        kind = msg.get("type")
        if kind == "join":
            room = msg["room"]
            members = rooms.setdefault(room, set())
            members.add(self)
            self.joined.add(room)
            reply = {
                "type": "joined",
                "room": room,
                "epoch": 1,
                "seq": _seqs.get(room, 0),
                "members": [c.name for c in members],
            }
            self.write_message(json.dumps(reply))
        elif kind == "publish":
            room = msg["room"]
            if room not in self.joined:
                self.write_message(json.dumps({"type": "error", "error": "not_joined"}))
                return
            seq = _seqs[room] = _seqs.get(room, 0) + 1
            out = {
                "type": "message",
                "room": room,
                "seq": seq,
                "from": self.name,
                "data": msg.get("data"),
                "ts": int(time.time() * 1000),
            }
            for client in list(rooms[room]):
                with contextlib.suppress(tornado.websocket.WebSocketClosedError):
                    client.write_message(json.dumps(out))
            if "id" in msg:
                self.write_message(json.dumps({"type": "ack", "id": msg["id"], "seq": seq}))

    def on_close(self) -> None:
        clients.discard(self)
        for room in self.joined:
            members = rooms.get(room)
            if members is not None:
                members.discard(self)
                if not members:
                    del rooms[room]


class EchoHandler(tornado.websocket.WebSocketHandler):
    """Echo every message back (parity with the real server's /ws/echo)."""

    def on_message(self, message: str | bytes) -> None:
        self.write_message(message, binary=isinstance(message, bytes))


class HealthHandler(tornado.web.RequestHandler):
    """Report connection and room counts as JSON."""

    def get(self) -> None:
        self.write(
            {
                "status": "ok",
                "connections": len(clients),
                "rooms": len(rooms),
                "slow_consumers_dropped": 0,
            }
        )


def make_app() -> tornado.web.Application:
    """Build the application with the configured ping and size settings."""
    settings = {"websocket_max_message_size": options.max_message_size}
    if options.ping_interval > 0:
        settings["websocket_ping_interval"] = options.ping_interval
    return tornado.web.Application(
        [(r"/ws", HubHandler), (r"/ws/echo", EchoHandler), (r"/healthz", HealthHandler)],
        **settings,
    )


async def main() -> None:
    parse_command_line()
    app = make_app()
    app.listen(options.port, address=options.host)
    log.warning("baseline hub listening on http://%s:%d/", options.host, options.port)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
