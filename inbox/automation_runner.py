"""Running automation rules: a durable consumer of the events stream.

For each event that is a trigger (inbox/automation.py's `trigger_of`), the active rules of
that trigger and of the conversation's inbox (or of every inbox) are tried in order of
position; each whose conditions hold fires: its actions run one after the other through
the same inbox actions an agent uses (assign, labels, priority, reply, note, status),
as the "Automation" agent with access to that conversation's inbox only. An action that
cannot be done (a closed reply window, a label since removed) is recorded with why, and
the others still run. A line on the conversation's activity names the rule and what it
did; "stop processing" ends the rules for that event.

Nothing fires twice and nothing loops:
- a firing is keyed by (rule, event): an event delivered again after a crash finds the
  firing and does nothing; one that crashed mid-actions redoes them, and those are
  idempotent (a reply or note has an idempotency key made of the rule, the event and the
  action's place; labels, priority, status and assignment end where they would have);
- the events a rule's actions cause carry the chain of rules that caused them
  (`caused_by`): a rule never fires on an event it caused, directly or through others, and
  a chain stops after MAX_DEPTH rules.

The consumer costs nothing per event while there are no active rules, and decodes only
the event types some active rule listens to; the rules are read once per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, tuple_, update
from sqlmodel import col, select

from hub.bus import Entry
from hub.events import (
    CAUSED_BY,
    AutomationWebhook,
    ConversationStatusChanged,
    ConversationView,
    MessageCreated,
)
from hub.types import utcnow
from inbox.actions import set_muted, set_status
from inbox.activity import add_activity
from inbox.agents import Principal, visible_inbox_ids
from inbox.assign_actions import Target, assign
from inbox.automation import (
    EVENT_TYPES,
    TIMED,
    Facts,
    Test,
    compile_rule,
    needs_contact,
    trigger_of,
)
from inbox.automation_rules import contact_facts, contacts_facts, system_agent_id
from inbox.canned import fill_variables
from inbox.context import InboxContext
from inbox.db import conflict_insert, execute, is_postgresql
from inbox.errors import Forbidden, NotFound, Refused
from inbox.event_consumers import each_event, kinds_of, unless_down
from inbox.labels import change_labels, set_priority
from inbox.models import (
    Agent,
    AutomationFiring,
    AutomationRule,
    AutomationTimer,
    CannedResponse,
    Contact,
    Conversation,
    Message,
    Team,
    table_of,
)
from inbox.notifications import notify
from inbox.outbox import stage_events
from inbox.replies import reply
from inbox.views import load_conversation_view, message_view

log = logging.getLogger(__name__)

CONSUMER = "automation"
MAX_DEPTH = 3  # rules in one chain of causes (a rule's action waking another rule …)
_ALL_TYPES = frozenset(t for types in EVENT_TYPES.values() for t in types)
TIMER_BATCH = 200
TIMER_LEASE = timedelta(minutes=5)  # a checker that died holding timers leaves them then
TIMER_RETRY = timedelta(seconds=10)  # a timed rule that failed is tried again after this


@dataclass(frozen=True)
class _Rule:
    id: int
    name: str
    position: int
    inbox_id: int | None
    trigger: str
    delay_s: int | None
    match: str
    conditions: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    stop_processing: bool
    needs_contact: bool
    holds: Test  # the conditions, compiled


class RuleSet:
    """The active rules of a batch, in the order they are tried, with those of each trigger
    picked out once (not per event)."""

    def __init__(self, rules: Sequence[_Rule]) -> None:
        self.rules = tuple(rules)
        self.timed = any(rule.trigger in TIMED for rule in self.rules)
        self._of: dict[str, tuple[_Rule, ...]] = {}
        for rule in self.rules:
            self._of[rule.trigger] = (*self._of.get(rule.trigger, ()), rule)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def woken(self, triggers: Sequence[str], inbox_id: int, chain: Sequence[int]
              ) -> list[_Rule]:
        """The rules these triggers wake on a conversation of that inbox, in order; never
        one in the chain of rules that caused the event."""
        if len(triggers) == 1:
            candidates: Sequence[_Rule] = self._of.get(triggers[0], ())
        else:
            candidates = [rule for rule in self.rules if rule.trigger in triggers]
        return [rule for rule in candidates
                if rule.inbox_id in (None, inbox_id) and rule.id not in chain]


_compiled_rules: dict[tuple[int, datetime], Test] = {}


def _compiled_rule(row: AutomationRule) -> Test:
    """A rule's compiled conditions, made once per version of the rule."""
    key = (row.id or 0, row.updated_at)
    found = _compiled_rules.get(key)
    if found is None:
        if len(_compiled_rules) > 10_000:
            _compiled_rules.clear()
        found = _compiled_rules[key] = compile_rule(row.match, list(row.conditions))
    return found


