"""The JSON hub protocol on /ws over a raw `Wire`, for fuzzing it."""

from __future__ import annotations

import json
from typing import Any

from tests.hostile.wire import OP_TEXT, Wire

SERVER_TYPES = {"welcome", "joined", "left", "ack", "message", "presence", "error"}
ERROR_CODES = {
    "bad_json",
    "bad_request",
    "unknown_type",
    "not_joined",
    "history_gap",
    "rate_limited",
    "too_many_rooms",
    "unavailable",
}


class HubWire(Wire):
    """A /ws connection; the welcome is read in the constructor."""

    def __init__(self, port: int, name: str = "fuzz", **kw: Any) -> None:
        super().__init__(port, f"/ws?name={name}", **kw)
        assert self.status == 101, self.response_head
        self.welcome = self.expect("welcome")
        self.client_id = self.welcome["client_id"]

    def send_json(self, message: Any) -> None:
        self.send(message if isinstance(message, str) else json.dumps(message))

    def recv_json(self, timeout: float = 5.0) -> dict[str, Any]:
        frame = self.recv_data(timeout)
        assert frame.opcode == OP_TEXT, frame
        message = json.loads(frame.payload)
        assert isinstance(message, dict) and message.get("type") in SERVER_TYPES, message
        if message["type"] == "error":
            assert message.get("code") in ERROR_CODES, message
        return message

    def expect(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        message = self.recv_json(timeout)
        assert message["type"] == kind, message
        return message

    def until_id(self, request_id: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Messages up to and including the first one carrying ``id == request_id``."""
        seen = []
        while True:
            message = self.recv_json(timeout)
            seen.append(message)
            if message.get("id") == request_id:
                return seen

    def still_open(self, tag: str = "probe") -> list[dict[str, Any]]:
        """Prove the connection still works: a publish to a room we are not in is
        answered with not_joined (echoing our id). Returns what arrived before that answer."""
        self.send_json({"type": "publish", "room": "never-joined", "data": 0, "id": tag})
        seen = self.until_id(tag)
        assert seen[-1]["type"] == "error" and seen[-1]["code"] == "not_joined", seen[-1]
        return seen[:-1]

    def join(self, room: str) -> dict[str, Any]:
        self.send_json({"type": "join", "room": room})
        while True:
            message = self.recv_json()
            if message["type"] != "presence":
                assert message["type"] == "joined", message
                return message
