"""What `handlers.deflate.DeflateSettings` answers to permessage-deflate offers
(RFC 7692 section 7.1): the bounds on zlib's state Tornado then builds from."""

from __future__ import annotations

import subprocess
import sys

import pytest

from handlers.deflate import DeflateSettings
from tests.hostile.proc import REPO


@pytest.mark.parametrize(
    ("offer", "answer"),
    [
        ({}, {"server_no_context_takeover": None}),
        (
            {"client_max_window_bits": None},
            {"client_max_window_bits": "12", "server_no_context_takeover": None},
        ),
        (
            {"client_max_window_bits": "10", "server_max_window_bits": "15"},
            {
                "client_max_window_bits": "10",
                "server_max_window_bits": "12",
                "server_no_context_takeover": None,
            },
        ),
        (
            {"client_no_context_takeover": None},
            {"client_no_context_takeover": None, "server_no_context_takeover": None},
        ),
    ],
)
def test_answers_cap_windows_and_drop_the_servers_context(offer: dict, answer: dict) -> None:
    assert DeflateSettings().accept(offer) == answer


def test_context_takeover_on_leaves_the_offer_alone() -> None:
    settings = DeflateSettings(window_bits=15, context_takeover=True)
    assert settings.accept({}) == {}
    assert settings.compressor_bytes() == (1 << 17) + (1 << 14)


@pytest.mark.parametrize("bad", [{"level": 10}, {"mem_level": 0}, {"window_bits": 8}])
def test_out_of_range_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError, match="not in"):
        DeflateSettings(**bad)


def test_the_server_refuses_to_start_with_a_bad_window() -> None:
    proc = subprocess.run(
        [sys.executable, "server.py", "--port=0", "--compression", "--compression_window_bits=20"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    assert "compression_window_bits 20 is not in 9-15" in proc.stderr
