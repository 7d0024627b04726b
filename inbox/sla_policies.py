"""Keeping SLA policies (admins): list, add, change, remove. How they run is inbox/sla.py.

Targets are given in minutes of business time; a calendar (inbox/business_hours.py) is
checked on save, with an error naming the bad part. A change applies at once to the
conversations under the policy: their clocks keep what they spent, against the new targets.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.types import RowId, utcnow
from inbox.agents import Principal
from inbox.business_hours import InvalidCalendar, parse_calendar
from inbox.context import InboxContext
from inbox.db import execute
from inbox.errors import Refused, admins_only, existing
from inbox.labels import label_key
from inbox.models import PRIORITIES as PRIORITIES  # the admin page offers them
from inbox.models import ConversationSla, Inbox, Label, SlaPolicy, Team, table_of

MAX_MINUTES = 60 * 24 * 366
Minutes = float


class SlaPolicyView(BaseModel):
    """An SLA policy: its scope, its targets (minutes of business time), its calendar."""

    id: int
    name: str
    position: int
    inbox_id: int | None
    team_id: int | None
    priorities: list[str]
    label: str | None
    first_response_minutes: float | None
    next_response_minutes: float | None
    resolution_minutes: float | None
    warn_minutes: float
    calendar: dict[str, Any] | None
    pause_when_waiting: bool
    is_active: bool
    created_at: datetime
    updated_at: datetime


class SlaPolicyCreate(BaseModel):
    """A new SLA policy. Scope (all optional: an inbox, a team, priorities, a label) and at
    least one target."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=200)
    position: int = Field(default=0, ge=0, le=1_000_000)
    inbox_id: RowId | None = None
    team_id: RowId | None = None
    priorities: list[str] = Field(default_factory=list, max_length=len(PRIORITIES))
    label: str | None = Field(default=None, min_length=1, max_length=200)
    first_response_minutes: float | None = Field(default=None, gt=0, le=MAX_MINUTES)
    next_response_minutes: float | None = Field(default=None, gt=0, le=MAX_MINUTES)
    resolution_minutes: float | None = Field(default=None, gt=0, le=MAX_MINUTES)
    warn_minutes: float = Field(default=15, ge=0, le=MAX_MINUTES)
    calendar: dict[str, Any] | None = None
    pause_when_waiting: bool = True
    is_active: bool = True


