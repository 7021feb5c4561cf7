"""The batch writer and its C helper, on real sockets, under asyncio and uvloop."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable

import pytest

from handlers.fanout.batch_writer import (
    SMALL_BATCH,
    DirectBatchWriter,
    make_batch_writer,
    send_many,
)
from handlers.socket_connection import SocketConnection
from hub.hub import write_each
from hub.peer import Peer
from tests.support import wait_until
from tests.test_socket_connection import RecordingHandler

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is in the test extra
    uvloop = None

pytestmark = pytest.mark.skipif(send_many is None, reason="handlers.fanout._send_many is not built")

LOOPS = {"asyncio": asyncio.new_event_loop}
if uvloop is not None:
    LOOPS["uvloop"] = uvloop.new_event_loop


def run_on(loop_name: str, scenario: Callable[[], Awaitable[None]]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(scenario())


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    sock.settimeout(5)
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "peer closed early"
        data += chunk
    return data


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_send_many_delivers_every_item_whole_to_its_own_socket(threads: int) -> None:
    pairs = [socket.socketpair() for _ in range(300)]  # big enough for several threads
    try:
        for ours, _ in pairs:
            ours.setblocking(False)
        datas = [f"frame {i:04d} ".encode() * (1 + i % 7) for i in range(len(pairs))]
        assert send_many([ours.fileno() for ours, _ in pairs], datas, threads) == []
        for (_, theirs), data in zip(pairs, datas, strict=True):
            assert recv_exactly(theirs, len(data)) == data
    finally:
        for pair in pairs:
            for sock in pair:
                sock.close()


def test_send_many_reports_partial_refused_and_failed_items() -> None:
    full_ours, full_theirs = socket.socketpair()
    fine_ours, fine_theirs = socket.socketpair()
    not_a_socket = os.open(os.devnull, os.O_WRONLY)
    try:
        for sock in (full_ours, fine_ours):
            sock.setblocking(False)
        full_ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        big = b"x" * (4 << 20)  # far more than the socket buffers take
        fds = [full_ours.fileno(), fine_ours.fileno(), not_a_socket]
        left = send_many(fds, [big, b"fine", b"nope"])
        assert [i for i, _ in left] == [0, 2]
        partial = dict(left)[0]
        assert 0 < partial < len(big)  # what the kernel took
        assert dict(left)[2] == -errno.ENOTSOCK
        assert send_many(fds[:1], [b"more"]) == [(0, -errno.EAGAIN)]  # still full
        assert send_many([-1, fine_ours.fileno()], [b"skip", b"!"]) == [(0, 0)]  # -1: skipped
        assert recv_exactly(fine_theirs, 5) == b"fine!"
    finally:
        os.close(not_a_socket)
        for sock in (full_ours, full_theirs, fine_ours, fine_theirs):
            sock.close()


def test_send_many_rejects_bad_arguments_before_sending_anything() -> None:
    ours, theirs = socket.socketpair()
    try:
        with pytest.raises(TypeError, match="not bytes"):
            send_many([ours.fileno(), ours.fileno()], [b"first", "text"])
        with pytest.raises(ValueError, match="differ in length"):
            send_many([ours.fileno()], [b"a", b"b"])
        with pytest.raises(ValueError, match="bad file descriptor"):
            send_many([ours.fileno(), -2], [b"a", b"b"])
        theirs.setblocking(False)
        with pytest.raises(BlockingIOError):
            theirs.recv(1)  # the valid first item of each call was not sent either
    finally:
        ours.close()
        theirs.close()


def test_make_batch_writer_zero_threads_means_the_transports() -> None:
    assert make_batch_writer(0) is write_each
    assert isinstance(make_batch_writer(2), DirectBatchWriter)


async def open_connections(n: int) -> tuple[list[SocketConnection], list[socket.socket]]:
    """``n`` SocketConnections on the running loop's transports, and the client ends."""
    loop = asyncio.get_running_loop()
    connections, clients = [], []
    for _ in range(n):
        server_side, client_side = socket.socketpair()
        connection = SocketConnection(RecordingHandler(), 1024)
        await loop.connect_accepted_socket(lambda c=connection: c, server_side)
        connections.append(connection)
        clients.append(client_side)
    return connections, clients


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_a_stuck_reader_moves_to_its_transport_and_every_byte_keeps_its_order(
    loop_name: str,
) -> None:
    async def scenario() -> None:
        connections, clients = await open_connections(6)
        stuck_client = clients[0]
        stuck_client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        assert all(c.fd >= 0 for c in connections)
        peers = [Peer(f"p{i}", None, c) for i, c in enumerate(connections)]
        writer = DirectBatchWriter(threads=2)
        sent: list[list[bytes]] = [[] for _ in peers]
        backlog_seen = 0
        for batch in range(400):  # bounded: the stuck socket fills long before
            datas = [b"S%06d" % batch + b"s" * 16_000] + [b"m%06d;" % batch] * (len(peers) - 1)
            left = dict(writer(peers, datas))
            for i, data in enumerate(datas):
                sent[i].append(data)
            assert set(left) <= {0}  # only the stuck reader keeps a backlog
            backlog_seen = left.get(0, 0)
            if backlog_seen and connections[0].fd == -1:
                break
        assert backlog_seen > 0 and connections[0].fd == -1  # paused: no direct sends now
        # One more batch: the stuck peer's bytes queue behind its backlog, in order.
        left = dict(writer(peers, [b"S-last"] + [b"m-last;"] * (len(peers) - 1)))
        sent[0].append(b"S-last")
        for i in range(1, len(peers)):
            sent[i].append(b"m-last;")
        assert left[0] > backlog_seen
        loop = asyncio.get_running_loop()
        expected = [b"".join(chunks) for chunks in sent]
        for client, want in zip(clients, expected, strict=True):
            got = await loop.run_in_executor(None, recv_exactly, client, len(want))
            assert got == want
        await wait_until(lambda: connections[0].fd >= 0)  # drained: direct sends again
        assert connections[0].backlog() == 0
        connections[1].close(1000, "bye", abort=False)  # after a close frame: never direct
        assert connections[1].fd == -1
        for client in clients:
            client.close()
        await wait_until(lambda: all(c.fd == -1 for c in connections))

    run_on(loop_name, scenario)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_a_tls_connection_is_never_written_to_directly(loop_name: str, tmp_path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )

    async def scenario() -> None:
        server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_tls.load_cert_chain(cert, key)
        client_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_tls.load_verify_locations(cert)
        client_tls.check_hostname = False
        connection = SocketConnection(RecordingHandler(), 1024)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: connection, "127.0.0.1", 0, ssl=server_tls)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_tls)
        await wait_until(lambda: connection.transport is not None)
        assert connection.fd == -1  # a direct send would bypass the encryption
        # SMALL_BATCH entries (the same peer) so that the writer takes its direct path.
        chunks = [b"%d;" % i for i in range(SMALL_BATCH)]
        DirectBatchWriter(threads=2)([Peer("p", None, connection)] * SMALL_BATCH, chunks)
        want = b"".join(chunks)
        assert await asyncio.wait_for(reader.readexactly(len(want)), 5) == want
        writer.close()
        server.close()

    run_on(loop_name, scenario)
