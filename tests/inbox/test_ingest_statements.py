"""Per-message work must not grow with features: the SQL statements a batch costs are counted.

Threading a batch of 100 inbound messages (new and known contacts, new and existing
conversations, email threads, a duplicate, machine mail) issues no more statements than a
batch of 10 with the same mix, and few in all; an agent's reply issues a handful.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import event, func
from sqlmodel import select

from config import Settings
from hub.app import build_bus
from hub.types import Identity, InboundMessage
from inbox.agents import Principal, add_to_inbox, create_agent, touch_presence
from inbox.context import InboxContext
from inbox.db import Database
from inbox.inboxes import create_inbox
from inbox.ingest import Ingested, ingest_batch
from inbox.models import Conversation, Message
from inbox.replies import reply

# BEGIN and COMMIT are not statements of the work (and SQLite's BEGIN shows up as one).
_TRANSACTION = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


@dataclass
class Counter:
    statements: list[str]

    @property
    def count(self) -> int:
        return len(self.statements)


@contextlib.contextmanager
def counting(db: Database) -> Iterator[Counter]:
    """Count the statements sent to the database meanwhile (an executemany counts once)."""
    found = Counter([])
    engines = {db.engine.sync_engine, db.write_engine.sync_engine}

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.lstrip().upper().startswith(_TRANSACTION):
            found.statements.append(statement.split("\n", 1)[0][:120])

    for engine in engines:
        event.listen(engine, "before_cursor_execute", seen)
    try:
        yield found
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", seen)


@dataclass
class Room:
    ctx: InboxContext
    chat: int
    mail: int
    agent: Principal


@pytest.fixture
async def room(settings: Settings) -> AsyncIterator[Room]:
    db = Database(settings.sqlalchemy_url)
    bus = build_bus(settings)
    await bus.start()
    async with db.write() as session:
        chat = await create_inbox(session, name="Chat", channel="api", settings={"secret": "s"})
        mail = await create_inbox(session, name="Mail", channel="email", settings={})
        agent = await create_agent(session, email="ann@example.com", name="Ann",
                                   password="correct horse battery")
        assert chat.id and mail.id and agent.id
        for inbox_id in (chat.id, mail.id):
            await add_to_inbox(session, agent_id=agent.id, inbox_id=inbox_id)
        await touch_presence(session, [agent.id])  # online: new conversations are assigned
        ids = chat.id, mail.id, agent.id
    principal = Principal(agent_id=ids[2], role="agent", inbox_ids=frozenset(ids[:2]),
                          csrf_token="")
    try:
        yield Room(InboxContext(settings=settings, db=db, bus=bus), ids[0], ids[1], principal)
    finally:
        await bus.close()
        await db.close()


def _chat(room: Room, n: int, sender: str, tag: str) -> InboundMessage:
    return InboundMessage(channel="api", inbox_id=room.chat, external_id=f"{tag}-{sender}-{n}",
                          sender=Identity(kind="api", value=sender), text=f"hello {n}")


def _mail(room: Room, n: int, tag: str, parent: str | None = None) -> InboundMessage:
    return InboundMessage(
        channel="email", inbox_id=room.mail, external_id=f"{tag}-{n}@mail.example",
        sender=Identity(kind="email", value=f"writer{n % 7}@{tag}.example"), text="about x",
        threading="headers", in_reply_to=parent, references=(parent,) if parent else (),
        metadata={"subject": f"question {n}"},
    )


def _batch(room: Room, size: int, tag: str) -> list[InboundMessage]:
    """A mix: a fifth from senders seen before (their conversations exist), a fifth from
    new senders writing twice, email roots and replies (some to a root in the same batch,
    some to one stored before), one auto-reply with no thread, and a duplicate."""
    out: list[InboundMessage] = []
    for n in range(size // 10):
        out.append(_chat(room, n, f"known-{n % 5}", tag))
        out.append(_chat(room, n, f"known-{(n + 1) % 5}", tag + "b"))
        out.append(_chat(room, n, f"new-{tag}-{n}", tag))
        out.append(_chat(room, n, f"new-{tag}-{n}", tag + "b"))
        out.append(_mail(room, n, tag))
        out.append(_mail(room, n + 1000, tag, parent=f"{tag}-{n}@mail.example"))
        out.append(_mail(room, n + 2000, tag, parent=f"warm-{n % 3}@mail.example"))
        out.append(_mail(room, n + 3000, tag))
        out.append(_chat(room, n, f"new2-{tag}-{n}", tag))
        if n == 0:
            out.append(InboundMessage(
                channel="email", inbox_id=room.mail, external_id=f"{tag}-ooo@mail.example",
                sender=Identity(kind="email", value="robot@away.example"), text="I am away",
                threading="headers", automated=True))
        else:
            out.append(_chat(room, n, f"known-{n % 5}", tag + "c"))
    out.append(out[0])  # delivered twice
    return out


async def _warm(room: Room) -> None:
    warm = [_chat(room, n, f"known-{n}", "warm") for n in range(5)]
    warm += [_mail(room, n, "warm") for n in range(3)]
    results = await ingest_batch(room.ctx, warm)
    assert all(isinstance(r, Ingested) for r in results), results


async def test_a_batch_costs_the_same_statements_whatever_its_size(room: Room) -> None:
    await _warm(room)
    with counting(room.ctx.db) as small:
        ten = await ingest_batch(room.ctx, _batch(room, 10, "s"))
    with counting(room.ctx.db) as large:
        hundred = await ingest_batch(room.ctx, _batch(room, 100, "l"))
    for results in (ten, hundred):
        assert all(isinstance(r, Ingested) for r in results), results
        assert [r.duplicate for r in results if isinstance(r, Ingested)].count(True) == 1
        assert [r.suppressed for r in results if isinstance(r, Ingested)].count(True) == 1
    assert large.count <= small.count, "\n".join(["SMALL:", *small.statements, "LARGE:",
                                                   *large.statements])
    assert large.count <= 15, "\n".join(large.statements)
    async with room.ctx.db.read() as session:
        stored = (await session.exec(select(func.count()).select_from(Message))).one()
        conversations = (await session.exec(select(func.count()).select_from(Conversation))).one()
    # Warm-up 8, then 10 + 100 stored (each batch: one duplicate and one auto-reply not stored).
    assert stored == 8 + (11 - 2) + (101 - 2)
    # Chat: 5 known senders; new senders open one conversation each (two per batch row).
    # Email: every root opens one, replies join theirs.
    per_batch_row = 2 + 2  # chat new + new2, email two roots
    assert conversations == 8 + per_batch_row * (1 + 10)


async def test_an_agent_reply_issues_a_handful_of_statements(room: Room) -> None:
    await _warm(room)
    async with room.ctx.db.read() as session:
        conversation_id = (await session.exec(
            select(Conversation.id).where(Conversation.inbox_id == room.chat).limit(1))).one()
    assert conversation_id is not None
    with counting(room.ctx.db) as counted:
        await reply(room.ctx, room.agent, conversation_id=conversation_id, text="On it!")
    # Read everything, insert the message, update the conversation, stage the outbox rows.
    assert counted.count <= 4, "\n".join(counted.statements)
