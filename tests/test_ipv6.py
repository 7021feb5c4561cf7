"""Listening on IPv6: ``--host=::1``, and ``--host=::`` for IPv6 and IPv4 at once.

Skipped, saying so, on a machine without an IPv6 loopback."""

from __future__ import annotations

import socket
import ssl
import sys

import pytest

from tests.command import SERVER, Command
from tests.support import JsonClient


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback")


async def talk(url: str, ssl_options: ssl.SSLContext | None = None) -> None:
    """A real conversation through the hub at ``url``: welcome, join, publish, echo
    (``ssl_options``: the client's context for a wss:// URL)."""
    client = await JsonClient.open(f"{url}/ws?name=v6", ssl_options=ssl_options)
    try:
        await client.expect("welcome")
        client.send({"type": "join", "room": "r", "id": 1})
        await client.expect("joined")
        client.send({"type": "publish", "room": "r", "data": {"text": "over v6"}, "id": 2})
        message = await client.expect("message")
        assert message["data"] == {"text": "over v6"}
    finally:
        client.close()


async def test_host_ipv6_loopback() -> None:
    with Command([sys.executable, SERVER, "--host=::1", "--port=0"]) as proc:
        assert proc.urls == [("::1", proc.port)]
        assert f"http://[::1]:{proc.port}/" in proc.log()
        await talk(f"ws://[::1]:{proc.port}")


async def test_host_any_is_dual_stack() -> None:
    with Command([sys.executable, SERVER, "--host=::", "--port=0"]) as proc:
        await talk(f"ws://127.0.0.1:{proc.port}")
        await talk(f"ws://[::1]:{proc.port}")
