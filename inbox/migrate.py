"""Bring a database's schema up to date with Alembic (the migrations live beside this file)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

from inbox.db import _ensure_parent

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    """An Alembic configuration for the given async SQLAlchemy URL."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply every migration up to `revision` (blocking; call from a thread inside a loop)."""
    _ensure_parent(url)
    command.upgrade(alembic_config(url), revision)


async def upgrade_async(url: str) -> None:
    """`upgrade` from async code: Alembic runs its own loop, so it gets a thread."""
    await asyncio.to_thread(upgrade, url)
