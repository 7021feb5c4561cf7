"""The chat page at / in a real browser: two people, one room."""

from __future__ import annotations

import pytest

from tests.browser.conftest import PHONE
from tests.browser.pages import chat_texts, chat_url, people, say, wait_connected

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect


def test_message_typed_in_one_page_appears_in_the_other(server, open_page, artifacts):
    alice = open_page(chat_url(server.url, "alice"))
    bob = open_page(chat_url(server.url, "bob"))
    wait_connected(alice)
    wait_connected(bob)

    say(alice, "Hi Bob, the build is green.")
    expect(bob.locator("#messages li.msg[data-seq]")).to_have_count(1)
    assert chat_texts(bob) == ["Hi Bob, the build is green."]
    expect(bob.locator("#messages li.msg .from")).to_have_text(["alice"])

    say(bob, "Great, shipping it.")
    expect(alice.locator("#messages li.msg[data-seq] .text")).to_have_text(
        ["Hi Bob, the build is green.", "Great, shipping it."]
    )
    # The sender's own pending copy is replaced by the room's copy, not doubled.
    expect(alice.locator("#messages li.msg")).to_have_count(2)
    expect(alice.locator("#conn")).to_have_text("Connected")
    alice.screenshot(path=str(artifacts / "chat-desktop.png"))


def test_presence_list_follows_people_joining_and_leaving(server, open_page):
    alice = open_page(chat_url(server.url, "alice", "team"))
    wait_connected(alice)
    expect(alice.locator("#people li .name")).to_have_text(["alice"])

    bob = open_page(chat_url(server.url, "bob", "team"))
    wait_connected(bob)
    expect(alice.locator("#people li .name")).to_have_text(["alice", "bob"])
    expect(bob.locator("#people li .name")).to_have_text(["alice", "bob"])
    expect(bob.locator("#people li", has_text="bob").locator(".you")).to_have_count(1)

    bob.close()
    expect(alice.locator("#people li .name")).to_have_text(["alice"])
    assert people(alice) == ["alice"]


def test_late_joiner_sees_the_rooms_recent_messages(server, open_page):
    alice = open_page(chat_url(server.url, "alice", "history"))
    wait_connected(alice)
    for n in range(3):
        say(alice, f"note {n}")
    expect(alice.locator("#messages li.msg[data-seq]")).to_have_count(3)

    carol = open_page(chat_url(server.url, "carol", "history"))
    expect(carol.locator("#messages li.msg[data-seq] .text")).to_have_text(
        ["note 0", "note 1", "note 2"]
    )
    # Joining with since=0 while history still starts at seq 1: no history_gap at all.
    gaps = carol.evaluate("window.chatApp.gaps.map(g => g.lost)")
    assert gaps == []
    expect(carol.locator("#messages li.notice")).to_have_count(0)


def test_rooms_are_separate_and_count_unread(server, open_page):
    alice = open_page(chat_url(server.url, "alice", "lobby"))
    bob = open_page(chat_url(server.url, "bob", "lobby"))
    wait_connected(alice)
    wait_connected(bob)

    bob.fill("#join-room", "random")
    bob.press("#join-room", "Enter")
    expect(bob.locator("#room-title")).to_have_text("random")
    alice.fill("#join-room", "random")
    alice.press("#join-room", "Enter")
    expect(alice.locator("#room-title")).to_have_text("random")
    say(alice, "in random")

    # bob is looking at "random"; a message in "lobby" shows as unread there.
    expect(bob.locator("#messages li.msg[data-seq] .text")).to_have_text(["in random"])
    alice.locator("#room-list li[data-room=lobby] button.open").click()
    say(alice, "back in lobby")
    expect(bob.locator("#room-list li[data-room=lobby] .unread")).to_have_text("1")
    bob.locator("#room-list li[data-room=lobby] button.open").click()
    expect(bob.locator("#messages li.msg[data-seq] .text")).to_have_text(["back in lobby"])


def test_chat_fits_a_phone_sized_window(server, open_page, artifacts):
    alice = open_page(chat_url(server.url, "alice"), viewport=PHONE)
    bob = open_page(chat_url(server.url, "bob"), viewport=PHONE)
    wait_connected(alice)
    wait_connected(bob)
    say(bob, "Hello from a phone-sized window: long words wrap instead of overflowing.")
    expect(alice.locator("#messages li.msg[data-seq]")).to_have_count(1)

    overflow = alice.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page is {overflow}px wider than the phone"
    for selector in ("#composer button", "#text", "#conn", "#people"):
        expect(alice.locator(selector)).to_be_in_viewport()
    alice.screenshot(path=str(artifacts / "chat-phone.png"))


def test_a_person_picks_a_name_and_a_room_by_hand(server, open_page):
    page = open_page(f"{server.url}/")
    expect(page.locator("#start")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    page.fill("#start-name", "dora")
    page.fill("#start-room", "book-club")
    page.click("#start button[type=submit]")
    expect(page.locator("#conn")).to_have_attribute("data-state", "open")
    expect(page.locator("#room-title")).to_have_text("book-club")
    expect(page.locator("#my-name")).to_have_text("dora")
    expect(page.locator("#people li .name")).to_have_text(["dora"])
    say(page, "first!")
    expect(page.locator("#messages li.msg[data-seq] .text")).to_have_text(["first!"])
    assert page.evaluate("location.hash") == "#book-club"
