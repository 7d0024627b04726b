"""Keeping automation rules: list, add, change, remove, and a dry run (leads and admins).

Who keeps which rules is as for routing rules (inbox/rules.py): an admin keeps every rule,
rules for every inbox included; a team lead keeps the rules of the inboxes a team of
theirs works on and sees the rules for every inbox. What a rule may say is checked on
save (inbox/automation.py), and what it names must exist: inboxes the keeper sees, teams,
active agents (members of the rule's inbox), labels, canned responses.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.events import MessageView
from hub.types import RowId, utcnow
from inbox.agents import Principal
from inbox.assign_actions import leads_inbox
from inbox.automation import (
    MAX_ACTIONS,
    MAX_CONDITIONS,
    TRIGGERS,
    Facts,
    InvalidRule,
    compile_rule,
    needs_contact,
    referenced,
    validate_actions,
    validate_conditions,
    validate_trigger,
)
from inbox.context import InboxContext
from inbox.db import execute
from inbox.errors import Forbidden, NotFound, Refused
from inbox.labels import label_key
from inbox.models import (
    SYSTEM_ROLE,
    Agent,
    AutomationFiring,
    AutomationRule,
    AutomationTimer,
    CannedResponse,
    Contact,
    ContactIdentity,
    Conversation,
    Inbox,
    InboxMember,
    Label,
    Message,
    Team,
    TeamInbox,
    table_of,
)
from inbox.views import conversation_view, label_names, message_view

MAX_POSITION = 1_000_000
SYSTEM_EMAIL = "automation@switchboard.invalid"
SYSTEM_NAME = "Automation"
NO_PASSWORD = "!"  # not an Argon2 hash: no password ever matches it  # noqa: S105
DRY_RUN_CONVERSATIONS = 500


class AutomationRuleView(BaseModel):
    """An automation rule as leads see it."""

    id: int
    name: str
    position: int
    inbox_id: int | None
    trigger: str
    delay_hours: float | None
    match: str
    conditions: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    stop_processing: bool
    is_active: bool
    created_by: int | None
    created_at: datetime
    updated_at: datetime


class AutomationRuleCreate(BaseModel):
    """A new rule: when `trigger` happens and the conditions hold, do the actions."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=200)
    position: int = Field(default=0, ge=0, le=MAX_POSITION)
    inbox_id: RowId | None = None  # None: every inbox (admins only)
    trigger: str = Field(min_length=1, max_length=40)
    # For the timed triggers (pending_for, no_customer_reply_for): how many hours.
    delay_hours: float | None = Field(default=None, gt=0)
    match: Literal["all", "any"] = "all"
    conditions: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_CONDITIONS)
    actions: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_ACTIONS)
    stop_processing: bool = False
    is_active: bool = True


