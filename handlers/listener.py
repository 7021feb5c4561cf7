"""The listening side of the HTTP server: an accept loop that backs off when the
process runs out of descriptors, and a cap on sockets that are not WebSocket
connections yet.

Tornado's own accept handler re-raises ``EMFILE``; the listening socket stays
readable, so the event loop calls it again at once and logs a traceback per
attempt (hundreds of MB of log a minute, a core spinning, /healthz starved).
Here the listening socket is taken off the loop for a short, growing pause
instead, and the failure is logged at most once per `LOG_INTERVAL`.

A socket counts as *pending* from its accept until Tornado's HTTP connection
on it ends: when the request was answered and the connection closed, or when
a WebSocket upgrade took the socket over. Slow or never-finished requests
(see the ``idle_connection_timeout`` and ``body_timeout`` options) can thus
hold at most ``max_pending_connections`` descriptors, and one client address
at most ``max_pending_per_ip`` of them; beyond that a newcomer gets a 503.

With ``ssl_options`` (an ``ssl.SSLContext``: ``--certfile``/``--keyfile``) every
accepted socket is wrapped in TLS and served by an ``SSLIOStream``, after the
caps: a refused newcomer costs no handshake, and is closed without the 503
(plaintext on a TLS port would only be a garbled handshake to it).
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, SSLIOStream

from handlers.direct_upgrade import DirectUpgrade, Outcome, Route
from handlers.tls import wrap_accepted

log = logging.getLogger("wshub")

ACCEPT_BATCH = 128
"""Connections accepted per readable event, like Tornado's (its default listen backlog)."""
LISTEN_BACKLOG = 4096
"""Connections the kernel completes and queues before ``accept`` (capped by
``net.core.somaxconn``). Tornado's default of 128 overflows in a reconnect storm:
the kernel then drops the SYNs past it and each of those clients waits out a
1 s retransmit (a 10,000-client join storm took seconds longer)."""
BACKOFF_FIRST = 0.05
"""Seconds the accept loop pauses after the first failure for lack of resources."""
BACKOFF_MAX = 1.0
"""Longest pause: a freed descriptor is used within a second at worst."""
LOG_INTERVAL = 1.0
"""At most one log line per this many seconds for each kind of refusal."""
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
"""accept() errors that the next attempt would repeat until something is freed."""
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n"
    b"Retry-After: 1\r\n\r\n"
)


def client_ip(address: Any) -> str:
    """The address the pending caps count a socket under ("" outside IP families)."""
    return address[0] if isinstance(address, tuple) else ""


class ThrottledLog:
    """One warning per `LOG_INTERVAL`, saying how many were left out in between."""

    def __init__(self, interval: float = LOG_INTERVAL, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.clock = clock
        self.last = float("-inf")
        self.skipped = 0

    def warning(self, message: str, *args: Any) -> None:
        now = self.clock()
        if now - self.last < self.interval:
            self.skipped += 1
            return
        skipped, self.skipped, self.last = self.skipped, 0, now
        log.warning(message + " (%d more like it since the last line)", *args, skipped)


class Acceptor:
    """Accepts on one listening socket; pauses itself when accept() cannot succeed."""

    def __init__(self, sock: socket.socket, on_connection: Callable[[socket.socket, Any], None]):
        self.sock = sock
        self.on_connection = on_connection
        self.io_loop = IOLoop.current()
        self.backoff = BACKOFF_FIRST
        self.resume_handle: object | None = None
        self.failures = ThrottledLog()
        self.io_loop.add_handler(sock, self._on_readable, IOLoop.READ)

    def _on_readable(self, fd: Any, events: int) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                connection, address = self.sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue  # gone while still in the accept queue
            except OSError as error:
                self._pause(error)
                return
            self.backoff = BACKOFF_FIRST
            self.on_connection(connection, address)

    def _pause(self, error: OSError) -> None:
        """Stop watching the socket for a while: retrying now would fail the same way
        (queued clients wait in the kernel's backlog meanwhile)."""
        self.io_loop.remove_handler(self.sock)
        self.resume_handle = self.io_loop.call_later(self.backoff, self._resume)
        kind = "out of resources" if error.errno in OUT_OF_RESOURCES else "failed"
        self.failures.warning(
            "accept %s: %s; pausing new connections for %.2fs", kind, error, self.backoff
        )
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)

    def _resume(self) -> None:
        self.resume_handle = None
        self.io_loop.add_handler(self.sock, self._on_readable, IOLoop.READ)

    def stop(self) -> None:
        """Stop accepting and close the listening socket."""
        if self.resume_handle is not None:
            self.io_loop.remove_timeout(self.resume_handle)
            self.resume_handle = None
        else:
            self.io_loop.remove_handler(self.sock)
        self.sock.close()


