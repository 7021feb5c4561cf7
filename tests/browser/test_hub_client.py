"""hub.js's API, exercised from a real page against the real server."""

from __future__ import annotations

import pytest

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect

# Runs in the page: two clients, their events recorded on window.log.
SETUP = """async () => {
    const hub = await import("/static/hub.js");
    window.hubjs = hub;
    window.log = [];
    window.open2 = async (name) => {
        const c = hub.connect("/ws", { name, minDelay: 100, maxDelay: 1000 });
        for (const ev of ["message", "presence", "error", "state"]) {
            c.on(ev, (p) => window.log.push({ who: name, ev, p }));
        }
        await new Promise((ok) => {
            if (c.state === "open") ok();
            else c.on("state", (s) => s.state === "open" && ok());
        });
        return c;
    };
}"""


def run(page, script: str, timeout_ms: int = 8000):
    """Evaluate an async function in the page, failing after timeout_ms
    (page.evaluate itself would wait for ever on a promise that never settles)."""
    return page.evaluate(
        """([src, ms]) => Promise.race([
            (0, eval)(src)(),
            new Promise((_, no) => setTimeout(() => no(new Error(`timed out after ${ms} ms`)), ms)),
        ])""",
        [script, timeout_ms],
    )


@pytest.fixture
def page(server, open_page):
    page = open_page(f"{server.url}/")  # no ?name=: the page itself stays idle
    page.evaluate(SETUP)
    return page


def test_join_publish_ack_and_delivery(page):
    result = run(
        page,
        """async () => {
        const a = await open2("ann"), b = await open2("ben");
        const joinedA = await a.join("r1");
        const joinedB = await b.join("r1");
        const delivered = new Promise((ok) => b.on("message", ok));
        const ack = await a.publish("r1", { text: "hi" });
        await delivered;
        const got = log.filter((e) => e.who === "ben" && e.ev === "message").map((e) => e.p);
        return { joinedA, joinedB, ack, got, members: a.members("r1").map((m) => m.name).sort() };
    }""",
    )
    assert result["joinedA"]["seq"] == 0 and result["joinedA"]["members"][0]["name"] == "ann"
    assert len(result["joinedB"]["members"]) == 2
    assert result["ack"] == {"seq": 1}
    assert [(m["from"], m["seq"], m["data"]) for m in result["got"]] == [("ann", 1, {"text": "hi"})]
    assert result["members"] == ["ann", "ben"]


def test_errors_with_an_id_reject_the_publish_promise(page):
    code = run(
        page,
        """async () => {
        const a = await open2("ann");
        try { await a.publish("never-joined", 1); return "resolved"; }
        catch (err) { return [err.name, err.code]; }
    }""",
    )
    assert code == ["HubError", "not_joined"]


def test_offline_ephemeral_is_dropped_and_durable_waits_for_the_reconnect(page):
    result = run(
        page,
        """async () => {
        const a = await open2("ann");
        await a.join("r2");
        const live = await a.publish("r2", { x: 1 }, { ephemeral: true });
        a._ws.close();  // the connection drops
        await new Promise((ok) => a.on("state", (s) => s.state === "reconnecting" && ok()));
        const offline = await a.publish("r2", { x: 2 }, { ephemeral: true });
        const durable = await a.publish("r2", { x: 3 });  // resolves once reconnected
        const state = a.state;
        a.close();
        const closed = await a.publish("r2", 4).catch((e) => e.code);
        return { live, offline, durable, state, closed };
    }""",
    )
    assert result == {
        "live": {},
        "offline": {"dropped": True},
        "durable": {"seq": 1},
        "state": "open",
        "closed": "closed",
    }


def test_backoff_grows_exponentially_with_jitter_and_a_cap(page):
    delays = run(
        page,
        """() => {
        const d = (n, r) => hubjs.backoffDelay(n, 500, 15000, () => r);
        return [0, 1, 2, 3, 4, 5, 10, 40].map((n) => [d(n, 0), d(n, 1)]);
    }""",
    )
    assert delays[0] == [250, 500]
    assert delays[1] == [500, 1000]
    assert delays[3] == [2000, 4000]
    assert delays[6] == [7500, 15000] and delays[7] == [7500, 15000]


def test_history_gap_reports_what_was_lost(start_server, open_page):
    server = start_server("--history_size=2")
    page = open_page(f"{server.url}/")
    page.evaluate(SETUP)
    gap = run(
        page,
        """async () => {
        const a = await open2("ann");
        const j = await a.join("r3");
        for (let k = 0; k < 5; k++) await a.publish("r3", k);
        const b = await open2("ben");
        const got = [];
        b.on("message", (m) => got.push(m.seq));
        const gapSeen = new Promise((ok) => {
            b.on("error", (e) => e.code === "history_gap" && ok(e));
        });
        await b.join("r3", { since: 1, epoch: j.epoch });
        const e = await gapSeen;
        while (got.length < 2) await new Promise((ok) => setTimeout(ok, 20));
        const { lost, since, oldest_seq, epochChanged } = e;
        return { lost, since, oldest: oldest_seq, epochChanged, got };
    }""",
    )
    assert gap == {"lost": True, "since": 1, "oldest": 4, "epochChanged": False, "got": [4, 5]}


def test_a_refused_join_rejects_and_is_not_retried(start_server, open_page):
    server = start_server("--max_rooms_per_connection=1")
    page = open_page(f"{server.url}/")
    page.evaluate(SETUP)
    result = run(
        page,
        """async () => {
        const a = await open2("ann");
        await a.join("one");
        const refused = await a.join("two").then(() => "joined", (e) => e.code);
        return { refused, rooms: [...a.rooms.keys()] };
    }""",
    )
    assert result == {"refused": "too_many_rooms", "rooms": ["one"]}
