"""What every console page shares: templates, security headers, form bodies and HTML errors."""
from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reconciler import __version__, times

HERE = Path(__file__).parent
STATIC = HERE / "static"
# Nothing inline, nothing from elsewhere: scripts, styles and requests only from this server.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY"),
           (b"cross-origin-opener-policy", b"same-origin")]


class SecurityHeaders:
    """The Content-Security-Policy and its companions on every answer; pages are never cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith(scope.get("root_path", "") + "/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + HEADERS
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def _when(value: Any) -> str:
    return times.local(value) if value is not None else ""


def _short(revision: str | None) -> str:
    return revision[:12] if revision else "(folder)"


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    from reconciler.diffs import to_yaml, value_text

    env.filters.update(when=_when, short=_short, yaml=to_yaml)
    env.globals.update(version=__version__, field=value_text)
    return env


class Pages:
    def __init__(self) -> None:
        self.env = environment()

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        base = request.scope.get("root_path", "")
        html = self.env.get_template(template).render(request=request, base=base, **context)
        return HTMLResponse(html, status)


async def form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (the only kind the pages post), first value of each field."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {name: values[0] for name, values in parse_qs(body, keep_blank_values=True).items()}
