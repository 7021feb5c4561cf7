"""A hub driven by hand, for tests without sockets: a recording sink,
a manual scheduler and a clock the test moves."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hub.broker import Broker
from hub.hub import Hub
from hub.peer import HUB, Peer
from hub.settings import HubSettings


def decode_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split server frames (unmasked) into (opcode, payload) pairs."""
    frames = []
    i = 0
    while i < len(data):
        opcode = data[i] & 0x0F
        length = data[i + 1] & 0x7F
        i += 2
        if length == 126:
            length = int.from_bytes(data[i : i + 2], "big")
            i += 2
        elif length == 127:
            length = int.from_bytes(data[i : i + 8], "big")
            i += 8
        frames.append((opcode, data[i : i + length]))
        i += length
    return frames


class RecordingSink:
    """Keeps what the hub wrote; ``stuck`` makes every write stay queued."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.queued = 0
        self.stuck = False
        self.closed_with: tuple[int, str, bool] | None = None
        self.waiting: list[Callable[[], None]] = []  # drain callbacks while stuck

    def write(self, data: bytes) -> int:
        self.writes.append(data)
        if self.stuck:
            self.queued += len(data)
        return self.queued

    def backlog(self) -> int:
        return self.queued

    def close(self, code: int, reason: str, abort: bool) -> None:
        self.closed_with = (code, reason, abort)

    def on_drained(self, callback: Callable[[], None]) -> None:
        if self.stuck:
            self.waiting.append(callback)
        else:
            callback()

    def unstick(self) -> None:
        """The client read everything: nothing is queued, drain callbacks run."""
        self.stuck, self.queued = False, 0
        waiting, self.waiting = self.waiting, []
        for callback in waiting:
            callback()

    def frames(self) -> list[tuple[int, bytes]]:
        return [f for data in self.writes for f in decode_frames(data)]

    def messages(self) -> list[dict[str, Any]]:
        """The text frames as JSON (pings and the like left out)."""
        return [json.loads(p) for op, p in self.frames() if op == 0x1]

    def take(self) -> list[dict[str, Any]]:
        """Messages written since the last take."""
        messages = self.messages()
        self.writes.clear()
        return messages


class HandHub:
    """A `Hub` whose loop iterations and clock are steps of the test."""

    def __init__(self, broker: Broker | None = None, **settings: Any) -> None:
        self.now = 1000.0
        self.callbacks: list[Callable[[], None]] = []
        self.hub = Hub(
            HubSettings(**settings),
            broker=broker,
            clock=lambda: self.now,
            schedule=lambda cb: self.callbacks.append(cb),
        )

    def run(self) -> None:
        """Loop iterations until the hub has nothing scheduled (flushes, drops)."""
        for _ in range(10):
            callbacks, self.callbacks = self.callbacks, []
            for callback in callbacks:
                callback()
            if not self.callbacks:
                return
        raise AssertionError("the hub keeps scheduling work")

    def connect(self, name: str | None = "anon", ip: str = "127.0.0.1", kind: str = HUB) -> Peer:
        peer = Peer(self.hub.new_client_id(), name, RecordingSink(), ip=ip, kind=kind)
        assert self.hub.register(peer) is None
        self.run()
        peer.sink.take()  # the welcome
        return peer

    def members(self, room: str, *names: str) -> list[Peer]:
        """Connect ``names``, join them to ``room`` in that order, and forget what
        they were sent on the way (welcome, joined, presence)."""
        peers = [self.connect(name) for name in names]
        for peer in peers:
            self.say(peer, type="join", room=room)
        for peer in peers:
            peer.sink.take()
        return peers

    def say(self, peer: Peer, **message: Any) -> list[dict[str, Any]]:
        """Send one message as ``peer``, run the loop, return what ``peer`` got."""
        self.hub.handle_text(peer, json.dumps(message))
        self.run()
        return peer.sink.take()
