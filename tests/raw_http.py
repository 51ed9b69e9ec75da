"""A raw TCP server on 127.0.0.1 for tests that need bytes no real server would send (garbage, echoed headers)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RawHTTPServer:
    """Reads each request's head and answers with ``respond(head)``'s bytes verbatim, then closes the connection."""

    def __init__(self, respond: Callable[[bytes], bytes]) -> None:
        self.respond = respond
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                conn.sendall(self.respond(data.split(b"\r\n\r\n", 1)[0]))
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
