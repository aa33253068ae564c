"""A small OpenAI-compatible model server: the upstream the LiteLLM gateway forwards to in tests.

It answers `POST /v1/chat/completions` with "echo: <last user message>" (or, when that message holds
`[[reply: TEXT]]`, with TEXT exactly, so a test chooses each answer; cut to `max_tokens` words, with the
finish reason "length", as a model stops at its limit), plain or streamed as
server-sent events (with a usage chunk when `stream_options.include_usage` asks for it), and
records every request so tests can assert what reached the model. Behaviour is set on the
object while it runs: `delay` before answering, `token_delay` between streamed tokens,
`fail_status` to answer with an error, `drop_after` to cut a stream after that many tokens,
`idle_close` to drop, unanswered, a request on a connection idle that long (as a server does whose
idle timeout fired just as the request came).
"""
from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeModelServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.delay = 0.0
        self.token_delay = 0.0
        self.fail_status: int | None = None
        self.drop_after: int | None = None
        self.idle_close: float | None = None
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), _handler(self))
        self.server.daemon_threads = True
        self.server.request_queue_size = 128
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeModelServer:
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
        self.delay = self.token_delay = 0.0
        self.fail_status = self.drop_after = self.idle_close = None

    def record(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(body)

    def bodies_with(self, text: str) -> list[dict[str, Any]]:
        """Recorded requests whose last message contains `text`."""
        with self._lock:
            return [r for r in self.requests if text in str(r.get("messages", [{}])[-1].get("content", ""))]


REPLY_MARKER = re.compile(r"\[\[reply: (.*?)\]\]", re.DOTALL)


def reply_for(messages: list[dict[str, Any]]) -> str:
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {"content": ""})
    chosen = REPLY_MARKER.search(str(last_user["content"]))
    return chosen.group(1) if chosen else f"echo: {last_user['content']}"


def _words(messages: list[dict[str, Any]]) -> int:
    return sum(len(str(m.get("content", "")).split()) for m in messages)


def _handler(owner: FakeModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go in two writes; no 40 ms delayed-ACK stall

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._json(200, {"object": "list", "data": []})

        answered_at: float | None = None

        def handle_one_request(self) -> None:
            super().handle_one_request()
            self.answered_at = time.monotonic()

        def do_POST(self) -> None:  # noqa: N802
            if owner.idle_close is not None and self.answered_at is not None \
                    and time.monotonic() - self.answered_at >= owner.idle_close:
                self.close_connection = True
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            owner.record(body)
            if owner.delay:
                time.sleep(owner.delay)
            if owner.fail_status:
                self._json(owner.fail_status, {"error": {"message": f"upstream failure {owner.fail_status}",
                                                         "type": "server_error", "code": owner.fail_status}})
                return
            messages = body.get("messages", [])
            reply, finish_reason = reply_for(messages), "stop"
            limit = body.get("max_tokens")
            if isinstance(limit, int) and len(reply.split()) > limit:
                reply, finish_reason = " ".join(reply.split()[:limit]), "length"
            usage = {"prompt_tokens": _words(messages), "completion_tokens": len(reply.split()),
                     "total_tokens": _words(messages) + len(reply.split())}
            base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": body.get("model")}
            if not body.get("stream"):
                self._json(200, {**base, "object": "chat.completion", "usage": usage, "choices": [
                    {"index": 0, "finish_reason": finish_reason, "message": {"role": "assistant", "content": reply}}]})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            tokens = reply.split(" ")
            try:
                for i, token in enumerate(tokens):
                    if owner.drop_after is not None and i == owner.drop_after:
                        self.close_connection = True
                        return  # the connection closes without [DONE]: a stream cut short
                    piece = token if i == 0 else " " + token
                    self._event({**base, "object": "chat.completion.chunk", "choices": [
                        {"index": 0, "delta": {"role": "assistant", "content": piece} if i == 0 else
                         {"content": piece}, "finish_reason": None}]})
                    if owner.token_delay:
                        time.sleep(owner.token_delay)
                self._event({**base, "object": "chat.completion.chunk",
                             "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}]})
                if (body.get("stream_options") or {}).get("include_usage"):
                    self._event({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

        def _event(self, data: dict[str, Any]) -> None:
            self.wfile.write(b"data: " + json.dumps(data).encode() + b"\n\n")
            self.wfile.flush()

        def _json(self, status: int, data: dict[str, Any]) -> None:
            payload = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler
