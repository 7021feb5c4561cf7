"""``/ws``: the JSON hub protocol (docs/protocol.md)."""

from __future__ import annotations

import logging
from types import TracebackType

from tornado.web import HTTPError

from handlers.base import HubSocketBase
from hub.peer import Peer
from hub.protocol import MAX_NAME_LENGTH

log = logging.getLogger("wshub")


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class HubSocketHandler(HubSocketBase):
    """One client of the hub; the display name comes from ``?name=`` (or the token)."""

    _token: str | None = None

    def prepare(self) -> None:
        super().prepare()
        name = self.get_query_argument("name", "")
        if len(name) > MAX_NAME_LENGTH:
            raise HTTPError(400, reason=f"name longer than {MAX_NAME_LENGTH} characters")
        self._name = name or None
        if self.hub.verifier is not None:
            # Browsers cannot set headers on a WebSocket: they pass ?token=.
            self._token = self.get_query_argument("token", None) or bearer_token(
                self.request.headers.get("Authorization")
            )

    def display_name(self) -> str | None:
        return self._name

    def admitted(self, peer: Peer) -> None:
        token, self._token = self._token, None
        self.hub.authenticate(peer, token)

    def on_message(self, message: str | bytes) -> None:
        peer = self.peer
        if peer is None:
            return
        if type(message) is str:
            self.hub.handle_text(peer, message)
        else:
            self.hub.handle_binary(peer)

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Tornado's version logs the request URI, and with it a ``?token=``."""
        if isinstance(value, HTTPError):
            return  # answered with its status; the access log has the path
        log.error("uncaught exception on /ws", exc_info=(typ, value, tb))  # type: ignore[arg-type]
