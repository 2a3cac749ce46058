"""A small TCP proxy on loopback that a test can freeze, cut and restore.

It stands for the network between a worker and PostgreSQL:

- `open`: bytes flow both ways;
- `freeze()`: a partition: connections stay up but nothing gets through, so a
  query in flight waits; when restored, what was sent arrives late;
- `cut()`: the server is unreachable: every connection is reset and new ones
  are accepted but never answered, so connecting runs into its timeout;
- `restore()`: back to `open` (connections accepted while cut are closed).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading

OPEN, FROZEN, CUT = "open", "frozen", "cut"


class Proxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.state = OPEN
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._held: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def url(self, database_url: str) -> str:
        """`database_url` with its port replaced by the proxy's."""
        return database_url.replace(f":{self.target[1]}/", f":{self.port}/")

    def freeze(self) -> None:
        self.state = FROZEN

    def cut(self) -> None:
        with self._lock:
            self.state = CUT
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                    sock.close()

    def restore(self) -> None:
        with self._lock:
            self.state = OPEN
            held, self._held = self._held, []
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        self.restore()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            ready, _, _ = select.select([self._listener], [], [], 0.1)
            if not ready:
                continue
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self.state == CUT:
                    self._held.append(client)  # accepted, never answered
                    continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):  # as libpq does: no Nagle delay on small messages
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        try:
            while not self._closed.is_set():
                if self.state == FROZEN:
                    self._closed.wait(0.05)
                    continue
                ready, _, _ = select.select(list(peers), [], [], 0.1)
                if self.state != OPEN:
                    continue
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):  # reset by cut(): the socket is already closed
            return
        finally:
            for sock in peers:
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock, contextlib.suppress(ValueError):
                self._pairs.remove((client, upstream))
