"""The helpers that start real Redis servers and PostgreSQL databases for the tests work.

No skips: CI must provide redis-server and PostgreSQL (scripts/test installs and starts them).
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import asyncpg
import pytest
import redis

from tests.services import (
    PostgresDatabase,
    RedisServer,
    default_admin_url,
    free_port,
    postgres_available,
)


def _require_postgres() -> None:
    """Fail (never skip) with a useful message when PostgreSQL is not reachable."""
    if not postgres_available():
        pytest.fail(
            f"PostgreSQL not reachable at {default_admin_url()} "
            "(run ./scripts/test, which starts it, or set SWITCHBOARD_TEST_PG_ADMIN_URL)"
        )


async def _fetch(url: str, query: str) -> object:
    """Run one query on a fresh connection and return the first value."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


def test_free_port_can_be_bound() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_redis_starts_answers_dies_on_kill_and_comes_back(tmp_path: Path) -> None:
    server = RedisServer.start(tmp_path)
    try:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        client = server.client(retry=False)
        try:
            assert client.ping() is True
            client.set("k", "v")
            assert client.get("k") == b"v"

            server.kill()
            assert not server.running
            with pytest.raises(redis.exceptions.ConnectionError):
                client.ping()

            port = server.port
            server.restart()
            assert server.port == port
            assert client.ping() is True  # the client reconnects to the same URL
            assert client.get("k") is None  # nothing was kept on disk
        finally:
            client.close()
    finally:
        server.stop()
    assert not server.ping()
    assert list(tmp_path.glob("*.rdb")) == []


def test_redis_context_manager_and_isolation(tmp_path: Path) -> None:
    with RedisServer.start(tmp_path / "a") as a, RedisServer.start(tmp_path / "b") as b:
        assert a.port != b.port
        with a.client() as ca, b.client() as cb:
            ca.set("only-in-a", 1)
            assert cb.get("only-in-a") is None
    assert not a.running and not b.running
    assert not a.ping() and not b.ping()


def test_postgres_database_created_reachable_and_dropped() -> None:
    _require_postgres()
    db = PostgresDatabase.create()
    try:
        assert db.name.startswith("sbtest_")
        assert db.url.endswith(f"/{db.name}")
        assert db.sqlalchemy_url.startswith("postgresql+asyncpg://")
        assert db.exists()
        assert asyncio.run(_fetch(db.url, "SELECT current_database()")) == db.name
    finally:
        db.drop()
    assert not db.exists()
    db.drop()  # idempotent
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        asyncio.run(_fetch(db.url, "SELECT 1"))


def test_postgres_drop_terminates_open_connections_and_template_copies_schema() -> None:
    _require_postgres()

    async def make_schema(url: str) -> None:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            await conn.execute("CREATE TABLE t (id int primary key); INSERT INTO t VALUES (1), (2)")
        finally:
            await conn.close()

    with PostgresDatabase.create() as template:
        asyncio.run(make_schema(template.url))
        with PostgresDatabase.create_from_template(template.name) as copy:
            assert copy.name != template.name
            assert asyncio.run(_fetch(copy.url, "SELECT count(*) FROM t")) == 2

        async def hold_open_then_drop() -> None:
            conn = await asyncpg.connect(template.url, timeout=10)
            try:
                await asyncio.to_thread(template.drop)  # must not hang on the open session
                assert not template.exists()
            finally:
                await conn.close(timeout=1)  # the server already ended it

        asyncio.run(hold_open_then_drop())


async def test_helpers_work_inside_a_running_event_loop(tmp_path: Path) -> None:
    _require_postgres()
    with PostgresDatabase.create() as db:
        assert await _fetch(db.url, "SELECT current_database()") == db.name
    assert not db.exists()
    with RedisServer.start(tmp_path) as server:
        assert server.ping()
