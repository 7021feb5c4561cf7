"""hub.auth without sockets: room patterns and what claims become."""

from __future__ import annotations

import pytest

from hub.auth import AuthError, RoomPatterns, grant_from_claims, valid_pattern


def test_patterns_are_exact_names_or_prefixes() -> None:
    patterns = RoomPatterns(["user:42", "chat:*"])
    assert patterns.allows("user:42") and patterns.allows("chat:") and patterns.allows("chat:x")
    assert not patterns.allows("user:420") and not patterns.allows("user:4")
    assert not patterns.allows("chat") and not patterns.allows("xchat:a")
    assert RoomPatterns(["*"]).allows("anything")
    assert not RoomPatterns([]).allows("anything")


@pytest.mark.parametrize(
    ("pattern", "ok"),
    [
        ("a", True),
        ("a:*", True),
        ("*", True),
        ("", False),
        ("a b", False),
        ("**", False),
        (3, False),
    ],
)
def test_valid_patterns(pattern: object, ok: bool) -> None:
    assert valid_pattern(pattern) is ok


def test_publish_defaults_to_rooms_and_an_empty_list_is_read_only() -> None:
    grant = grant_from_claims({"sub": "u", "rooms": ["user:u"]}, now=0)
    assert grant.may_join("user:u") and grant.may_publish("user:u")
    assert not grant.may_publish("other")
    read_only = grant_from_claims({"sub": "u", "rooms": ["user:u"], "publish": []}, now=0)
    assert read_only.may_join("user:u") and not read_only.may_publish("user:u")
    anything = grant_from_claims({"sub": "u"}, now=0)
    assert anything.may_join("x") and anything.may_publish("x")


def test_expiry_becomes_time_left() -> None:
    grant = grant_from_claims({"sub": "u", "exp": 1_000_060}, now=1_000_000.5)
    assert (grant.exp, grant.ttl) == (1_000_060, 59.5)
    assert grant_from_claims({"sub": "u"}, now=0).ttl is None


@pytest.mark.parametrize(
    "claims",
    [
        {},
        {"sub": ""},
        {"sub": 5},
        {"sub": "u", "name": ""},
        {"sub": "u", "name": "n" * 65},
        {"sub": "u", "rooms": ["ok", "not ok"]},
        {"sub": "u" * 257},
    ],
)
def test_claims_the_hub_cannot_use_are_refused(claims: dict) -> None:
    with pytest.raises(AuthError):
        grant_from_claims(claims, now=0)
