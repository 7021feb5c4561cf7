"""Issue 12: a first join with ``since: 0`` and no epoch asks for all the history
there is, so it reports ``history_gap`` only when history no longer starts at
seq 1 (on the wire, through a live server)."""

from __future__ import annotations

from collections.abc import Callable

from tests.support import JsonClient, LiveServer


async def publish(client: JsonClient, room: str, count: int) -> None:
    for n in range(count):
        client.send({"type": "publish", "room": room, "data": n, "id": n})
        while (await client.recv()).get("id") != n:
            pass


async def next_after_join(client: JsonClient, room: str, **extra: object) -> list[dict]:
    """What follows ``joined`` up to our own probe: replayed messages and any error."""
    joined = await client.join(room, **extra)
    client.send({"type": "publish", "room": "not-joined", "data": 0, "id": "probe"})
    seen = [joined]
    while seen[-1].get("id") != "probe":
        seen.append(await client.recv())
    return seen[1:-1]


async def test_first_join_of_a_room_whose_history_is_whole_gets_no_gap(live: LiveServer) -> None:
    ann = await live.connect("ann")
    await ann.join("chat")
    await publish(ann, "chat", 3)
    bob = await live.connect("bob")
    got = await next_after_join(bob, "chat", since=0)
    assert [(m["type"], m.get("seq")) for m in got] == [
        ("message", 1),
        ("message", 2),
        ("message", 3),
    ]


async def test_first_join_of_a_fresh_room_gets_no_gap(live: LiveServer) -> None:
    bob = await live.connect("bob")
    assert await next_after_join(bob, "new-room", since=0) == []


async def test_first_join_reports_the_gap_when_history_no_longer_starts_at_1(
    make_server: Callable[..., LiveServer],
) -> None:
    live = make_server(history_size=2)
    ann = await live.connect("ann")
    await ann.join("chat")
    await publish(ann, "chat", 5)
    bob = await live.connect("bob")
    got = await next_after_join(bob, "chat", since=0)
    assert got[0]["code"] == "history_gap" and got[0]["oldest_seq"] == 4, got
    assert [m["seq"] for m in got[1:]] == [4, 5]


async def test_a_join_with_an_epoch_keeps_the_epoch_rules(live: LiveServer) -> None:
    ann = await live.connect("ann")
    await ann.join("chat")
    await publish(ann, "chat", 2)
    bob = await live.connect("bob")
    got = await next_after_join(bob, "chat", since=0, epoch="not-this-one")
    assert got[0]["code"] == "history_gap", got
    assert [m["seq"] for m in got[1:]] == [1, 2]
