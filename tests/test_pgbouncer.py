"""The service behind PgBouncer in transaction pooling mode (Debian's `pgbouncer` package).

Each test starts /usr/sbin/pgbouncer on a free port in front of the test server, with few
server connections, so that consecutive transactions of one client connection land on
different server connections (or one server connection serves every client): what a
statement cache or a session setting would trip over.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from service.db import DatabaseError, migrations
from service.db.postgres import PostgresDatabase
from service.settings import Settings
from tests import engines
from tests.helpers_process import (
    REPO_ROOT,
    Req,
    bearer,
    call,
    call_json,
    database_of,
    database_untouched,
    environment,
    free_port,
    login,
    parallel,
    started,
    wait_until_ready,
)

pytestmark = [pytest.mark.postgresql_only, pytest.mark.process]

PGBOUNCER = "/usr/sbin/pgbouncer"
PASSWORD = "through-the-pooler"

INI = """\
[databases]
* = host={host} port={port}{password}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/userlist.txt
pool_mode = transaction
default_pool_size = {server_connections}
max_client_conn = 200
logfile =
pidfile =
"""


@contextlib.contextmanager
def pgbouncer(*, server_connections: int) -> Iterator[int]:
    """PgBouncer in transaction mode before the test server, on a free port it yields."""
    if not Path(PGBOUNCER).exists():
        pytest.fail(f"{PGBOUNCER} is missing: apt-get install pgbouncer (.ci/run does)")
    server = urlsplit(engines.ADMIN_URL)
    workdir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    workdir.chmod(0o755)  # run as root, pgbouncer drops to `nobody`, who reads these
    listen_port = free_port()
    password = f" password={server.password}" if server.password else ""
    (workdir / "pgbouncer.ini").write_text(
        INI.format(
            host=server.hostname,
            port=server.port or 5432,
            password=password,
            listen_port=listen_port,
            workdir=workdir,
            server_connections=server_connections,
        )
    )
    (workdir / "userlist.txt").write_text(f'"{server.username or "postgres"}" ""\n')
    command = [PGBOUNCER, *(["-u", "nobody"] if os.geteuid() == 0 else []), "pgbouncer.ini"]
    with (workdir / "pgbouncer.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(listen_port, process, workdir / "pgbouncer.log")
        yield listen_port
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"pgbouncer exited: {log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    pytest.fail("pgbouncer did not listen within 10 s")


def through(port: int, url: str) -> str:
    """`url`, the same database and user, by way of the pooler on `port`."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{user}@127.0.0.1:{port}"))


def server_connections(url: str) -> int:
    """How many server processes serve `url`'s database (the pooler's, and nobody else's)."""
    name = urlsplit(url).path.lstrip("/")
    sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = ? AND pid <> pg_backend_pid()"
    return int(engines.rows(engines.ADMIN_URL, sql, (name,))[0][0])


def test_the_service_serves_through_pgbouncer_in_transaction_mode(tmp_path: Path) -> None:
    direct = str(database_of(tmp_path))
    migrations.apply_pending(direct)  # directly: see the next test
    with (
        pgbouncer(server_connections=2) as port,
        started(
            tmp_path,
            "--no-migrate",
            DATABASE_URL=through(port, direct),
            DATABASE_TRANSACTION_POOLER="1",
            DATABASE_POOL_SIZE="8",  # 16 client connections on 2 server connections
        ) as node,
    ):
        wait_until_ready(node)
        status, _, body = call(
            node, "POST", "/users/signup", {"username": "pat", "password": PASSWORD}
        )
        assert status == 201, body
        status, _, body = login(node, "pat", PASSWORD)
        assert status == 200, body
        tokens = call_json(node, "POST", "/login/refresh", _refresh(body))
        assert call(node, "GET", "/users/me", headers=bearer(tokens["access_token"]))[0] == 200

        created = call_json(node, "POST", "/products/", {"name": "Tea", "price": 4.5})
        path = f"/products/{created['id']}"
        status, headers, _ = call(node, "GET", path)
        assert status == 200
        status, _, body = call(
            node, "PUT", path, {"price": 5}, headers={"If-Match": headers["ETag"]}
        )
        assert status == 200, body
        status, _, _ = call(node, "PUT", path, {"price": 6}, headers={"If-Match": headers["ETag"]})
        assert status == 412
        assert call(node, "DELETE", path)[0] == 204

        writes = [Req("POST", "/products/", json={"name": f"p{i}", "price": i}) for i in range(40)]
        reads = [Req("GET", "/products/?limit=5")] * 40
        logins = [
            Req("POST", "/login/access-token", form={"username": "pat", "password": PASSWORD})
        ]
        replies = parallel(
            node, [r for pair in zip(writes, reads, strict=True) for r in pair] + logins * 4
        )
        assert sorted({reply.status for reply in replies}) == [200, 201]
        assert server_connections(direct) <= 2
        assert call_json(node, "GET", "/products/?limit=1")["count"] == 40
    log = node.log() + node.stderr()
    assert "Traceback" not in log and "Database unavailable" not in log


def _refresh(login_body: bytes) -> dict[str, str]:
    return {"refresh_token": json.loads(login_body)["refresh_token"]}


def test_run_py_refuses_to_migrate_through_the_pooler(tmp_path: Path) -> None:
    """yoyo migrates under a session advisory lock, which a pooled server connection keeps:
    neither `run.py` (migrate, then serve) nor `run.py migrate` goes through the pooler."""
    direct = str(database_of(tmp_path))
    with pgbouncer(server_connections=2) as port:
        pooled = {"DATABASE_URL": through(port, direct), "DATABASE_TRANSACTION_POOLER": "1"}
        with started(tmp_path, **pooled) as node:
            assert node.process.wait(timeout=30) == 1
        migrating = subprocess.run(
            [sys.executable, "run.py", "migrate"],
            cwd=REPO_ROOT,
            env=environment(tmp_path, **pooled),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    for error in (node.stderr(), migrating.stderr):
        assert error.startswith("error: migrations cannot run through a transaction pooler")
        assert "--no-migrate" in error and "Traceback" not in error
    assert migrating.returncode == 1
    assert database_untouched(tmp_path)


async def test_no_session_state_reaches_the_shared_server_connection(migrated: Settings) -> None:
    """One server connection serves the writers and the readers: what a unit of work sets
    stays in it, and a snapshot read is read-only by its BEGIN, not by a session default."""
    assert migrated.postgres_url is not None
    with pgbouncer(server_connections=1) as port:
        database = await PostgresDatabase.open(
            through(port, migrated.postgres_url), pool_size=2, transaction_pooler=True
        )
        try:
            async with database.transaction() as conn:
                writer = await conn.fetch_one(
                    "SELECT pg_backend_pid(), current_setting('lock_timeout')"
                )
            async with database.read() as conn:
                reader = await conn.fetch_one(
                    "SELECT pg_backend_pid(), current_setting('lock_timeout')"
                )
            assert writer is not None and reader is not None
            assert writer[0] == reader[0]  # the same server connection
            assert (writer[1], reader[1]) == ("5s", "0")
            with pytest.raises(DatabaseError, match="read-only transaction"):
                async with database.read(snapshot=True) as conn:
                    await conn.execute(
                        "INSERT INTO products (name, name_folded, price_cents, created_at, "
                        "updated_at) VALUES ('x', 'x', 1, 'now', 'now')"
                    )
        finally:
            await database.close()
