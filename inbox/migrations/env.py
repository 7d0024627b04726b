"""Alembic environment: runs migrations with the async engine of the configured database."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

import crm_sync.models  # noqa: F401 - the webhook and CRM tables, on the same metadata
import inbox.models  # registers the tables on SQLModel.metadata

target_metadata = SQLModel.metadata


def _render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    # Migrations spell column types in plain SQLAlchemy so they never import the models.
    if type_ == "type" and isinstance(obj, inbox.models.UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and isinstance(obj, AutoString):
        return f"sa.String({obj.length})" if obj.length else "sa.Text()"
    return False


def _include_name(name: str | None, type_: str, parent_names: object) -> bool:
    # Search objects (migration 0005) are dialect-specific DDL the models do not describe.
    if name is None:
        return True
    if type_ == "table":
        return not name.startswith("fts_")
    if type_ == "column":
        return name != "search_vector"
    if type_ == "index":
        return not name.startswith("ix_search_")
    return True


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
        include_name=_include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `switchboard migrate`")
asyncio.run(_main())
