"""Fixtures: a live hub server on a loopback port, stopped after each test."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hub.settings import HubSettings  # noqa: E402
from tests.support import LiveServer, start_live_server  # noqa: E402


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A test CA and a server certificate for the loopback names, as PEM files
    (`tests.certificates.Certificates`)."""
    from tests.certificates import make_certificates

    return make_certificates(str(tmp_path_factory.mktemp("tls")))


@pytest.fixture
def make_server(io_loop: Any, certificates: Any) -> Iterator[Callable[..., LiveServer]]:
    """``make_server(ping_interval=0.2, ...)``: a live server with those hub settings
    (``tls=True``: over https:// and wss://, with `certificates`)."""
    started: list[LiveServer] = []

    def start(
        allowed_origins: frozenset[str] = frozenset(),
        compression: bool = False,
        max_message_size: int = 64 * 1024,
        send_threads: int | None = None,
        handoff: bool | None = None,
        verifier: Any = None,
        api_keys: tuple[str, ...] = (),
        metrics: bool = False,
        tls: bool = False,
        **settings: Any,
    ) -> LiveServer:
        live = start_live_server(
            HubSettings(**settings),
            allowed_origins,
            compression,
            max_message_size,
            send_threads,
            handoff,
            verifier,
            api_keys,
            metrics,
            certificates if tls else None,
        )
        started.append(live)
        return live

    yield start

    async def stop_all() -> None:
        for live in started:
            live.stop()

    io_loop.run_sync(stop_all)


@pytest.fixture
def live(make_server: Callable[..., LiveServer]) -> LiveServer:
    """A live server with default settings."""
    return make_server()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the browser tests last: Playwright's sync API keeps an event loop
    running in the main thread until its session fixtures end, and the
    IOLoop-based tests cannot start their own loop while it does."""
    items.sort(key=lambda item: "tests/browser/" in item.nodeid.replace("\\", "/"))


@pytest.fixture(scope="module")
def canary(server: Any) -> Iterator[Any]:
    """A well-behaved echo client on the module's ``server`` (a
    `tests.hostile.proc.HubProcess`): it must keep being served whatever the
    hostile tests throw at the server."""
    from tests.hostile.wire import Wire

    with Wire(server.port) as wire:
        yield wire


@pytest.fixture
def restore_options() -> Iterator[Any]:
    """tornado.options is process-global: put every value back after the test."""
    import server

    saved = server.options.as_dict()
    yield server.options
    for name, value in saved.items():
        setattr(server.options, name, value)


@pytest.fixture
def redis_server() -> Iterator[Any]:
    """A real redis-server on a free loopback port for one test (skips, saying how
    to install it, without one); `tests.redis_server.RedisServer`."""
    from tests.redis_server import RedisServer

    server = RedisServer()
    server.start()
    yield server
    server.stop()
