"""``/ws/echo``: every message back unchanged (text as text, binary as binary).

Useful to check a deployment end to end (proxies, TLS, limits) and the
target of the Autobahn conformance run.
"""

from __future__ import annotations

from handlers.base import HubSocketBase
from hub.frames import OP_BINARY, OP_TEXT, frame
from hub.peer import ECHO


class EchoSocketHandler(HubSocketBase):
    """Counts as a connection (limits, pings, slow-consumer bound) but joins no room."""

    kind = ECHO

    def on_message(self, message: str | bytes) -> None:
        peer = self.peer
        if peer is None:
            return
        self.hub.touch(peer)
        binary = type(message) is bytes
        if self.ws_connection is not None and self.compression and self.handoff:
            # permessage-deflate may be on: let Tornado compress, then bound the backlog.
            # (Under --handoff=off the peer's sink calls write_message itself.)
            self.write_message(message, binary=binary)
            self.hub.note_backlog(peer)
        elif binary:
            self.hub.enqueue(peer, frame(message, OP_BINARY))
        else:
            self.hub.enqueue(peer, frame(message.encode("utf-8"), OP_TEXT))
