"""The JSON hub protocol on ``/ws``: parse client messages, encode server ones.

Parsing turns one text frame into a command or a `ProtocolError` carrying the
error code the client sees. No I/O here; `hub.hub` acts on the commands.
See docs/protocol.md for the wire format with examples.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from hub.frames import OP_TEXT, frame, frame_header

ROOM_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,64}\Z")
"""Room names: 1-64 letters, digits and ``-_.:`` (ASCII only, so a name is a safe key anywhere)."""

MAX_NAME_LENGTH = 64
"""Display names are 1-64 characters; longer ones are refused at the handshake."""

# Error codes a client can receive in {"type":"error","code":...}.
BAD_JSON = "bad_json"
BAD_REQUEST = "bad_request"
UNKNOWN_TYPE = "unknown_type"
NOT_JOINED = "not_joined"
HISTORY_GAP = "history_gap"
RATE_LIMITED = "rate_limited"
TOO_MANY_ROOMS = "too_many_rooms"
UNAUTHORIZED = "unauthorized"
FORBIDDEN = "forbidden"
TOKEN_EXPIRED = "token_expired"

_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_compact_ascii = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode


class ProtocolError(Exception):
    """A client request the server refuses; the connection stays open."""

    def __init__(self, code: str, detail: str, request_id: Any = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.request_id = request_id


@dataclass(slots=True, frozen=True)
class Join:
    room: str
    since: int | None = None
    epoch: str | None = None
    request_id: str | int | float | None = None


@dataclass(slots=True, frozen=True)
class Leave:
    room: str
    request_id: str | int | float | None = None


@dataclass(slots=True, frozen=True)
class Publish:
    room: str
    data: Any
    request_id: str | int | float | None = None
    ephemeral: bool = False


@dataclass(slots=True, frozen=True)
class Refresh:
    """A fresh connection token for the same user, sent before the current one expires."""

    token: str
    request_id: str | int | float | None = None


Command = Join | Leave | Publish | Refresh


MAX_INTEGER_DIGITS = 640
"""Digits an integer in a client message may have (a 64-bit integer has 20).

