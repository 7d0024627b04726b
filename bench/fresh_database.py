"""A fresh, migrated Switchboard database for a benchmark, dropped afterwards: SQLite in a
temporary folder (`embedded`), or a new PostgreSQL database `sbtest_<hex>` on the local
server (`production`, made as the tests make theirs: tests/services.py)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config import Settings, load_settings
from inbox.db import Database
from inbox.migrate import upgrade_async


@dataclass(frozen=True)
class Fresh:
    settings: Settings
    db: Database
    workdir: Path
    database: str | None  # the PostgreSQL database's name (None: SQLite)

    @property
    def path(self) -> Path | None:
        """The SQLite file (None on PostgreSQL)."""
        return None if self.database else self.workdir / "switchboard.db"


@contextlib.asynccontextmanager
async def fresh_database(shape: str, prefix: str) -> AsyncIterator[Fresh]:
    """The database of `shape`, migrated, with a Database on it; removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    pg: Any = None
    try:
        if shape == "production":
            from tests.services import PostgresDatabase

            pg = PostgresDatabase.create()
            url = pg.url
        else:
            url = f"sqlite:///{workdir / 'switchboard.db'}"
        settings = load_settings(data_dir=workdir, database_url=url, redis_url="",
                                 log_level="warning")
        await upgrade_async(settings.sqlalchemy_url)
        db = Database(settings.sqlalchemy_url)
        try:
            yield Fresh(settings=settings, db=db, workdir=workdir,
                        database=pg.name if pg is not None else None)
        finally:
            await db.close()
    finally:
        if pg is not None:
            pg.drop()
        shutil.rmtree(workdir, ignore_errors=True)