class AutomationRulePatch(BaseModel):
    """Changes to a rule; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    position: int | None = Field(default=None, ge=0, le=MAX_POSITION)
    inbox_id: RowId | None = None
    trigger: str | None = Field(default=None, min_length=1, max_length=40)
    delay_hours: float | None = Field(default=None, gt=0)
    match: Literal["all", "any"] | None = None
    conditions: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_CONDITIONS)
    actions: list[dict[str, Any]] | None = Field(default=None, min_length=1,
                                                 max_length=MAX_ACTIONS)
    stop_processing: bool | None = None
    is_active: bool | None = None


class DryRunMatch(BaseModel):
    """A recent conversation the rule would have matched."""

    conversation_id: int
    inbox_id: int
    contact_name: str | None
    subject: str | None
    preview: str | None
    created_at: datetime


class DryRun(BaseModel):
    """Which of the latest conversations the rule's conditions match (by their latest
    customer message), without doing anything."""

    checked: int
    matched: int
    matches: list[DryRunMatch]


class FiringView(BaseModel):
    """A rule that fired on a conversation, and what it did."""

    rule_id: int
    rule_name: str
    conversation_id: int
    at: datetime
    summary: str


def _seconds(hours: float | None) -> int | None:
    return None if hours is None else max(1, round(hours * 3600))


def rule_view(rule: AutomationRule) -> AutomationRuleView:
    assert rule.id is not None
    return AutomationRuleView(
        id=rule.id, name=rule.name, position=rule.position, inbox_id=rule.inbox_id,
        trigger=rule.trigger,
        delay_hours=None if rule.delay_s is None else round(rule.delay_s / 3600, 4),
        match=rule.match, conditions=list(rule.conditions),
        actions=list(rule.actions), stop_processing=rule.stop_processing,
        is_active=rule.is_active, created_by=rule.created_by, created_at=rule.created_at,
        updated_at=rule.updated_at)


def _require_lead(principal: Principal) -> None:
    if not principal.is_lead:
        raise Forbidden("only team leads and admins manage automation rules")


async def list_rules(session: AsyncSession, principal: Principal) -> list[AutomationRuleView]:
    """The rules the principal sees, in the order they are tried."""
    _require_lead(principal)
    query = select(AutomationRule)
    if not principal.is_admin:
        query = query.where(or_(col(AutomationRule.inbox_id).is_(None),
                                col(AutomationRule.inbox_id).in_(sorted(principal.inbox_ids))))
    rows = await session.exec(query.order_by(col(AutomationRule.position),
                                             col(AutomationRule.id)))
    return [rule_view(rule) for rule in rows]


async def get_rule(session: AsyncSession, principal: Principal,
                   rule_id: int) -> AutomationRuleView:
    _require_lead(principal)
    return rule_view(await _rule(session, principal, rule_id))


async def _rule(session: AsyncSession, principal: Principal, rule_id: int) -> AutomationRule:
    rule = await session.get(AutomationRule, rule_id)
    if rule is None or not (principal.is_admin or rule.inbox_id is None
                            or rule.inbox_id in principal.inbox_ids):
        raise NotFound(f"automation rule {rule_id} not found")
    return rule


async def _may_keep(session: AsyncSession, principal: Principal, inbox_id: int | None) -> None:
    if inbox_id is None:
        if not principal.is_admin:
            raise Forbidden("only admins keep rules for every inbox; give an inbox_id")
        return
    if (inbox_id not in principal.inbox_ids and not principal.is_admin) \
            or await session.get(Inbox, inbox_id) is None:
        raise Refused(f"inbox_id: no inbox {inbox_id}")
    if not await leads_inbox(session, principal, inbox_id):
        raise Forbidden("only admins and the leads of a team on this inbox keep its rules")


async def checked_rule(
    session: AsyncSession, principal: Principal, *, inbox_id: int | None, trigger: str,
    conditions: list[dict[str, Any]], actions: list[dict[str, Any]], channels: Iterable[str],
    delay_hours: float | None = None,
) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """The trigger, conditions and actions as stored; Refused naming the first problem."""
    try:
        stored_trigger = validate_trigger(trigger, delay_hours)
        stored_conditions = validate_conditions(conditions, channels=channels)
        stored_actions = validate_actions(actions)
    except InvalidRule as exc:
        raise Refused(str(exc)) from None
    refs = referenced(stored_conditions, stored_actions)
    await _exist(session, principal, refs.inbox_ids, Inbox, "inbox",
                 visible=None if principal.is_admin else principal.inbox_ids)
    await _exist(session, principal, refs.team_ids, Team, "team")
    await _exist(session, principal, refs.canned_ids, CannedResponse, "canned response")
    if refs.agent_ids:
        active = set(await session.exec(select(Agent.id).where(
            col(Agent.id).in_(sorted(refs.agent_ids)), col(Agent.is_active).is_(True))))
        missing = sorted(refs.agent_ids - active)
        if missing:
            raise Refused(f"no active agent with id {missing[0]}")
    if refs.labels:
        keys = {label_key(name): name for name in refs.labels}
        known = set(await session.exec(select(Label.name_key).where(
            col(Label.name_key).in_(sorted(keys)))))
        unknown = [name for key, name in keys.items() if key not in known]
        if unknown:
            raise Refused(f"no label named {unknown[0]!r} (labels are added on the labels page)")
    if inbox_id is not None:
        # What the rule does must be possible in its inbox.
        for n, action in enumerate(stored_actions):
            if action["type"] == "assign_team" and await session.get(
                    TeamInbox, (action["team_id"], inbox_id)) is None:
                raise Refused(f"actions[{n}].team_id: team {action['team_id']} does not work "
                              f"on inbox {inbox_id}; add the inbox to the team first")
            if action["type"] in ("assign_agent", "notify") and await session.get(
                    InboxMember, (inbox_id, action["agent_id"])) is None:
                raise Refused(f"actions[{n}].agent_id: agent {action['agent_id']} is not a "
                              f"member of inbox {inbox_id}")
    return stored_trigger, stored_conditions, stored_actions


async def _exist(session: AsyncSession, principal: Principal, ids: set[int], model: Any,
                 name: str, *, visible: frozenset[int] | None = None) -> None:
    if not ids:
        return
    found = set(await session.exec(select(model.id).where(col(model.id).in_(sorted(ids)))))
    if visible is not None:
        found &= visible
    missing = sorted(ids - found)
    if missing:
        raise Refused(f"no {name} with id {missing[0]}")


async def create_rule(ctx: InboxContext, principal: Principal, body: AutomationRuleCreate, *,
                      channels: Iterable[str]) -> AutomationRuleView:
    """Add a rule."""
    _require_lead(principal)
    async with ctx.db.write() as session:
        await _may_keep(session, principal, body.inbox_id)
        trigger, conditions, actions = await checked_rule(
            session, principal, inbox_id=body.inbox_id, trigger=body.trigger,
            conditions=body.conditions, actions=body.actions, channels=channels,
            delay_hours=body.delay_hours)
        rule = AutomationRule(
            name=body.name.strip(), position=body.position, inbox_id=body.inbox_id,
            trigger=trigger, delay_s=_seconds(body.delay_hours), match=body.match,
            conditions=conditions, actions=actions,
            stop_processing=body.stop_processing, is_active=body.is_active,
            created_by=principal.agent_id)
        session.add(rule)
        await session.flush()
        view = rule_view(rule)
    await system_agent_id(ctx)  # made now, so the agents' pages already know its name
    return view


async def update_rule(ctx: InboxContext, principal: Principal, rule_id: int,
                      patch: AutomationRulePatch, *,
                      channels: Iterable[str]) -> AutomationRuleView:
    """Change a rule; the principal must be allowed to keep it before and after."""
    _require_lead(principal)
    async with ctx.db.write() as session:
        rule = await _rule(session, principal, rule_id)
        await _may_keep(session, principal, rule.inbox_id)
        inbox_id = patch.inbox_id if "inbox_id" in patch.model_fields_set else rule.inbox_id
        if inbox_id != rule.inbox_id:
            await _may_keep(session, principal, inbox_id)
        trigger = patch.trigger if patch.trigger is not None else rule.trigger
        delay = patch.delay_hours if "delay_hours" in patch.model_fields_set else (
            None if rule.delay_s is None or trigger != rule.trigger else rule.delay_s / 3600)
        trigger, conditions, actions = await checked_rule(
            session, principal, inbox_id=inbox_id, trigger=trigger,
            conditions=patch.conditions if patch.conditions is not None else rule.conditions,
            actions=patch.actions if patch.actions is not None else rule.actions,
            channels=channels, delay_hours=delay)
        delay_s = _seconds(delay)
        timers = table_of(AutomationTimer)
        if (inbox_id, trigger) != (rule.inbox_id, rule.trigger):
            # The waits under way were for another rule: they end here.
            await execute(session, delete(timers).where(timers.c.rule_id == rule_id))
        elif delay_s != rule.delay_s:
            # Each wait is looked at again now: the runner fires those already long enough
            # and moves the others to their new time.
            await execute(session, update(timers).where(timers.c.rule_id == rule_id)
                          .values(due_at=utcnow()))
        rule.inbox_id, rule.trigger, rule.delay_s = inbox_id, trigger, delay_s
        rule.conditions, rule.actions = conditions, actions
        for name in ("name", "position", "match", "stop_processing", "is_active"):
            value = getattr(patch, name)
            if value is not None:
                setattr(rule, name, value.strip() if name == "name" else value)
        rule.updated_at = utcnow()
        session.add(rule)
        await session.flush()
        return rule_view(rule)


async def delete_rule(ctx: InboxContext, principal: Principal, rule_id: int) -> None:
    """Remove a rule (what it did stays on the conversations' activity)."""
    _require_lead(principal)
    async with ctx.db.write() as session:
        rule = await _rule(session, principal, rule_id)
        await _may_keep(session, principal, rule.inbox_id)
        await session.delete(rule)


async def dry_run(ctx: InboxContext, principal: Principal, body: AutomationRuleCreate, *,
                  channels: Iterable[str]) -> DryRun:
    """Which of the latest 500 conversations (of the rule's inbox, or every inbox the
    principal sees) the rule's conditions match, by their latest customer message."""
    _require_lead(principal)
    async with ctx.db.read() as session:
        await _may_keep(session, principal, body.inbox_id)
        trigger, conditions, _ = await checked_rule(
            session, principal, inbox_id=body.inbox_id, trigger=body.trigger,
            conditions=body.conditions, actions=body.actions, channels=channels,
            delay_hours=body.delay_hours)
        inbox_ids = [body.inbox_id] if body.inbox_id is not None else (
            None if principal.is_admin else sorted(principal.inbox_ids))
        query = (select(Conversation, Inbox.channel, Contact.name)
                 .join(Inbox, col(Inbox.id) == col(Conversation.inbox_id))
                 .join(Contact, col(Contact.id) == col(Conversation.contact_id))
                 .where(col(Conversation.merged_into_id).is_(None))
                 .order_by(col(Conversation.id).desc()).limit(DRY_RUN_CONVERSATIONS))
        if inbox_ids is not None:
            query = query.where(col(Conversation.inbox_id).in_(inbox_ids))
        rows = list(await session.exec(query))
        ids = [c.id for c, _, _ in rows if c.id is not None]
        labels = await label_names(session, ids)
        latest = await _latest_customer_messages(session, ids)
        contacts = await contacts_facts(session, {c.contact_id for c, _, _ in rows}) \
            if needs_contact(conditions) else {}
        found: list[DryRunMatch] = []
        holds = compile_rule(body.match, conditions)
        for conversation, channel, contact_name in rows:
            assert conversation.id is not None
            view = conversation_view(conversation, channel=channel, contact_name=contact_name,
                                     labels=labels.get(conversation.id, []))
            attributes, kinds = contacts.get(conversation.contact_id, ({}, frozenset()))
            message = latest.get(conversation.id)
            facts = Facts(trigger=trigger, conversation=view, message=message,
                          at=message.created_at if message is not None else None,
                          contact_attributes=attributes, identity_kinds=kinds)
            if holds(facts):
                found.append(DryRunMatch(
                    conversation_id=conversation.id, inbox_id=conversation.inbox_id,
                    contact_name=contact_name, subject=conversation.subject,
                    preview=conversation.last_message_preview,
                    created_at=conversation.created_at))
    return DryRun(checked=len(rows), matched=len(found), matches=found[:100])


async def _latest_customer_messages(session: AsyncSession,
                                    conversation_ids: list[int]) -> dict[int, MessageView]:
    if not conversation_ids:
        return {}
    newest = (select(func.max(Message.id))
              .where(col(Message.conversation_id).in_(conversation_ids),
                     Message.direction == "in", Message.kind == "message")
              .group_by(col(Message.conversation_id)))
    rows = await session.exec(select(Message).where(col(Message.id).in_(newest)))
    return {m.conversation_id: message_view(m) for m in rows}


async def contact_facts(session: AsyncSession, contact_id: int
                        ) -> tuple[dict[str, Any], frozenset[str]]:
    """A contact's attributes and the kinds of its identities (what conditions read)."""
    return (await contacts_facts(session, {contact_id})).get(contact_id, ({}, frozenset()))


async def contacts_facts(session: AsyncSession, contact_ids: set[int]
                         ) -> dict[int, tuple[dict[str, Any], frozenset[str]]]:
    """`contact_facts` of many contacts, in two queries."""
    if not contact_ids:
        return {}
    wanted = sorted(contact_ids)
    attributes = {cid: dict(attrs or {}) for cid, attrs in await session.exec(
        select(Contact.id, Contact.attributes).where(col(Contact.id).in_(wanted)))}
    kinds: dict[int, set[str]] = {}
    for cid, kind in await session.exec(select(ContactIdentity.contact_id, ContactIdentity.kind)
                                        .where(col(ContactIdentity.contact_id).in_(wanted))):
        kinds.setdefault(cid, set()).add(kind)
    return {cid: (attributes.get(cid, {}), frozenset(kinds.get(cid, set())))
            for cid in wanted if cid in attributes}


async def conversation_firings(session: AsyncSession, principal: Principal,
                               conversation_id: int) -> list[FiringView]:
    """The rules that fired on a conversation the principal sees, oldest first."""
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None or conversation.inbox_id not in principal.inbox_ids:
        raise NotFound(f"conversation {conversation_id} not found")
    rows = await session.exec(
        select(AutomationFiring, AutomationRule.name)
        .join(AutomationRule, col(AutomationRule.id) == col(AutomationFiring.rule_id))
        .where(AutomationFiring.conversation_id == conversation_id)
        .order_by(col(AutomationFiring.at)))
    return [FiringView(rule_id=f.rule_id, rule_name=name, conversation_id=f.conversation_id,
                       at=f.at, summary=f.summary) for f, name in rows]


def trigger_names() -> dict[str, str]:
    return dict(TRIGGERS)


async def system_agent_id(ctx: InboxContext) -> int:
    """The agent row automation acts as: inactive (it never signs in, is never listed or
    assigned), made on first use; two workers making it at once end with the one row."""
    for _ in range(2):
        async with ctx.db.read() as session:
            found = await _system(session)
        if found is not None:
            return found
        try:
            async with ctx.db.write() as session:
                agent = Agent(email=SYSTEM_EMAIL, name=SYSTEM_NAME, password_hash=NO_PASSWORD,
                              role=SYSTEM_ROLE, is_active=False, availability="away")
                session.add(agent)
                await session.flush()
                assert agent.id is not None
                return agent.id
        except IntegrityError:
            continue  # made meanwhile by another worker
    raise RuntimeError("the automation agent could not be made")


async def automation_agent(session: AsyncSession) -> int | None:
    """The id of the agent rules act as, if one fired yet."""
    return await _system(session)


async def _system(session: AsyncSession) -> int | None:
    return (await session.exec(select(Agent.id).where(Agent.role == SYSTEM_ROLE)
                               .order_by(col(Agent.id)).limit(1))).first()
