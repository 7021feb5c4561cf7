"""The collaboration page at /whiteboard in a real browser."""

from __future__ import annotations

import time

import pytest

from tests.browser.conftest import PHONE
from tests.browser.pages import (
    FrameLog,
    board_points,
    board_url,
    draw_wave,
    ink_near,
    stroke_ids,
    wait_connected,
)

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect


def wait_points(page, n: int) -> None:
    page.wait_for_function("n => window.boardApp.board.pointCount() >= n", arg=n)


def test_stroke_drawn_with_the_mouse_appears_on_the_other_canvas(server, open_page, artifacts):
    frames = FrameLog()
    alice = open_page(board_url(server.url, "alice"), frames=frames)
    bob = open_page(board_url(server.url, "bob"))
    wait_connected(alice)
    wait_connected(bob)
    expect(bob.locator("#people li .name")).to_have_text(["alice", "bob"])
    assert not ink_near(bob, 0.5, 0.5)

    started = time.monotonic()
    mouse_events = draw_wave(alice, 0.2, 0.5, 0.8, 0.2)
    elapsed_ms = (time.monotonic() - started) * 1000
    alice.wait_for_function("window.boardApp.pending.size === 0")
    drawn = board_points(alice)
    assert drawn > 20
    wait_points(bob, drawn)
    assert stroke_ids(bob) == stroke_ids(alice)

    # Pixels, not just the model: the wave passes through the middle and,
    # a quarter of the way along, its lowest point at 0.5 + 0.2 of the height
    # (canvas y grows downwards); nothing at the mirror point above.
    assert ink_near(bob, 0.5, 0.5)
    assert ink_near(bob, 0.35, 0.7)
    assert not ink_near(bob, 0.35, 0.3)

    # Batched by time (one message per 60 ms at most), not per mouse event;
    # how many events fit in a batch depends on how fast the machine drives
    # the mouse, so the strict count is checked in the next test.
    strokes = frames.published("stroke")
    assert 1 <= len(strokes) <= elapsed_ms / 60 + 2, (len(strokes), mouse_events, elapsed_ms)
    assert len(strokes) < mouse_events
    assert all("ephemeral" not in f for f in strokes)
    bob.mouse.move(10, 10)  # keep bob's own cursor out of the picture
    bob.screenshot(path=str(artifacts / "whiteboard-desktop.png"))


