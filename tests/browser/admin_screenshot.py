"""Make docs/admin.png and docs/admin-phone.png: the dashboard of a real server
under real traffic (three rates, ~30 s), in Debian's Chromium.

    python -m tests.browser.admin_screenshot
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from tests.browser.admin import Traffic
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, DESKTOP, PHONE
from tests.browser.server_process import REPO, ServerProcess

KEY = "screenshot-key"
PHASES = (0.004, 0.02, 0.001)
"""Seconds between publishes in each phase: the chart shows three rates."""
PHASE_SECONDS = 9.0


def main() -> None:
    from playwright.sync_api import expect, sync_playwright

    log = Path(tempfile.mkdtemp()) / "server.log"
    server = ServerProcess(log, f"--api_key={KEY}", "--rate_limit=0").start()
    try:
        with Traffic(server.port) as traffic, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            tabs = []
            for viewport in (DESKTOP, PHONE):
                page = browser.new_context(viewport=viewport).new_page()
                page.goto(server.url + "/admin")
                page.fill("#key", KEY)
                page.click("#login button[type=submit]")
                expect(page.locator("#dashboard")).to_be_visible()
                tabs.append(page)
            traffic.error_and_close()
            for interval in PHASES:
                traffic.interval = interval
                traffic.start()
                time.sleep(PHASE_SECONDS)
                traffic.stop()
            traffic.start()  # running while the pictures are taken
            for page, name in zip(tabs, ("admin.png", "admin-phone.png"), strict=True):
                page.screenshot(path=str(REPO / "docs" / name), full_page=True)
            browser.close()
    finally:
        server.stop()
    print("wrote docs/admin.png and docs/admin-phone.png")


if __name__ == "__main__":
    main()