class GuardedHTTPServer(HTTPServer):
    """Tornado's HTTPServer with `Acceptor`s and the pending-socket caps.

    Takes HTTPServer's keyword arguments (``ssl_options``: an ``ssl.SSLContext``
    only) plus ``max_pending`` and ``max_pending_per_ip`` (0: no cap) and
    ``direct_routes``: the WebSocket routes whose plain upgrades are answered
    straight off the accepted socket (`handlers.direct_upgrade`; not over TLS).
    One whose request is in the socket by its accept is never pending, so a full
    pending cap does not turn it away; one accepted before its request arrived
    waits for it as a pending socket.
    """

    def initialize(  # type: ignore[override]
        self,
        *args: Any,
        max_pending: int = 0,
        max_pending_per_ip: int = 0,
        direct_routes: dict[str, Route] | None = None,
        **kwargs: Any,
    ) -> None:
        super().initialize(*args, **kwargs)
        self.direct: DirectUpgrade | None = None
        if direct_routes and self.ssl_options is None:
            self.direct = DirectUpgrade(self.request_callback, direct_routes)  # type: ignore[arg-type]
        self.max_pending = max_pending
        self.max_pending_per_ip = max_pending_per_ip
        self.pending = 0
        self.pending_by_ip: Counter[str] = Counter()
        self.refused_busy = 0
        self.acceptors: list[Acceptor] = []
        self.refusals = ThrottledLog()

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        for sock in sockets:
            self.acceptors.append(Acceptor(sock, self.accept_connection))

    def accept_connection(self, connection: socket.socket, address: Any) -> None:
        """Answer a plain upgrade directly, else serve ``connection`` as HTTP (or
        answer 503 if a pending cap is reached)."""
        direct = self.direct
        outcome = direct.try_serve(connection, address) if direct is not None else None
        if outcome is Outcome.SERVED:
            return
        ip = client_ip(address)
        if (self.max_pending and self.pending >= self.max_pending) or (
            self.max_pending_per_ip and self.pending_by_ip[ip] >= self.max_pending_per_ip
        ):
            self._refuse(connection, ip)
            return
        self.pending += 1
        self.pending_by_ip[ip] += 1
        if direct is not None and outcome is Outcome.NOT_YET:
            direct.wait(connection, address, lambda: self._release(ip), self.serve_http)
        else:
            self.serve_http(connection, address)

    def serve_http(self, connection: socket.socket, address: Any) -> None:
        """Tornado's HTTP/1 connection on ``connection`` (counted as pending already)."""
        stream_class = IOStream
        if self.ssl_options is not None:
            wrapped = wrap_accepted(self.ssl_options, connection)  # type: ignore[arg-type]
            if wrapped is None:
                self._release(client_ip(address))
                return
            connection, stream_class = wrapped, SSLIOStream
        stream = stream_class(
            connection, max_buffer_size=self.max_buffer_size, read_chunk_size=self.read_chunk_size
        )
        self.handle_stream(stream, address)

    def _refuse(self, connection: socket.socket, ip: str) -> None:
        self.refused_busy += 1
        if self.ssl_options is None:
            try:
                connection.setblocking(False)
                connection.send(BUSY_RESPONSE)
            except OSError:
                pass
        connection.close()
        self.refusals.warning(
            "503 to %s: %d sockets not yet upgraded (%d from that address)",
            ip,
            self.pending,
            self.pending_by_ip[ip],
        )

    def on_close(self, server_conn: object) -> None:
        """Tornado is done with the connection (closed, or taken over by a WebSocket)."""
        super().on_close(server_conn)
        context = getattr(server_conn, "context", None)
        address = getattr(context, "address", None)
        self._release(client_ip(address))

    def _release(self, ip: str) -> None:
        """One pending socket from ``ip`` is no longer pending."""
        self.pending -= 1
        left = self.pending_by_ip[ip] - 1
        if left > 0:
            self.pending_by_ip[ip] = left
        else:
            del self.pending_by_ip[ip]

    def stop(self) -> None:
        for acceptor in self.acceptors:
            acceptor.stop()
        self.acceptors.clear()
        if self.direct is not None:
            self.direct.stop()
        super().stop()
