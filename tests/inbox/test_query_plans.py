"""The hot queries keep using their indexes on a PostgreSQL database of realistic shape.

A generated database (bench/list_search_data.py, the benchmark's generator, at a size that
builds in seconds: 30,000 conversations, about 300,000 messages, 20 inboxes) with fresh
statistics; each hot path runs through the real function, and every statement it sends is
planned with EXPLAIN. A plan that reads a big table whole, or stops using the index the
query was built around, fails here long before it is slow in production.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import event, text
from sqlmodel.ext.asyncio.session import AsyncSession

from bench.list_search_data import Size, generate
from inbox import queries, search
from inbox.agents import Principal, visible_inbox_ids
from inbox.db import Database
from inbox.migrate import upgrade
from inbox.models import Agent
from tests.services import PostgresDatabase

SIZE = Size(conversations=30_000, messages_per_conversation=10, inboxes=20, agents=40,
            contacts=9_000)
BIG = ("messages", "conversations", "contacts", "contact_identities")


@pytest.fixture(scope="module")
def generated() -> Iterator[PostgresDatabase]:
    db = PostgresDatabase.create()
    try:
        upgrade(db.sqlalchemy_url)

        async def fill() -> None:
            conn = await asyncpg.connect(db.url)
            try:
                await generate(conn, SIZE, "not a password hash", lambda line: None)
            finally:
                await conn.close()

        asyncio.run(fill())
        yield db
    finally:
        db.drop()


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def _plans(db: Database, run: Callable[[AsyncSession], Awaitable[Any]]
                 ) -> list[tuple[str, list[dict[str, Any]]]]:
    """(statement, its plan's nodes) of every SELECT `run` sends, planned as sent."""
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            captured.append((statement, params))

    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with db.read() as session:
            await run(session)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
    out = []
    async with db.read() as session:
        await search._plan_each_time(session)  # as the search transaction plans them
        connection = await session.connection()
        for statement, params in captured:
            if statement.lstrip().upper().startswith("SELECT SET_CONFIG"):
                continue
            row = (await connection.exec_driver_sql(
                "EXPLAIN (FORMAT JSON) " + statement, params)).scalar_one()
            plan = json.loads(row) if isinstance(row, str) else row
            out.append((statement, list(_nodes(plan[0]["Plan"]))))
    return out


def _check(plans: list[tuple[str, list[dict[str, Any]]]], *indexes: str) -> None:
    """No big table read whole, and each index named used by some statement."""
    used: set[str] = set()
    for statement, nodes in plans:
        for node in nodes:
            assert not (node["Node Type"] == "Seq Scan" and node.get("Relation Name") in BIG), (
                f"{node['Relation Name']} read whole by:\n{statement}")
            if "Index Name" in node:
                used.add(node["Index Name"])
    missing = [i for i in indexes if i not in used]
    assert not missing, f"{missing} not used; used: {sorted(used)}"


def test_hot_queries_use_their_indexes(generated: PostgresDatabase) -> None:
    async def check() -> None:
        db = Database(generated.sqlalchemy_url)
        try:
            async with db.read() as session:
                connection = await session.connection()
                agent_id = (await connection.execute(text(
                    "SELECT a.id FROM agents a JOIN inbox_members m ON m.agent_id = a.id "
                    "WHERE a.role = 'agent' GROUP BY a.id HAVING count(*) >= 3 "
                    "ORDER BY a.id LIMIT 1"))).scalar_one()
                agent = await session.get_one(Agent, agent_id)
                me = Principal(agent_id, "agent", await visible_inbox_ids(session, agent), "")
                admin = Principal(1, "admin", frozenset(), "")
                conversation_id = (await connection.execute(text(
                    "SELECT max(id) FROM conversations WHERE inbox_id = ANY(:ids)"),
                    {"ids": sorted(me.inbox_ids)})).scalar_one()
                code = (await connection.execute(text(
                    "SELECT substring(text from 'ref (r[0-9]+)') FROM messages "
                    "WHERE text LIKE '%ref r%' ORDER BY id LIMIT 1"))).scalar_one()

            def listed(principal: Principal, **filters: Any) -> Any:
                return lambda s: queries.list_conversations(
                    s, principal, queries.ConversationFilter(**filters), limit=25)

            def found(q: str, principal: Principal = me) -> Any:
                return lambda s: search.search(s, principal, q, search.SearchFilter(kinds=(
                    "message", "note")), limit=25)

            cases: list[tuple[Any, tuple[str, ...]]] = [
                # The list: one status in time order; else one ordered walk per inbox,
                # merged; "mine" in order.
                (listed(me, statuses=("open",)), ("ix_conversations_status_activity",)),
                (listed(me, statuses=()), ("ix_conversations_inbox_activity",)),
                (listed(me, statuses=("open",), assignee="me"),
                 ("ix_conversations_assignee_status",)),
                (listed(admin, statuses=("open",)), ()),
                # Opening a conversation: its newest 50 messages.
                (lambda s: queries.list_messages(s, me, conversation_id),
                 ("ix_messages_conversation_order",)),
                # Search: a common word walks the time order of each of the agent's inboxes,
                # merged (the admin's: of every inbox); a rare one asks the GIN index.
                (found("order"), ("ix_search_messages_inbox_at",)),
                (found("order", admin), ("ix_search_messages_at",)),
                (found(code + " "), ("ix_search_messages",)),
                (found(code + " ", admin), ("ix_search_messages",)),
                (found('"tracking number"'), ("ix_search_messages_inbox_at",)),
                # A rare phrase: its pairs of words in a row (migration 0025).
                (found(f'"ref {code}"'), ("ix_search_messages_pairs",)),
                (found(f'"ref {code}"', admin), ("ix_search_messages_pairs",)),
                # A word being typed (here after a rare one): the index of word starts,
                # which finds every word in one lookup (migration 0023).
                (found(code), ("ix_search_messages_starts",)),
                (found(f"{code} deliv"), ("ix_search_messages_starts",)),
            ]
            for run, indexes in cases:
                _check(await _plans(db, run), *indexes)
        finally:
            await db.close()

    asyncio.run(check())


def test_a_query_that_reads_a_big_table_whole_is_caught(generated: PostgresDatabase) -> None:
    """The check itself: a query without a usable index fails it."""
    async def check() -> None:
        db = Database(generated.sqlalchemy_url)
        try:
            plans = await _plans(db, lambda s: s.exec(text(  # type: ignore[call-overload]
                "SELECT id FROM messages WHERE lower(text) = 'x'")))
            with pytest.raises(AssertionError, match="messages read whole"):
                _check(plans)
        finally:
            await db.close()

    asyncio.run(check())
