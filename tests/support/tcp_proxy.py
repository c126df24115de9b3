"""A TCP proxy that can hang: it forwards to an upstream server until :meth:`HangingProxy.hang`,
then accepts connections and reads what clients send but never answers (and replies on existing
connections stop too): a server that is up but stuck, not one that refuses connections.
:meth:`HangingProxy.resume` forwards again; connections that lost bytes while hung are closed
(their request/reply stream is out of step), so clients reconnect.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress


class _Conn:
    def __init__(self, client: socket.socket, upstream: socket.socket | None) -> None:
        self.client = client
        self.upstream = upstream
        self.dropped = upstream is None  # accepted while hung: never joined to the upstream

    def close(self) -> None:
        for s in (self.client, self.upstream):
            if s is None:
                continue
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


class HangingProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._hung = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[_Conn] = []
        #: while hung: connections accepted, bytes read from clients and never answered
        self.hung_accepts = 0
        self.hung_bytes = 0
        self._threads = [threading.Thread(target=self._accept, name="proxy-accept", daemon=True)]
        self._threads[0].start()

    # -- control ---------------------------------------------------------------------------
    def hang(self) -> None:
        self._hung.set()

    def resume(self) -> None:
        self._hung.clear()
        with self._lock:
            stale = [c for c in self._conns if c.dropped]
            self._conns = [c for c in self._conns if not c.dropped]
        for c in stale:
            c.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            c.close()

    # -- plumbing --------------------------------------------------------------------------
    def _spawn(self, target: object, *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        t.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = None
            if self._hung.is_set():
                self.hung_accepts += 1
            else:
                try:
                    upstream = socket.create_connection(self.upstream, timeout=2)
                    upstream.settimeout(None)
                except OSError:
                    client.close()
                    continue
            conn = _Conn(client, upstream)
            with self._lock:
                self._conns.append(conn)
            self._spawn(self._pump, conn, client, upstream)
            if upstream is not None:
                self._spawn(self._pump, conn, upstream, client)

    def _pump(self, conn: _Conn, src: socket.socket, dst: socket.socket | None) -> None:
        while not self._stop.is_set():
            try:
                data = src.recv(65536)
            except OSError:
                break
            if not data:
                break
            if dst is None or self._hung.is_set():
                conn.dropped = True  # read, never answered
                self.hung_bytes += len(data)
                continue
            try:
                dst.sendall(data)
            except OSError:
                break
        conn.close()


@contextmanager
def hanging_proxy(upstream_host: str, upstream_port: int) -> Iterator[HangingProxy]:
    proxy = HangingProxy(upstream_host, upstream_port)
    try:
        yield proxy
    finally:
        proxy.close()
