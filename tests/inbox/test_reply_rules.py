"""The channel's rules live in the reply action: a caller without HTTP gets the same refusals.

The API, the agent UI, a future automation rule and a script all call `inbox.replies.reply`;
each must be held to the channel's reply window, templates and attachments the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from channels.twilio import WhatsAppChannel
from config import Settings
from hub.app import Runtime
from hub.types import Identity, InboundMessage, utcnow
from inbox.agents import Principal, add_to_inbox, create_agent
from inbox.context import InboxContext
from inbox.errors import Refused, WindowClosed
from inbox.inboxes import create_inbox
from inbox.ingest import Ingested, ingest_batch
from inbox.models import Message
from inbox.replies import reply


@dataclass
class Desk:
    ctx: InboxContext
    agent: Principal
    whatsapp: int
    api: int


@pytest.fixture
async def desk(settings: Settings) -> AsyncIterator[Desk]:
    # The context a process builds at start: its channel profiles come from the adapters.
    runtime = Runtime.build(settings)
    await runtime.start()
    async with runtime.db.write() as session:
        whatsapp = await create_inbox(session, name="WhatsApp", channel="whatsapp",
                                      settings={})
        api = await create_inbox(session, name="API", channel="api", settings={"secret": "s"})
        agent = await create_agent(session, email="ann@example.com", name="Ann",
                                   password="correct horse battery")
        assert whatsapp.id and api.id and agent.id
        for inbox_id in (whatsapp.id, api.id):
            await add_to_inbox(session, agent_id=agent.id, inbox_id=inbox_id)
        ids = whatsapp.id, api.id, agent.id
    principal = Principal(agent_id=ids[2], role="agent", inbox_ids=frozenset(ids[:2]),
                          csrf_token="")
    try:
        yield Desk(runtime.inbox, principal, ids[0], ids[1])
    finally:
        await runtime.close()


async def _conversation(desk: Desk, inbox_id: int, channel: str, kind: str) -> int:
    [done] = await ingest_batch(desk.ctx, [InboundMessage(
        channel=channel, inbox_id=inbox_id, external_id=f"{channel}-1",
        sender=Identity(kind=kind, value="+15550100" if kind == "phone" else "ada"),
        text="Where is my order?")])
    assert isinstance(done, Ingested) and done.conversation_id is not None
    return done.conversation_id


async def _age_inbound(desk: Desk, hours: int) -> None:
    async with desk.ctx.db.write() as session:
        await session.exec(update(Message).where(col(Message.direction) == "in")
                           .values(accepted_at=utcnow() - timedelta(hours=hours)))


async def _stored_replies(desk: Desk, conversation_id: int) -> int:
    async with desk.ctx.db.read() as session:
        return len(list(await session.exec(select(Message).where(
            Message.conversation_id == conversation_id, Message.direction == "out"))))


async def test_the_reply_action_refuses_free_text_outside_the_window_like_the_api(
    desk: Desk,
) -> None:
    conversation = await _conversation(desk, desk.whatsapp, "whatsapp", "phone")
    # WhatsApp carries one file per message, whoever sends.
    with pytest.raises(Refused, match=r"^a WhatsApp message carries at most 1 attachment\(s\)$"):
        await reply(desk.ctx, desk.agent, conversation_id=conversation, text="two files",
                    attachment_ids=["f-1", "f-2"])
    # Inside the window a free-text reply goes out.
    await reply(desk.ctx, desk.agent, conversation_id=conversation, text="On its way!")
    await _age_inbound(desk, hours=25)

    with pytest.raises(WindowClosed) as refused:
        await reply(desk.ctx, desk.agent, conversation_id=conversation, text="Anything else?")
    # The API answers 422 reply_window_closed with exactly this text (tests/channels).
    assert str(refused.value) == (
        "the WhatsApp 24-hour window is closed; send an approved template")
    assert refused.value.hours == WhatsAppChannel.capabilities.reply_window_hours == 24
    assert await _stored_replies(desk, conversation) == 1  # nothing stored for the refusal

    # A note and an approved template still may.
    await reply(desk.ctx, desk.agent, conversation_id=conversation, text="use a template",
                kind="note")
    sent = await reply(desk.ctx, desk.agent, conversation_id=conversation, text="",
                       template="HX123", template_variables={"1": "Ada"})
    assert sent.text.startswith("[template HX123]")


async def test_the_reply_action_holds_every_channel_to_its_capabilities(desk: Desk) -> None:
    conversation = await _conversation(desk, desk.api, "api", "api")
    with pytest.raises(Refused, match=r"^API conversations take no templates$"):
        await reply(desk.ctx, desk.agent, conversation_id=conversation, text="",
                    template="HX123")
    # No window on a channel without one, however old the customer's message.
    await _age_inbound(desk, hours=24 * 30)
    await reply(desk.ctx, desk.agent, conversation_id=conversation, text="Still here")
    assert await _stored_replies(desk, conversation) == 1
