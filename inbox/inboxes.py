"""Inboxes: configured channel accounts, and who belongs to them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.events import InboxChanged
from hub.secrets import SecretBox
from hub.types import utcnow
from inbox.agents import Principal
from inbox.context import InboxContext
from inbox.db import Database
from inbox.errors import Refused, admins_only, existing
from inbox.models import Agent, Conversation, Inbox, InboxMember, Invitation
from inbox.outbox import stage_events


class InboxError(ValueError):
    """A request about inboxes that cannot be carried out, with a message for the user."""


async def create_inbox(
    session: AsyncSession,
    *,
    name: str,
    channel: str,
    settings: dict[str, Any],
    auto_assign: bool = True,
) -> Inbox:
    """Add an inbox; the caller has validated the channel's settings."""
    if not name.strip():
        raise InboxError("an inbox needs a name")
    inbox = Inbox(name=name.strip(), channel=channel, settings=settings, auto_assign=auto_assign)
    session.add(inbox)
    await session.flush()
    assert inbox.id is not None
    stage_events(session, [InboxChanged(inbox_id=None, at=utcnow(), changed_inbox_id=inbox.id)])
    return inbox


async def update_inbox(
    ctx: InboxContext,
    principal: Principal,
    inbox_id: int,
    *,
    name: str | None = None,
    settings: dict[str, Any] | None = None,
) -> Inbox:
    """Rename an inbox or replace its settings (admins; the caller has validated the channel's
    settings). Every process reads the inbox again."""
    admins_only(principal, "change inboxes")
    async with ctx.db.write() as session:
        inbox = await existing(session, Inbox, inbox_id, "inbox")
        if name is not None:
            if not name.strip():
                raise Refused("name: may not be blank")
            inbox.name = name.strip()[:200]
        if settings is not None:
            inbox.settings = dict(settings)
        session.add(inbox)
        await session.flush()
        stage_events(session, [InboxChanged(inbox_id=None, at=utcnow(), changed_inbox_id=inbox_id)])
    ctx.inboxes.forget(inbox_id)
    return inbox


async def disconnect_inbox(ctx: InboxContext, principal: Principal, inbox_id: int) -> Inbox:
    """Delete an inbox as agents see it (admins): intake stops (webhooks answer 404, its
    poller stops, nothing more can be sent from it) and its conversations stay readable.
    Deleting it again changes nothing."""
    admins_only(principal, "delete inboxes")
    async with ctx.db.write() as session:
        inbox = await existing(session, Inbox, inbox_id, "inbox")
        if inbox.disconnected_at is None:
            inbox.disconnected_at = utcnow()
            session.add(inbox)
            await session.flush()
            stage_events(session, [InboxChanged(inbox_id=None, at=utcnow(),
                                                changed_inbox_id=inbox_id)])
    ctx.inboxes.forget(inbox_id)
    return inbox


async def discard_new_inbox(ctx: InboxContext, inbox_id: int) -> None:
    """Remove an inbox that was just created and never took a message (its provider refused
    to connect it): as if it had never been made."""
    async with ctx.db.write() as session:
        inbox = await session.get(Inbox, inbox_id)
        used = (await session.exec(select(Conversation.id).where(
            Conversation.inbox_id == inbox_id).limit(1))).first()
        if inbox is None or used is not None:
            return
        for member in await session.exec(select(InboxMember).where(
                InboxMember.inbox_id == inbox_id)):
            await session.delete(member)
        await session.delete(inbox)
        stage_events(session, [InboxChanged(inbox_id=None, at=utcnow(),
                                            changed_inbox_id=inbox_id)])
    ctx.inboxes.forget(inbox_id)


async def reseal_inboxes(
    db: Database, secrets: SecretBox, secret_settings: Mapping[str, Iterable[str]]
) -> int:
    """Seal every inbox's secrets again with the first key (and seal secrets stored in clear
    by an older Switchboard): what a key rotation runs. How many inboxes changed."""
    changed = 0
    async with db.write() as session:
        for inbox in await all_inboxes(session):
            resealed = secrets.reseal_settings(inbox.settings,
                                               secret_settings.get(inbox.channel, ()))
            if resealed is not None:
                inbox.settings = resealed
                session.add(inbox)
                changed += 1
    return changed


