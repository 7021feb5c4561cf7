"""The whiteboard on a phone fills the screen (its board turned a quarter turn),
drawing and cursors still land where the pointer is, and the people on a board
get colours far apart from each other."""

from __future__ import annotations

import itertools
import re

import pytest

from tests.browser.conftest import PHONE
from tests.browser.pages import board_url, draw_wave, ink_near, wait_connected

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect

MIN_COLOUR_DISTANCE = 30
"""CIE76 distance between two people's colours; about 2.3 is just noticeable,
and the blues that hashed names gave ben, dan and ned were under 10 apart."""


def test_board_fills_a_phone_screen(server, open_page, artifacts) -> None:
    phone = open_page(board_url(server.url, "alice", "fit"), viewport=PHONE)
    wait_connected(phone)
    board = phone.locator("#board").bounding_box()
    people = phone.locator("#people").bounding_box()
    assert board is not None and people is not None
    height = PHONE["height"]
    assert board["height"] >= 0.65 * height, board  # was 229 px of 844: a 16:10 strip
    assert board["width"] >= PHONE["width"] - 30
    assert board["height"] > board["width"]  # turned: the long side runs down the screen
    assert people["y"] - (board["y"] + board["height"]) <= 0.1 * height  # no empty lower half
    assert people["y"] + people["height"] <= height
    overflow = phone.evaluate("document.documentElement.scrollHeight - window.innerHeight")
    assert overflow <= 0, f"page is {overflow}px taller than the phone"
    phone.screenshot(path=str(artifacts / "whiteboard-phone-fit.png"))


def test_turned_board_puts_strokes_and_cursors_under_the_pointer(server, open_page) -> None:
    phone = open_page(board_url(server.url, "alice", "turned"), viewport=PHONE)
    desk = open_page(board_url(server.url, "bob", "turned"))
    wait_connected(phone)
    wait_connected(desk)
    # Along the phone's top edge, left to right: on the phone's own board there...
    draw_wave(phone, 0.1, 0.1, 0.3, 0.0, steps=10)
    phone.wait_for_function("window.boardApp.pending.size === 0")
    assert ink_near(phone, 0.2, 0.1)
    # ...and, the phone's view being a quarter turn clockwise, up the left side
    # of the unturned board on the desktop.
    desk.wait_for_function("window.boardApp.board.pointCount() > 0")
    assert ink_near(desk, 0.1, 0.8) and not ink_near(desk, 0.2, 0.1)

    box = desk.locator("#board").bounding_box()
    desk.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.3)
    cursor = phone.locator(".cursor", has_text="bob")
    expect(cursor).to_be_visible()
    # Bob's pointer at (0.6, 0.3) of his board is at (1 - 0.3, 0.6) of the turned one.
    phone.wait_for_function(
        """() => {
            const all = [...document.querySelectorAll(".cursor")];
            const c = all.find((e) => e.textContent === "bob");
            const b = document.getElementById("board").getBoundingClientRect();
            const r = c.getBoundingClientRect();
            const fx = (r.left - b.left) / b.width, fy = (r.top - b.top) / b.height;
            return Math.abs(fx - 0.7) < 0.02 && Math.abs(fy - 0.6) < 0.02;
        }"""
    )


def _lab(css: str) -> tuple[float, float, float]:
    """CIE L*a*b* of a CSS ``rgb(r, g, b)`` colour."""
    r, g, b = (int(v) / 255 for v in re.findall(r"\d+", css)[:3])

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = linear(r), linear(g), linear(b)
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def _distance(a: str, b: str) -> float:
    return sum((p - q) ** 2 for p, q in zip(_lab(a), _lab(b), strict=True)) ** 0.5


def _dot_colours(page) -> dict[str, str]:
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#people li')].map((li) =>
            [li.querySelector('.name').textContent, getComputedStyle(li.querySelector('.dot'))
                .backgroundColor]))"""
    )


def test_people_on_a_board_get_colours_far_apart(server, open_page) -> None:
    names = ["ben", "dan", "ned", "sam"]  # their hashed hues were 217-231 degrees: all one blue
    pages = [open_page(board_url(server.url, name, "colours")) for name in names]
    for page in pages:
        wait_connected(page)
    for page in pages:
        expect(page.locator("#people li")).to_have_count(len(names))
    colours = _dot_colours(pages[0])
    for a, b in itertools.combinations(names, 2):
        distance = _distance(colours[a], colours[b])
        assert distance >= MIN_COLOUR_DISTANCE, (a, colours[a], b, colours[b], distance)
    assert all(_dot_colours(page) == colours for page in pages[1:])  # the same on every page
    box = pages[1].locator("#board").bounding_box()
    pages[1].mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    label = pages[0].locator(".cursor .label", has_text="dan")
    expect(label).to_have_css("background-color", colours["dan"])
