"""A live server on its own thread and event loop (asyncio or uvloop), for
tests whose clients are blocking raw sockets that must read while the server
writes (a slow or prompt reader only means something when it runs concurrently)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from hub.settings import HubSettings
from tests.support import LiveServer, start_live_server

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is in the test extra
    uvloop = None

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
if uvloop is not None:
    LOOPS["uvloop"] = uvloop.new_event_loop

T = TypeVar("T")


class ThreadedServer:
    """`tests.support.start_live_server` on a thread; `call` runs code on its loop."""

    def __init__(
        self,
        loop: str = "asyncio",
        settings: HubSettings | None = None,
        compression: bool = False,
        max_message_size: int = 64 * 1024,
        send_threads: int | None = None,
    ) -> None:
        self._args = (settings, frozenset(), compression, max_message_size, send_threads)
        self._loop_factory = LOOPS[loop]
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.live: LiveServer | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._started.wait(10) or self.live is None:
            raise RuntimeError(f"server thread did not start: {self._error!r}")

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=self._loop_factory) as runner:
                runner.run(self._serve())
        except BaseException as error:  # reported by the constructor or `stop`
            self._error = error
            self._started.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.live = start_live_server(*self._args)
        self._started.set()
        await self._stop.wait()
        self.live.stop()

    @property
    def port(self) -> int:
        assert self.live is not None
        return self.live.port

    def call(self, function: Callable[[], T], timeout: float = 10.0) -> T:
        """``function()`` on the server's loop (the hub's state has one owner)."""
        assert self._loop is not None
        result: list[Any] = []
        done = threading.Event()

        def run() -> None:
            try:
                result.append(function())
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        assert done.wait(timeout), "the server's loop did not answer in time"
        return result[0]

    def stats(self) -> dict[str, Any]:
        assert self.live is not None
        hub = self.live.hub
        return self.call(hub.stats)

    def wait_for(
        self, condition: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        """Poll /healthz's figures (read on the loop) until ``condition`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if condition(stats):
                return stats
            assert time.monotonic() < deadline, f"not met within {timeout}s: {stats}"
            time.sleep(0.02)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)

    def __enter__(self) -> ThreadedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
