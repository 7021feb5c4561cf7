"""The start-up self-check of the Tornado internals (handlers.tornado_compat)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from tornado.iostream import IOStream
from tornado.websocket import WebSocketProtocol13

from handlers import tornado_compat
from handlers.tornado_compat import UnsupportedTornado, self_check
from tests.support import REPO


async def test_the_pinned_tornado_passes_in_both_modes() -> None:
    self_check(handoff=True)
    self_check(handoff=False)


async def test_a_missing_protocol_method_is_named_in_one_line(monkeypatch) -> None:
    monkeypatch.delattr(WebSocketProtocol13, "_handle_message")
    for handoff in (True, False):
        with pytest.raises(UnsupportedTornado) as caught:
            self_check(handoff=handoff)
        message = str(caught.value)
        assert "\n" not in message
        assert "lacks WebSocketProtocol13._handle_message" in message
        assert "6.6.x" in message


async def test_a_missing_stream_attribute_fails_only_the_hand_off(monkeypatch) -> None:
    """``_read_buffer_size`` exists only on instances: the check builds an IOStream."""
    real_init = IOStream.__init__

    def init_without_it(self, *args, **kwargs) -> None:
        real_init(self, *args, **kwargs)
        del self._read_buffer_size

    monkeypatch.setattr(IOStream, "__init__", init_without_it)
    with pytest.raises(UnsupportedTornado, match=r"IOStream\(\)\._read_buffer_size.*--handoff=off"):
        self_check(handoff=True)
    self_check(handoff=False)  # the public-API mode does not need it


def test_the_server_refuses_to_start_on_an_unsupported_tornado() -> None:
    """``python server.py`` on a Tornado without ``_read_bytes``: one line on stderr, exit 2."""
    fake_tornado = (
        "import sys, runpy, tornado.websocket as ws\n"
        "del ws.WebSocketProtocol13._read_bytes\n"
        "sys.argv = ['server.py', '--port=0']\n"
        "runpy.run_path('server.py', run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", fake_tornado],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("wshub: error: Tornado ") and "_read_bytes" in lines[-1]
    assert "Traceback" not in done.stderr and "listening on" not in done.stderr


def test_nothing_else_names_a_tornado_private_member() -> None:
    """The compat module is the only place to look when Tornado changes."""
    names = (
        tornado_compat.STREAM_INTERNALS
        + tornado_compat.PROTOCOL_METHODS
        + tornado_compat.PROTOCOL_STATE
        + tornado_compat.WEBSOCKET_PRIVATE
    )
    repo = Path(REPO)
    offenders = []
    for path in sorted((repo / "handlers").glob("*.py")) + [repo / "server.py"]:
        if path.name == "tornado_compat.py":
            continue
        text = path.read_text()
        offenders += [f"{path.name}: {name}" for name in names if re.search(rf"\.{name}\b", text)]
    assert offenders == []
