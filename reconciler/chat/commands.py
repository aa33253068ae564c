"""`reconcile serve` and `reconcile keys`: the chat endpoint's commands.

FastAPI and uvicorn are imported only when `serve` runs, so other commands stay quick to start.
"""
from __future__ import annotations

import contextlib
import json
import logging
import signal
from collections.abc import Iterator
from typing import Any

import click

from reconciler import logs, times
from reconciler.config import (
    DATABASE_OPTION,
    LOCK_TIMEOUT_OPTION,
    HostPort,
    examples,
    gateway_key,
    output_option,
    state_url,
)
from reconciler.errors import ConfigError

log = logging.getLogger("reconciler.chat")


@click.command(epilog=examples("reconcile serve --listen :8080 --gateway-url http://litellm:4000",
                               "reconcile serve --gateway-key-file /run/secrets/litellm-key --database "
                               "postgresql://reconciler@db.example/agents"))
@click.option("--listen", type=HostPort(), default="127.0.0.1:8080", show_default=True, envvar="RECONCILER_LISTEN",
              help="Address to serve on (:PORT for every interface). [env: RECONCILER_LISTEN]")
@click.option("--keepalive-timeout", type=click.FloatRange(0, min_open=True), default=75.0, show_default=True,
              envvar="RECONCILER_KEEPALIVE_TIMEOUT",
              help="Seconds an idle client connection is kept open. Keep it above what clients keep theirs "
                   "(httpx and the openai client: 5 s, aiohttp: 15 s), or a request sent as serve closes its "
                   "connection is lost. [env: RECONCILER_KEEPALIVE_TIMEOUT]")
@click.option("--gateway-url", envvar="LITELLM_API_BASE", default=None, metavar="URL",
              help="The LiteLLM gateway every chat goes through. [env: LITELLM_API_BASE]")
@click.option("--gateway-key-file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              envvar="RECONCILER_GATEWAY_KEY_FILE",
              help="File holding the gateway key; default LITELLM_API_KEY. [env: RECONCILER_GATEWAY_KEY_FILE]")
@click.option("--gateway-timeout", type=click.FloatRange(0.1), default=120.0, show_default=True,
              envvar="RECONCILER_GATEWAY_TIMEOUT",
              help="Seconds to wait for the gateway (for a stream: for its first and each next token); "
                   "then 504. [env: RECONCILER_GATEWAY_TIMEOUT]")
@click.option("--gateway-keepalive", type=click.FloatRange(0, min_open=True), default=4.0, show_default=True,
              envvar="RECONCILER_GATEWAY_KEEPALIVE",
              help="Seconds an idle connection to the gateway is kept for the next request. Keep it below the "
                   "gateway's own idle timeout (LiteLLM: 5 s, its --keepalive_timeout), or a request can go out "
                   "on a connection the gateway is closing and fail with 502. [env: RECONCILER_GATEWAY_KEEPALIVE]")
@click.option("--history-messages", type=click.IntRange(0), default=50, show_default=True,
              help="Most stored messages of a session sent with a new message.")
@click.option("--history-tokens", type=click.IntRange(0), default=16000, show_default=True,
              help="About how many tokens of system prompt, history and new message are sent (oldest history "
                   "is left out first; estimated at four characters a token).")
@click.option("--max-body-size", type=click.IntRange(1024), default=1 << 20, show_default=True,
              help="Largest request body, in bytes; larger ones get 413.")
@click.option("--database-pool-size", type=click.IntRange(1, 200), default=20, show_default=True,
              envvar="RECONCILER_DATABASE_POOL_SIZE",
              help="Most database connections for chat turns on PostgreSQL (a few more serve reads). "
                   "[env: RECONCILER_DATABASE_POOL_SIZE]")
