"""``joined`` and ``left`` carry the ``id`` of the request they answer, like
``ack`` and ``error``: on the wire, for every kind of id the protocol allows."""

from __future__ import annotations

import pytest

from tests.support import LiveServer


@pytest.mark.parametrize("request_id", ["j-1", 7, 2.5, "caf\u00e9", "\udfff"])
async def test_joined_and_left_echo_the_request_id(live: LiveServer, request_id) -> None:
    client = await live.connect("alice")
    client.send({"type": "join", "room": "r", "id": request_id})
    joined = await client.expect("joined")
    assert joined["id"] == request_id and joined["room"] == "r"
    assert [m["name"] for m in joined["members"]] == ["alice"]
    client.send({"type": "leave", "room": "r", "id": request_id})
    assert await client.expect("left") == {"type": "left", "room": "r", "id": request_id}


async def test_without_an_id_there_is_none_in_the_answer(live: LiveServer) -> None:
    client = await live.connect("alice")
    client.send({"type": "join", "room": "r"})
    assert "id" not in await client.expect("joined")
    client.send({"type": "leave", "room": "r"})
    assert await client.expect("left") == {"type": "left", "room": "r"}


async def test_each_answer_names_its_own_request(live: LiveServer) -> None:
    """Joins of several rooms and a repeated join answer in order, each with its id."""
    client = await live.connect("alice")
    for n, room in enumerate(["a", "b", "a"]):
        client.send({"type": "join", "room": room, "id": f"req-{n}"})
    answers = [await client.expect("joined") for _ in range(3)]
    assert [(a["room"], a["id"]) for a in answers] == [
        ("a", "req-0"),
        ("b", "req-1"),
        ("a", "req-2"),
    ]
