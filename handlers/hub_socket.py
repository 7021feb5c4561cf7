"""``/ws``: the JSON hub protocol (docs/protocol.md)."""

from __future__ import annotations

from tornado.web import HTTPError

from handlers.base import HubSocketBase
from hub.protocol import MAX_NAME_LENGTH


class HubSocketHandler(HubSocketBase):
    """One client of the hub; the display name comes from ``?name=``."""

    def prepare(self) -> None:
        super().prepare()
        name = self.get_query_argument("name", "")
        if len(name) > MAX_NAME_LENGTH:
            raise HTTPError(400, reason=f"name longer than {MAX_NAME_LENGTH} characters")
        self._name = name or None

    def display_name(self) -> str | None:
        return self._name

    def on_message(self, message: str | bytes) -> None:
        peer = self.peer
        if peer is None:
            return
        if type(message) is str:
            self.hub.handle_text(peer, message)
        else:
            self.hub.handle_binary(peer)
