"""Helpers that drive the chat and whiteboard pages the way a person would."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:  # imported lazily, so a missing playwright skips instead of erroring
    from playwright.sync_api import Page


class FrameLog:
    """Hub frames a page sent and received, decoded, as seen on the wire."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []

    def attach(self, ws: Any) -> None:
        if not ws.url.split("?")[0].endswith("/ws"):
            return
        ws.on("framesent", lambda payload: self.sent.append(_decode(payload)))
        ws.on("framereceived", lambda payload: self.received.append(_decode(payload)))

    def published(self, kind: str) -> list[dict[str, Any]]:
        """Publish frames whose data has this "kind"."""
        return [f for f in self.sent if f.get("type") == "publish" and _kind(f) == kind]

    def messages(self, kind: str) -> list[dict[str, Any]]:
        """Room messages received whose data has this "kind"."""
        return [f for f in self.received if f.get("type") == "message" and _kind(f) == kind]


def _kind(frame: dict[str, Any]) -> Any:
    data = frame.get("data")
    return data.get("kind") if isinstance(data, dict) else None


def _decode(payload: str | bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def chat_url(base: str, name: str, room: str = "lobby") -> str:
    return f"{base}/?name={quote(name)}&room={quote(room)}"


def board_url(base: str, name: str, room: str = "board") -> str:
    return f"{base}/whiteboard?name={quote(name)}&room={quote(room)}"


def wait_connected(page: Page) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#conn")).to_have_attribute("data-state", "open")


def say(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def chat_texts(page: Page) -> list[str]:
    """Texts of the confirmed messages (those with a seq) in the open room."""
    return page.locator("#messages li.msg[data-seq] .text").all_inner_texts()


def people(page: Page) -> list[str]:
    return page.locator("#people li .name").all_inner_texts()


def draw_wave(page: Page, x0: float, y0: float, x1: float, amp: float, steps: int = 40) -> int:
    """Drag the mouse along a wave across the board (fractions of its size).

    Returns how many mouse events were made, to compare with the number of
    stroke messages sent.
    """
    box = page.locator("#board").bounding_box()
    assert box is not None

    def at(fx: float, fy: float) -> tuple[float, float]:
        return box["x"] + box["width"] * fx, box["y"] + box["height"] * fy

    page.mouse.move(*at(x0, y0))
    page.mouse.down()
    for k in range(1, steps + 1):
        t = k / steps
        page.mouse.move(*at(x0 + (x1 - x0) * t, y0 + amp * math.sin(t * 2 * math.pi)))
    page.mouse.up()
    return steps + 2


def board_points(page: Page) -> int:
    return page.evaluate("window.boardApp.board.pointCount()")


def board_pixel(page: Page, fx: float, fy: float) -> list[int]:
    """RGBA of the board canvas at a point given as fractions of its size."""
    return page.evaluate(
        """([fx, fy]) => {
            const c = document.getElementById("board");
            const x = Math.round(fx * c.width), y = Math.round(fy * c.height);
            return Array.from(c.getContext("2d").getImageData(x, y, 1, 1).data);
        }""",
        [fx, fy],
    )


def ink_near(page: Page, fx: float, fy: float, radius: int = 6) -> bool:
    """Whether any pixel within `radius` logical px of the point is not white."""
    return page.evaluate(
        """([fx, fy, r]) => {
            const c = document.getElementById("board");
            const x = Math.round(fx * c.width) - r, y = Math.round(fy * c.height) - r;
            const d = c.getContext("2d").getImageData(x, y, 2 * r + 1, 2 * r + 1).data;
            for (let k = 0; k < d.length; k += 4) if (d[k] < 128 && d[k + 1] < 128) return true;
            return false;
        }""",
        [fx, fy, radius],
    )


def stroke_ids(page: Page) -> list[str]:
    return page.evaluate("[...window.boardApp.board.strokes.keys()].sort()")


def shot(page: Page, path: Any) -> None:
    page.screenshot(path=str(path))
