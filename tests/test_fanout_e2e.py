"""A room big enough for the threaded batch writer, through real sockets.

150 members make every broadcast a batch the C helper splits over two
threads (it uses one thread per 64 sends); lone broadcasts go out as casts,
bursts through the member queues. Every member must see every message once,
in order, whichever path it took.
"""

from __future__ import annotations

import asyncio

import pytest

import handlers.fanout.batch_writer
from tests.support import HANDOFF, JsonClient, LiveServer

MEMBERS = 150


async def read_messages(client: JsonClient, count: int) -> list[int]:
    seqs: list[int] = []
    while len(seqs) < count:
        message = await client.recv()
        if message["type"] == "message":
            seqs.append(message["seq"])
    return seqs


@pytest.mark.parametrize("send_threads", [0, 2], ids=["transports", "direct-threaded"])
async def test_every_member_of_a_big_room_gets_every_message_once_in_order(
    make_server, monkeypatch: pytest.MonkeyPatch, send_threads: int
) -> None:
    direct_batches: list[int] = []  # sockets sent to directly, per send_many call
    real_send_many = handlers.fanout.batch_writer.send_many

    def counting_send_many(fds: list[int], datas: list[bytes], threads: int) -> list:
        direct_batches.append(sum(fd >= 0 for fd in fds))
        return real_send_many(fds, datas, threads)

    if real_send_many is not None:
        monkeypatch.setattr(handlers.fanout.batch_writer, "send_many", counting_send_many)
    live: LiveServer = make_server(rate_limit=0, send_threads=send_threads)
    members = await asyncio.gather(*(live.connect(f"m{i}") for i in range(MEMBERS)))
    for client in members:
        await client.join("big")
    publisher = await live.connect("pub")
    await publisher.join("big")
    readers = [asyncio.ensure_future(read_messages(c, 40)) for c in members]
    for n in range(20):  # one at a time: each is alone in its loop iteration (a cast)
        publisher.send({"type": "publish", "room": "big", "data": n, "id": n})
        while (reply := await publisher.recv())["type"] != "ack":
            pass
        assert reply["seq"] == n + 1
    for n in range(20, 40):  # a burst: several per iteration, queued per member
        publisher.send({"type": "publish", "room": "big", "data": n})
    for seqs in await asyncio.wait_for(asyncio.gather(*readers), 30):
        assert seqs == list(range(1, 41))
    assert live.hub.counters.slow_consumers_dropped == 0
    if send_threads and real_send_many is not None and HANDOFF:
        assert sum(n >= 2 * 64 for n in direct_batches) >= 20  # the threaded C path did the work
    elif send_threads and real_send_many is not None:  # sockets stay Tornado's: skipped by C
        assert not any(direct_batches)
    else:
        assert direct_batches == []