Converting a digit string to an int, and back to text when relaying it,
takes time that grows with the square of its length: 60 KB of 4,291-digit
integers cost ~1.3 ms to parse and ~4 ms to relay, and a burst of them stalled
everyone else. 640 is the smallest bound CPython's own guard accepts; 60 KB of
640-digit integers cost less than 60 KB of small ones. Enforced by
`bound_integer_digits` inside the C decoder, so ordinary numbers pay nothing.
"""


def bound_integer_digits() -> None:
    """Make int/str conversions of more than `MAX_INTEGER_DIGITS` digits fail,
    process-wide (CPython's guard against CVE-2020-10735, made tighter); a
    stricter bound already in force is kept."""
    current = sys.get_int_max_str_digits()
    if current == 0 or current > MAX_INTEGER_DIGITS:
        sys.set_int_max_str_digits(MAX_INTEGER_DIGITS)


bound_integer_digits()


class _NotJsonConstant(ValueError):
    """NaN or Infinity, which Python's decoder would accept."""


def _reject_constant(name: str) -> Any:
    raise _NotJsonConstant(f"{name} is not valid JSON")


def _request_id_despite_numbers(text: str) -> Any:
    """The ``id`` of a message refused for its integers, so the error can name it.

    A second parse that leaves every integer as text (never converted); its
    cost, like the first's, is charged to the sender's rate by the hub.
    """
    try:
        message = json.loads(text, parse_int=_Digits, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    request_id = message.get("id") if isinstance(message, dict) else None
    if isinstance(request_id, _Digits):
        return int(request_id) if len(request_id) <= MAX_INTEGER_DIGITS else None
    return request_id if isinstance(request_id, str | float) else None


class _Digits(str):
    """An integer left as its digits (the JSON decoder's ``parse_int``)."""


def parse(text: str) -> Command:
    """Parse one client text frame into a command, or raise `ProtocolError`."""
    try:
        message = json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, _NotJsonConstant, RecursionError) as exc:
        raise ProtocolError(BAD_JSON, f"not valid JSON: {exc}") from None
    except ValueError:  # only the digit bound raises anything else
        raise ProtocolError(
            BAD_REQUEST,
            f"integers may have at most {MAX_INTEGER_DIGITS} digits",
            _request_id_despite_numbers(text),
        ) from None
    if not isinstance(message, dict):
        raise ProtocolError(BAD_REQUEST, "a message must be a JSON object")
    request_id = message.get("id")
    if request_id is not None and (
        isinstance(request_id, bool) or not isinstance(request_id, str | int | float)
    ):
        raise ProtocolError(BAD_REQUEST, '"id" must be a string or a number')
    kind = message.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(BAD_REQUEST, 'missing string field "type"', request_id)
    if kind == "publish":
        room = _room(message, request_id)
        if "data" not in message:
            raise ProtocolError(BAD_REQUEST, 'publish needs a "data" field', request_id)
        ephemeral = message.get("ephemeral", False)
        if not isinstance(ephemeral, bool):
            raise ProtocolError(BAD_REQUEST, '"ephemeral" must be true or false', request_id)
        return Publish(room, message["data"], request_id, ephemeral)
    if kind == "join":
        room = _room(message, request_id)
        since = message.get("since")
        if since is not None and (isinstance(since, bool) or not isinstance(since, int)):
            raise ProtocolError(BAD_REQUEST, '"since" must be an integer', request_id)
        if since is not None and since < 0:
            raise ProtocolError(BAD_REQUEST, '"since" must not be negative', request_id)
        epoch = message.get("epoch")
        if epoch is not None and not isinstance(epoch, str):
            raise ProtocolError(BAD_REQUEST, '"epoch" must be a string', request_id)
        return Join(room, since, epoch, request_id)
    if kind == "leave":
        return Leave(_room(message, request_id), request_id)
    if kind == "refresh":
        token = message.get("token")
        if not isinstance(token, str) or not token:
            raise ProtocolError(BAD_REQUEST, 'refresh needs a string field "token"', request_id)
        return Refresh(token, request_id)
    raise ProtocolError(UNKNOWN_TYPE, f"unknown message type {kind[:64]!r}", request_id)


def _room(message: dict[str, Any], request_id: Any) -> str:
    room = message.get("room")
    if not isinstance(room, str):
        raise ProtocolError(BAD_REQUEST, 'missing string field "room"', request_id)
    if not ROOM_NAME.match(room):
        raise ProtocolError(
            BAD_REQUEST, "room names are 1-64 characters from letters, digits and -_.:", request_id
        )
    return room


def encode(message: dict[str, Any]) -> bytes:
    """Encode a server message as a ready-to-write text frame.

    JSON may carry lone surrogates (``"\\udfff"``), which have no UTF-8 form;
    such a message is sent with non-ASCII characters escaped, which round-trips
    to exactly what the client sent.
    """
    text = _compact(message)
    try:
        return frame(text.encode("utf-8"), OP_TEXT)
    except UnicodeEncodeError:
        return frame(_compact_ascii(message).encode("ascii"), OP_TEXT)


def to_json(value: Any) -> str:
    """Compact JSON text of ``value`` (non-ASCII kept as is where UTF-8 can carry it)."""
    text = _compact(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _compact_ascii(value)
    return text


_MEMBERS_KEY = b',"members":'


def joined_frame(
    room: str,
    epoch: str,
    seq: int,
    members_json: bytes,
    request_id: Any = None,
    member_count: int | None = None,
    truncated: bool = False,
) -> bytes:
    """Frame ``joined`` around an already encoded member list (UTF-8 JSON);
    ``request_id`` echoes the join's ``id``, as acks and errors do.

    The frame is put together in one copy: a joiner of a big room gets a list of
    up to ``presence_limit`` members (45 KB at 1,000), and a join storm made
    three copies of it per joiner, the allocator's page faults included."""
    head: dict[str, Any] = {"type": "joined", "room": room, "epoch": epoch, "seq": seq}
    if member_count is not None:
        head["member_count"] = member_count
    if truncated:
        head["members_truncated"] = True
    if request_id is not None:
        head["id"] = request_id
    try:
        start = _compact(head)[:-1].encode()
    except UnicodeEncodeError:  # an id with a lone surrogate: escaped, as `encode` does
        start = _compact_ascii(head)[:-1].encode()
    length = len(start) + len(_MEMBERS_KEY) + len(members_json) + 1
    return b"".join((frame_header(length, OP_TEXT), start, _MEMBERS_KEY, members_json, b"}"))


def left_frame(room: str, request_id: Any = None) -> bytes:
    """Frame ``left``; ``request_id`` echoes the leave's ``id``."""
    message: dict[str, Any] = {"type": "left", "room": room}
    if request_id is not None:
        message["id"] = request_id
    return encode(message)


def error_frame(code: str, detail: str, request_id: Any = None, **extra: Any) -> bytes:
    """Frame an error; ``request_id`` ties it to the request that caused it."""
    message: dict[str, Any] = {"type": "error", "code": code, "detail": detail}
    if request_id is not None:
        message["id"] = request_id
    message.update(extra)
    return encode(message)


def message_frame(
    room: str,
    seq: int | None,
    sender: dict[str, str],
    data: Any,
    ts: int,
    ephemeral: bool = False,
) -> bytes:
    """Frame a room message; ``seq`` is None for ephemeral messages.

    ``sender`` is the publishing member (``name``, ``client_id``, and ``user``
    when authenticated) or, for the backend API, just a ``name``: its fields
    become ``from``, ``client_id`` and ``user``, so clients can tell apart two
    members with one display name and trust ``user``, which only a token sets.

    Raises `ProtocolError` when ``data`` cannot be re-encoded (it came from
    JSON, so only non-finite floats produced by very large literals can fail).
    """
    return _relayed(encode, _message(room, seq, sender, data, ts, ephemeral))


def message_text(
    room: str,
    seq: int | None,
    sender: dict[str, str],
    data: Any,
    ts: int,
    ephemeral: bool = False,
) -> str:
    """The JSON text `message_frame` frames: what a shared broker sends between nodes."""
    return _relayed(to_json, _message(room, seq, sender, data, ts, ephemeral))


def _message(
    room: str, seq: int | None, sender: dict[str, str], data: Any, ts: int, ephemeral: bool
) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "message", "room": room}
    if seq is not None:
        message["seq"] = seq
    message["from"] = sender["name"]
    client_id = sender.get("client_id")
    if client_id is not None:
        message["client_id"] = client_id
    user = sender.get("user")
    if user is not None:
        message["user"] = user
    message["data"] = data
    message["ts"] = ts
    if ephemeral:
        message["ephemeral"] = True
    return message


T = TypeVar("T")


def _relayed(encoder: Callable[[dict[str, Any]], T], message: dict[str, Any]) -> T:
    try:
        return encoder(message)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(BAD_REQUEST, f'"data" cannot be relayed: {exc}') from None


def count_frame(room: str, member_count: int) -> bytes:
    """Frame the presence event that replaces joins and leaves in a room over the
    presence limit."""
    return encode(
        {"type": "presence", "room": room, "event": "count", "member_count": member_count}
    )


def frame_text(data: bytes) -> str:
    """The text of one unmasked server frame made by `encode` (history holds frames)."""
    length = data[1] & 0x7F
    start = 2 if length < 126 else 4 if length == 126 else 10
    return data[start:].decode("utf-8")


def presence_frame(room: str, event: str, member: dict[str, str]) -> bytes:
    """Frame a presence event ("join" or "leave") about ``member``."""
    return encode({"type": "presence", "room": room, "event": event, "member": member})
