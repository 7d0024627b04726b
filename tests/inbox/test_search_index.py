"""The search index (migration 0005): rows that existed before it are indexed, and it follows
inserts, edits and deletes, on both databases."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, text, update
from sqlmodel import col

from hub.types import utcnow
from inbox import search
from inbox.agents import Principal
from inbox.db import Database
from inbox.migrate import upgrade
from inbox.models import Contact, ContactIdentity, Conversation, Inbox, Message, table_of
from tests.services import PostgresDatabase


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database migrated up to 0004, the schema before search."""
    if request.param == "sqlite":
        found = f"sqlite+aiosqlite:///{tmp_path / 's.db'}"
        upgrade(found, "0004")
        yield found
        return
    db = PostgresDatabase.create()
    try:
        upgrade(db.sqlalchemy_url, "0004")
        yield db.sqlalchemy_url
    finally:
        db.drop()


async def _kinds(db: Database, q: str, inbox_id: int) -> list[str]:
    principal = Principal(agent_id=1, role="admin", inbox_ids=frozenset({inbox_id}),
                          csrf_token="")
    async with db.read() as session:
        hits, _ = await search.search(session, principal, q, search.SearchFilter(), limit=100)
    return sorted(h.kind for h in hits)


async def _seed(db: Database) -> tuple[int, int, int]:
    async with db.write() as session:
        # Only the columns of the 0004 schema (models may have gained some since).
        inbox_id = (await session.exec(  # type: ignore[call-overload]
            insert(table_of(Inbox)).values(
                name="Mail", channel="email", settings={}, auto_assign=True,
                assignment_policy="round_robin", requeue_on_offline=False,
                created_at=utcnow(),
            ).returning(table_of(Inbox).c.id))).scalar_one()
        contact_id = (await session.exec(  # type: ignore[call-overload]
            insert(table_of(Contact)).values(
                name="Grace Hopper", email="grace@navy.example", phone="+1 202-555-0147",
                attributes={}, created_at=utcnow(),
            ).returning(table_of(Contact).c.id))).scalar_one()
        assert inbox_id and contact_id
        session.add(ContactIdentity(contact_id=contact_id, kind="telegram", value="gh1906",
                                    display_name="Amazing Grace"))
        # Only the columns of the 0004 schema (models may have gained some since).
        now = utcnow()
        conversation_id = (await session.exec(  # type: ignore[call-overload]
            insert(table_of(Conversation)).values(
                inbox_id=inbox_id, contact_id=contact_id, subject="Compiler nanosecond question",
                status="open", priority="none", unread_count=0, last_activity_at=now,
                created_at=now,
            ).returning(table_of(Conversation).c.id))).scalar_one()
        for kind, words in (("message", "cobol debugging moth"), ("note", "flowmatic note"),
                            ("activity", "assigned to someone")):
            session.add(Message(conversation_id=conversation_id, inbox_id=inbox_id,
                                direction="in", kind=kind, text=words))
        return inbox_id, conversation_id, contact_id


async def _check(url: str) -> None:
    db = Database(url)
    try:
        inbox_id, conversation_id, contact_id = await _seed(db)
        await db.close()
        await asyncio.to_thread(upgrade, url)  # 0005 indexes what is already there
        db = Database(url)
        assert await _kinds(db, "moth", inbox_id) == ["message"]
        assert await _kinds(db, "flowmatic", inbox_id) == ["note"]
        assert await _kinds(db, "assigned someone", inbox_id) == []  # activity lines are not
        assert await _kinds(db, "nanosecond", inbox_id) == ["conversation"]
        for q in ("hopper", "navy.example", "+12025550147", "+1 202", "gh1906", "amazing"):
            assert await _kinds(db, q, inbox_id) == ["contact"], q

        async with db.write() as session:
            await session.exec(update(Message).where(col(Message.kind) == "message")
                               .values(text="typewriter"))
            await session.exec(update(Contact).values(name="Admiral Hopper"))
            await session.exec(update(Conversation).values(subject="Loops"))
            session.add(Message(conversation_id=conversation_id, inbox_id=inbox_id,
                                direction="out", kind="message", text="fresh typewriter"))
        assert await _kinds(db, "moth", inbox_id) == []
        assert await _kinds(db, "typewriter", inbox_id) == ["message", "message"]
        assert await _kinds(db, "admiral", inbox_id) == ["contact"]
        assert await _kinds(db, "nanosecond", inbox_id) == []
        assert await _kinds(db, "loops", inbox_id) == ["conversation"]

        async with db.write() as session:
            await session.exec(delete(Conversation))
            await session.exec(delete(ContactIdentity))
        assert await _kinds(db, "typewriter", inbox_id) == []
        assert await _kinds(db, "gh1906", inbox_id) == []
        async with db.write() as session:
            await session.exec(delete(Contact).where(col(Contact.id) == contact_id))
        assert await _kinds(db, "admiral", inbox_id) == []
        if db.is_sqlite:  # external-content FTS5 tables stay consistent with their rows
            async with db.write() as session:
                for name in ("fts_messages", "fts_conversations", "fts_identities",
                             "fts_contacts"):
                    await session.exec(text(  # type: ignore[call-overload]
                        f"INSERT INTO {name}({name}) VALUES ('integrity-check')"))
    finally:
        await db.close()


