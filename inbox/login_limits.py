"""Login rate limiting: failed logins counted per email and per client address, in the database.

Counting in the `login_attempts` table makes the limit hold across every web process. An
attempt is written *before* its password is checked (and removed again if it succeeds), so
parallel guesses count against each other; on PostgreSQL an advisory lock per key makes the
count-then-write step atomic, SQLite's single writer does the same there.

A successful login clears the failures of its email (only the right password can do that),
never those of its address: otherwise an attacker with one valid account could log into it
between guesses at others and never reach the address limit.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from inbox.db import is_postgresql
from inbox.models import LoginAttempt

WINDOW = timedelta(minutes=15)
EMAIL_LIMIT = 5
ADDRESS_LIMIT = 20


@dataclass(frozen=True)
class LoginKeys:
    """The two counters one login attempt belongs to."""

    email: str
    address: str

    def limits(self) -> tuple[tuple[str, int], ...]:
        """Each key with its limit."""
        return ((self.email, EMAIL_LIMIT), (self.address, ADDRESS_LIMIT))


def login_keys(email: str, address: str) -> LoginKeys:
    """The counter keys of an email and a client address (hashed: fixed size, no raw input)."""
    return LoginKeys(
        email="email:" + _digest(email.strip().lower()),
        address="addr:" + _digest(address.strip().lower()),
    )


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:40]


async def begin_attempt(
    session: AsyncSession, keys: LoginKeys, *, now: datetime
) -> tuple[int | None, list[int]]:
    """Seconds to wait when a limit is reached (nothing written); else (None, the ids of the
    attempt's rows, to drop with `forget_attempt` if the login succeeds)."""
    await _lock(session, [key for key, _ in keys.limits()])
    await session.exec(delete(LoginAttempt).where(col(LoginAttempt.at) < now - WINDOW))
    wait = 0.0
    for key, limit in keys.limits():
        recent = list(await session.exec(
            select(LoginAttempt.at)
            .where(LoginAttempt.key == key, col(LoginAttempt.at) >= now - WINDOW)
            .order_by(col(LoginAttempt.at).desc())
            .limit(limit)
        ))
        if len(recent) >= limit:
            # Allowed again once the limit-th newest failure leaves the window.
            wait = max(wait, (recent[-1] + WINDOW - now).total_seconds())
    if wait > 0:
        return max(1, math.ceil(wait)), []
    rows = [LoginAttempt(key=key, at=now) for key, _ in keys.limits()]
    session.add_all(rows)
    await session.flush()
    return None, [row.id for row in rows if row.id is not None]


async def locked_until(
    session: AsyncSession, emails: list[str], *, now: datetime
) -> dict[str, datetime]:
    """The accounts (by email) locked out by failed logins now, and until when (one query)."""
    keys = {login_keys(email, "").email: email for email in emails}
    if not keys:
        return {}
    rows = await session.exec(
        select(LoginAttempt.key, LoginAttempt.at)
        .where(col(LoginAttempt.key).in_(list(keys)), col(LoginAttempt.at) >= now - WINDOW)
        .order_by(col(LoginAttempt.at).desc()))
    recent: dict[str, list[datetime]] = {}
    for key, at in rows:
        recent.setdefault(key, []).append(at)
    return {keys[key]: times[EMAIL_LIMIT - 1] + WINDOW for key, times in recent.items()
            if len(times) >= EMAIL_LIMIT}


async def unlock(session: AsyncSession, email: str) -> None:
    """Forget an account's failed logins: its owner may try again at once (an admin's
    decision; the per-address limit still holds for whoever was guessing)."""
    await session.exec(delete(LoginAttempt).where(
        col(LoginAttempt.key) == login_keys(email, "").email))


async def forget_attempt(
    session: AsyncSession, keys: LoginKeys, attempt_ids: list[int], *, succeeded: bool
) -> None:
    """The attempt was no failure: drop its rows, and on success the email's failures."""
    if attempt_ids:
        await session.exec(delete(LoginAttempt).where(col(LoginAttempt.id).in_(attempt_ids)))
    if succeeded:
        await session.exec(delete(LoginAttempt).where(col(LoginAttempt.key) == keys.email))


async def _lock(session: AsyncSession, keys: list[str]) -> None:
    """Serialise attempts on the same keys (PostgreSQL; SQLite writers are serial already)."""
    if not is_postgresql(session):
        return
    connection = await session.connection()
    # Sorted: two attempts take the locks in one order, so they never deadlock.
    await connection.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) "
             "FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS t(k, n) ORDER BY n"),
        {"keys": sorted(keys)},
    )
