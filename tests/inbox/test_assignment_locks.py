"""Two processes assigning at once on PostgreSQL never take an agent over capacity."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlmodel import func, select

from config import Settings
from hub.types import utcnow
from inbox.agents import add_to_inbox, create_agent
from inbox.assignment import Placer, place
from inbox.db import Database
from inbox.inboxes import create_inbox
from inbox.models import Contact, Conversation
from tests.helpers import PASSWORD, eventually

PRESENCE = 60


async def _seed(db: Database) -> tuple[int, list[int]]:
    """An inbox with one online agent of capacity 1, and two conversations nobody has."""
    async with db.write() as session:
        inbox = await create_inbox(session, name="Support", channel="api", settings={})
        agent = await create_agent(session, email="alice@example.com", name="Alice",
                                   password=PASSWORD)
        assert inbox.id is not None and agent.id is not None
        await add_to_inbox(session, agent_id=agent.id, inbox_id=inbox.id)
        agent.capacity = 1
        agent.last_seen_at = utcnow()
        session.add(agent)
        ids = []
        for name in ("Ann", "Ben"):
            contact = Contact(name=name)
            session.add(contact)
            await session.flush()
            assert contact.id is not None
            conversation = Conversation(inbox_id=inbox.id, contact_id=contact.id)
            session.add(conversation)
            await session.flush()
            assert conversation.id is not None
            ids.append(conversation.id)
        return agent.id, ids


async def _place(db: Database, conversation_id: int) -> int | None:
    async with db.write() as session:
        conversation = await session.get_one(Conversation, conversation_id)
        placer = Placer(session, now=utcnow(), presence_seconds=PRESENCE)
        agent_id, _ = await place(placer, conversation, contact_name=None)
        return agent_id


@pytest.mark.parametrize("shape", ["production"])
async def test_two_assignments_at_once_never_exceed_capacity(settings: Settings) -> None:
    first_db, second_db, watch_db = (Database(settings.sqlalchemy_url) for _ in range(3))
    try:
        agent_id, (one, two) = await _seed(first_db)
        async with first_db.write() as session:
            conversation = await session.get_one(Conversation, one)
            placer = Placer(session, now=utcnow(), presence_seconds=PRESENCE)
            assert (await place(placer, conversation, contact_name=None))[0] == agent_id
            # Not committed yet: a second process assigning now must wait for this one.
            second = asyncio.create_task(_place(second_db, two))

            async def blocked_or_done() -> bool:
                async with watch_db.read() as watch:
                    waiting = (await watch.exec(text(  # type: ignore[call-overload]
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()"))).scalar_one()
                return second.done() or waiting > 0

            await eventually(blocked_or_done)
        # Once the first committed, the second sees Alice at capacity: it queues.
        assert await second is None
        async with watch_db.read() as session:
            load = (await session.exec(
                select(func.count()).select_from(Conversation)
                .where(Conversation.assignee_id == agent_id, Conversation.status == "open")
            )).one()
            queued = await session.get_one(Conversation, two)
        assert load == 1
        assert queued.assignee_id is None and queued.waiting_since is not None
    finally:
        for db in (first_db, second_db, watch_db):
            await db.close()