def test_search_index_covers_old_rows_and_follows_changes(url: str) -> None:
    asyncio.run(_check(url))


async def _pages(url: str, query: str = "apple") -> None:
    db = Database(url)
    try:
        async with db.write() as session:
            seen = [Inbox(name="Seen", channel="api"), Inbox(name="Also seen", channel="api")]
            other = Inbox(name="Other", channel="api")
            contact = Contact(name="Customer")
            session.add_all([*seen, other, contact])
            await session.flush()
            assert seen[0].id and seen[1].id and other.id and contact.id
            # Six conversations in the two inboxes the agent sees (every other one resolved,
            # the inboxes taking turns), one elsewhere; messages spread over them, each
            # conversation active at its last.
            conversations = [
                Conversation(inbox_id=seen[n // 2 % 2].id if n < 6 else other.id,
                             contact_id=contact.id, status="resolved" if n % 2 else "open")
                for n in range(7)]
            session.add_all(conversations)
            await session.flush()
            start = datetime(2026, 1, 1, tzinfo=UTC)
            rows = []
            for i in range(70):
                target = conversations[i % 7]
                rows.append(Message(
                    conversation_id=target.id or 0, inbox_id=target.inbox_id, direction="in",
                    text="apple banana" if i % 3 == 0 else "cherry",
                    accepted_at=start + timedelta(minutes=i)))
                target.last_activity_at = rows[-1].accepted_at
            session.add_all(rows)
            await session.flush()
            apples = [(m.id, conversations[i % 7]) for i, m in reversed(list(enumerate(rows)))
                      if i % 3 == 0 and i % 7 != 6]
        principal = Principal(agent_id=1, role="agent",
                              inbox_ids=frozenset({seen[0].id, seen[1].id}), csrf_token="")
        for statuses in ((), ("open",), ("resolved",)):
            expected = [i for i, c in apples if not statuses or c.status in statuses]
            found: list[int] = []
            cursor = None
            while True:
                async with db.read() as session:
                    hits, cursor = await search.search(
                        session, principal, query, search.SearchFilter(statuses=statuses),
                        cursor=cursor, limit=3)
                found += [h.message.id for h in hits if h.message is not None]
                if cursor is None:
                    break
            assert found == expected, statuses
    finally:
        await db.close()


@pytest.mark.parametrize("walk", ["indexes soon", "walk far", "walk every inbox at once",
                                  "whole words through the index"])
def test_search_pages_through_every_stretch(
    url: str, walk: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL reads the newest WINDOW rows (of each of the agent's inboxes, merged; or of
    # every inbox at once), then further while walking promises to cost less than the
    # indexes (never beyond WALK_MOST rows), then the older matches from the indexes (or,
    # with a status, the newest CONVERSATIONS conversations, then the indexes): with tiny
    # sizes one search goes through every stage.
    monkeypatch.setattr(search, "WINDOW", 4)
    monkeypatch.setattr(search, "CONVERSATIONS", (1, 2))
    if walk.startswith("walk"):
        monkeypatch.setattr(search, "WALK_PER_FETCH", 10**9)
        monkeypatch.setattr(search, "WALK_MOST", 40)
    if walk == "walk every inbox at once":
        monkeypatch.setattr(search, "MERGED_MOST", 1)
    query = "apple"
    if walk == "whole words through the index":  # the word being typed checked on each row
        async def always(*_: Any) -> bool:
            return True

        monkeypatch.setattr(search, "_prefix_costs_more", always)
        query = "apple bana"
    asyncio.run(_migrated_then(url, functools.partial(_pages, query=query)))


async def _migrated_then(url: str, check: Any) -> None:
    await asyncio.to_thread(upgrade, url)
    await check(url)
