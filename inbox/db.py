"""The database: async engines built from the settings, and transactions owned by callers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Executable, Table, event, insert, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from inbox.outbox import write_staged

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
        self._outbox_hooks: list[Callable[[], None]] = []

    @property
    def asyncpg_dsn(self) -> str | None:
        """The PostgreSQL DSN for a plain asyncpg connection (LISTEN); None on SQLite."""
        if self.is_sqlite:
            return None
        return self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def on_outbox_commit(self, hook: Callable[[], None]) -> Callable[[], None]:
        """Call `hook` after each commit that wrote outbox rows; returns the undo."""
        self._outbox_hooks.append(hook)
        return lambda: self._outbox_hooks.remove(hook)

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
        """A transaction: committed when the block ends, rolled back if it raises.

        What the block staged for publishing (inbox.outbox) is written to the outbox in the
        same transaction, just before the commit.
        """
        if self._writers is None:
            async with self._write() as session, session.begin():
                yield session
                staged = await write_staged(session)
        else:
            # Bounded like SQLite's own busy timeout: a writer never waits forever.
            await asyncio.wait_for(self._writers.acquire(), WRITE_WAIT_S)
            try:
                async with self._write() as session, session.begin():
                    yield session
                    staged = await write_staged(session)
            finally:
                self._writers.release()
        if staged:
            for hook in list(self._outbox_hooks):
                hook()

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


# SQLSTATE classes of a server that cannot work right now: connection exceptions, not
# enough resources, operator intervention (shutting down, starting up), system errors.
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")
_SQLITE_TRANSIENT = ("database is locked", "disk i/o error", "unable to open", "database is full")


def is_postgresql(session: AsyncSession) -> bool:
    """Whether the session talks to PostgreSQL (else SQLite): the one place that asks.

    The domain branches on it only where the two databases need different SQL (row locks,
    upserts' dialect constructs, JSON aggregation, full-text search)."""
    return session.bind is not None and session.bind.dialect.name == "postgresql"


Insert = postgresql.Insert | sqlite.Insert


def conflict_insert(table: Table, postgres: bool) -> Insert:
    """A Core INSERT that can say ON CONFLICT, in the database's dialect (both spell it
    alike: `.on_conflict_do_nothing(...)`, `.on_conflict_do_update(...)`)."""
    return (postgresql.insert if postgres else sqlite.insert)(table)


def is_unavailable(exc: BaseException) -> bool:
    """Whether an error means the database could not be reached or could not work for now
    (retry later: nothing about the work itself is wrong)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError | ConnectionError | TimeoutError):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, sa_exc.TimeoutError | sa_exc.InterfaceError):
            return True  # the pool ran dry, or the driver lost its connection
        state = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(state, str) and state[:2] in _UNAVAILABLE_CLASSES:
            return True
        if type(current).__name__ in ("ConnectionDoesNotExistError", "InterfaceError",
                                      "ConnectionFailureError", "CannotConnectNowError"):
            return True
        if isinstance(current, sa_exc.OperationalError) and any(
                words in str(current).lower() for words in _SQLITE_TRANSIENT):
            return True
        current = current.__cause__ or current.__context__ or getattr(current, "orig", None)
    return False


async def execute(
    session: AsyncSession,
    statement: Executable,
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    *,
    execution_options: Mapping[str, Any] | None = None,
) -> Any:
    """Run a Core statement (a list of `params` runs it for each, in one round trip where
    the driver can): the rows as SQLAlchemy returns them."""
    return await session.exec(
        statement,  # type: ignore[call-overload]
        params=params, execution_options=execution_options or {},
    )


async def insert_ids(
    session: AsyncSession, table: Table, rows: Sequence[Mapping[str, Any]]
) -> list[int]:
    """Insert rows in one statement; their new ids, in the order of `rows`.

    Within one INSERT the ids come from the table's sequence (PostgreSQL) or rowid (SQLite,
    one writer) row by row in VALUES order, so they ascend in that order: sorting the
    RETURNING rows (whose own order is unspecified) pairs each id with its row. Other
    transactions' ids may fall between ours, never reorder them.
    """
    if not rows:
        return []
    statement = insert(table).values(list(rows)).returning(table.c.id)
    ids = sorted((await execute(session, statement)).scalars().all())
    if len(ids) != len(rows):
        raise RuntimeError(f"inserted {len(ids)} rows of {len(rows)}")
    return ids