@click.option("--database-timeout", type=click.FloatRange(0.1), default=5.0, show_default=True,
              envvar="RECONCILER_DATABASE_TIMEOUT",
              help="Seconds a request waits on PostgreSQL for a connection, and for each statement (which is "
                   "then cancelled); on SQLite, for another writer. Then 503. [env: RECONCILER_DATABASE_TIMEOUT]")
@click.option("--prepared-statements/--no-prepared-statements", default=True, show_default=True,
              envvar="RECONCILER_PREPARED_STATEMENTS",
              help="Keep statements prepared on PostgreSQL connections. Turn off behind a pooler in transaction "
                   "mode (PgBouncer before 1.21, or without max_prepared_statements). "
                   "[env: RECONCILER_PREPARED_STATEMENTS]")
@click.option("--console-source-url", envvar="RECONCILER_CONSOLE_SOURCE_URL", default=None, metavar="TEMPLATE",
              help="Where the console links an agent's spec file: a URL with {revision} and {path}, e.g. "
                   "https://github.com/acme/agents/blob/{revision}/{path}. [env: RECONCILER_CONSOLE_SOURCE_URL]")
@click.option("--console-refresh", type=click.IntRange(0), default=15, show_default=True,
              help="Seconds between the console's live refreshes of its tables (0: never).")
@DATABASE_OPTION
@LOCK_TIMEOUT_OPTION
def serve(listen: tuple[str, int], keepalive_timeout: float, gateway_url: str | None, gateway_key_file: str | None,
          gateway_timeout: float, gateway_keepalive: float, history_messages: int, history_tokens: int,
          max_body_size: int, database_pool_size: int, database_timeout: float, prepared_statements: bool,
          console_source_url: str | None, console_refresh: int, database: str | None, lock_timeout: float) -> None:
    """Serve the chat endpoint: messages to synced agents go through the LiteLLM gateway, sessions are stored.

    \b
    POST /v1/agents/{namespace}/{name}/chat   {"message": ..., "session_id"?: ..., "stream"?: true}
    POST /v1/chat/completions                 OpenAI-compatible; "model": "namespace/name"
    GET  /v1/models, /v1/sessions/{id}, /healthz, /readyz, /metrics, /docs
    GET  /ui/                                 the web console (sign in with a key)
    Requests need `Authorization: Bearer <key>` (reconcile keys create NAME).
    """
    if not gateway_url:
        raise ConfigError("no LiteLLM gateway: set LITELLM_API_BASE or pass --gateway-url "
                          "(for example http://litellm:4000)")
    if console_source_url and not console_source_url.startswith(("https://", "http://")):
        raise ConfigError(f"--console-source-url {console_source_url!r} must be an http:// or https:// URL "
                          "(with {revision} and {path} where they belong)")
    key = gateway_key(gateway_key_file)
    import uvicorn

    from reconciler.chat.app import create_app
    from reconciler.chat.context import Budget
    from reconciler.chat.turns import DatabaseOptions
    from reconciler.console.routes import ConsoleOptions
    from reconciler.store.state_store import open_state

    logs.configure(also=("uvicorn",))
    state = open_state(state_url(database), create=True, lock_timeout=lock_timeout)
    assert state.engine is not None
    app = create_app(state.engine, gateway_url, key, gateway_timeout=gateway_timeout,
                     gateway_keepalive=gateway_keepalive, budget=Budget(history_messages, history_tokens),
                     max_body=max_body_size,
                     database=DatabaseOptions(database_pool_size, database_timeout, prepared_statements),
                     console=ConsoleOptions(source_url=console_source_url, refresh_seconds=console_refresh))
    host, port = listen
    log.info("serving chat on http://%s:%d (gateway %s)", host, port, gateway_url)
    log.info("the web console is at http://%s:%d/ui/", host, port)
    # uvicorn closes idle connections after 5 s by default, the very time httpx clients keep them for
    # reuse: a request sent just then meets a closed connection (seen with an httpx client's turns 5 s apart).
    server = _server_class()(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                                    timeout_keep_alive=keepalive_timeout, timeout_graceful_shutdown=30,
                                    server_header=False))
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot bind; it has logged why
        server.started = False
    if not server.started:
        raise ConfigError(f"could not serve on {host}:{port} (the reason is above; is the port in use?)")
    log.info("chat server stopped")


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, but a SIGTERM or SIGINT ends it with exit code 0: it stops accepting, lets
        running requests finish (up to 30 s), closes the gateway client, and returns (uvicorn itself
        raises the signal again afterwards, which would make a clean stop look like a kill)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


