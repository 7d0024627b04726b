"""Optional two-factor authentication with time-based one-time codes (TOTP, RFC 6238).

pyotp makes the secrets and the codes. A code is accepted for its own 30-second step and
one step either side (clock drift), and only once: the step of the last accepted code is
stored, and a code of that step or an earlier one is refused, so a code seen over someone's
shoulder cannot be used again. Secrets are never logged.
"""

from __future__ import annotations

from datetime import datetime

import pyotp
from sqlalchemy import or_, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.security import constant_time_equal
from hub.types import utcnow
from inbox.agents import AgentError, verify_password
from inbox.models import Agent

ISSUER = "Switchboard"
DRIFT_STEPS = 1


class TotpError(ValueError):
    """A two-factor request that cannot be carried out, with a message for the agent."""


def otpauth_uri(secret: str, email: str) -> str:
    """The otpauth:// URI an authenticator app scans (as a QR code) or takes typed in."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def matching_step(secret: str, code: str, *, now: datetime | None = None) -> int | None:
    """The time step whose code `code` is (within the drift allowance), or None."""
    code = "".join(code.split())
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now or utcnow())
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # Compare every candidate, so the time taken does not tell which one matched.
        if constant_time_equal(totp.generate_otp(step), code):
            found = step
    return found


async def use_code(session: AsyncSession, agent: Agent, code: str) -> bool:
    """Whether `code` is a fresh code of the agent's secret; it is then used up."""
    if agent.totp_secret is None or agent.id is None:
        return False
    step = matching_step(agent.totp_secret, code)
    if step is None:
        return False
    # A conditional update: of two logins racing with one code, only one moves the step.
    result = await session.exec(
        update(Agent)
        .where(col(Agent.id) == agent.id)
        .where(or_(col(Agent.totp_last_counter).is_(None), col(Agent.totp_last_counter) < step))
        .values(totp_last_counter=step)
    )
    return bool(result.rowcount == 1)


async def start_setup(session: AsyncSession, *, agent_id: int) -> tuple[str, str]:
    """A new secret for the agent (not in force until confirmed); return it and its URI."""
    agent = await session.get_one(Agent, agent_id)
    if agent.totp_enabled:
        raise TotpError("two-factor authentication is already on; turn it off first")
    agent.totp_secret = pyotp.random_base32()
    agent.totp_last_counter = None
    session.add(agent)
    await session.flush()
    return agent.totp_secret, otpauth_uri(agent.totp_secret, agent.email)


async def enable(session: AsyncSession, *, agent_id: int, code: str) -> None:
    """Turn two-factor authentication on, once the app shows a right code."""
    agent = await session.get_one(Agent, agent_id)
    if agent.totp_enabled:
        raise TotpError("two-factor authentication is already on")
    if agent.totp_secret is None:
        raise TotpError("set up two-factor authentication first")
    if not await use_code(session, agent, code):
        raise TotpError("that code is not right; check your authenticator app and try again")
    await session.refresh(agent)
    agent.totp_enabled = True
    session.add(agent)
    await session.flush()


async def disable(session: AsyncSession, *, agent_id: int, password: str) -> None:
    """Turn two-factor authentication off; the password confirms it is the agent."""
    agent = await session.get_one(Agent, agent_id)
    try:
        verify_password(agent, password)
    except AgentError:
        raise TotpError("the password is wrong") from None
    agent.totp_enabled = False
    agent.totp_secret = None
    agent.totp_last_counter = None
    session.add(agent)
    await session.flush()