@dataclass(frozen=True)
class _Timed:
    """What a timed rule fires on: the arming event's id (its key) and the conversation as
    it is now."""

    id: str
    conversation: ConversationView
    type: str = "timer"  # what automation.webhook says the rule fired on


class AutomationConsumer:
    """The `automation` consumer (see the module); `apply` is what a SharedReader calls."""

    name = CONSUMER

    def __init__(self) -> None:
        self._system_id: int | None = None

    async def apply(self, ctx: InboxContext, entries: Sequence[Entry]
                    ) -> list[BaseException | None]:
        """Apply a batch read from the stream; per entry None (done) or why it failed."""
        outcomes: list[BaseException | None] = [None] * len(entries)
        kinds = kinds_of(entries, _ALL_TYPES)
        if kinds is None:
            return outcomes
        rules = RuleSet(await unless_down(self._rules(ctx)))
        if not rules:
            return outcomes
        listened = {t for rule in rules.rules for t in EVENT_TYPES[rule.trigger]}

        contacts: dict[int, tuple[dict[str, Any], frozenset[str]]] = {}
        contact_triggers = {rule.trigger for rule in rules.rules if rule.needs_contact}

        async def prepare(events: list[Any]) -> None:
            # The contacts the rules will look at, for the whole batch in one read.
            wanted = {event.conversation.contact_id for event in events
                      if contact_triggers & set(trigger_of(event))}
            if wanted:
                async with ctx.db.read() as session:
                    contacts.update(await contacts_facts(session, wanted))

        async def one(event: Any) -> None:
            await self.handle(ctx, event, rules, contacts)

        return await each_event(entries, kinds, listened, one, what="automation",
                                prepare=prepare)

    async def _rules(self, ctx: InboxContext) -> list[_Rule]:
        """The active rules, in the order they are tried (one query per batch)."""
        async with ctx.db.read() as session:
            rows = await session.exec(
                select(AutomationRule).where(col(AutomationRule.is_active).is_(True))
                .order_by(col(AutomationRule.position), col(AutomationRule.id)))
            return [_Rule(id=r.id or 0, name=r.name, position=r.position, inbox_id=r.inbox_id,
                          trigger=r.trigger, delay_s=r.delay_s, match=r.match,
                          conditions=list(r.conditions),
                          actions=list(r.actions), stop_processing=r.stop_processing,
                          needs_contact=needs_contact(r.conditions),
                          holds=_compiled_rule(r)) for r in rows]

    async def handle(self, ctx: InboxContext, event: Any, rules: RuleSet,
                     contacts: Mapping[int, tuple[dict[str, Any], frozenset[str]]] = {},
                     ) -> None:
        """Fire the rules that this event wakes and whose conditions hold; arm or disarm the
        timed rules whose wait it starts or ends."""
        if rules.timed:
            await self._arm(ctx, event, rules.rules)
        triggers = trigger_of(event)
        chain = tuple(event.caused_by)
        if not triggers or len(chain) >= MAX_DEPTH:
            return
        conversation = event.conversation
        if conversation.merged_into_id is not None:
            return
        woken = rules.woken(triggers, conversation.inbox_id, chain)
        if not woken:
            return
        facts = Facts(trigger=triggers[0], conversation=conversation, at=event.at,
                      message=event.message if isinstance(event, MessageCreated) else None)
        for rule in woken:
            if rule.needs_contact and facts.contact_attributes is None:
                known = contacts.get(conversation.contact_id)
                if known is None:
                    async with ctx.db.read() as session:
                        known = await contact_facts(session, conversation.contact_id)
                facts.contact_attributes, facts.identity_kinds = known
            if not rule.holds(facts):
                continue
            await self._fire(ctx, rule, event, chain)
            if rule.stop_processing:
                break

    async def _arm(self, ctx: InboxContext, event: Any, rules: Sequence[_Rule]) -> None:
        """Arm the timed rules whose wait this event starts: pending (pending_for), our
        reply (no_customer_reply_for). What ends a wait writes nothing: the timer checks,
        when due, that the state held (so a customer message costs no write here)."""
        view = getattr(event, "conversation", None)
        if view is None:
            return
        starts = ""
        if isinstance(event, ConversationStatusChanged) and view.status == "pending":
            starts = "pending_for"
        elif isinstance(event, MessageCreated) and event.message.kind == "message" \
                and event.message.direction == "out" and not event.message.automated \
                and view.status != "resolved":
            starts = "no_customer_reply_for"
        chain = list(event.caused_by)
        arming = [r for r in rules if r.trigger == starts and r.inbox_id in (None, view.inbox_id)
                  and r.id not in chain and len(chain) < MAX_DEPTH]
        if not arming:
            return
        timers = table_of(AutomationTimer)
        async with ctx.db.write() as session:
            for rule in arming:
                assert rule.delay_s is not None
                values = {"armed_by": event.id, "armed_at": event.at, "caused_by": chain,
                          "due_at": event.at + timedelta(seconds=rule.delay_s)}
                # A later start of the wait moves the timer; an earlier one (an event that
                # came again after a crash) leaves it where it is.
                await execute(session, conflict_insert(timers, is_postgresql(session))
                              .values(rule_id=rule.id, conversation_id=view.id, **values)
                              .on_conflict_do_update(
                                  index_elements=["rule_id", "conversation_id"], set_=values,
                                  where=timers.c.armed_at < event.at))

    async def run_timers(self, ctx: InboxContext, stop: asyncio.Event) -> None:
        """Until `stop`: fire the timed rules whose wait is over, every few seconds."""
        every = ctx.settings.sla_check_seconds
        while not stop.is_set():
            try:
                while await self.fire_timers(ctx) >= TIMER_BATCH and not stop.is_set():
                    pass  # more were due
            except Exception:
                log.exception("timed automation rules failed; trying again later")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)

    async def fire_timers(self, ctx: InboxContext, *, now: datetime | None = None) -> int:
        """Fire the timed rules whose wait is over (each checker takes different timers);
        return how many were due."""
        now = now or utcnow()
        timers = table_of(AutomationTimer)
        async with ctx.db.write() as session:
            query = (select(AutomationTimer).where(col(AutomationTimer.due_at) <= now)
                     .order_by(col(AutomationTimer.due_at)).limit(TIMER_BATCH))
            if is_postgresql(session):
                query = query.with_for_update(skip_locked=True)
            due = list(await session.exec(query))
            if due:  # held for a while: another checker leaves them alone
                await execute(session, update(timers).where(tuple_(
                    timers.c.rule_id, timers.c.conversation_id).in_(
                        [(t.rule_id, t.conversation_id) for t in due])).values(
                            due_at=now + TIMER_LEASE))
        if not due:
            return 0
        rules = {rule.id: rule for rule in await self._rules(ctx)}
        for timer in due:
            rule_id, conversation_id, armed_by = timer.rule_id, timer.conversation_id, \
                timer.armed_by
            rule = rules.get(rule_id)
            later = (timer.armed_at + timedelta(seconds=rule.delay_s)
                     if rule is not None and rule.delay_s is not None else None)
            if later is not None and later > now:
                # The rule was edited to wait longer: the timer waits on.
                async with ctx.db.write() as session:
                    await execute(session, update(timers).where(
                        timers.c.rule_id == rule_id, timers.c.conversation_id == conversation_id,
                        timers.c.armed_by == armed_by).values(due_at=later))
                continue
            try:
                await self._timer_due(ctx, rule, conversation_id, armed_by, timer.armed_at,
                                      tuple(timer.caused_by or ()))
            except Exception:
                # Tried again shortly (not after the whole lease); the firing's key keeps a
                # second try from doing twice what the first did.
                log.exception("timed rule %s on conversation %s failed; trying again soon",
                              rule_id, conversation_id)
                async with ctx.db.write() as session:
                    await execute(session, update(timers).where(
                        timers.c.rule_id == rule_id, timers.c.conversation_id == conversation_id,
                        timers.c.armed_by == armed_by).values(
                            due_at=utcnow() + TIMER_RETRY))
                continue
            async with ctx.db.write() as session:  # done with, unless armed again meanwhile
                await execute(session, delete(timers).where(
                    timers.c.rule_id == rule_id, timers.c.conversation_id == conversation_id,
                    timers.c.armed_by == armed_by))
        return len(due)

    async def _timer_due(self, ctx: InboxContext, rule: _Rule | None, conversation_id: int,
                         armed_by: str, armed_at: datetime, chain: tuple[int, ...] = (),
                         ) -> None:
        """Fire a timed rule whose wait is over, if the wait held and its conditions do."""
        if rule is None or rule.trigger not in TIMED:
            return  # switched off, removed or made another kind of rule meanwhile
        async with ctx.db.read() as session:
            conversation = await session.get(Conversation, conversation_id)
            if conversation is None or conversation.merged_into_id is not None \
                    or rule.inbox_id not in (None, conversation.inbox_id):
                return
            view = await load_conversation_view(session, conversation)
            # Did the wait hold? Pending all along (a new pending arms again), or no word
            # from the customer since our reply, and not resolved.
            if rule.trigger == "pending_for":
                held = view.status == "pending"
            else:
                held = view.status != "resolved" and (await session.exec(
                    select(Message.id).where(
                        Message.conversation_id == conversation_id,
                        Message.direction == "in", Message.kind == "message",
                        col(Message.created_at) > armed_at).limit(1))).first() is None
            if not held:
                return
            facts = Facts(trigger=rule.trigger, conversation=view)
            if rule.needs_contact:
                facts.contact_attributes, facts.identity_kinds = await contact_facts(
                    session, view.contact_id)
        if rule.holds(facts):
            await self._fire(ctx, rule, _Timed(id=f"timer-{armed_by}", conversation=view),
                             chain)

    async def _fire(self, ctx: InboxContext, rule: _Rule, event: Any,
                    chain: tuple[int, ...]) -> None:
        conversation_id: int = event.conversation.id
        async with ctx.db.read() as session:
            if await session.get(AutomationFiring, (rule.id, event.id)) is not None:
                return  # fired already (this event came again after a crash)
        system = await self.system_agent(ctx)
        principal = Principal(agent_id=system, role="admin",
                              inbox_ids=frozenset({event.conversation.inbox_id}),
                              csrf_token="")
        token = CAUSED_BY.set((*chain, rule.id))
        try:
            done: list[str] = []
            for n, action in enumerate(rule.actions):
                try:
                    done.append(await self._act(ctx, principal, rule, conversation_id, action,
                                                key=f"rule-{rule.id}-{event.id}-{n}",
                                                trigger=event))
                except (Refused, Forbidden, NotFound) as exc:
                    done.append(f"could not {_verb(action)}: {exc}")
            await self._record(ctx, rule, event.id, conversation_id, system, done)
        finally:
            CAUSED_BY.reset(token)

    async def _act(self, ctx: InboxContext, principal: Principal, rule: _Rule,
                   conversation_id: int, action: dict[str, Any], *, key: str,
                   trigger: Any) -> str:
        """Do one action; what it did, in words for the activity line."""
        kind = action["type"]
        if kind == "add_label" or kind == "remove_label":
            adding = kind == "add_label"
            _, changed = await change_labels(
                ctx, principal, conversation_id=conversation_id,
                add=[action["label"]] if adding else [],
                remove=[] if adding else [action["label"]])
            verb = "added label" if adding else "removed label"
            return f"{verb} {action['label']}" + ("" if changed else " (it was so already)")
        if kind == "set_priority":
            await set_priority(ctx, principal, conversation_id=conversation_id,
                               priority=action["priority"])
            return f"set priority {action['priority']}"
        if kind in ("assign_agent", "assign_team", "unassign", "assign_auto"):
            target = (Target(assignee_id=action["agent_id"]) if kind == "assign_agent"
                      else Target(assignee_id=None, team_id=action["team_id"],
                                  change_team=True) if kind == "assign_team"
                      else Target(assignee_id=None, by_policy=kind == "assign_auto"))
            view = await assign(ctx, principal, conversation_id=conversation_id, target=target)
            async with ctx.db.read() as session:
                if kind == "assign_agent":
                    agent = await session.get(Agent, action["agent_id"])
                    return f"assigned to {agent.name if agent else action['agent_id']}"
                if kind == "assign_team":
                    team = await session.get(Team, action["team_id"])
                    to = await session.get(Agent, view.assignee_id) if view.assignee_id else None
                    return (f"sent to team {team.name if team else action['team_id']}"
                            + (f" ({to.name})" if to else ""))
                if kind == "assign_auto":
                    to = await session.get(Agent, view.assignee_id) if view.assignee_id else None
                    return "assigned by the policy " + (f"to {to.name}" if to
                                                         else "(it waits in the queue)")
            return "unassigned"
        if kind == "reply" or kind == "add_note":
            text = await self._text(ctx, principal, conversation_id, action)
            await reply(ctx, principal, conversation_id=conversation_id, text=text,
                        kind="message" if kind == "reply" else "note", idempotency_key=key)
            return "replied" if kind == "reply" else "added a note"
        if kind == "set_status":
            await set_status(ctx, principal, conversation_id=conversation_id,
                             status=action["status"])
            return {"open": "reopened", "pending": "set pending",
                    "resolved": "resolved"}[action["status"]]
        if kind == "snooze":
            until = utcnow() + timedelta(hours=float(action["hours"]))
            await set_status(ctx, principal, conversation_id=conversation_id,
                             status="snoozed", snoozed_until=until)
            return f"snoozed until {until:%Y-%m-%d %H:%M} UTC"
        if kind == "notify":
            return await self._notify(ctx, principal, rule, conversation_id, action["agent_id"])
        if kind == "mute":
            await set_muted(ctx, principal, conversation_id=conversation_id, muted=True)
            return "muted the conversation"
        if kind == "send_webhook":
            return await self._webhook(ctx, rule, conversation_id, trigger, key=key)
        raise Refused(f"unknown action {kind!r}")

    async def _text(self, ctx: InboxContext, principal: Principal, conversation_id: int,
                    action: dict[str, Any]) -> str:
        """The action's text (or canned response) with its {{variables}} filled in."""
        async with ctx.db.read() as session:
            conversation = await session.get(Conversation, conversation_id)
            if conversation is None:
                raise NotFound(f"conversation {conversation_id} not found")
            if "canned_id" in action:
                canned = await session.get(CannedResponse, action["canned_id"])
                if canned is None:
                    raise NotFound(f"canned response {action['canned_id']} was removed")
                text = canned.text
            else:
                text = str(action["text"])
            contact = await session.get_one(Contact, conversation.contact_id)
            agent = await session.get_one(Agent, principal.agent_id)
            return fill_variables(text, contact, agent, conversation)

    async def _notify(self, ctx: InboxContext, principal: Principal, rule: _Rule,
                      conversation_id: int, agent_id: int) -> str:
        async with ctx.db.write() as session:
            conversation = await session.get(Conversation, conversation_id)
            agent = await session.get(Agent, agent_id)
            if conversation is None or agent is None or not agent.is_active:
                raise NotFound(f"agent {agent_id} is not there any more")
            # Asked again at each firing: the agent may have left the inbox since the rule
            # was written, and a notification would show them what they may not see.
            if conversation.inbox_id not in await visible_inbox_ids(session, agent):
                raise Forbidden(f"{agent.name} does not see this inbox any more")
            about = conversation.subject or conversation.last_message_preview \
                or f"conversation #{conversation_id}"
            stage_events(session, [await notify(
                session, agent_id=agent_id, kind="rule", conversation=conversation,
                text=f"{rule.name}: {about}", by_agent_id=principal.agent_id)])
            return f"notified {agent.name}"

    async def _webhook(self, ctx: InboxContext, rule: _Rule, conversation_id: int,
                       trigger: Any, *, key: str) -> str:
        """An automation.webhook event: the webhooks consumer delivers it to the endpoints
        that take it, signed and retried like every other event. Its id comes from the
        action's key: the same firing tried again is the same delivery (receivers dedupe
        on the webhook id, and so do the deliveries)."""
        async with ctx.db.write() as session:
            conversation = await session.get(Conversation, conversation_id)
            if conversation is None:
                raise NotFound(f"conversation {conversation_id} not found")
            view = await load_conversation_view(session, conversation)
            stage_events(session, [AutomationWebhook(
                id=hashlib.sha256(key.encode()).hexdigest()[:24],
                inbox_id=conversation.inbox_id, at=utcnow(), rule_id=rule.id,
                rule_name=rule.name, trigger_type=trigger.type, trigger_event_id=trigger.id,
                conversation=view)])
        return "sent the webhook"

    async def _record(self, ctx: InboxContext, rule: _Rule, event_id: str,
                      conversation_id: int, system: int, done: list[str]) -> None:
        """The firing and its activity line, once."""
        summary = f"Rule “{rule.name}”: " + "; ".join(done)
        async with ctx.db.write() as session:
            inserted = (await execute(session, conflict_insert(
                table_of(AutomationFiring), is_postgresql(session)).values(
                    rule_id=rule.id, event_id=event_id, conversation_id=conversation_id,
                    at=utcnow(), summary=summary[:1000],
                ).on_conflict_do_nothing(index_elements=["rule_id", "event_id"])
                .returning(table_of(AutomationFiring).c.rule_id))).first()
            conversation = await session.get(Conversation, conversation_id)
            if inserted is None or conversation is None:
                return
            line = await add_activity(session, conversation, summary, system)
            view = await load_conversation_view(session, conversation)
            stage_events(session, [MessageCreated(
                inbox_id=conversation.inbox_id, at=utcnow(), message=message_view(line),
                conversation=view)])

    async def system_agent(self, ctx: InboxContext) -> int:
        """The id of the "Automation" agent, made on first use."""
        if self._system_id is None:
            self._system_id = await system_agent_id(ctx)
        return self._system_id


def _verb(action: dict[str, Any]) -> str:
    return {"assign_agent": "assign", "assign_team": "send to the team", "unassign": "unassign",
            "assign_auto": "assign by the policy",
            "add_label": "add the label", "remove_label": "remove the label",
            "set_priority": "set the priority", "reply": "reply", "add_note": "add a note",
            "set_status": "change the status", "snooze": "snooze",
            "notify": "notify", "mute": "mute", "send_webhook": "send the webhook",
            }.get(str(action["type"]), str(action["type"]))
