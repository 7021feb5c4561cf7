"""Parent-side handle on the load-generator worker processes.

Workers are started with the ``spawn`` method (a clean interpreter, no
inherited event loop or server sockets) and talk back over pipes that the
parent drains from its own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import time
from typing import Any

from bench.worker import WorkerConfig, worker_main


class WorkerPool:
    """A set of worker processes plus the latest message of each kind from each."""

    def __init__(self, configs: list[WorkerConfig]) -> None:
        ctx = mp.get_context("spawn")
        self.configs = configs
        self.latest: list[dict[str, dict[str, Any]]] = [{} for _ in configs]
        self.pipes = []
        self.procs = []
        self.gone: set[int] = set()  # workers whose pipe closed
        for cfg in configs:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child, cfg), daemon=True)
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)
        loop = asyncio.get_running_loop()
        for i, pipe in enumerate(self.pipes):
            loop.add_reader(pipe.fileno(), self._drain, i)
            # uvloop makes watched fds non-blocking; Connection.recv needs blocking
            # reads for messages larger than the pipe buffer.
            os.set_blocking(pipe.fileno(), True)

    def _drain(self, i: int) -> None:
        pipe = self.pipes[i]
        try:
            while pipe.poll():
                kind, payload = pipe.recv()
                self.latest[i][kind] = payload
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(pipe.fileno())
            self.gone.add(i)

    def _drain_all(self) -> None:
        for i in range(len(self.pipes)):
            if i not in self.gone:
                self._drain(i)

    def total(self, key: str, kind: str = "progress") -> int:
        """Sum ``key`` over the latest ``kind`` message of every worker."""
        return sum(w.get(kind, {}).get(key, 0) for w in self.latest)

    def send_all(self, cmd: str, arg: Any = None) -> None:
        for i, pipe in enumerate(self.pipes):
            try:
                pipe.send((cmd, arg))
            except (BrokenPipeError, OSError):
                self.gone.add(i)

    def clear(self, kind: str) -> None:
        for w in self.latest:
            w.pop(kind, None)

    def all_have(self, kind: str) -> bool:
        return all(kind in w for w in self.latest)

    def dead(self, kind: str) -> list[int]:
        """Workers that can no longer send ``kind`` (exited or pipe closed)."""
        return [
            i
            for i, p in enumerate(self.procs)
            if kind not in self.latest[i] and (i in self.gone or not p.is_alive())
        ]

    async def wait_for(self, kind: str, timeout: float, tick: Any = None) -> list[dict[str, Any]]:
        """Wait until every worker has sent ``kind``; call ``tick()`` every 100 ms."""
        deadline = time.monotonic() + timeout
        while not self.all_have(kind):
            dead = self.dead(kind)
            if dead:
                self._drain_all()
                if self.dead(kind):
                    raise RuntimeError(f"load-generator worker(s) {dead} exited early")
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers did not report {kind!r} within {timeout:.0f}s")
            if tick:
                tick()
            await asyncio.sleep(0.02)
        return [w[kind] for w in self.latest]

    async def request(
        self, cmd: str, reply: str, timeout: float = 30.0, arg: Any = None
    ) -> list[dict[str, Any]]:
        """Send ``cmd`` (with ``arg``) to all workers and wait for their ``reply``."""
        self.clear(reply)
        self.send_all(cmd, arg)
        return await self.wait_for(reply, timeout)

    async def stop(self, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Ask workers for final results and let them exit."""
        self.send_all("stop")
        try:
            return await self.wait_for("result", timeout)
        finally:
            self.close()

    def close(self) -> None:
        """Make sure no worker outlives the scenario."""
        loop = asyncio.get_running_loop()
        for pipe in self.pipes:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(pipe.fileno())
        for proc in self.procs:
            proc.join(timeout=3)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=3)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=3)
        for pipe in self.pipes:
            pipe.close()
        self.pipes = []