def test_a_burst_of_pointer_events_goes_out_as_one_batch(server, open_page):
    frames = FrameLog()
    alice = open_page(board_url(server.url, "alice", "batch"), frames=frames)
    wait_connected(alice)
    box = alice.locator("#board").bounding_box()
    alice.mouse.move(box["x"] + 100, box["y"] + 100)
    alice.mouse.down()
    # 200 moves within one task, faster than any flush: they must share a batch.
    alice.evaluate(
        """([x0, y0]) => {
            const canvas = document.getElementById("board");
            for (let k = 1; k <= 200; k++) {
                canvas.dispatchEvent(new PointerEvent("pointermove", {
                    bubbles: true, pointerId: 1, isPrimary: true,
                    clientX: x0 + k * 3, clientY: y0 + (k % 20) * 4,
                }));
            }
        }""",
        [box["x"] + 100, box["y"] + 100],
    )
    alice.mouse.up()
    alice.wait_for_function("window.boardApp.pending.size === 0")
    strokes = frames.published("stroke")
    assert alice.evaluate("window.boardApp.stats.pointerMoves") >= 200
    assert 1 <= len(strokes) <= 3, [len(f["data"]["p"]) // 2 for f in strokes]
    assert sum(len(f["data"]["p"]) // 2 for f in strokes) >= 200


def test_live_cursor_is_labelled_with_the_name_and_travels_ephemeral(server, open_page):
    frames_a = FrameLog()
    frames_b = FrameLog()
    alice = open_page(board_url(server.url, "alice", "cursors"), frames=frames_a)
    bob = open_page(board_url(server.url, "bob", "cursors"), frames=frames_b)
    wait_connected(alice)
    wait_connected(bob)
    expect(alice.locator("#people li")).to_have_count(2)

    box = alice.locator("#board").bounding_box()
    alice.mouse.move(box["x"] + 50, box["y"] + 50)
    alice.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=10)
    cursor = bob.locator(".cursor", has_text="alice")
    expect(cursor).to_be_visible()
    expect(cursor).to_have_attribute("data-x", "800")
    expect(cursor).to_have_attribute("data-y", "500")

    sent = frames_a.published("cursor")
    assert sent and all(f.get("ephemeral") is True for f in sent)
    assert all("id" not in f for f in sent), "cursor moves should not wait for acks"
    got = frames_b.messages("cursor")
    assert got and all("seq" not in f and f.get("ephemeral") is True for f in got)

    # Ephemeral messages are not history: a late joiner gets strokes, not cursors.
    frames_c = FrameLog()
    carol = open_page(board_url(server.url, "carol", "cursors"), frames=frames_c)
    wait_connected(carol)
    expect(carol.locator("#people li")).to_have_count(3)
    assert frames_c.messages("cursor") == []

    alice.close()
    expect(bob.locator(".cursor", has_text="alice")).to_have_count(0)


def test_late_joiner_sees_the_drawing_replayed_from_history(server, open_page):
    alice = open_page(board_url(server.url, "alice", "late"))
    wait_connected(alice)
    draw_wave(alice, 0.1, 0.3, 0.5, 0.1)
    draw_wave(alice, 0.5, 0.7, 0.9, -0.1)
    alice.wait_for_function("window.boardApp.pending.size === 0")
    drawn = board_points(alice)

    carol = open_page(board_url(server.url, "carol", "late"))
    wait_connected(carol)
    wait_points(carol, drawn)
    assert stroke_ids(carol) == stroke_ids(alice)
    assert ink_near(carol, 0.3, 0.3)  # the first wave crosses its start height mid-way
    # History reached back to the start, so nobody had to hand anything over.
    assert carol.evaluate("window.boardApp.sync.stats.requests") == 0


def test_late_joiner_gets_the_drawing_handed_over_when_history_is_short(start_server, open_page):
    server = start_server("--history_size=3")
    alice = open_page(board_url(server.url, "alice", "short"))
    wait_connected(alice)
    for k in range(3):
        draw_wave(alice, 0.1, 0.2 + 0.25 * k, 0.9, 0.08, steps=30)
    alice.wait_for_function("window.boardApp.pending.size === 0")
    assert alice.evaluate("window.boardApp.stats.strokeMessages") > 3
    drawn = board_points(alice)

    carol = open_page(board_url(server.url, "carol", "short"))
    wait_connected(carol)
    wait_points(carol, drawn)
    assert stroke_ids(carol) == stroke_ids(alice)
    assert carol.evaluate("window.boardApp.sync.stats.requests") == 1
    assert alice.evaluate("window.boardApp.sync.stats.snapshotsSent") == 1
    expect(carol.locator("#notice")).to_be_hidden()


def test_whiteboard_fits_a_phone_sized_window(server, open_page, artifacts):
    alice = open_page(board_url(server.url, "alice", "phone"), viewport=PHONE)
    bob = open_page(board_url(server.url, "bob", "phone"))
    wait_connected(alice)
    wait_connected(bob)
    draw_wave(bob, 0.15, 0.5, 0.85, 0.25)
    bob.wait_for_function("window.boardApp.pending.size === 0")
    wait_points(alice, board_points(bob))
    box = bob.locator("#board").bounding_box()
    bob.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.3)
    expect(alice.locator(".cursor", has_text="bob")).to_be_visible()

    overflow = alice.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page is {overflow}px wider than the phone"
    for selector in ("#board", "#clear", "#conn", "#people"):
        expect(alice.locator(selector)).to_be_in_viewport()
    alice.screenshot(path=str(artifacts / "whiteboard-phone.png"))
