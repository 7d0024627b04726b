"""Email threading rules on both shapes: References chains, out-of-order parents, reply
tokens, two inboxes, and machine mail that never opens a conversation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import select

from channels.email import to_inbound
from channels.email.parse import parse_email
from channels.email.smtp import reply_token
from config import Settings
from hub.app import build_bus
from hub.types import InboundMessage, utcnow
from inbox.context import InboxContext
from inbox.db import Database
from inbox.inboxes import create_inbox
from inbox.ingest import Ingested, UnknownInbox, ingest, ingest_batch
from inbox.models import Contact, Conversation, Message

FIXTURES = Path(__file__).parents[1] / "channels" / "fixtures" / "email"
SETTINGS = {"from_address": "support@acme.test", "reply_domain": "reply.acme.test",
            "reply_secret": "s3cret"}


@dataclass
class Mailroom:
    """An inbox context with two email inboxes, support and billing."""

    ctx: InboxContext
    support: int
    billing: int

    async def receive(self, raw: bytes, inbox: int | None = None) -> Ingested:
        """Parse and ingest one email, as the worker does with what the poller emitted."""
        inbox_id = inbox or self.support
        message = to_inbound(parse_email(raw), inbox_id=inbox_id, settings=SETTINGS)
        return await ingest(self.ctx, message)

    async def count(self, model: type, *where: object) -> int:
        async with self.ctx.db.read() as session:
            return int((await session.exec(
                select(func.count()).select_from(model).where(*where))).one())

    async def sent(self, conversation_id: int, external_id: str) -> int:
        """Record an agent reply that left with this Message-ID."""
        async with self.ctx.db.write() as session:
            row = Message(conversation_id=conversation_id, inbox_id=self.support,
                          direction="out", text="our answer", status="sent",
                          external_id=external_id, idempotency_key=external_id)
            session.add(row)
            await session.flush()
            assert row.id is not None
            return row.id


@pytest.fixture
async def room(settings: Settings) -> AsyncIterator[Mailroom]:
    db = Database(settings.sqlalchemy_url)
    bus = build_bus(settings)
    await bus.start()
    async with db.write() as session:
        support = await create_inbox(session, name="Support", channel="email", settings=SETTINGS)
        billing = await create_inbox(session, name="Billing", channel="email", settings=SETTINGS)
        assert support.id and billing.id
        ids = support.id, billing.id
    try:
        yield Mailroom(InboxContext(settings=settings, db=db, bus=bus), *ids)
    finally:
        await bus.close()
        await db.close()


def mail(message_id: str | None, sender: str = "ada@example.com", *, subject: str = "Help",
         in_reply_to: str = "", references: str = "", to: str = "support@acme.test",
         extra: str = "", body: str = "hello") -> bytes:
    """A plain email with the given threading headers."""
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}"]
    if message_id:
        lines.append(f"Message-ID: <{message_id}>")
    if in_reply_to:
        lines.append(f"In-Reply-To: {in_reply_to}")
    if references:
        lines.append(f"References: {references}")
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + f"\r\n\r\n{body}\r\n").encode()


async def test_reply_fetched_before_its_parent_ends_in_one_conversation(room: Mailroom) -> None:
    # Bea's reply (cc'd colleague) is fetched before Ada's question it answers.
    reply = await room.receive(mail("r1@b.example", "bea@b.example", subject="Re: Help",
                                    in_reply_to="<q1@a.example>", references="<q1@a.example>"))
    question = await room.receive(mail("q1@a.example", "ada@a.example"))
    follow_up = await room.receive(mail("r2@a.example", "ada@a.example", subject="Re: Help",
                                        references="<q1@a.example> <r1@b.example>"))
    assert reply.conversation_id == question.conversation_id == follow_up.conversation_id
    assert await room.count(Conversation) == 1


async def test_any_known_id_in_the_chain_finds_the_conversation(room: Mailroom) -> None:
    first = await room.receive(mail("q@c.example", "cid@c.example"))
    assert first.conversation_id is not None
    await room.sent(first.conversation_id, "agent-1@acme.test")
    # The customer's client dropped the first id and points at our reply only; another
    # writes several In-Reply-To values of which one is unknown.
    via_ours = await room.receive(mail("c2@c.example", "other@c.example",
                                       in_reply_to="<agent-1@acme.test>"))
    several = await room.receive(mail("c3@c.example", "third@c.example",
                                      in_reply_to="<unknown@x.example> <agent-1@acme.test>"))
    assert via_ours.conversation_id == several.conversation_id == first.conversation_id


async def test_reply_token_threads_mail_whose_client_dropped_the_headers(room: Mailroom) -> None:
    first = await room.receive(mail("t1@d.example", "dan@d.example"))
    assert first.conversation_id is not None
    token = reply_token("s3cret", room.support, first.conversation_id)
    again = await room.receive(mail("t2@d.example", "dan.private@d.example", subject="new",
                                    to=f"reply+{token}@reply.acme.test"))
    assert again.conversation_id == first.conversation_id
    forged = await room.receive(mail("t3@d.example", "eve@d.example",
                                     to=f"reply+{first.conversation_id}.00@reply.acme.test"))
    assert forged.conversation_id != first.conversation_id


async def test_same_email_to_two_inboxes_is_one_conversation_in_each(room: Mailroom) -> None:
    raw = mail("both@e.example", "erin@e.example", to="support@acme.test, billing@acme.test")
    for _ in range(2):  # fetched twice from each mailbox: still one message each
        in_support = await room.receive(raw, room.support)
        in_billing = await room.receive(raw, room.billing)
    assert in_support.duplicate and in_billing.duplicate
    assert await room.count(Conversation, Conversation.inbox_id == room.support) == 1
    assert await room.count(Conversation, Conversation.inbox_id == room.billing) == 1
    assert await room.count(Message, Message.external_id == "both@e.example") == 2


async def test_machine_mail_never_opens_or_reopens_a_conversation(room: Mailroom) -> None:
    auto = (FIXTURES / "auto_reply.eml").read_bytes()
    alone = await room.receive(auto)
    assert alone.suppressed and alone.conversation_id is None
    assert await room.count(Conversation) == 0 and await room.count(Contact) == 0

    first = await room.receive(mail("f1@f.example", "ada.lovelace@gmail.example"))
    assert first.conversation_id is not None
    await room.sent(first.conversation_id, "idem-agent-2@support.acme.test")
    async with room.ctx.db.write() as session:
        conversation = await session.get_one(Conversation, first.conversation_id)
        conversation.status, conversation.resolved_at = "resolved", utcnow()
        conversation.unread_count = 0
        session.add(conversation)
    # The out-of-office answer to our reply is kept in the thread for the agent to see,
    # but the resolved conversation stays resolved and nothing counts as unread.
    kept = await room.receive(auto.replace(b"ooo-0001", b"ooo-0002"))
    assert kept.conversation_id == first.conversation_id and not kept.suppressed
    async with room.ctx.db.read() as session:
        conversation = await session.get_one(Conversation, first.conversation_id)
        assert (conversation.status, conversation.unread_count) == ("resolved", 0)


async def test_a_bounce_marks_our_message_failed_and_opens_nothing(room: Mailroom) -> None:
    first = await room.receive(mail("g1@g.example", "nobody@gone.example"))
    assert first.conversation_id is not None
    sent = await room.sent(first.conversation_id, "idem-bounced-1@acme.test")
    bounce = await room.receive((FIXTURES / "bounce_dsn.eml").read_bytes())
    assert bounce.conversation_id == first.conversation_id  # shown where the reply went
    async with room.ctx.db.read() as session:
        row = await session.get_one(Message, sent)
        assert row.status == "failed"
        assert row.status_reason is not None and "550 5.1.1" in row.status_reason
    assert await room.count(Conversation) == 1
    # A bounce of something we never sent opens nothing either.
    stray = (FIXTURES / "bounce_dsn.eml").read_bytes().replace(b"idem-bounced-1", b"unknown")
    assert (await room.receive(stray.replace(b"dsn-0001", b"dsn-0002"))).suppressed
    assert await room.count(Conversation) == 1


async def test_fixture_shapes_thread_and_deduplicate(room: Mailroom) -> None:
    """Every real-world fixture ingests once; replays are duplicates; nothing splits."""
    names = sorted(p.name for p in FIXTURES.glob("*.eml")
                   if not p.name.startswith(("invalid", "auto", "bounce")))
    for name in names:
        assert not (await room.receive((FIXTURES / name).read_bytes())).duplicate, name
    for name in names:
        assert (await room.receive((FIXTURES / name).read_bytes())).duplicate, name
    assert await room.count(Message) == len(names)


def _message(inbox_id: int, external_id: str, **fields: object) -> InboundMessage:
    from hub.identity import email_identity

    return InboundMessage(channel="email", inbox_id=inbox_id, external_id=external_id,
                          sender=email_identity("zed@z.example"), text="x", **fields)  # type: ignore[arg-type]


async def test_thread_keys_already_held_stay_with_their_conversation(room: Mailroom) -> None:
    """A reference claimed by one conversation is not stolen by a later one."""
    one = await ingest(room.ctx, _message(room.support, "k1", references=("root",)))
    other = await ingest(room.ctx, _message(room.billing, "k2", references=("root",)))
    again = await ingest(room.ctx, _message(room.support, "root"))
    assert again.conversation_id == one.conversation_id != other.conversation_id


async def test_a_reply_and_its_parent_ingested_at_once_share_one_conversation(
    room: Mailroom,
) -> None:
    """Two workers handling a reply and its parent at the same moment must not split them."""
    import asyncio

    pairs = 20
    raws = []
    for n in range(pairs):
        raws.append(mail(f"p{n}@a.example", f"cust{n}@a.example"))
        raws.append(mail(f"r{n}@b.example", f"colleague{n}@b.example",
                         in_reply_to=f"<p{n}@a.example>", references=f"<p{n}@a.example>"))
    results = await asyncio.gather(*(room.receive(raw) for raw in raws))
    for n in range(pairs):
        parent, reply = results[2 * n], results[2 * n + 1]
        assert parent.conversation_id == reply.conversation_id, n
    assert await room.count(Conversation) == pairs


async def test_a_batch_threads_like_one_by_one_and_a_duplicate_stores_nothing_twice(
    room: Mailroom,
) -> None:
    def inbound(raw: bytes, inbox: int | None = None) -> InboundMessage:
        return to_inbound(parse_email(raw), inbox_id=inbox or room.support, settings=SETTINGS)

    question = inbound(mail("bq@a.example", "ada@a.example"))
    reply = inbound(mail("br@b.example", "bea@b.example", subject="Re: Help",
                         in_reply_to="<bq@a.example>", references="<bq@a.example>"))
    other = inbound(mail("bo@c.example", "cid@c.example"))
    # The reply comes first in the batch, its parent after it: one conversation all the same.
    first = await ingest_batch(room.ctx, [reply, question, other])
    assert all(isinstance(r, Ingested) and not r.duplicate for r in first)
    results = [r for r in first if isinstance(r, Ingested)]
    assert results[0].conversation_id == results[1].conversation_id != results[2].conversation_id

    # A batch holding a message stored before is done again one by one: the duplicate says so,
    # the new one is stored, and a message for an unknown inbox comes back as its error.
    late = inbound(mail("bl@a.example", "ada@a.example", subject="Re: Help",
                        references="<bq@a.example>"))
    lost = inbound(mail("bx@d.example", "dan@d.example"), inbox=999_999)
    second = await ingest_batch(room.ctx, [late, question, lost])
    assert isinstance(second[0], Ingested) and not second[0].duplicate
    assert second[0].conversation_id == results[0].conversation_id
    assert isinstance(second[1], Ingested) and second[1].duplicate
    assert second[1].message_id == results[1].message_id
    assert isinstance(second[2], UnknownInbox)
    assert await room.count(Message) == 4
    assert await room.count(Conversation) == 2
