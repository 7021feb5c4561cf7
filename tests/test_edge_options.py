"""The edge's options through real server processes: an explicit
``--allowed_hosts`` list and the global ``--max_pending_connections`` cap; and
the Host-list parsing they rest on."""

from __future__ import annotations

import pytest

from handlers.hosts import default_allowed_hosts, host_allowed, parse_allowed_hosts
from tests.hostile.checks import assert_fresh_client_served, open_fds, wait_fds
from tests.hostile.proc import HubProcess
from tests.hostile.wire import Wire, abort_socket, connect_tcp


def test_an_explicit_host_list_replaces_the_default() -> None:
    with HubProcess("--allowed_hosts=hub.example, .example.org") as server:

        def status(host: str) -> int:
            with Wire(server.port, headers={"Host": f"{host}:{server.port}"}) as wire:
                return wire.status

        assert status("hub.example") == 101
        assert status("HUB.example.") == 101
        assert status("example.org") == 101
        assert status("chat.example.org") == 101
        assert status("127.0.0.1") == 400  # no longer in the list
        assert status("evil-example.org") == 400


def test_the_global_pending_cap_answers_503_whatever_the_address() -> None:
    cap = 20
    with HubProcess(f"--max_pending_connections={cap}") as server:
        idle_fds = open_fds(server)
        held = []
        try:
            for i in range(cap):  # complete nothing: each stays pending
                sock = connect_tcp(server.port, source=f"127.0.0.{2 + i % 5}")
                sock.sendall(b"GET /healthz HTTP/1.1\r\n")
                held.append(sock)
            for i in range(5):
                sock = connect_tcp(server.port, source=f"127.0.0.{10 + i}")
                try:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    assert sock.recv(4096).startswith(b"HTTP/1.1 503 "), i
                finally:
                    sock.close()
        finally:
            for sock in held:
                abort_socket(sock)
        wait_fds(server, idle_fds)
        assert_fresh_client_served(server)  # served again once they are gone


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("*", None),
        ("a.example, B.Example.", frozenset({"a.example", "b.example"})),
        (".example.org", frozenset({".example.org"})),
        ("a.example,*", None),
    ],
)
def test_allowed_hosts_parsing(value: str, expected: frozenset[str] | None) -> None:
    assert parse_allowed_hosts(value) == expected


@pytest.mark.parametrize("bad", ["https://a.example", "a.example:8888", "a/b", "a b"])
def test_allowed_hosts_refuses_what_is_not_a_host_name(bad: str) -> None:
    with pytest.raises(SystemExit):
        parse_allowed_hosts(bad)


def test_defaults_for_a_specific_and_a_wildcard_bind() -> None:
    assert default_allowed_hosts("0.0.0.0") is None
    assert default_allowed_hosts("::") is None
    hosts = default_allowed_hosts("127.0.0.1")
    assert hosts is not None and {"127.0.0.1", "localhost"} <= hosts
    assert host_allowed("LOCALHOST", hosts) and not host_allowed("attacker.example", hosts)


@pytest.mark.parametrize("offer", [{}, {"Sec-WebSocket-Extensions": "permessage-deflate"}])
def test_upgraded_connections_no_longer_count_as_pending(offer: dict[str, str]) -> None:
    """On both upgrade paths (ours; Tornado's, taken with permessage-deflate)."""
    with HubProcess("--compression=true", "--max_pending_per_ip=5") as server:
        wires = [Wire(server.port, headers=offer) for _ in range(12)]
        try:
            assert [w.status for w in wires] == [101] * 12
            assert all(("permessage-deflate" in w.response_head) == bool(offer) for w in wires)
        finally:
            for wire in wires:
                wire.abort()