class SlaPolicyPatch(BaseModel):
    """Changes to a policy; fields left out stay as they are (null clears a target, the
    scope's parts or the calendar)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    position: int | None = Field(default=None, ge=0, le=1_000_000)
    inbox_id: RowId | None = None
    team_id: RowId | None = None
    priorities: list[str] | None = Field(default=None, max_length=len(PRIORITIES))
    label: str | None = Field(default=None, min_length=1, max_length=200)
    first_response_minutes: float | None = Field(default=None, gt=0, le=MAX_MINUTES)
    next_response_minutes: float | None = Field(default=None, gt=0, le=MAX_MINUTES)
    resolution_minutes: float | None = Field(default=None, gt=0, le=MAX_MINUTES)
    warn_minutes: float | None = Field(default=None, ge=0, le=MAX_MINUTES)
    calendar: dict[str, Any] | None = None
    pause_when_waiting: bool | None = None
    is_active: bool | None = None


_TARGETS = (("first_response_minutes", "first_response_s"),
            ("next_response_minutes", "next_response_s"),
            ("resolution_minutes", "resolution_s"))


def _minutes(seconds: int | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 3)


def policy_view(row: SlaPolicy) -> SlaPolicyView:
    assert row.id is not None
    return SlaPolicyView(
        id=row.id, name=row.name, position=row.position, inbox_id=row.inbox_id,
        team_id=row.team_id, priorities=list(row.priorities), label=row.label,
        first_response_minutes=_minutes(row.first_response_s),
        next_response_minutes=_minutes(row.next_response_s),
        resolution_minutes=_minutes(row.resolution_s),
        warn_minutes=_minutes(row.warn_s) or 0.0, calendar=row.calendar,
        pause_when_waiting=row.pause_when_waiting, is_active=row.is_active,
        created_at=row.created_at, updated_at=row.updated_at)


async def list_policies(session: AsyncSession, principal: Principal) -> list[SlaPolicyView]:
    """The policies, in the order they are tried: every one for admins; for leads those
    that can apply in the inboxes they see (any inbox, or one of theirs)."""
    if not principal.is_lead:
        admins_only(principal, "read SLA policies")
    query = select(SlaPolicy).order_by(col(SlaPolicy.position), col(SlaPolicy.id))
    if not principal.is_admin:
        query = query.where(or_(col(SlaPolicy.inbox_id).is_(None),
                                col(SlaPolicy.inbox_id).in_(sorted(principal.inbox_ids))))
    return [policy_view(row) for row in await session.exec(query)]


async def _apply(session: AsyncSession, row: SlaPolicy, values: dict[str, Any]) -> None:
    """Check and set the given fields on the row."""
    if "inbox_id" in values and values["inbox_id"] is not None \
            and await session.get(Inbox, values["inbox_id"]) is None:
        raise Refused(f"inbox_id: no inbox {values['inbox_id']}")
    if "team_id" in values and values["team_id"] is not None \
            and await session.get(Team, values["team_id"]) is None:
        raise Refused(f"team_id: no team {values['team_id']}")
    if "priorities" in values:
        unknown = [p for p in values["priorities"] or [] if p not in PRIORITIES]
        if unknown:
            raise Refused(f"priorities: unknown priority {unknown[0]!r}; use "
                          + ", ".join(PRIORITIES))
        values["priorities"] = sorted(set(values["priorities"] or []))
    if values.get("label") is not None:
        found = (await session.exec(select(Label.name).where(
            Label.name_key == label_key(values["label"])))).first()
        if found is None:
            raise Refused(f"label: no label named {values['label']!r}")
        values["label"] = found
    if values.get("calendar") is not None:
        try:
            values["calendar"] = parse_calendar(values["calendar"]).spec.model_dump(mode="json")
        except InvalidCalendar as exc:
            raise Refused(f"calendar.{exc}") from None
    for minutes, seconds in _TARGETS:
        if minutes in values:
            given = values.pop(minutes)
            setattr(row, seconds, None if given is None else max(1, round(given * 60)))
    if "warn_minutes" in values:
        row.warn_s = round((values.pop("warn_minutes") or 0) * 60)
    for name, value in values.items():
        setattr(row, name, value.strip() if name == "name" else value)
    if row.first_response_s is None and row.next_response_s is None \
            and row.resolution_s is None:
        raise Refused("a policy needs at least one target (first response, next response "
                      "or resolution)")
    row.updated_at = utcnow()


async def create_policy(ctx: InboxContext, principal: Principal,
                        body: SlaPolicyCreate) -> SlaPolicyView:
    admins_only(principal, "keep SLA policies")
    async with ctx.db.write() as session:
        row = SlaPolicy(name=body.name)
        await _apply(session, row, body.model_dump())
        session.add(row)
        await session.flush()
        return policy_view(row)


async def update_policy(ctx: InboxContext, principal: Principal, policy_id: int,
                        patch: SlaPolicyPatch) -> SlaPolicyView:
    admins_only(principal, "keep SLA policies")
    async with ctx.db.write() as session:
        row = await existing(session, SlaPolicy, policy_id, "SLA policy")
        await _apply(session, row, patch.model_dump(exclude_unset=True))
        session.add(row)
        # The clocks under it are due a look: new targets move their warnings and breaches.
        await execute(session, update(table_of(ConversationSla)).where(
            table_of(ConversationSla).c.policy_id == policy_id).values(check_at=utcnow()))
        await session.flush()
        return policy_view(row)


async def delete_policy(ctx: InboxContext, principal: Principal, policy_id: int) -> None:
    admins_only(principal, "keep SLA policies")
    async with ctx.db.write() as session:
        await session.delete(await existing(session, SlaPolicy, policy_id, "SLA policy"))