async def member_ids(session: AsyncSession, inbox_id: int) -> set[int]:
    """The ids of the agents who belong to an inbox."""
    return set(await session.exec(
        select(InboxMember.agent_id).where(InboxMember.inbox_id == inbox_id)))


async def member_counts(session: AsyncSession) -> dict[int, int]:
    """How many agents belong to each inbox."""
    rows = await session.exec(
        select(InboxMember.inbox_id, func.count()).group_by(col(InboxMember.inbox_id)))
    return dict(rows.all())


class SetupProgress(BaseModel):
    """What a new installation has done of its first steps (the first admin's checklist)."""

    inboxes: int
    widget_inboxes: int
    agents: int
    invitations: int
    conversations: int

    @property
    def done(self) -> bool:
        return bool(self.inboxes and self.widget_inboxes and (self.agents > 1 or self.invitations)
                    and self.conversations)


async def setup_progress(session: AsyncSession) -> SetupProgress:
    """Counts behind the first admin's checklist."""
    queries = {
        "inboxes": select(func.count()).select_from(Inbox),
        "widget_inboxes": select(func.count()).select_from(Inbox).where(
            Inbox.channel == "webchat"),
        "agents": select(func.count()).select_from(Agent).where(col(Agent.is_active)),
        "invitations": select(func.count()).select_from(Invitation).where(
            col(Invitation.accepted_at).is_(None), col(Invitation.revoked_at).is_(None)),
        # Whether there is any: counting a million conversations would be wasted work.
        "conversations": select(func.count()).select_from(
            select(Conversation.id).limit(1).subquery()),
    }
    return SetupProgress(**{name: (await session.exec(query)).one()
                            for name, query in queries.items()})


async def set_members(session: AsyncSession, *, inbox_id: int, agent_ids: list[int]) -> None:
    """Make exactly these agents the inbox's members."""
    found = set(
        await session.exec(select(Agent.id).where(col(Agent.id).in_(agent_ids)))
    )
    missing = sorted(set(agent_ids) - found)
    if missing:
        raise InboxError(f"no agent with id {missing[0]}")
    current = {
        m.agent_id: m
        for m in await session.exec(select(InboxMember).where(InboxMember.inbox_id == inbox_id))
    }
    for agent_id, member in current.items():
        if agent_id not in agent_ids:
            await session.delete(member)
    for agent_id in agent_ids:
        if agent_id not in current:
            session.add(InboxMember(inbox_id=inbox_id, agent_id=agent_id))
    await session.flush()


async def visible_inboxes(session: AsyncSession, principal: Principal) -> list[Inbox]:
    """The inboxes the principal may see, by id."""
    rows = await session.exec(
        select(Inbox).where(col(Inbox.id).in_(sorted(principal.inbox_ids))).order_by(col(Inbox.id))
    )
    return list(rows)


async def inbox_by_id(session: AsyncSession, inbox_id: int) -> Inbox | None:
    """An inbox by id, or None."""
    return await session.get(Inbox, inbox_id)


async def all_inboxes(session: AsyncSession) -> list[Inbox]:
    """Every inbox, oldest first."""
    return list(await session.exec(select(Inbox).order_by(col(Inbox.id))))


async def inbox_settings(
    session: AsyncSession, inbox_id: int, secrets: SecretBox
) -> tuple[str, dict[str, Any]] | None:
    """The channel and settings of an inbox, secrets opened, or None when it does not
    exist."""
    inbox = await session.get(Inbox, inbox_id)
    return None if inbox is None else (inbox.channel, secrets.open_settings(inbox.settings))


async def inboxes_of_channel(session: AsyncSession, channel: str) -> list[Inbox]:
    """Every inbox of one channel, oldest first."""
    return list(await session.exec(
        select(Inbox).where(Inbox.channel == channel).order_by(col(Inbox.id))
    ))
