"""Pages that lose their connection come back by themselves.

A cut connection (a loopback proxy the test severs) must cost nothing:
hub.js re-joins with since/epoch and the room replays what was missed. A
restarted in-memory server loses its history; the pages must say so (the
history_gap reaches the app) rather than pretend nothing happened.
"""

from __future__ import annotations

import pytest

from tests.browser.pages import (
    FrameLog,
    board_points,
    board_url,
    chat_texts,
    chat_url,
    draw_wave,
    say,
    stroke_ids,
    wait_connected,
)

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect

RECONNECT_MS = 20_000  # backoff is capped well below this while the outage lasts


def test_chat_page_reconnects_after_a_cut_and_misses_nothing(
    server, make_proxy, open_page, artifacts
):
    proxy = make_proxy(server.port)
    alice = open_page(chat_url(server.url, "alice", "resume"))
    frames = FrameLog()
    # bob's page, and so its WebSocket, goes through the proxy.
    bob = open_page(chat_url(proxy.url, "bob", "resume"), frames=frames)
    wait_connected(alice)
    wait_connected(bob)
    say(alice, "before the cut")
    expect(bob.locator("#messages li.msg[data-seq]")).to_have_count(1)

    proxy.block()
    assert proxy.sever() >= 1
    expect(bob.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    expect(bob.locator("#conn")).to_contain_text("Reconnecting")
    expect(alice.locator("#people li .name")).to_have_text(["alice"])

    for n in range(3):
        say(alice, f"while bob was away {n}")
    say(bob, "typed while offline")  # waits in hub.js's outbox
    bob.screenshot(path=str(artifacts / "chat-reconnecting.png"))
    expect(alice.locator("#messages li.msg[data-seq]")).to_have_count(4)

    proxy.unblock()
    expect(bob.locator("#conn")).to_have_attribute("data-state", "open", timeout=RECONNECT_MS)
    expected = [
        "before the cut",
        "while bob was away 0",
        "while bob was away 1",
        "while bob was away 2",
        "typed while offline",
    ]
    expect(bob.locator("#messages li.msg[data-seq] .text")).to_have_text(expected)
    expect(alice.locator("#messages li.msg[data-seq] .text")).to_have_text(expected)
    expect(alice.locator("#people li .name")).to_have_text(["alice", "bob"])
    # Resumed from history: no loss reported, no duplicates, no notice.
    assert bob.evaluate("window.chatApp.gaps.filter(g => g.lost).length") == 0
    expect(bob.locator("#messages li.notice")).to_have_count(0)
    assert chat_texts(bob) == expected
    # It resumed (since = the last seq seen, with its epoch) rather than
    # replaying everything: the re-join asked for seq > 1 of the same epoch.
    joins = [f for f in frames.sent if f.get("type") == "join"]
    epoch = next(f["epoch"] for f in frames.received if f.get("type") == "joined")
    assert joins[0] == {"type": "join", "room": "resume", "since": 0, "id": joins[0]["id"]}
    assert joins[-1]["since"] == 1 and joins[-1]["epoch"] == epoch
    gaps = [f for f in frames.received if f.get("code") == "history_gap"]
    assert gaps == []  # the first join (since 0, no epoch) found history whole, the resume too


def test_whiteboard_reconnects_after_a_cut_and_shows_what_was_drawn_meanwhile(
    server, make_proxy, open_page
):
    proxy = make_proxy(server.port)
    alice = open_page(board_url(server.url, "alice", "wb-resume"))
    bob = open_page(board_url(proxy.url, "bob", "wb-resume"))
    wait_connected(alice)
    wait_connected(bob)
    draw_wave(alice, 0.1, 0.3, 0.5, 0.1)
    alice.wait_for_function("window.boardApp.pending.size === 0")
    bob.wait_for_function("n => window.boardApp.board.pointCount() >= n", arg=board_points(alice))

    proxy.block()
    proxy.sever()
    expect(bob.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    draw_wave(alice, 0.5, 0.7, 0.9, -0.1)
    draw_wave(bob, 0.1, 0.8, 0.4, 0.05)  # bob keeps drawing offline; it is sent on return
    alice.wait_for_function("window.boardApp.pending.size === 0")

    proxy.unblock()
    expect(bob.locator("#conn")).to_have_attribute("data-state", "open", timeout=RECONNECT_MS)
    bob.wait_for_function("window.boardApp.pending.size === 0")
    alice.wait_for_function("window.boardApp.pending.size === 0")
    alice.wait_for_function("n => window.boardApp.board.strokes.size >= n", arg=3)
    bob.wait_for_function("n => window.boardApp.board.pointCount() >= n", arg=board_points(alice))
    assert stroke_ids(bob) == stroke_ids(alice)
    assert board_points(bob) == board_points(alice)
    assert bob.evaluate("window.boardApp.sync.stats.requests") == 0  # history was enough


def test_server_restart_chat_pages_reconnect_and_report_the_gap(server, open_page, artifacts):
    alice = open_page(chat_url(server.url, "alice", "restart"))
    bob = open_page(chat_url(server.url, "bob", "restart"))
    wait_connected(alice)
    wait_connected(bob)
    say(alice, "said before the restart")
    expect(bob.locator("#messages li.msg[data-seq]")).to_have_count(1)

    server.restart()  # in-memory: history and epochs are gone
    for page in (alice, bob):
        expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=RECONNECT_MS)
        expect(page.locator("#messages li.notice")).to_contain_text("server restarted")
        gaps = page.evaluate("window.chatApp.gaps.filter(g => g.epochChanged)")
        assert len(gaps) == 1 and gaps[0]["lost"] is True and gaps[0]["room"] == "restart"
    expect(alice.locator("#people li .name")).to_have_text(["alice", "bob"])

    # What the page had is still shown; new messages flow in the new epoch.
    say(bob, "said after the restart")
    texts = ["said before the restart", "said after the restart"]
    expect(alice.locator("#messages li.msg[data-seq] .text")).to_have_text(texts)
    expect(alice.locator("#messages li.msg[data-seq]").last).to_have_attribute("data-seq", "1")
    alice.screenshot(path=str(artifacts / "chat-after-restart.png"))


def test_server_restart_whiteboard_is_kept_and_handed_to_the_new_history(
    server, open_page, artifacts
):
    alice = open_page(board_url(server.url, "alice", "wb-restart"))
    frames = FrameLog()
    bob = open_page(board_url(server.url, "bob", "wb-restart"), frames=frames)
    wait_connected(alice)
    wait_connected(bob)
    draw_wave(alice, 0.1, 0.35, 0.6, 0.15)
    draw_wave(bob, 0.4, 0.65, 0.9, -0.15)
    for page in (alice, bob):
        page.wait_for_function("window.boardApp.pending.size === 0")
    bob.wait_for_function("window.boardApp.board.strokes.size === 2")
    alice.wait_for_function("window.boardApp.board.strokes.size === 2")
    drawn = board_points(alice)

    server.restart()
    for page in (alice, bob):
        expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=RECONNECT_MS)
    # The gap reached the app, which told the user. (The state is "open" at the
    # welcome; the re-join's answer comes after it: wait for the notice first.)
    expect(bob.locator("#notice")).to_contain_text("server restarted")
    assert any(
        f.get("code") == "history_gap" and f.get("room") == "wb-restart" for f in frames.received
    )
    # One of them re-seeds the new, empty history with the board: once both
    # have received that snapshot from the room, it is in the new history.
    for page in (alice, bob):
        page.wait_for_function("window.boardApp.sync.stats.snapshotsSeen >= 1")
    reseeds = [p.evaluate("window.boardApp.sync.stats.reseeds") for p in (alice, bob)]
    assert 1 <= sum(reseeds) <= 2, reseeds
    assert board_points(alice) == drawn and board_points(bob) == drawn

    carol = open_page(board_url(server.url, "carol", "wb-restart"))
    wait_connected(carol)
    carol.wait_for_function("n => window.boardApp.board.pointCount() >= n", arg=drawn)
    assert stroke_ids(carol) == stroke_ids(alice)
    carol.screenshot(path=str(artifacts / "whiteboard-after-restart.png"))
