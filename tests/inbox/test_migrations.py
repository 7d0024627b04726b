"""Alembic owns the schema: the migrations build exactly the models, on both databases."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from alembic import command

from inbox.migrate import alembic_config, upgrade
from tests.services import PostgresDatabase


def test_sqlite_migrations_match_the_models(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    command.check(alembic_config(url))


def test_postgresql_migrations_match_the_models_and_downgrade() -> None:
    db = PostgresDatabase.create()
    try:
        upgrade(db.sqlalchemy_url)
        command.check(alembic_config(db.sqlalchemy_url))
        command.downgrade(alembic_config(db.sqlalchemy_url), "base")
        assert asyncio.run(_table_exists(db.url, "messages")) is False
        upgrade(db.sqlalchemy_url)
        assert asyncio.run(_table_exists(db.url, "messages")) is True
    finally:
        db.drop()


async def test_upgrade_can_be_called_from_a_running_loop(tmp_path: Path) -> None:
    from inbox.migrate import upgrade_async

    await upgrade_async(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    await asyncio.sleep(0)
    assert (tmp_path / "a.db").stat().st_size > 0


async def _table_exists(url: str, table: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table))
    finally:
        await conn.close()


def test_label_keys_are_filled_and_old_case_twins_kept(tmp_path: Path) -> None:
    import sqlite3

    url = f"sqlite+aiosqlite:///{tmp_path / 'l.db'}"
    command.upgrade(alembic_config(url), "0006")
    with sqlite3.connect(tmp_path / "l.db") as conn:
        conn.executemany(
            "INSERT INTO labels (name, color, created_at) VALUES (?, '#6b7280', '2026-01-01')",
            [("VIP",), ("vip",), ("Straße",)])
    upgrade(url)
    with sqlite3.connect(tmp_path / "l.db") as conn:
        rows = conn.execute("SELECT name, name_key FROM labels ORDER BY id").fetchall()
    assert rows == [("VIP", "vip"), ("vip", "vip#2"), ("Straße", "strasse")]
