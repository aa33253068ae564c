"""The webhook endpoint of `reconcile watch`: an authentic push to the followed branch wakes the loop.

A burst of pushes wakes it once; it then fetches the newest head, so one reconcile applies it.
"""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reconciler.metrics import Metrics
from reconciler.source.webhook import MAX_BODY, Verdict, check_push

log = logging.getLogger("reconciler.webhook")


class WebhookServer:
    """POST /hooks/github | /hooks/gitlab | /hooks/generic, and POST /sync (signed like generic) to trigger."""

    def __init__(self, host: str, port: int, *, secret: str, branch: str, wake: threading.Event,
                 metrics: Metrics | None = None) -> None:
        self.secret, self.branch, self.wake = secret, branch, wake
        self.metrics = metrics
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> WebhookServer:
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> Verdict:
        if path == "/sync":
            verdict = check_push("generic", headers, b"{}" if not body else body, secret=self.secret)
            if verdict.status == 401:
                return verdict
            self.wake.set()
            return Verdict(202, "sync requested")
        if not path.startswith("/hooks/"):
            return Verdict(404, "not found")
        verdict = check_push(path.removeprefix("/hooks/"), headers, body, secret=self.secret)
        if verdict.branch is None:
            return verdict
        if verdict.branch != self.branch:
            return Verdict(202, f"push to {verdict.branch}, not {self.branch}; ignored")
        self.wake.set()
        return verdict

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    # Drain a moderately large body so the client reads the answer instead of a reset.
                    remaining = length if length <= 16 * MAX_BODY else 0
                    while remaining > 0:
                        remaining -= len(self.rfile.read(min(remaining, 65536)) or b"x" * remaining)
                    self._answer(Verdict(413, f"body over {MAX_BODY} bytes"), close=True)
                    return
                body = self.rfile.read(length)
                path = self.path.split("?", 1)[0]
                verdict = hooks.handle(path, dict(self.headers.items()), body)
                log.info("webhook %s answered %d: %s", path, verdict.status, verdict.message,
                         extra={"status": verdict.status})
                if hooks.metrics is not None:
                    hooks.metrics.webhooks.labels(path.rsplit("/", 1)[-1], str(verdict.status)).inc()
                self._answer(verdict)

            def do_GET(self) -> None:
                if self.path == "/healthz":
                    self._answer(Verdict(200, "ok"))
                elif self.path == "/metrics" and hooks.metrics is not None:
                    data = hooks.metrics.text()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    self._answer(Verdict(405, "use POST"))

            def _answer(self, verdict: Verdict, close: bool = False) -> None:
                data = json.dumps({"status": verdict.status, "message": verdict.message}).encode()
                self.send_response(verdict.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if close:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(data)

        return Handler
