"""The database: async engines built from the settings, and transactions owned by callers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

WRITE_WAIT_S = 30.0


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL + NORMAL: a committed transaction survives kill -9 of the process.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
    # Let SQLAlchemy's begin listener below decide how transactions start.
    dbapi_connection.isolation_level = None


class Database:
    """Engines and sessions of one process: `read()` for queries, `write()` for changes."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            _ensure_parent(url)
            self.engine = self._sqlite_engine(url, immediate=False)
            # SQLite has one writer: writers take the lock up front (BEGIN IMMEDIATE) so a
            # read-then-write transaction never fails to upgrade its lock.
            self.write_engine = self._sqlite_engine(url, immediate=True)
        else:
            self.engine = create_async_engine(
                url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )
            self.write_engine = self.engine
        self._read = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        self._write = async_sessionmaker(
            self.write_engine, class_=AsyncSession, expire_on_commit=False
        )
        # SQLite has one writer: this process's writers queue here, first come first
        # served, instead of in SQLite's busy handler, which polls with growing sleeps
        # (up to 100 ms) and lets an unlucky writer wait seconds behind later ones.
        self._writers = asyncio.Lock() if self.is_sqlite else None

    @staticmethod
    def _sqlite_engine(url: str, *, immediate: bool) -> AsyncEngine:
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

        return engine

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for queries; nothing it does is committed."""
        async with self._read() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        if self._writers is None:
            async with self._write() as session, session.begin():
                yield session
            return
        # Bounded like SQLite's own busy timeout: a writer never waits forever.
        await asyncio.wait_for(self._writers.acquire(), WRITE_WAIT_S)
        try:
            async with self._write() as session, session.begin():
                yield session
        finally:
            self._writers.release()

    async def ping(self) -> bool:
        """True when the database answers."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()


def _ensure_parent(url: str) -> None:
    if not url.startswith("sqlite"):
        return
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
