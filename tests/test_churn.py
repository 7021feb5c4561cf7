"""Churn: thousands of clients connect, join, publish and leave (a third of
them abruptly) while broadcasters publish to every room. Bounded in time.

Afterwards the hub must hold no trace of them: no connection, room, member,
queued frame or history, and nothing logged as an error.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.hostile.aclient import AsyncWire
from tests.hostile.checks import assert_no_errors_logged, open_fds
from tests.hostile.proc import HubProcess, wait_for
from tests.hostile.wire import OP_TEXT, encode_frame

CHURNERS = 5000
CONCURRENCY = 100  # churners alive at once
ROOMS = 20
BROADCASTERS = 4
BROADCAST_INTERVAL = 0.03  # s between publishes of one broadcaster (~33/s, under the rate limit)
TIME_LIMIT = 120.0
HISTORY_TTL = 2
# Debug counters asked of the server (/healthz); checked when present: after the
# churn each must be back to its value before it (0 for most).
DEBUG_COUNTERS = (
    "pending_callbacks",  # flushes scheduled, peers queued or doomed
    "per_ip_entries",  # addresses in the per-IP table
    "handed_off_sockets",  # connections owned by a SocketConnection, not yet closed
    "close_timers",  # close-handshake timeouts still armed
    "tasks",  # asyncio tasks
    "errors_logged",  # log records at ERROR or above
)


@pytest.fixture
def server() -> Iterator[HubProcess]:
    # Short history_ttl and ping_interval so that "no trace" (expired histories,
    # dead peers found by a ping) is reached within seconds, not minutes.
    with HubProcess(
        f"--history_ttl={HISTORY_TTL}",
        "--ping_interval=2",
        "--ping_timeout=30",
    ) as running:
        yield running


async def broadcaster(port: int, index: int, stop: asyncio.Event, tally: Counter[str]) -> None:
    """Joins every room and publishes round-robin until told to stop, reading all the while."""
    wire = await AsyncWire.open(port, f"/ws?name=bcast{index}")
    await wire.until("welcome")
    for room in range(ROOMS):
        wire.send_json({"type": "join", "room": f"r{room}"})
        await wire.until("joined")

    async def read() -> None:
        while True:
            message = await wire.recv_json()
            tally[f"bcast-got-{message['type']}"] += 1
            if message["type"] == "error":
                tally[f"bcast-error-{message['code']}"] += 1

    reader = asyncio.create_task(read())
    n = 0
    try:
        while not stop.is_set():
            wire.send_json({"type": "publish", "room": f"r{n % ROOMS}", "data": {"n": n}})
            n += 1
            tally["bcast-sent"] += 1
            await asyncio.sleep(BROADCAST_INTERVAL)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await wire.close_politely()


async def churner(port: int, index: int, rng: random.Random, tally: Counter[str]) -> None:
    """One short-lived client; how it leaves is chosen at random."""
    wire = await AsyncWire.open(port, f"/ws?name=c{index}")
    try:
        await wire.until("welcome")
        room = f"r{rng.randrange(ROOMS)}"
        wire.send_json({"type": "join", "room": room})
        await wire.until("joined")
        for k in range(rng.randrange(1, 4)):
            wire.send_json({"type": "publish", "room": room, "data": f"c{index}-{k}", "id": k})
        await wire.until("ack")
        exit_kind = rng.choice(["polite", "polite", "leave-then-close", "rst", "fin", "half"])
        tally[f"exit-{exit_kind}"] += 1
        if exit_kind == "polite":
            await wire.close_politely()
        elif exit_kind == "leave-then-close":
            wire.send_json({"type": "leave", "room": room})
            await wire.until("left")
            await wire.close_politely()
        elif exit_kind == "rst":
            wire.abort()
        elif exit_kind == "fin":
            wire.drop()
        else:  # half a frame, then gone
            wire.writer.write(encode_frame(b'{"type":"publish"' + b" " * 300, OP_TEXT)[:40])
            await wire.writer.drain()
            wire.abort()
    except BaseException:
        wire.abort()
        raise


async def churn(port: int) -> Counter[str]:
    tally: Counter[str] = Counter()
    stop = asyncio.Event()
    broadcasters = [
        asyncio.create_task(broadcaster(port, i, stop, tally)) for i in range(BROADCASTERS)
    ]
    rng = random.Random(1234)
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(index: int) -> None:
        async with slots:
            try:
                await churner(port, index, rng, tally)
                tally["churner-ok"] += 1
            except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
                tally[f"churner-failed-{type(exc).__name__}"] += 1

    try:
        await asyncio.sleep(0.2)  # broadcasters joined and publishing
        await asyncio.gather(*(one(i) for i in range(CHURNERS)))
    finally:
        stop.set()
        await asyncio.gather(*broadcasters)
    return tally


def test_churn_leaves_no_trace(server: HubProcess) -> None:
    mark = server.mark()
    idle_fds = open_fds(server)
    before = server.health()
    started = time.monotonic()
    tally = asyncio.run(asyncio.wait_for(churn(server.port), TIME_LIMIT))
    took = time.monotonic() - started
    print(f"\nchurn: {CHURNERS} clients in {took:.1f}s: {dict(sorted(tally.items()))}")

    assert tally["churner-ok"] == CHURNERS, tally
    assert tally["bcast-got-message"] > 0 and not any(k.startswith("bcast-error") for k in tally)

    def no_trace() -> dict | None:
        health = server.health()
        gone = {
            "connections": 0,
            "hub_connections": 0,
            "rooms": 0,
            "memberships": 0,
            "queued_peers": 0,
            "history_rooms": 0,
        }
        return health if all(health.get(k) == v for k, v in gone.items()) else None

    health = wait_for(no_trace, HISTORY_TTL + 10, what="no connection, room, member or history")
    for key in DEBUG_COUNTERS:
        if key in before:
            wait_for(
                lambda key=key: server.health()[key] <= before[key], 10, what=f"{key} back down"
            )
    # +2: descriptors the event loop opens lazily on first use (uvloop keeps one).
    wait_for(lambda: open_fds(server) <= idle_fds + 2, 10, what="descriptors back to idle")
    assert health["slow_consumers_dropped"] == 0, health
    assert server.alive()
    assert_no_errors_logged(server, since=mark)
