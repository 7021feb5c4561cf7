"""Presence at scale: beyond ``presence_limit`` members a room lists that many in
``joined`` and sends count events, at most one a second, instead of a presence
event per join and leave (which made filling a room O(N²))."""

from __future__ import annotations

from tests.hubkit import HandHub


def presence(messages: list[dict]) -> list[tuple]:
    return [
        (m["event"], m.get("member", {}).get("name"), m.get("member_count"))
        for m in messages
        if m["type"] == "presence"
    ]


def test_joined_counts_every_member_and_lists_at_most_the_limit() -> None:
    hand = HandHub(presence_limit=3)
    peers = [hand.connect(f"m{i}") for i in range(5)]
    joins = [hand.say(p, type="join", room="r")[0] for p in peers]
    assert [j["member_count"] for j in joins] == [1, 2, 3, 4, 5]
    assert [len(j["members"]) for j in joins] == [1, 2, 3, 3, 3]
    assert [j.get("members_truncated", False) for j in joins] == [False] * 3 + [True] * 2
    assert [m["name"] for m in joins[4]["members"]] == ["m0", "m1", "m2"]  # the first three
    # m0 heard m1 and m2 join one by one, and nothing of m3 and m4
    assert presence(peers[0].sink.take()) == [("join", "m1", None), ("join", "m2", None)]


def test_count_events_replace_joins_and_leaves_over_the_limit_once_a_tick() -> None:
    hand = HandHub(presence_limit=3)
    peers = hand.members("r", *(f"m{i}" for i in range(5)))
    hand.hub.announce_counts()
    hand.run()
    for peer in peers:
        assert presence(peer.sink.take()) == [("count", None, 5)]
    hand.hub.announce_counts()  # nothing changed: nothing sent
    hand.run()
    assert all(p.sink.take() == [] for p in peers)
    hand.say(peers[4], type="leave", room="r")  # 5 -> 4: still over, not announced alone
    assert presence(peers[0].sink.take()) == []
    hand.say(peers[3], type="leave", room="r")  # 4 -> 3: back at the limit
    hand.hub.announce_counts()
    hand.run()
    assert presence(peers[0].sink.take()) == [("count", None, 3)]
    hand.say(peers[2], type="leave", room="r")  # within the limit: per-member events again
    assert presence(peers[0].sink.take()) == [("leave", "m2", None)]
    hand.hub.announce_counts()
    hand.run()
    assert peers[0].sink.take() == []


def test_a_room_within_the_limit_never_gets_count_events() -> None:
    hand = HandHub(presence_limit=3)
    ann, bob = hand.members("r", "ann", "bob")
    hand.say(bob, type="leave", room="r")
    hand.hub.announce_counts()
    hand.run()
    assert presence(ann.sink.take()) == [("leave", "bob", None)]


def test_the_listed_members_follow_a_listed_member_leaving() -> None:
    hand = HandHub(presence_limit=3)
    peers = hand.members("r", "m0", "m1", "m2", "m3")
    hand.say(peers[0], type="leave", room="r")  # m0 was listed
    [joined] = hand.say(hand.connect("m4"), type="join", room="r")
    assert [m["name"] for m in joined["members"]] == ["m1", "m2", "m3"]
    assert joined["member_count"] == 4 and joined["members_truncated"] is True
