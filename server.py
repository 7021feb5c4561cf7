"""Run the WebSocket hub: ``python server.py [--option=value ...] [--config=FILE]``.

Wiring only: options, the Tornado Application, the heartbeat, signals. The
rules live in ``hub/``; the socket adapters in ``handlers/``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import resource
import signal
import socket
import sys

import tornado.netutil
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.options import define, options, parse_command_line, parse_config_file

from handlers.api import api_routes, parse_api_keys
from handlers.base import origin_key
from handlers.batch_writer import default_threads, describe_writer, make_batch_writer
from handlers.diagnostics import install_error_counter
from handlers.echo import EchoSocketHandler
from handlers.http import HealthHandler, PageHandler
from handlers.hub_socket import HubSocketHandler
from handlers.socket_connection import SocketConnection
from hub.auth import TokenVerifier
from hub.heartbeat import Heartbeat
from hub.hub import Hub
from hub.settings import HubSettings

log = logging.getLogger("wshub")

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
FD_RESERVE = 64
"""File descriptors kept free for listening sockets, logs and the like."""

_defaults = HubSettings()
define("config", type=str, help="Python-syntax file of option = value lines; flags override it")
define("host", default="127.0.0.1", help="address to listen on")
define("port", default=8888, help="port to listen on (0 picks a free one)")
define("max_connections", default=_defaults.max_connections, help="open WebSocket connections")
define("max_connections_per_ip", default=_defaults.max_connections_per_ip, help="0: no limit")
define("ping_interval", default=_defaults.ping_interval, help="seconds between pings")
define("ping_timeout", default=_defaults.ping_timeout, help="seconds to answer before eviction")
define("max_message_size", default=64 * 1024, help="bytes per incoming message (else 1009)")
define("send_buffer_limit", default=_defaults.send_buffer_limit, help="bytes queued per client")
define("allowed_origins", default="", help="comma-separated full origins allowed besides same-host")
define("history_size", default=_defaults.history_size, help="messages kept per room")
define(
    "history_ttl", default=_defaults.history_ttl, help="seconds history outlives a room's members"
)
define("rate_limit", default=_defaults.rate_limit, help="messages/s per /ws connection (0: off)")
define("rate_burst", default=_defaults.rate_burst, help="burst size of the rate limit")
define("max_rooms_per_connection", default=_defaults.max_rooms_per_connection, help="0: no limit")
define("compression", default=False, help="offer permessage-deflate")
define(
    "send_threads",
    default=default_threads(),
    help="threads a big fan-out's sends are spread over, GIL released (0: through the transports)",
)
define("token_secret", default="", help="HS256 secret: /ws then requires a connection token")
define("token_public_key", default="", help="PEM public key file (RS256 or ES256) for tokens")
define("token_audience", default="", help="required aud claim of connection tokens")
define("token_issuer", default="", help="required iss claim of connection tokens")
define("api_key", default="", help="comma-separated keys of the backend API /api/ (empty: off)")


def token_verifier() -> TokenVerifier | None:
    """The verifier the token options describe, or None for an open server."""
    if not options.token_secret and not options.token_public_key:
        return None
    pem = None
    if options.token_public_key:
        try:
            with open(options.token_public_key, "rb") as file:
                pem = file.read()
        except OSError as error:
            raise SystemExit(
                f"token_public_key: cannot read {error.filename}: {error.strerror}"
            ) from None
    try:
        return TokenVerifier(
            options.token_secret or None, pem, options.token_audience, options.token_issuer
        )
    except (RuntimeError, ValueError) as error:
        raise SystemExit(f"token options: {error}") from None


def load_options(argv: list[str] | None = None) -> None:
    """Command line, then the config file it names, then the command line again
    so that flags override the file."""
    argv = sys.argv if argv is None else argv
    parse_command_line(argv, final=False)
    if options.config:
        parse_config_file(options.config, final=False)
    parse_command_line(argv)


GC_THRESHOLDS = (20_000, 20, 20)
"""Young-generation collections every 20,000 allocations instead of 700.

