"""hub.js settles each join and leave by the id the server echoes, not by room."""

from __future__ import annotations

from tests.browser.pages import FrameLog
from tests.browser.test_hub_client import SETUP, run


def test_join_and_leave_resolve_with_the_answer_to_their_own_id(server, open_page) -> None:
    frames = FrameLog()
    page = open_page(f"{server.url}/", frames=frames)  # no ?name=: the page itself stays idle
    page.evaluate(SETUP)
    result = run(
        page,
        """async () => {
        const a = await open2("ann");
        const joins = [a.join("r1"), a.join("r2"), a.join("r1")];
        const [first, second, again] = await Promise.all(joins);
        const left = await a.leave("r2");
        return { first, second, again, left };
    }""",
    )
    sent: dict[tuple[str, str], list[str]] = {}
    for f in frames.sent:
        if f.get("type") in ("join", "leave"):
            sent.setdefault((f["type"], f["room"]), []).append(f["id"])
    assert [result["first"]["id"], result["again"]["id"]] == sent[("join", "r1")]
    assert result["first"]["id"] != result["again"]["id"]
    assert [result["second"]["id"]] == sent[("join", "r2")] and result["second"]["room"] == "r2"
    assert result["left"] == {"type": "left", "room": "r2", "id": sent[("leave", "r2")][0]}
    answers = {f["id"]: f for f in frames.received if f.get("type") in ("joined", "left")}
    assert set(answers) == {i for ids in sent.values() for i in ids}  # every answer echoed its id
