"""Agents, passwords and sessions.

Passwords are hashed with argon2-cffi (Argon2id, the Password Hashing Competition winner,
maintained and with safe defaults). A session token lives in the browser's cookie; only
its SHA-256 is stored, so a database leak does not hand out sessions.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, delete, literal_column, null, true, union_all, update
from sqlalchemy import select as core_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.types import utcnow
from inbox.models import (
    ROLES,
    TZ,
    Agent,
    AgentSession,
    Inbox,
    InboxMember,
    TeamInbox,
    TeamMember,
    table_of,
)

_hasher = PasswordHasher()
# Verifying against this keeps the time of a login with an unknown email like a real one.
_DUMMY_HASH = _hasher.hash("switchboard-dummy-password")
MIN_PASSWORD = 8


class AgentError(ValueError):
    """A request about agents that cannot be carried out, with a message for the user."""


@dataclass(frozen=True)
class Principal:
    """The agent behind a request, with what they may see."""

    agent_id: int
    role: str
    inbox_ids: frozenset[int]
    csrf_token: str
    team_ids: frozenset[int] = frozenset()

    @property
    def is_admin(self) -> bool:
        """Admins see and change everything."""
        return self.role == "admin"

    @property
    def is_lead(self) -> bool:
        """Team leads (and admins) reassign, set rules and capacities, read reports."""
        return self.role in ("admin", "lead")


def hash_password(password: str) -> str:
    """An Argon2id hash of a password."""
    if len(password) < MIN_PASSWORD:
        raise AgentError(f"a password needs at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def token_hash(token: str) -> str:
    """What we store of a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


async def create_agent(
    session: AsyncSession, *, email: str, name: str, password: str, role: str = "agent"
) -> Agent:
    """Add an agent; the email must be new."""
    email = email.strip().lower()
    if "@" not in email:
        raise AgentError("an agent needs a valid email address")
    if role not in ROLES:
        raise AgentError(f"role must be one of {', '.join(ROLES)}")
    if (await session.exec(select(Agent).where(Agent.email == email))).first():
        raise AgentError(f"an agent with email {email} already exists")
    agent = Agent(email=email, name=name.strip() or email, password_hash=hash_password(password),
                  role=role)
    session.add(agent)
    await session.flush()
    return agent