@click.group(epilog=examples("reconcile keys create support-bot -n support", "reconcile keys list"))
def keys() -> None:
    """Manage the chat endpoint's API keys (stored hashed; a key is shown once)."""


@keys.command(name="create", epilog=examples("reconcile keys create support-bot -n support -n ops",
                                             "KEY=$(reconcile keys create ci-bot)"))
@click.argument("name")
@click.option("-n", "--namespace", "namespaces", multiple=True, metavar="NS",
              help="Only agents in this namespace (repeat for several); default every namespace.")
@output_option("text", "json")
@DATABASE_OPTION
def create_key(name: str, namespaces: tuple[str, ...], output: str, database: str | None) -> None:
    """Create a key; its value is printed once, on stdout."""
    from reconciler.chat.keys import KeyStore

    info, key = KeyStore(_engine(database)).create(name, namespaces or None)
    if output == "json":
        click.echo(json.dumps({**_key_document(info), "key": key}, indent=2))
        return
    click.echo(key)
    click.echo(f"created key {info.name!r} ({info.prefix}…) for {info.scope}; it is not shown again", err=True)


@keys.command(name="list", epilog=examples("reconcile keys list", "reconcile keys list -o json"))
@output_option("text", "json")
@DATABASE_OPTION
def list_keys(output: str, database: str | None) -> None:
    """List keys (never their values)."""
    from reconciler.chat.keys import KeyStore

    found = KeyStore(_engine(database)).list()
    if output == "json":
        click.echo(json.dumps([_key_document(k) for k in found], indent=2))
        return
    if not found:
        click.echo("no keys (create one with `reconcile keys create NAME`)")
        return
    rows = [(k, times.local(k.created_at, seconds=False),
             times.local(k.last_used_at, seconds=False) if k.last_used_at else "never",
             f"revoked {times.local(k.revoked_at, seconds=False)}" if k.revoked_at else "active") for k in found]
    width = max(len(t) for row in rows for t in row[1:3])  # the zone's name varies in length
    click.echo(f"{'NAME':20}  {'PREFIX':14}  {'NAMESPACES':20}  {'CREATED':{width}}  {'LAST USED':{width}}  STATUS")
    for k, created, used, status in rows:
        click.echo(f"{k.name[:20]:20}  {k.prefix + '…':14}  {k.scope[:20]:20}  {created:{width}}  "
                   f"{used:{width}}  {status}")


@keys.command(name="revoke", epilog=examples("reconcile keys revoke support-bot"))
@click.argument("name")
@DATABASE_OPTION
def revoke_key(name: str, database: str | None) -> None:
    """Revoke a key: requests with it get 401 from then on."""
    from reconciler.chat.keys import KeyStore

    info = KeyStore(_engine(database)).revoke(name)
    click.echo(f"key {info.name!r} ({info.prefix}…) revoked")


def _engine(database: str | None) -> Any:
    from reconciler.store.state_store import open_state

    state = open_state(state_url(database), create=True)
    assert state.engine is not None
    return state.engine


def _key_document(info: Any) -> dict[str, Any]:
    return {"name": info.name, "prefix": info.prefix, "namespaces": list(info.namespaces) if info.namespaces else None,
            "createdAt": times.iso(info.created_at), "lastUsedAt": times.iso(info.last_used_at),
            "revokedAt": times.iso(info.revoked_at)}
