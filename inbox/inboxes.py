"""Inboxes: configured channel accounts, and who belongs to them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.events import InboxChanged
from hub.types import utcnow
from inbox.agents import Principal
from inbox.context import InboxContext
from inbox.errors import Forbidden, NotFound, Refused
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
    if not principal.is_admin:
        raise Forbidden("only admins change inboxes")
    async with ctx.db.write() as session:
        inbox = await session.get(Inbox, inbox_id)
        if inbox is None:
            raise NotFound(f"inbox {inbox_id} not found")
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


async def inbox_settings(session: AsyncSession, inbox_id: int) -> tuple[str, dict[str, Any]] | None:
    """The channel and settings of an inbox, or None when it does not exist."""
    inbox = await session.get(Inbox, inbox_id)
    return None if inbox is None else (inbox.channel, dict(inbox.settings))


async def inboxes_of_channel(session: AsyncSession, channel: str) -> list[Inbox]:
    """Every inbox of one channel, oldest first."""
    return list(await session.exec(
        select(Inbox).where(Inbox.channel == channel).order_by(col(Inbox.id))
    ))
