"""Connection tokens and room permissions: pure checks, no I/O.

A backend mints a JWT per user; the hub verifies it at the handshake (and on
an in-band ``refresh``) and turns its claims into a `Grant`: who the user is,
which rooms it may join and publish to, and when the grant runs out. The
accepted algorithms follow from the configured key alone (HS256 for a
secret, RS256 or ES256 for a PEM public key), so ``alg: none`` and a public
key used as an HMAC secret are refused whatever the token's header says.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from hub.protocol import MAX_NAME_LENGTH, ROOM_NAME


class AuthError(Exception):
    """A token the hub refuses; ``detail`` says why (never the token itself)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class RoomPatterns:
    """Exact room names and ``prefix*`` patterns; `None` patterns allow every room."""

    __slots__ = ("exact", "prefixes")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.exact: frozenset[str] = frozenset(p for p in patterns if not p.endswith("*"))
        self.prefixes: tuple[str, ...] = tuple(p[:-1] for p in patterns if p.endswith("*"))

    def allows(self, room: str) -> bool:
        return room in self.exact or room.startswith(self.prefixes)


def valid_pattern(pattern: Any) -> bool:
    """A room name, or a prefix of one followed by ``*`` (a lone ``*`` is every room)."""
    if not isinstance(pattern, str):
        return False
    if pattern.endswith("*"):
        return pattern == "*" or ROOM_NAME.match(pattern[:-1]) is not None
    return ROOM_NAME.match(pattern) is not None


@dataclass(slots=True, frozen=True)
class Grant:
    """What an accepted token lets one connection do."""

    user: str
    """The app's user id (``sub``); every member and message of this connection carries it."""
    name: str | None
    """Display name from the ``name`` claim; overrides ``?name=``."""
    rooms: RoomPatterns | None
    """Rooms it may join (None: any)."""
    publish: RoomPatterns | None
    """Rooms it may publish to (None: any)."""
    exp: int | None
    """The token's expiry, Unix seconds (None: never)."""
    ttl: float | None
    """Seconds left until ``exp`` when the token was checked (None: never expires)."""

    def may_join(self, room: str) -> bool:
        return self.rooms is None or self.rooms.allows(room)

    def may_publish(self, room: str) -> bool:
        return self.publish is None or self.publish.allows(room)


def _patterns(claims: dict[str, Any], claim: str) -> RoomPatterns | None:
    value = claims.get(claim)
    if value is None:
        return None
    if not isinstance(value, list) or not all(valid_pattern(p) for p in value):
        raise AuthError(f'"{claim}" must be a list of room names or prefixes ending in *')
    return RoomPatterns(value)


def grant_from_claims(claims: dict[str, Any], now: float) -> Grant:
    """Check the claims the hub relies on (beyond the signature and registered
    claims, which `TokenVerifier` leaves to PyJWT) and build the grant."""
    user = claims.get("sub")
    if not isinstance(user, str) or not user:
        raise AuthError('the token has no "sub" (user id)')
    if len(user) > MAX_NAME_LENGTH * 4:
        raise AuthError('"sub" is longer than 256 characters')
    name = claims.get("name")
    if name is not None and (not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH):
        raise AuthError(f'"name" must be a string of 1-{MAX_NAME_LENGTH} characters')
    rooms = _patterns(claims, "rooms")
    publish = _patterns(claims, "publish")
    exp = claims.get("exp")
    return Grant(
        user=user,
        name=name,
        rooms=rooms,
        publish=rooms if "publish" not in claims else publish,
        exp=None if exp is None else int(exp),
        ttl=None if exp is None else int(exp) - now,
    )


HS256 = "HS256"
PUBLIC_KEY_ALGORITHMS = ("RS256", "ES256")


class TokenVerifier:
    """Verifies connection tokens against the configured secret and/or public key."""

    def __init__(
        self,
        secret: str | None = None,
        public_key_pem: bytes | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            import jwt
        except ImportError:
            raise RuntimeError(
                "connection tokens need PyJWT: pip install 'tornado-wshub[auth]'"
            ) from None
        if not secret and not public_key_pem:
            raise ValueError("a token secret or a public key is needed")
        self._jwt = jwt
        self._keys: dict[str, Any] = {}  # algorithm -> the key that verifies it
        if secret:
            self._keys[HS256] = secret
        if public_key_pem:
            algorithm, key = load_public_key(public_key_pem)
            self._keys[algorithm] = key
        self.audience = audience or None
        self.issuer = issuer or None
        self._wall_clock = wall_clock

    @property
    def algorithms(self) -> list[str]:
        return sorted(self._keys)

    def verify(self, token: str | None) -> Grant:
        """The grant of a valid token, or `AuthError` saying what is wrong."""
        jwt = self._jwt
        if not token:
            raise AuthError("a token is required (?token= or Authorization: Bearer)")
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError:
            raise AuthError("the token is malformed") from None
        key = self._keys.get(algorithm) if isinstance(algorithm, str) else None
        if key is None:
            raise AuthError(f"tokens must be signed with {' or '.join(self.algorithms)}")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"verify_aud": self.audience is not None, "require": ["sub"]},
            )
        except jwt.PyJWTError as error:
            raise AuthError(self._explain(error)) from None
        return grant_from_claims(claims, self._wall_clock())

    def _explain(self, error: Exception) -> str:
        """Why PyJWT refused a token, in words a client developer can act on."""
        jwt = self._jwt
        if isinstance(error, jwt.MissingRequiredClaimError):
            return f'the token has no "{error.claim}" claim'
        reasons = (
            (jwt.ExpiredSignatureError, "the token has expired"),
            (jwt.InvalidSignatureError, "the token's signature does not verify"),
            (jwt.InvalidAudienceError, "the token is for another audience"),
            (jwt.InvalidIssuerError, "the token is from another issuer"),
        )
        for kind, reason in reasons:
            if isinstance(error, kind):
                return reason
        return f"the token is invalid: {error}"


def load_public_key(pem: bytes) -> tuple[str, Any]:
    """(algorithm, key) for a PEM public key: RS256 for RSA, ES256 for P-256."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem)
    except ValueError as error:
        raise ValueError(f"not a PEM public key: {error}") from None
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256", key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256", key
    raise ValueError("the public key must be RSA (RS256) or EC P-256 (ES256)")
