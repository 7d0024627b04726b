"""Keeping the routing rules: list, add, change, remove (team leads and admins).

A lead sees the rules of their inboxes and the rules for every inbox; they change the
rules of inboxes a team of theirs works on. Rules for every inbox are the admins'.
How rules match is in inbox/routing.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.types import RowId
from inbox.agents import Principal
from inbox.assign_actions import leads_inbox
from inbox.context import InboxContext
from inbox.errors import Forbidden, NotFound, Refused
from inbox.models import AssignmentRule, Inbox, Team, TeamInbox
from inbox.routing import (
    MAX_CONDITIONS,
    InvalidRule,
    condition_inbox_ids,
    validate_conditions,
)

MAX_POSITION = 1_000_000


class RuleView(BaseModel):
    """A routing rule as leads see it."""

    id: int
    name: str
    position: int
    inbox_id: int | None
    team_id: int
    is_active: bool
    conditions: list[dict[str, Any]]
    created_at: datetime


class RuleCreate(BaseModel):
    """A new rule: conditions that must all hold, and the team it sends conversations to."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=200)
    position: int = Field(default=0, ge=0, le=MAX_POSITION)
    inbox_id: RowId | None = None  # None: every inbox (admins only)
    team_id: RowId
    is_active: bool = True
    conditions: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_CONDITIONS)


class RulePatch(BaseModel):
    """Changes to a rule; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    position: int | None = Field(default=None, ge=0, le=MAX_POSITION)
    inbox_id: RowId | None = None
    team_id: RowId | None = None
    is_active: bool | None = None
    conditions: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_CONDITIONS)


def rule_view(rule: AssignmentRule) -> RuleView:
    """The public view of a rule row."""
    assert rule.id is not None
    return RuleView(id=rule.id, name=rule.name, position=rule.position, inbox_id=rule.inbox_id,
                    team_id=rule.team_id, is_active=rule.is_active,
                    conditions=list(rule.conditions), created_at=rule.created_at)


def _require_lead(principal: Principal) -> None:
    if not principal.is_lead:
        raise Forbidden("only team leads and admins manage assignment rules")


def _visible(principal: Principal, rule: AssignmentRule) -> bool:
    return principal.is_admin or rule.inbox_id is None or rule.inbox_id in principal.inbox_ids


async def list_rules(session: AsyncSession, principal: Principal) -> list[RuleView]:
    """The rules the principal sees, in the order they are tried."""
    _require_lead(principal)
    query = select(AssignmentRule)
    if not principal.is_admin:
        query = query.where(or_(col(AssignmentRule.inbox_id).is_(None),
                                col(AssignmentRule.inbox_id).in_(sorted(principal.inbox_ids))))
    rows = await session.exec(query.order_by(col(AssignmentRule.position),
                                             col(AssignmentRule.id)))
    return [rule_view(rule) for rule in rows]


async def _check(
    session: AsyncSession,
    principal: Principal,
    *,
    inbox_id: int | None,
    team_id: int,
    conditions: list[dict[str, Any]],
    channels: Iterable[str],
) -> list[dict[str, Any]]:
    """May the principal keep a rule like this, and does it make sense? Returns the
    conditions as stored. (Checked before the row changes: nothing half-checked is flushed.)"""
    if inbox_id is None:
        if not principal.is_admin:
            raise Forbidden("only admins keep rules for every inbox; give an inbox_id")
    else:
        if inbox_id not in principal.inbox_ids or await session.get(Inbox, inbox_id) is None:
            raise Refused(f"inbox_id: no inbox {inbox_id}")
        if not await leads_inbox(session, principal, inbox_id):
            raise Forbidden("only admins and the leads of a team on this inbox keep its rules")
    if await session.get(Team, team_id) is None:
        raise Refused(f"team_id: no team {team_id}")
    if inbox_id is not None and await session.get(TeamInbox, (team_id, inbox_id)) is None:
        raise Refused(f"team_id: team {team_id} does not work on inbox {inbox_id}; "
                      "add the inbox to the team first")
    try:
        stored = validate_conditions(conditions, channels=channels)
    except InvalidRule as exc:
        raise Refused(str(exc)) from None
    named = condition_inbox_ids(stored)
    unknown = sorted(named - principal.inbox_ids) if not principal.is_admin else []
    existing = set(await session.exec(select(Inbox.id).where(col(Inbox.id).in_(sorted(named)))))
    unknown += sorted(named - existing)
    if unknown:
        raise Refused(f"conditions: no inbox {unknown[0]}")
    return stored


async def create_rule(
    ctx: InboxContext, principal: Principal, body: RuleCreate, *, channels: Iterable[str]
) -> RuleView:
    """Add a rule."""
    _require_lead(principal)
    async with ctx.db.write() as session:
        conditions = await _check(session, principal, inbox_id=body.inbox_id,
                                  team_id=body.team_id, conditions=body.conditions,
                                  channels=channels)
        rule = AssignmentRule(name=body.name.strip(), position=body.position,
                              inbox_id=body.inbox_id, team_id=body.team_id,
                              is_active=body.is_active, conditions=conditions)
        session.add(rule)
        await session.flush()
        return rule_view(rule)


async def _rule(session: AsyncSession, principal: Principal, rule_id: int) -> AssignmentRule:
    rule = await session.get(AssignmentRule, rule_id)
    if rule is None or not _visible(principal, rule):
        raise NotFound(f"rule {rule_id} not found")
    return rule


async def update_rule(
    ctx: InboxContext,
    principal: Principal,
    rule_id: int,
    patch: RulePatch,
    *,
    channels: Iterable[str],
) -> RuleView:
    """Change a rule; the principal must be allowed to keep it before and after."""
    _require_lead(principal)
    async with ctx.db.write() as session:
        rule = await _rule(session, principal, rule_id)
        await _may_change(session, principal, rule)
        inbox_id = patch.inbox_id if "inbox_id" in patch.model_fields_set else rule.inbox_id
        team_id = patch.team_id if patch.team_id is not None else rule.team_id
        rule.conditions = await _check(
            session, principal, inbox_id=inbox_id, team_id=team_id,
            conditions=patch.conditions if patch.conditions is not None else rule.conditions,
            channels=channels,
        )
        rule.inbox_id, rule.team_id = inbox_id, team_id
        if patch.name is not None:
            rule.name = patch.name.strip()
        if patch.position is not None:
            rule.position = patch.position
        if patch.is_active is not None:
            rule.is_active = patch.is_active
        session.add(rule)
        await session.flush()
        return rule_view(rule)


async def _may_change(session: AsyncSession, principal: Principal, rule: AssignmentRule) -> None:
    if rule.inbox_id is None:
        if not principal.is_admin:
            raise Forbidden("only admins change rules for every inbox")
    elif not await leads_inbox(session, principal, rule.inbox_id):
        raise Forbidden("only admins and the leads of a team on this inbox keep its rules")


async def delete_rule(ctx: InboxContext, principal: Principal, rule_id: int) -> None:
    """Remove a rule."""
    _require_lead(principal)
    async with ctx.db.write() as session:
        rule = await _rule(session, principal, rule_id)
        await _may_change(session, principal, rule)
        await session.delete(rule)
