"""Choose loopback source addresses so that N connections fit in port ranges.

One source address gives at most one connection per ephemeral port towards a
given server address, so beyond ~28k connections (or with many TIME_WAIT
sockets left by the handshake test) more 127.0.0.x sources are needed.
"""

from __future__ import annotations

from bench.procstat import ephemeral_port_count


def source_addresses(n_connections: int, minimum: int = 1, headroom: float = 0.6) -> list[str]:
    """Return enough 127.0.0.x source addresses for ``n_connections``.

    Only a fraction (``headroom``) of each address's port range is planned for,
    because ports in TIME_WAIT from earlier runs are still taken.
    """
    per_addr = max(1, int(ephemeral_port_count() * headroom))
    count = max(minimum, -(-n_connections // per_addr))
    if count > 250:
        raise ValueError(f"{n_connections} connections need more than 250 source addresses")
    return [f"127.0.0.{10 + i}" for i in range(count)]


def split_evenly(total: int, parts: int) -> list[int]:
    """Split ``total`` into ``parts`` integers that differ by at most one."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]
