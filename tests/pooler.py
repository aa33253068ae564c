"""A real PgBouncer in front of the test PostgreSQL server, for what a pooler does to the chat
endpoint and to the reconciler's writes.

PgBouncer comes from the distribution's package (`apt-get install pgbouncer`; `.ci/run` installs it);
without it the tests that need it are skipped, saying so.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from databases import POSTGRES, libpq
from litellm_gateway import free_port


def find_pgbouncer() -> str | None:
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")


@contextmanager
def pgbouncer(mode: str, *, pool_size: int = 2) -> Iterator[int]:
    """PgBouncer in `mode` (transaction or session) on a free loopback port, with up to `pool_size`
    server connections per database, handed out in turn once open (see `through`)."""
    binary = find_pgbouncer()
    if binary is None:
        pytest.skip("PgBouncer is not installed (apt-get install pgbouncer)")
    server = urlsplit(POSTGRES)
    port = free_port()
    # PgBouncer refuses to run as root; it then switches to the server's own user, who must read this.
    folder = Path(tempfile.mkdtemp(prefix="reconciler-pgbouncer-"))
    folder.chmod(0o755)
    users = folder / "users.txt"
    users.write_text(f'"{server.username or "postgres"}" ""\n')
    config = folder / "pgbouncer.ini"
    config.write_text(f"""[databases]
* = host={server.hostname} port={server.port or 5432}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {users}
pool_mode = {mode}
default_pool_size = {pool_size}
server_round_robin = 1
""")
    for path in (users, config):
        path.chmod(0o644)
    command = [binary, *(["-u", "postgres"] if os.geteuid() == 0 else []), str(config)]
    log = (folder / "pgbouncer.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PgBouncer did not start: {(folder / 'pgbouncer.log').read_text()}") from None
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def through(url: str, port: int, *, connections: int = 2) -> str:
    """`url` (a database on the test server) reached through the pooler on `port`, which opens
    `connections` server connections to it now: then consecutive statements of one client land on
    different server connections, as under load."""
    server = urlsplit(POSTGRES)
    pooled = url.replace(f"@{server.hostname}:{server.port or 5432}/", f"@127.0.0.1:{port}/", 1)
    clients = [psycopg.connect(libpq(pooled)) for _ in range(connections)]
    try:
        for client in clients:
            client.execute("SELECT 1")  # each holds a server connection until its transaction ends
        for client in clients:
            client.commit()  # the pooler closes a server connection left inside a transaction
    finally:
        for client in clients:
            client.close()
    return pooled