async def authenticate(session: AsyncSession, *, email: str, password: str) -> Agent | None:
    """The active agent with these credentials, or None."""
    agent = (
        await session.exec(select(Agent).where(Agent.email == email.strip().lower()))
    ).first()
    try:
        _hasher.verify(agent.password_hash if agent else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if agent is None or not agent.is_active:
        return None
    return agent


async def start_session(session: AsyncSession, *, agent_id: int, days: int) -> tuple[str, str]:
    """Open a session; return (token for the cookie, CSRF token)."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    session.add(
        AgentSession(
            token_hash=token_hash(token),
            agent_id=agent_id,
            csrf_token=csrf,
            expires_at=utcnow() + timedelta(days=days),
        )
    )
    await session.flush()
    return token, csrf


async def end_session(session: AsyncSession, token: str) -> None:
    """Log out: the token stops working at once."""
    await session.exec(
        delete(AgentSession).where(col(AgentSession.token_hash) == token_hash(token))
    )


def verify_password(agent: Agent, password: str, *, wrong: str = "the password is wrong") -> None:
    """Check an agent's password; AgentError(`wrong`) when it does not match."""
    try:
        _hasher.verify(agent.password_hash, password)
    except (VerificationError, InvalidHashError):
        raise AgentError(wrong) from None


async def change_password(
    session: AsyncSession, *, agent_id: int, current: str, new: str, keep_token_hash: str | None
) -> None:
    """Set a new password after checking the current one; every other session ends."""
    agent = await session.get(Agent, agent_id)
    if agent is None or not agent.is_active:
        raise AgentError("no such agent")
    verify_password(agent, current, wrong="the current password is wrong")
    agent.password_hash = hash_password(new)
    agent.password_changed_at = utcnow()
    session.add(agent)
    others = delete(AgentSession).where(col(AgentSession.agent_id) == agent_id)
    if keep_token_hash is not None:
        others = others.where(col(AgentSession.token_hash) != keep_token_hash)
    await session.exec(others)
    await session.flush()


async def principal_for(session: AsyncSession, token: str) -> Principal | None:
    """The agent of a live session token, with their inboxes, or None."""
    return (await principals_for(session, [token])).get(token)


SESSIONS_AT_ONCE = 1000  # tokens looked up in one statement


async def principals_for(session: AsyncSession, tokens: Collection[str]) -> dict[str, Principal]:
    """The principals of the live session tokens among `tokens`, in one statement (one more
    per SESSIONS_AT_ONCE tokens) however many there are: a request pays one round trip for
    its agent, and the periodic check of every websocket of a process about the same."""
    hashes = {token_hash(token): token for token in tokens}
    ordered = sorted(hashes)
    now = utcnow()
    rows: list[Any] = []
    for start in range(0, len(ordered), SESSIONS_AT_ONCE):
        rows += await session.exec(
            _PRINCIPALS, params={"hashes": ordered[start:start + SESSIONS_AT_ONCE], "now": now})
    live = {hashed: (number, role, csrf)
            for hashed, kind, number, role, csrf in rows if kind == _SESSION}
    seen: dict[tuple[str, int], set[int]] = {}
    for hashed, kind, number, _, _ in rows:
        if kind != _SESSION:
            seen.setdefault((hashed, kind), set()).add(number)
    return {
        hashes[hashed]: Principal(
            agent_id=agent_id, role=role, csrf_token=csrf,
            inbox_ids=frozenset(seen.get((hashed, _INBOX), ())),
            team_ids=frozenset(seen.get((hashed, _TEAM), ())))
        for hashed, (agent_id, role, csrf) in live.items()
    }


_SESSION, _INBOX, _TEAM = 0, 1, 2


def _principals_statement() -> Any:
    """The live sessions among the bound token hashes, each with its agent's role, and then
    one row per inbox the agent sees and per team they are in:
    (token hash, kind, number, role, csrf token)."""
    sessions, agents, teams = table_of(AgentSession), table_of(Agent), table_of(TeamMember)
    live = (
        core_select(sessions.c.token_hash, sessions.c.agent_id, sessions.c.csrf_token,
                    agents.c.role)
        .join(agents, agents.c.id == sessions.c.agent_id)
        .where(sessions.c.token_hash.in_(bindparam("hashes", expanding=True)),
               sessions.c.expires_at >= bindparam("now", type_=TZ),
               agents.c.is_active)
        .cte("live")
    )
    return union_all(
        core_select(live.c.token_hash, _kind(_SESSION), live.c.agent_id, live.c.role,
                    live.c.csrf_token),
        *(leg.add_columns(null(), null())
          for leg in _seen_inboxes(live, [live.c.token_hash, _kind(_INBOX)])),
        core_select(live.c.token_hash, _kind(_TEAM), teams.c.team_id, null(), null())
        .select_from(live.join(teams, teams.c.agent_id == live.c.agent_id)),
    )


def _kind(value: int) -> Any:
    return literal_column(str(value))


def _seen_inboxes(agents: Any, leading: Sequence[Any] = ()) -> list[Any]:
    """The rule of who sees what: SELECTs of (*leading, inbox id) for each inbox the
    `agents` rows (columns agent_id, role) see: every inbox for an admin; for anyone else
    their own and their teams'."""
    members, teams = table_of(InboxMember), table_of(TeamMember)
    team_inboxes, inboxes = table_of(TeamInbox), table_of(Inbox)
    admin = agents.c.role == "admin"
    return [
        core_select(*leading, inboxes.c.id)
        .select_from(agents.join(inboxes, true())).where(admin),
        core_select(*leading, members.c.inbox_id)
        .select_from(agents.join(members, members.c.agent_id == agents.c.agent_id))
        .where(~admin),
        core_select(*leading, team_inboxes.c.inbox_id)
        .select_from(agents.join(teams, teams.c.agent_id == agents.c.agent_id)
                     .join(team_inboxes, team_inboxes.c.team_id == teams.c.team_id))
        .where(~admin),
    ]


_PRINCIPALS = _principals_statement()


async def agent_by_id(session: AsyncSession, agent_id: int) -> Agent:
    """An agent by id (the principal's own row: it exists while its session does)."""
    return await session.get_one(Agent, agent_id)


async def visible_inbox_ids(session: AsyncSession, agent: Agent) -> frozenset[int]:
    """The inboxes whose conversations the agent may see (every inbox for an admin; their
    own and their teams' for anyone else), in one statement."""
    agents = table_of(Agent)
    one = core_select(agents.c.id.label("agent_id"), agents.c.role).where(
        agents.c.id == agent.id).cte("agent")
    seen: Any = union_all(*_seen_inboxes(one))
    return frozenset(inbox_id for inbox_id, in await session.exec(seen))


async def touch_presence(session: AsyncSession, agent_ids: list[int]) -> None:
    """Mark agents as seen now (they have a live connection)."""
    if agent_ids:
        await session.exec(
            update(Agent).where(col(Agent.id).in_(agent_ids)).values(last_seen_at=utcnow())
        )


async def add_to_inbox(session: AsyncSession, *, agent_id: int, inbox_id: int) -> None:
    """Make an agent a member of an inbox (idempotent)."""
    if await session.get(InboxMember, (inbox_id, agent_id)) is None:
        session.add(InboxMember(inbox_id=inbox_id, agent_id=agent_id))
        await session.flush()


async def add_to_team(session: AsyncSession, *, agent_id: int, team_id: int) -> None:
    """Make an agent a member of a team (idempotent)."""
    if await session.get(TeamMember, (team_id, agent_id)) is None:
        session.add(TeamMember(team_id=team_id, agent_id=agent_id))
        await session.flush()
