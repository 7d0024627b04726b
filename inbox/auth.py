"""Logging in and out, and changing a password: the actions behind the API and the forms.

A login is rate-limited (inbox/login_limits.py) and, for an agent with two-factor
authentication, needs a fresh code (inbox/totp.py). Logging out and changing a password
publish `agent.updated` to the agent alone, so their open websockets re-check their
session at once instead of at the next periodic check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hub.types import utcnow
from inbox.agent_events import agent_updated
from inbox.agents import Principal, authenticate, change_password, end_session, start_session
from inbox.context import InboxContext
from inbox.login_limits import begin_attempt, forget_attempt, login_keys
from inbox.models import Agent
from inbox.outbox import stage_events
from inbox.totp import use_code


class LoginRefused(Exception):
    """A login that did not succeed: a machine-readable code, a message, maybe a wait."""

    def __init__(self, code: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class LoggedIn:
    """A new session: the agent, the token for the cookie and the CSRF token."""

    agent: Agent
    token: str
    csrf_token: str


def _wait_text(seconds: int) -> str:
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


async def log_in(
    ctx: InboxContext, *, email: str, password: str, totp_code: str | None, address: str
) -> LoggedIn:
    """Check the credentials (and the two-factor code) and open a session; LoginRefused if not."""
    db = ctx.db
    keys = login_keys(email, address)
    async with db.write() as session:
        wait, attempt = await begin_attempt(session, keys, now=utcnow())
    if wait is not None:
        raise LoginRefused(
            "rate_limited", f"too many failed logins; try again in {_wait_text(wait)}, or "
            "ask an admin to unlock your account",
            retry_after=wait,
        )
    async with db.read() as session:
        agent = await authenticate(session, email=email, password=password)
    if agent is None or agent.id is None:
        raise LoginRefused("invalid_credentials", "wrong email or password")
    code = (totp_code or "").strip()
    opened: tuple[str, str] | None = None
    async with db.write() as session:
        if agent.totp_enabled and not code:
            # The password was right: not a failed guess, but no session without the code.
            await forget_attempt(session, keys, attempt, succeeded=False)
        elif agent.totp_enabled and not await use_code(session, agent, code):
            pass  # a wrong or replayed code counts as a failed login
        else:
            await forget_attempt(session, keys, attempt, succeeded=True)
            opened = await start_session(
                session, agent_id=agent.id, days=ctx.settings.session_days
            )
    if opened is None and not code:
        raise LoginRefused("totp_required", "enter the code from your authenticator app")
    if opened is None:
        raise LoginRefused("invalid_totp", "that two-factor code is wrong or was already used")
    return LoggedIn(agent=agent, token=opened[0], csrf_token=opened[1])


async def log_out(ctx: InboxContext, principal: Principal, token: str) -> None:
    """End this session; the agent's sockets on it close at once."""
    async with ctx.db.write() as session:
        await end_session(session, token)
        agent = await session.get_one(Agent, principal.agent_id)
        event = agent_updated(agent, ["logged_out"], audience=[principal.agent_id],
                              presence_seconds=ctx.settings.presence_seconds)
        stage_events(session, [event])


async def update_password(
    ctx: InboxContext, principal: Principal, *, current: str, new: str, keep_token_hash: str
) -> None:
    """Change the agent's password; their other sessions (and sockets) end at once."""
    async with ctx.db.write() as session:
        await change_password(session, agent_id=principal.agent_id, current=current, new=new,
                              keep_token_hash=keep_token_hash)
        agent = await session.get_one(Agent, principal.agent_id)
        event = agent_updated(agent, ["password"], audience=[principal.agent_id],
                              presence_seconds=ctx.settings.presence_seconds)
        stage_events(session, [event])
