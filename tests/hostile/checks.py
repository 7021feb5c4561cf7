"""Assertions shared by the hostile tests: the server is still up and serving,
and every trace of the hostile connections is gone."""

from __future__ import annotations

import os

from tests.hostile.proc import HubProcess, wait_for
from tests.hostile.wire import Wire


def open_fds(server: HubProcess) -> int:
    """File descriptors the server holds: sockets in any state, including
    half-finished HTTP requests that /healthz cannot see."""
    return len(os.listdir(f"/proc/{server.pid}/fd"))


def assert_echoes(canary: Wire) -> None:
    """A connection opened before the abuse still gets its echo promptly."""
    token = os.urandom(8).hex()
    canary.send(token)
    frame = canary.recv_data(timeout=5.0)
    assert frame.payload == token.encode(), frame


def assert_fresh_client_served(server: HubProcess) -> None:
    """A newcomer can still connect and be echoed."""
    with Wire(server.port) as fresh:
        assert fresh.status == 101, fresh.response_head
        assert_echoes(fresh)


def wait_connections(server: HubProcess, expected: int, timeout: float = 10.0) -> dict:
    """Poll /healthz until it counts ``expected`` WebSocket connections."""
    return wait_for(
        lambda: (h := server.health())["connections"] == expected and h,
        timeout,
        what=f"/healthz connections == {expected}",
    )


def wait_fds(server: HubProcess, at_most: int, timeout: float = 10.0) -> int:
    return wait_for(
        lambda: (n := open_fds(server)) <= at_most and n,
        timeout,
        what=f"server fds <= {at_most}",
    )


def assert_no_errors_logged(server: HubProcess, since: int = 0) -> None:
    """Nothing after log position ``since`` (see `HubProcess.mark`) is an error."""
    errors = server.errors(since)
    assert not errors, "server logged errors:\n" + "".join(server.lines[since:])[-5000:]
