"""A loopback TCP proxy the tests can cut, to simulate a dropped connection.

A page loaded through the proxy also opens its WebSocket through it, so
``sever()`` drops exactly that page's connection while the server and the
other pages carry on. ``block()`` makes it refuse new connections until
``unblock()``, so the outage lasts as long as the test wants.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading


class LoopbackProxy:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<target_port>, byte for byte."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._blocked = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def block(self) -> None:
        """Refuse new connections (they are accepted and closed at once)."""
        self._blocked = True

    def unblock(self) -> None:
        self._blocked = False

    def sever(self) -> int:
        """Cut every open connection; return how many were cut."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                _close(sock)
        return len(pairs)

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=2)
        _close(self._listener)
        self.sever()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._blocked:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        """Copy both directions until either side closes or sever() cuts them."""
        sel = selectors.DefaultSelector()
        try:
            sel.register(a, selectors.EVENT_READ, b)
            sel.register(b, selectors.EVENT_READ, a)
            while not self._stopping.is_set():
                for key, _ in sel.select(timeout=0.2):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        except (OSError, ValueError):
            return  # cut by sever(), or the peer went away
        finally:
            sel.close()
            with self._lock:
                if (a, b) in self._pairs:
                    self._pairs.remove((a, b))
            _close(a)
            _close(b)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
