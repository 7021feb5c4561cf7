"""``/api/...``: the backend's HTTP API (docs/api.md).

A backend publishes, inspects rooms and disconnects users with JSON over
HTTP, authenticated by a shared key. Everything goes through the hub and its
broker interface, so with a broker shared by several nodes the same calls
cover every node. Every answer, errors included, is JSON; the key is checked
before anything else, and nothing is published when a request is refused.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import Any

from tornado.web import HTTPError, RequestHandler, stream_request_body

from hub import protocol
from hub.hub import BrokerUnavailable, Hub
from hub.protocol import MAX_NAME_LENGTH, ROOM_NAME

log = logging.getLogger("wshub")

MAX_ROOMS_PER_BROADCAST = 1000
MAX_LIMIT = 1000
"""Most rooms one ``GET /api/rooms`` and most messages one history page return."""
CHUNKED_BODY_CEILING = 4
"""A chunked body (no Content-Length) is read up to this many times
``max_message_size`` to answer 413; past that the connection is dropped."""

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    503: "unavailable",
}


class ApiError(HTTPError):
    """An API refusal: its status and the ``{"error": {"code", "detail"}}`` it answers."""

    def __init__(self, status: int, detail: str, code: str | None = None) -> None:
        super().__init__(status)
        self.code = code or _STATUS_CODES.get(status, "error")
        self.detail = detail


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_api_keys(value: str) -> tuple[str, ...]:
    """``--api_key=K1,K2`` (several keys while rotating) -> the keys."""
    return tuple(key for key in (part.strip() for part in value.split(",")) if key)


def key_matches(given: str, keys: tuple[str, ...]) -> bool:
    """Whether ``given`` is one of ``keys``, comparing every key in constant time."""
    given_bytes = given.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(given_bytes, key.encode())
    return found


def room_name(value: Any, field: str = "room") -> str:
    if not isinstance(value, str) or not ROOM_NAME.match(value):
        raise ApiError(
            400, f'"{field}" must be a room name: 1-64 letters, digits and -_.: characters'
        )
    return value


@stream_request_body
class ApiHandler(RequestHandler):
    """What every endpoint shares: the key check, the size limit, JSON errors."""

    def initialize(self, hub: Hub, api_keys: tuple[str, ...], max_body_size: int) -> None:
        self.hub = hub
        self.api_keys = api_keys
        self.max_body_size = max_body_size
        self._chunks: list[bytes] = []
        self._received = 0

    def prepare(self) -> None:
        if not self.api_keys:
            raise ApiError(404, "this server has no API (start it with --api_key)")
        authorization = self.request.headers.get("Authorization", "")
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key_matches(given.strip(), self.api_keys):
            raise ApiError(401, "a valid API key is required: Authorization: Bearer KEY")
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > self.max_body_size:
            raise ApiError(413, f"the body is over {self.max_body_size} bytes")
        # Tornado drops an over-size body without an answer; read it here instead.
        self.request.connection.set_max_body_size(self.max_body_size * CHUNKED_BODY_CEILING)

    def data_received(self, chunk: bytes) -> None:
        self._received += len(chunk)
        if self._received <= self.max_body_size:
            self._chunks.append(chunk)
        else:
            self._chunks.clear()  # kept no further: the request gets 413

    def body(self) -> dict[str, Any]:
        """The request's JSON object."""
        if self._received > self.max_body_size:
            raise ApiError(413, f"the body is over {self.max_body_size} bytes")
        try:
            value = json.loads(b"".join(self._chunks), parse_constant=_reject_constant)
        except (ValueError, RecursionError) as error:
            raise ApiError(400, f"the body is not valid JSON: {error}") from None
        if not isinstance(value, dict):
            raise ApiError(400, "the body must be a JSON object")
        return value

    def int_argument(self, name: str, default: int, least: int, most: int | None = None) -> int:
        text = self.get_query_argument(name, None)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise ApiError(400, f'"{name}" must be an integer') from None
        if value < least:
            raise ApiError(400, f'"{name}" must be at least {least}')
        return value if most is None else min(value, most)

    def send_json(self, value: dict[str, Any]) -> None:
        self.set_header("Cache-Control", "no-store")
        self.write(value)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, ApiError):
            code, detail = error.code, error.detail
        else:
            code, detail = _STATUS_CODES.get(status_code, "error"), self._reason
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps({"error": {"code": code, "detail": detail}}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Tornado's version logs the URI; ours never does (see `HubSocketHandler`)."""
        if not isinstance(value, HTTPError):
            log.error("uncaught exception in the API", exc_info=(typ, value, tb))

    async def publish(self, room: str, data: Any, sender: str, ephemeral: bool = False) -> dict:
        """Publish as the backend; the answer's ``{"room","seq","epoch"}``."""
        try:
            seq = await self.hub.publish_from_server(room, data, sender, ephemeral)
        except protocol.ProtocolError as error:  # data that cannot be relayed
            raise ApiError(400, error.detail) from None
        except BrokerUnavailable as error:
            raise ApiError(503, str(error)) from None
        if seq is None:
            return {"room": room, "ephemeral": True}
        state = await self.hub.broker.room_state(room)
        return {"room": room, "seq": seq, "epoch": state.epoch if state else None}


def sender_name(body: dict[str, Any]) -> str:
    sender = body.get("from", "server")
    if not isinstance(sender, str) or not 0 < len(sender) <= MAX_NAME_LENGTH:
        raise ApiError(400, f'"from" must be a string of 1-{MAX_NAME_LENGTH} characters')
    return sender


def message_data(body: dict[str, Any]) -> Any:
    if "data" not in body:
        raise ApiError(400, 'a "data" field is required')
    return body["data"]


class PublishHandler(ApiHandler):
    """``POST /api/publish {"room","data","from"?,"ephemeral"?}``."""

    async def post(self) -> None:
        body = self.body()
        room = room_name(body.get("room"))
        data = message_data(body)
        ephemeral = body.get("ephemeral", False)
        if not isinstance(ephemeral, bool):
            raise ApiError(400, '"ephemeral" must be true or false')
        self.send_json(await self.publish(room, data, sender_name(body), ephemeral))


class BroadcastHandler(ApiHandler):
    """``POST /api/broadcast {"rooms":[...],"data"}``: one message to many rooms."""

    async def post(self) -> None:
        body = self.body()
        rooms = body.get("rooms")
        if not isinstance(rooms, list) or not rooms:
            raise ApiError(400, '"rooms" must be a non-empty list of room names')
        if len(rooms) > MAX_ROOMS_PER_BROADCAST:
            raise ApiError(400, f'"rooms" may list at most {MAX_ROOMS_PER_BROADCAST} rooms')
        rooms = [room_name(room, "rooms") for room in rooms]
        data = message_data(body)
        sender = sender_name(body)
        try:
            protocol.message_frame(rooms[0], 1, {"name": sender}, data, 0)
        except protocol.ProtocolError as error:  # refuse before the first room gets it
            raise ApiError(400, error.detail) from None
        # Together: a shared broker sends one loop iteration's publishes in one round trip.
        results = await asyncio.gather(*(self.publish(room, data, sender) for room in rooms))
        self.send_json({"results": list(results)})


class RoomsHandler(ApiHandler):
    """``GET /api/rooms?limit=N``: the biggest rooms first."""

    async def get(self) -> None:
        limit = self.int_argument("limit", 100, 1, MAX_LIMIT)
        rooms = await self.hub.broker.busiest(limit)
        self.send_json({"rooms": [{"room": r, "member_count": n} for r, n in rooms]})


class RoomHandler(ApiHandler):
    """``GET /api/rooms/{room}``: epoch, seq and members."""

    async def get(self, room: str) -> None:
        state = await self.hub.broker.room_state(room_name(room))
        if state is None:
            raise ApiError(404, f"no room {room} (no members, no history)")
        self.send_json(
            {
                "room": room,
                "epoch": state.epoch,
                "seq": state.seq,
                "member_count": len(state.members),
                "members": state.members,
            }
        )


class HistoryHandler(ApiHandler):
    """``GET /api/rooms/{room}/history?since=N&limit=M``: kept messages after seq N."""

    async def get(self, room: str) -> None:
        room = room_name(room)
        since = self.int_argument("since", 0, 0)
        limit = self.int_argument("limit", MAX_LIMIT, 1, MAX_LIMIT)
        state = await self.hub.broker.room_state(room)
        if state is None:
            raise ApiError(404, f"no room {room} (no members, no history)")
        frames = await self.hub.broker.history(room, since, limit)
        head = protocol.to_json({"room": room, "epoch": state.epoch, "seq": state.seq})
        messages = ",".join(protocol.frame_text(frame) for frame in frames)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.write(f'{head[:-1]},"messages":[{messages}]}}')


class DisconnectHandler(ApiHandler):
    """``POST /api/disconnect {"user"} | {"client_id"}``: close with 4005."""

    async def post(self) -> None:
        body = self.body()
        user, client_id = body.get("user"), body.get("client_id")
        if (user is None) == (client_id is None):
            raise ApiError(400, 'give exactly one of "user" and "client_id"')
        value = user if user is not None else client_id
        if not isinstance(value, str) or not value:
            raise ApiError(400, '"user" and "client_id" must be non-empty strings')
        try:
            count = await self.hub.disconnect_everywhere(user=user, client_id=client_id)
        except BrokerUnavailable as error:
            raise ApiError(503, str(error)) from None
        self.send_json({"disconnected": count})


class StatsHandler(ApiHandler):
    """``GET /api/stats``: the /healthz numbers."""

    async def get(self) -> None:
        diagnostics = self.application.settings.get("diagnostics")
        extra = diagnostics.stats() if diagnostics is not None else {}
        stats = self.hub.stats()
        status = "ok" if stats["broker"]["connected"] else "degraded"
        nodes = await self.hub.node_stats()
        self.send_json({"status": status, **stats, **extra, "nodes": nodes})


class ApiNotFoundHandler(ApiHandler):
    """Any other ``/api/`` path: 404 (after the key check)."""

    def prepare(self) -> None:
        super().prepare()
        raise ApiError(404, f"no endpoint {self.request.path[:200]}")


def api_routes(hub: Hub, api_keys: tuple[str, ...], max_body_size: int) -> list[tuple]:
    """The ``/api/`` routes; with no keys every one of them answers 404."""
    args = {"hub": hub, "api_keys": api_keys, "max_body_size": max_body_size}
    room = r"([^/]+)"
    return [
        (r"/api/publish", PublishHandler, args),
        (r"/api/broadcast", BroadcastHandler, args),
        (r"/api/rooms", RoomsHandler, args),
        (rf"/api/rooms/{room}", RoomHandler, args),
        (rf"/api/rooms/{room}/history", HistoryHandler, args),
        (r"/api/disconnect", DisconnectHandler, args),
        (r"/api/stats", StatsHandler, args),
        (r"/api/.*", ApiNotFoundHandler, args),
    ]
