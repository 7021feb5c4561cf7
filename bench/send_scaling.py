"""What one fan-out costs the kernel here, and how it scales with sending threads.

``python -m bench.send_scaling [N] [--rounds R]`` opens N loopback TCP
connections to itself (no WebSocket, no event loop, nobody reading: the
kernel buffers absorb the few KB each socket gets) and times
``handlers.fanout._send_many.send_many`` sending one 180-byte frame to all N, with 1 to
4 threads. It isolates the floor under the hub's fan-out: what the kernel
charges per send() on this machine, and how much wall time several threads
save when nothing else competes for the cores. Bounded: N ≤ the open-file
limit / 2, R rounds per thread count.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time

from handlers.fanout._send_many import send_many

from bench.procstat import raise_nofile_limit


def connect_pairs(n: int) -> tuple[list[socket.socket], list[socket.socket]]:
    """``n`` connected loopback pairs: (our non-blocking ends, the idle far ends)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    ours, theirs = [], []
    try:
        for _ in range(n):
            far = socket.create_connection(("127.0.0.1", port))
            near, _ = listener.accept()
            near.setblocking(False)
            near.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            ours.append(near)
            theirs.append(far)
    finally:
        listener.close()
    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("connections", type=int, nargs="?", default=8000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    n = max(1, min(args.connections, (raise_nofile_limit() - 64) // 2))
    rounds = max(1, min(args.rounds, 40))  # 40 × 180 B per socket stays far below its buffer
    ours, theirs = connect_pairs(n)
    try:
        fds = [s.fileno() for s in ours]
        frames = [b"x" * 180] * n
        print(f"{n:,} loopback connections, one 180-byte frame each, median of {rounds} rounds")
        print("threads  wall µs/send  CPU µs/send  wall ms per fan-out")
        for threads in (1, 2, 3, 4):
            walls, cpus = [], []
            for _ in range(rounds):
                t0, c0 = time.perf_counter(), time.process_time()
                left = send_many(fds, frames, threads)
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
                if left:
                    raise SystemExit(f"{len(left)} sends were not taken whole: {left[:3]}")
                time.sleep(0.05)  # let delayed ACKs and timers settle between rounds
            wall, cpu = statistics.median(walls), statistics.median(cpus)
            per_send, cpu_per_send = wall * 1e6 / n, cpu * 1e6 / n
            print(f"{threads:>7}  {per_send:>12.2f}  {cpu_per_send:>11.2f}  {wall * 1e3:>19.1f}")
    finally:
        for s in ours + theirs:
            s.close()


if __name__ == "__main__":
    main()
