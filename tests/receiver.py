"""A real HTTP receiver on 127.0.0.1 that records requests and answers as told: callbacks and
webhooks (POST), and files to fetch (GET, `serve`)."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float
    answered_at: float | None = None


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    with_length: bool = True  # False: no Content-Length, the body ends when the connection closes


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.replies: list[Reply] = []  # consumed in order, then `default`
        self.default = Reply()
        self.files: dict[str, Reply] = {}  # what GET answers, by path
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                record = Recorded(
                    "POST",
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                    time.time(),
                )
                with receiver._lock:
                    receiver.requests.append(record)
                    reply = receiver.replies.pop(0) if receiver.replies else receiver.default
                self.answer(reply)
                record.answered_at = time.time()

            def do_GET(self) -> None:
                record = Recorded(
                    "GET", self.path, {k.lower(): v for k, v in self.headers.items()}, b"", time.time()
                )
                with receiver._lock:
                    receiver.requests.append(record)
                self.answer(receiver.files.get(self.path, Reply(404)))

            def answer(self, reply: Reply) -> None:
                time.sleep(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.with_length:
                    self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                # the client may stop reading (as it should past a size limit)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(reply.body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, path: str, reply: Reply) -> str:
        """GET `path` answers `reply` from now on; returns its URL."""
        self.files[path] = reply
        return self.url(path)

    def gets(self, path: str) -> int:
        return sum(1 for r in self.requests if r.method == "GET" and r.path == path)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