A handshake allocates a few hundred short-lived container objects (Tornado's
request, headers, handler); with the default threshold the collector runs
several times per handshake and, with tens of thousands of live connections,
its older-generation passes get expensive. Measured with ``python -m bench
handshakes``: about 10% less CPU per handshake. The cost is a few MB of garbage
waiting a little longer to be collected.
"""


def tune_gc() -> None:
    """Freeze what start-up allocated (never garbage, never scanned again) and
    collect the young generation less often; see `GC_THRESHOLDS`."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def raise_fd_limit() -> int:
    """Raise the open-file soft limit to the hard limit; return the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)
    return soft


def hub_settings(fd_limit: int) -> HubSettings:
    """Settings from the options, max_connections kept below the open-file limit."""
    max_connections = options.max_connections
    ceiling = fd_limit - FD_RESERVE
    if max_connections > ceiling:
        log.warning(
            "max_connections %d lowered to %d: this process may open %d files",
            max_connections,
            ceiling,
            fd_limit,
        )
        max_connections = ceiling
    return HubSettings(
        max_connections=max_connections,
        ping_interval=options.ping_interval,
        ping_timeout=options.ping_timeout,
        send_buffer_limit=options.send_buffer_limit,
        history_size=options.history_size,
        history_ttl=options.history_ttl,
        rate_limit=options.rate_limit,
        rate_burst=options.rate_burst,
        max_rooms_per_connection=options.max_rooms_per_connection,
        max_connections_per_ip=options.max_connections_per_ip,
    )


def parse_origins(value: str) -> frozenset[str]:
    """``https://a.example, https://b.example`` -> normalised set; bad entries are fatal."""
    origins = set()
    for item in filter(None, (part.strip().lower().rstrip("/") for part in value.split(","))):
        if origin_key(item) is None:
            raise SystemExit(f"allowed_origins: {item!r} is not a full origin like https://host")
        origins.add(item)
    return frozenset(origins)


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Access log: failures at warning; the flood of 101s and 200s only at debug."""
    status = handler.get_status()
    level = logging.WARNING if status >= 400 else logging.DEBUG
    if log.isEnabledFor(level):
        request = handler.request
        log.log(
            level, "%d %s %s (%s)", status, request.method, request.path[:200], request.remote_ip
        )


def make_app(
    hub: Hub,
    allowed_origins: frozenset[str] = frozenset(),
    compression: bool = False,
    max_message_size: int = 64 * 1024,
    api_keys: tuple[str, ...] = (),
) -> tornado.web.Application:
    """The Tornado application: endpoints wired to one hub (tokens: ``hub.verifier``)."""
    socket_args = {"hub": hub, "allowed_origins": allowed_origins, "compression": compression}
    return tornado.web.Application(
        [
            (r"/ws", HubSocketHandler, socket_args),
            (r"/ws/echo", EchoSocketHandler, socket_args),
            (r"/healthz", HealthHandler, {"hub": hub}),
            (r"/", PageHandler, {"path": STATIC_DIR, "page": "index.html"}),
            (r"/whiteboard", PageHandler, {"path": STATIC_DIR, "page": "whiteboard.html"}),
            (r"/static/(.*)", tornado.web.StaticFileHandler, {"path": STATIC_DIR}),
            *api_routes(hub, api_keys, max_message_size),
        ],
        websocket_max_message_size=max_message_size,
        log_function=_log_request,
    )


async def serve() -> None:
    """Listen, run until SIGINT/SIGTERM, then close every client with 1001."""
    fd_limit = raise_fd_limit()
    hub = Hub(hub_settings(fd_limit), write_batch=make_batch_writer(options.send_threads))
    hub.verifier = token_verifier()
    api_keys = parse_api_keys(options.api_key)
    tune_gc()
    app = make_app(
        hub,
        parse_origins(options.allowed_origins),
        options.compression,
        options.max_message_size,
        api_keys,
    )
    sockets = tornado.netutil.bind_sockets(options.port, options.host, family=socket.AF_INET)
    server = HTTPServer(app, max_body_size=options.max_message_size, idle_connection_timeout=30)
    server.add_sockets(sockets)
    heartbeat = Heartbeat(hub)
    heartbeat.start()
    host, port = sockets[0].getsockname()[:2]
    log.info(
        "WebSocket hub listening on http://%s:%d/ (max_connections=%d, open-file limit %d, %s)",
        host,
        port,
        hub.settings.max_connections,
        fd_limit,
        describe_writer(hub.write_batch),
    )
    if hub.verifier is None:
        log.info("no token_secret or token_public_key: /ws is open to anyone who can connect")
    else:
        log.info("/ws requires connection tokens (%s)", ", ".join(hub.verifier.algorithms))
    log.info("backend API /api/: %s", "on" if api_keys else "off (no api_key)")

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()

    log.info("shutting down: closing %d connections", len(hub.peers))
    server.stop()
    heartbeat.stop()
    hub.close_all()
    await _drain(server, hub, timeout=3.0)
    log.info("stopped")


async def _drain(server: HTTPServer, hub: Hub, timeout: float) -> None:
    """Give clients a moment to answer the close handshake, then cut the rest.

    Handed-off connections are not Tornado's any more, so besides its HTTP
    connections we wait for `SocketConnection.open_sockets` to reach zero.
    """
    deadline = asyncio.get_running_loop().time() + timeout

    async def handed_off_closed() -> None:
        while SocketConnection.open_sockets > 0:
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(server.close_all_connections(), timeout)
        remaining = deadline - asyncio.get_running_loop().time()
        await asyncio.wait_for(handed_off_closed(), max(remaining, 0.01))
    except TimeoutError:
        log.warning(
            "%d closing handshakes still open after %.1fs; exiting anyway",
            SocketConnection.open_sockets,
            timeout,
        )


def install_event_loop() -> str:
    """Use uvloop when installed (faster I/O), plain asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def main(argv: list[str] | None = None) -> None:
    load_options(argv)
    install_error_counter()
    loop_name = install_event_loop()
    log.info("event loop: %s", loop_name)
    asyncio.run(serve())


if __name__ == "__main__":
    main()
