"""Invitations: single-use, expiring links that let someone become an agent.

The link carries a random token; like a session token only its SHA-256 is stored, so the
table cannot be turned into working links. Accepting creates the agent with the role,
inboxes and teams the admin chose, and logs them in.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.types import RowId, utcnow
from inbox.agent_events import agent_event
from inbox.agents import AgentError, Principal, create_agent, start_session, token_hash
from inbox.auth import LoggedIn
from inbox.context import InboxContext
from inbox.errors import NotFound, Refused, admins_only
from inbox.memberships import check_ids, replace_links
from inbox.models import Agent, Inbox, InboxMember, Invitation, Team, TeamMember
from inbox.outbox import stage_events

INVITE_PATH = "/invite/"


class InvitationGone(Exception):
    """The link was used, revoked or has expired: a message for the person who opened it."""


class InvitationCreate(BaseModel):
    """Who to invite, as what, to which inboxes and teams, for how long."""

    model_config = ConfigDict(extra="forbid", strict=True)

    email: str = Field(min_length=3, max_length=320)
    name: str = Field(default="", max_length=200)
    role: Literal["admin", "lead", "agent"] = "agent"
    inbox_ids: list[RowId] = Field(default_factory=list, max_length=1000)
    team_ids: list[RowId] = Field(default_factory=list, max_length=1000)
    expires_in_hours: int = Field(default=72, ge=1, le=720)


class InvitationView(BaseModel):
    """A pending invitation (never its link: that is shown once, when it is made)."""

    id: int
    email: str
    name: str
    role: str
    inbox_ids: list[int]
    team_ids: list[int]
    invited_by: int | None
    expires_at: datetime
    created_at: datetime


class InvitationCreated(InvitationView):
    """A new invitation with its link, shown this once."""

    url: str


def _view(row: Invitation) -> InvitationView:
    assert row.id is not None
    return InvitationView(
        id=row.id, email=row.email, name=row.name, role=row.role, inbox_ids=row.inbox_ids,
        team_ids=row.team_ids, invited_by=row.invited_by, expires_at=row.expires_at,
        created_at=row.created_at,
    )


def _admin_only(principal: Principal) -> None:
    admins_only(principal, "invite agents")


async def create_invitation(
    ctx: InboxContext, principal: Principal, body: InvitationCreate
) -> InvitationCreated:
    """Make an invitation link (admins only)."""
    _admin_only(principal)
    email = body.email.strip().lower()
    if "@" not in email or email.startswith("@") or email.endswith("@"):
        raise Refused("email: not a valid email address")
    token = secrets.token_urlsafe(32)
    async with ctx.db.write() as session:
        if (await session.exec(select(Agent.id).where(Agent.email == email))).first():
            raise Refused(f"email: an agent with email {email} already exists")
        row = Invitation(
            token_hash=token_hash(token), email=email, name=body.name.strip(), role=body.role,
            inbox_ids=await check_ids(session, Inbox, body.inbox_ids),
            team_ids=await check_ids(session, Team, body.team_ids),
            invited_by=principal.agent_id,
            expires_at=utcnow() + timedelta(hours=body.expires_in_hours),
        )
        session.add(row)
        await session.flush()
        view = _view(row)
    url = ctx.settings.base_url.rstrip("/") + INVITE_PATH + token
    return InvitationCreated(**view.model_dump(), url=url)


async def pending_invitations(session: AsyncSession) -> list[InvitationView]:
    """Invitations not yet accepted, revoked or expired, newest first."""
    rows = await session.exec(
        select(Invitation)
        .where(col(Invitation.accepted_at).is_(None), col(Invitation.revoked_at).is_(None),
               col(Invitation.expires_at) > utcnow())
        .order_by(col(Invitation.created_at).desc(), col(Invitation.id).desc())
    )
    return [_view(row) for row in rows]


async def revoke_invitation(ctx: InboxContext, principal: Principal, invitation_id: int) -> None:
    """Make an invitation's link stop working (admins only)."""
    _admin_only(principal)
    async with ctx.db.write() as session:
        row = await session.get(Invitation, invitation_id)
        if row is None or row.revoked_at is not None:
            raise NotFound(f"invitation {invitation_id} not found")
        if row.accepted_at is not None:
            raise Refused("this invitation was already accepted")
        row.revoked_at = utcnow()
        session.add(row)


def _usable(row: Invitation | None, now: datetime) -> Invitation:
    if row is None:
        raise NotFound("this invitation link is not valid; ask an admin for a new one")
    if row.accepted_at is not None:
        raise InvitationGone("this invitation was already used; log in instead")
    if row.revoked_at is not None:
        raise InvitationGone("this invitation was withdrawn; ask an admin for a new one")
    if row.expires_at <= now:
        raise InvitationGone("this invitation has expired; ask an admin for a new one")
    return row


async def open_invitation(session: AsyncSession, token: str) -> InvitationView:
    """The invitation a link points to, if it can still be accepted."""
    row = (await session.exec(
        select(Invitation).where(Invitation.token_hash == token_hash(token))
    )).first()
    return _view(_usable(row, utcnow()))


async def accept_invitation(
    ctx: InboxContext, *, token: str, name: str, password: str
) -> LoggedIn:
    """Create the invited agent, with their inboxes and teams, and log them in."""
    now = utcnow()
    async with ctx.db.write() as session:
        row = _usable((await session.exec(
            select(Invitation).where(Invitation.token_hash == token_hash(token))
        )).first(), now)
        # Claim the invitation with a conditional update: of two tabs accepting the same
        # link at once, exactly one gets it.
        claimed = await session.exec(
            update(Invitation)
            .where(col(Invitation.id) == row.id, col(Invitation.accepted_at).is_(None),
                   col(Invitation.revoked_at).is_(None))
            .values(accepted_at=now)
        )
        if claimed.rowcount != 1:
            raise InvitationGone("this invitation was already used; log in instead")
        try:
            agent = await create_agent(session, email=row.email, name=name.strip() or row.name,
                                       password=password, role=row.role)
        except AgentError as exc:
            raise Refused(str(exc)) from None
        assert agent.id is not None
        # Inboxes or teams deleted since the invitation was made are left out.
        inboxes = set(await session.exec(
            select(Inbox.id).where(col(Inbox.id).in_(row.inbox_ids))))
        teams = set(await session.exec(select(Team.id).where(col(Team.id).in_(row.team_ids))))
        await replace_links(session, InboxMember, owner=("agent_id", agent.id),
                            other="inbox_id", wanted=(i for i in inboxes if i is not None))
        await replace_links(session, TeamMember, owner=("agent_id", agent.id),
                            other="team_id", wanted=(t for t in teams if t is not None))
        session_token, csrf = await start_session(
            session, agent_id=agent.id, days=ctx.settings.session_days)
        event = await agent_event(session, agent, ["created"],
                                  presence_seconds=ctx.settings.presence_seconds)
        stage_events(session, [event])
    return LoggedIn(agent=agent, token=session_token, csrf_token=csrf)
