"""Which ``Host`` names the WebSocket endpoints answer to (``--allowed_hosts``).

A page on ``attacker.example`` can make its own name resolve to 127.0.0.1
(DNS rebinding); its requests then carry ``Host: attacker.example:PORT`` and a
matching ``Origin``, so the same-origin check alone lets them in. Checking the
Host name against the names the server is really reached by closes that door.

No I/O at request time: the defaults are worked out once at start-up.
"""

from __future__ import annotations

import contextlib
import re
import socket

ANY_HOST = "*"
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})
"""Bind addresses that mean "every interface": the server may be reached by any
name (a proxy's, a DNS name), so no default list can be right."""

_HOST_NAME = re.compile(r"\.?[a-z0-9]([a-z0-9\-_.]*[a-z0-9])?\.?\Z|\[[0-9a-f:.]+\]\Z")


def normalise_host(name: str) -> str:
    """Lower case, without IPv6 brackets or a trailing dot (``Example.COM.``: ``example.com``)."""
    name = name.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name.rstrip(".") if name != "." else name


def parse_allowed_hosts(value: str) -> frozenset[str] | None:
    """``a.example, .b.example`` -> the set of names (None for ``*``); bad entries are fatal.

    A name starting with a dot also allows its subdomains.
    """
    hosts = set()
    for item in filter(None, (part.strip().lower() for part in value.split(","))):
        if item == ANY_HOST:
            return None
        if not _HOST_NAME.match(item):
            raise SystemExit(
                f"allowed_hosts: {item!r} is not a host name (no scheme, no port: app.example)"
            )
        subdomains = item.startswith(".")
        hosts.add(("." if subdomains else "") + normalise_host(item.lstrip(".")))
    return frozenset(hosts)


def default_allowed_hosts(bind_host: str) -> frozenset[str] | None:
    """The bind address, ``localhost`` and this machine's names; None (any) for a wildcard bind."""
    if bind_host.strip() in WILDCARD_BINDS:
        return None
    names = {bind_host, "localhost", socket.gethostname(), socket.getfqdn()}
    with contextlib.suppress(OSError):  # a bind address given as a name: its addresses too
        names.update(str(info[4][0]) for info in socket.getaddrinfo(bind_host, None))
    return frozenset(normalise_host(name) for name in names if name)


def host_allowed(host_name: str, allowed: frozenset[str] | None) -> bool:
    """Whether a request's Host name (port left out) is one of ``allowed`` (None: any)."""
    if allowed is None:
        return True
    name = normalise_host(host_name)
    if name in allowed:
        return True
    return any(entry.startswith(".") and ("." + name).endswith(entry) for entry in allowed)
