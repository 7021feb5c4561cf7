from tests.support import LiveServer


async def test_publish_reaches_both(live: LiveServer) -> None:
    alice = await live.connect("alice")
    bob = await live.connect("bob")
    joined = await alice.join("lobby")
    assert joined["seq"] == 0
    await bob.join("lobby")
    presence = await alice.expect("presence")
    assert presence["member"]["name"] == "bob"
    bob.send({"type": "publish", "room": "lobby", "data": {"text": "hi"}, "id": 7})
    for client in (alice, bob):
        message = await client.expect("message")
        assert message["seq"] == 1 and message["data"] == {"text": "hi"}
    assert (await bob.expect("ack")) == {"type": "ack", "id": 7, "seq": 1}
