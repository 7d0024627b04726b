"""SLA clocks: first response, next response and resolution, in business hours.

A conversation gets the first active SLA policy (by position) whose scope holds: its inbox,
team, one of its priorities, a label it has. The policy's targets run as three clocks:

- first response: from the conversation's opening to the first reply (an agent's, or the
  business's from elsewhere; a rule's auto-reply does not count);
- next response: from a customer message that waits for an answer to the next reply;
- resolution: from the opening to the resolve (a reopen carries on where it stopped).

Time counts only in the policy calendar's business hours (inbox/business_hours.py), and not
at all while the conversation is pending or snoozed when the policy says so. A clock is
"at risk" `warn_s` before it is due and "breached" once due; the assignee and the leads of
the conversation's team are notified of both, live, and automation rules can act on them.

Everything is driven by events (the `sla` consumer of the events stream keeps the clocks)
and one checker (`check_due`, every few seconds in each worker, each taking different
rows): the clocks store when they must be looked at next (`check_at`, indexed), so the cost
does not grow with the number of open conversations. The soonest due time and the state are
copied on the conversation (`sla_due_at`, `sla_status`) for the list's countdown, filters
and sort.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.bus import Entry
from hub.events import (
    ConversationAssigned,
    ConversationCreated,
    ConversationStatusChanged,
    ConversationUpdated,
    ConversationView,
    MessageCreated,
    View,
)
from hub.types import utcnow
from inbox.business_hours import ALWAYS_OPEN, Calendar, parse_calendar
from inbox.context import InboxContext
from inbox.db import is_postgresql
from inbox.event_consumers import each_event, first_time, kinds_of, unless_down
from inbox.models import (
    Agent,
    Conversation,
    ConversationSla,
    SlaPolicy,
    TeamMember,
)
from inbox.notifications import NewNotification, notify_many
from inbox.outbox import stage_events
from inbox.views import load_conversation_view

log = logging.getLogger(__name__)

CONSUMER = "sla"
CLOCKS = ("first", "next", "resolve")
_TYPES = frozenset({"conversation.created", "message.created", "conversation.status_changed",
                    "conversation.updated", "conversation.assigned"})
CHECK_BATCH = 200


# -- the clocks (pure) ----------------------------------------------------------------------


@dataclass
class Clock:
    """One target's clock: counting (`since` set) or stopped; what it has spent before."""

    active: bool = False  # started and not yet met (counting or paused)
    since: datetime | None = None  # counting since then (None: paused or stopped)
    spent: float = 0.0  # business seconds counted before `since`
    warned: bool = False
    breached: bool = False
    met_at: datetime | None = None

    def dump(self) -> dict[str, Any]:
        return {"active": self.active, "since": _iso(self.since), "spent": self.spent,
                "warned": self.warned, "breached": self.breached, "met_at": _iso(self.met_at)}

    @classmethod
    def load(cls, raw: dict[str, Any] | None) -> Clock:
        raw = raw or {}
        return cls(active=bool(raw.get("active")), since=_dt(raw.get("since")),
                   spent=float(raw.get("spent", 0.0)), warned=bool(raw.get("warned")),
                   breached=bool(raw.get("breached")), met_at=_dt(raw.get("met_at")))


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _dt(raw: Any) -> datetime | None:
    return datetime.fromisoformat(raw) if isinstance(raw, str) else None


@dataclass(frozen=True)
class Targets:
    """A policy's targets (seconds of business time; None: no such target)."""

    first: float | None = None
    next: float | None = None
    resolve: float | None = None
    warn: float = 900.0
    calendar: Calendar = ALWAYS_OPEN
    pause_when_waiting: bool = True

    def of(self, name: str) -> float | None:
        return {"first": self.first, "next": self.next, "resolve": self.resolve}[name]


@dataclass
class Clocks:
    """A conversation's three clocks and whether they are paused (see the module)."""

    first: Clock = field(default_factory=Clock)
    next: Clock = field(default_factory=Clock)
    resolve: Clock = field(default_factory=Clock)
    paused: bool = False
    answered: bool = False  # a reply came after the customer's last message

    def dump(self) -> dict[str, Any]:
        return {"first": self.first.dump(), "next": self.next.dump(),
                "resolve": self.resolve.dump(), "paused": self.paused,
                "answered": self.answered}

    @classmethod
    def load(cls, raw: dict[str, Any]) -> Clocks:
        return cls(first=Clock.load(raw.get("first")), next=Clock.load(raw.get("next")),
                   resolve=Clock.load(raw.get("resolve")), paused=bool(raw.get("paused")),
                   answered=bool(raw.get("answered")))

    def clock(self, name: str) -> Clock:
        found: Clock = getattr(self, name)
        return found

    # What happens to a conversation, at a time:

    def opened(self, at: datetime, *, counting: bool) -> None:
        for name in ("first", "resolve"):
            clock = self.clock(name)
            clock.active, clock.since = True, at if counting else None
        self.paused = not counting

    def customer_wrote(self, at: datetime, targets: Targets) -> None:
        self.answered = False
        if self.first.active or self.next.active:
            return  # already waiting for an answer
        if self.first.met_at is not None or not self.first.active:
            self.next = Clock(active=True, since=None if self.paused else at)

    def replied(self, at: datetime, targets: Targets) -> None:
        self.answered = True
        for name in ("first", "next"):
            clock = self.clock(name)
            if clock.active:
                self._stop(clock, at, targets)
                clock.met_at = at
                self._in_time(clock, targets.of(name))

    def pause(self, at: datetime, targets: Targets) -> None:
        if self.paused:
            return
        for name in CLOCKS:
            clock = self.clock(name)
            if clock.active and clock.since is not None:
                clock.spent += targets.calendar.between(clock.since, at)
                clock.since = None
        self.paused = True

    def resume(self, at: datetime) -> None:
        if not self.paused:
            return
        for name in CLOCKS:
            clock = self.clock(name)
            if clock.active:
                clock.since = at
        self.paused = False

    def resolved(self, at: datetime, targets: Targets) -> None:
        for name in CLOCKS:
            clock = self.clock(name)
            if clock.active:
                self._stop(clock, at, targets)
                if name == "resolve":
                    clock.met_at = at
                    self._in_time(clock, targets.resolve)

    def reopened(self, at: datetime) -> None:
        self.paused = False
        self.resolve.active, self.resolve.since, self.resolve.met_at = True, at, None

    @staticmethod
    def _in_time(clock: Clock, target: float | None) -> None:
        # The checker may mark a breach before this consumer reads a reply (or resolve)
        # that came in time: the time it happened decides.
        if clock.breached and target is not None and clock.spent <= target:
            clock.breached = False

    @staticmethod
    def _stop(clock: Clock, at: datetime, targets: Targets) -> None:
        if clock.since is not None:
            clock.spent += targets.calendar.between(clock.since, at)
        clock.active, clock.since = False, None

    # What follows from them:

    def due(self, name: str, targets: Targets) -> datetime | None:
        """When a counting clock's target is due (None: not counting, or no target)."""
        clock, target = self.clock(name), targets.of(name)
        if target is None or not clock.active or clock.since is None:
            return None
        return targets.calendar.add(clock.since, max(0.0, target - clock.spent))

    def soonest(self, targets: Targets) -> datetime | None:
        dues = [d for d in (self.due(n, targets) for n in CLOCKS) if d is not None]
        return min(dues) if dues else None

    def check_at(self, targets: Targets) -> datetime | None:
        """When something is next due to change: a warning, or a breach."""
        times = []
        for name in CLOCKS:
            due, clock = self.due(name, targets), self.clock(name)
            if due is None or clock.breached:
                continue
            times.append(due if clock.warned else due - timedelta(seconds=targets.warn))
        return min(times) if times else None

    def status(self, targets: Targets, now: datetime) -> str | None:
        """"breached", "at_risk", "ok", "paused", "met" (nothing runs); None without
        targets."""
        if targets.first is None and targets.next is None and targets.resolve is None:
            return None
        running = [n for n in CLOCKS if self.clock(n).active and targets.of(n) is not None]
        if not running:
            return "met"
        if any(self.clock(n).breached for n in running):
            return "breached"
        if self.paused:
            return "paused"
        soonest = self.soonest(targets)
        if soonest is not None and now >= soonest:
            return "breached"
        if soonest is not None and now >= soonest - timedelta(seconds=targets.warn):
            return "at_risk"
        return "ok"

    def advance(self, targets: Targets, now: datetime) -> list[tuple[str, str]]:
        """Warnings and breaches that are due by `now`: [(clock, "at_risk" | "breached")]."""
        found = []
        for name in CLOCKS:
            due, clock = self.due(name, targets), self.clock(name)
            if due is None or clock.breached:
                continue
            if now >= due:
                clock.breached = clock.warned = True
                found.append((name, "breached"))
            elif not clock.warned and now >= due - timedelta(seconds=targets.warn):
                clock.warned = True
                found.append((name, "at_risk"))
        return found


# -- policies -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    id: int
    position: int
    inbox_id: int | None
    team_id: int | None
    priorities: frozenset[str]
    label: str | None
    targets: Targets

    def applies(self, view: ConversationView) -> bool:
        return ((self.inbox_id is None or self.inbox_id == view.inbox_id)
                and (self.team_id is None or self.team_id == view.team_id)
                and (not self.priorities or view.priority in self.priorities)
                and (self.label is None
                     or self.label in {label.casefold() for label in view.labels}))


_calendars: dict[tuple[int, datetime], Calendar] = {}


def policy_of(row: SlaPolicy) -> Policy:
    """A policy row made ready to use (its calendar parsed once per version)."""
    assert row.id is not None
    calendar = ALWAYS_OPEN
    if row.calendar:
        key = (row.id, row.updated_at)
        if key not in _calendars:
            _calendars[key] = parse_calendar(row.calendar)
        calendar = _calendars[key]
    return Policy(
        id=row.id, position=row.position, inbox_id=row.inbox_id, team_id=row.team_id,
        priorities=frozenset(row.priorities or []),
        label=row.label.casefold() if row.label else None,
        targets=Targets(first=row.first_response_s, next=row.next_response_s,
                        resolve=row.resolution_s, warn=float(row.warn_s), calendar=calendar,
                        pause_when_waiting=row.pause_when_waiting))


async def active_policies(session: AsyncSession) -> list[Policy]:
    rows = await session.exec(select(SlaPolicy).where(col(SlaPolicy.is_active).is_(True))
                              .order_by(col(SlaPolicy.position), col(SlaPolicy.id)))
    return [policy_of(row) for row in rows]


def pick(policies: Sequence[Policy], view: ConversationView) -> Policy | None:
    return next((p for p in policies if p.applies(view)), None)


NO_TARGETS = Targets()


# -- the consumer ---------------------------------------------------------------------------


class SlaConsumer:
    """The `sla` consumer of the events stream: keeps each conversation's clocks."""

    name = CONSUMER

    async def apply(self, ctx: InboxContext, entries: Sequence[Entry]
                    ) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = [None] * len(entries)
        kinds = kinds_of(entries, _TYPES)
        if kinds is None:
            return outcomes
        async def read() -> tuple[list[Policy], bool]:
            async with ctx.db.read() as session:
                found = await active_policies(session)
                return found, bool(found) or (await session.exec(
                    select(ConversationSla.conversation_id).limit(1))).first() is not None

        policies, tracked = await unless_down(read())
        if not tracked:
            return outcomes  # no policy and no clock: nothing to keep

        async def one(event: Any) -> None:
            async with ctx.db.write() as session:
                if await first_time(session, consumer=CONSUMER, event_id=event.id):
                    await self.handle(session, event, policies)

        return await each_event(entries, kinds, _TYPES, one, what="SLA clocks")

    async def handle(self, session: AsyncSession, event: Any,
                     policies: Sequence[Policy]) -> None:
        view: ConversationView | None = getattr(event, "conversation", None)
        if view is None or view.merged_into_id is not None:
            return
        if isinstance(event, ConversationUpdated) and all(c.startswith("sla") for c in
                                                          event.changes):
            return  # our own news
        # Locked: the checker (check_due) changes the same row.
        row = await session.get(ConversationSla, view.id, with_for_update=True)
        if row is None:
            if not isinstance(event, ConversationCreated) or not policies:
                return  # clocks start with the conversation
            row = ConversationSla(conversation_id=view.id, clocks={})
        by_policy = {p.id: p for p in policies}
        current = by_policy.get(row.policy_id) if row.policy_id else None
        chosen = pick(policies, view)
        targets = current.targets if current else NO_TARGETS
        clocks = Clocks.load(row.clocks)
        at = event.at
        if isinstance(event, ConversationCreated):
            targets = chosen.targets if chosen else NO_TARGETS
            clocks.opened(at, counting=view.status == "open" or not targets.pause_when_waiting)
        elif isinstance(event, MessageCreated):
            message = event.message
            if message.kind != "message" or message.automated:
                return
            if message.direction == "in" and not message.sent_elsewhere:
                if view.status == "resolved":
                    return  # the answer to the satisfaction survey: nobody waits on it
                clocks.customer_wrote(at, targets)
            elif message.direction == "out" and not event.caused_by and (
                    message.agent_id is not None or message.sent_elsewhere):
                clocks.replied(at, targets)
            else:
                return
        elif isinstance(event, ConversationStatusChanged):
            status, before = view.status, event.previous_status
            if status == "resolved":
                clocks.resolved(at, targets)
            elif before == "resolved" and status in ("open", "pending", "snoozed"):
                clocks.reopened(at)
                if status != "open" and targets.pause_when_waiting:
                    clocks.pause(at, targets)
                elif not clocks.answered and clocks.next.active is False \
                        and clocks.first.met_at is not None:
                    clocks.customer_wrote(at, targets)
            elif status in ("pending", "snoozed") and targets.pause_when_waiting:
                clocks.pause(at, targets)
            elif status == "open":
                clocks.resume(at)
        elif not isinstance(event, ConversationUpdated | ConversationAssigned):
            return
        # The scope may have changed (priority, labels, team): the policy that applies now
        # sets the targets; what the clocks spent stays spent.
        if chosen is not None:
            targets = chosen.targets
        row.policy_id = chosen.id if chosen else None
        await save(session, row, clocks, targets if chosen else NO_TARGETS, at)


async def save(session: AsyncSession, row: ConversationSla, clocks: Clocks, targets: Targets,
               now: datetime, notices: Sequence[tuple[str, str]] = ()) -> None:
    """Store the clocks, copy the state on the conversation and, when it changed, tell the
    conversation's agents (and notify the assignee and the team's leads of `notices`)."""
    row.clocks = clocks.dump()
    row.check_at = clocks.check_at(targets)
    row.updated_at = utcnow()
    session.add(row)
    conversation = await session.get(Conversation, row.conversation_id)
    if conversation is None:
        return
    due, status = clocks.soonest(targets), clocks.status(targets, max(now, utcnow()))
    if conversation.sla_due_at == due and conversation.sla_status == status and not notices:
        return
    conversation.sla_due_at, conversation.sla_status = due, status
    session.add(conversation)
    await session.flush()
    view = await load_conversation_view(session, conversation)
    # "sla_at_risk" / "sla_breached" say that this change is the warning or the breach
    # (what automation rules listen to).
    changes = ["sla", *sorted({f"sla_{what}" for _, what in notices})]
    events: list[View] = [ConversationUpdated(inbox_id=view.inbox_id, at=utcnow(),
                                              conversation=view, changes=changes,
                                              by_agent_id=None)]
    if notices:
        events += await _notify(session, conversation, notices)
    stage_events(session, events)


async def _notify(session: AsyncSession, conversation: Conversation,
                  notices: Sequence[tuple[str, str]]) -> list[View]:
    who: set[int] = set()
    if conversation.assignee_id is not None:
        who.add(conversation.assignee_id)
    if conversation.team_id is not None:
        leads = await session.exec(
            select(TeamMember.agent_id).join(Agent, col(Agent.id) == col(TeamMember.agent_id))
            .where(TeamMember.team_id == conversation.team_id, Agent.role == "lead",
                   col(Agent.is_active).is_(True)))
        who.update(leads)
    if not who:
        return []
    words = {"first": "first response", "next": "next response", "resolve": "resolution"}
    about = conversation.subject or conversation.last_message_preview \
        or f"conversation #{conversation.id}"
    text = "; ".join(f"{words[clock]} {'breached' if what == 'breached' else 'at risk'}"
                     for clock, what in notices)
    assert conversation.id is not None
    return list(await notify_many(session, [
        NewNotification(agent_id=agent_id, kind="sla", inbox_id=conversation.inbox_id,
                        conversation_id=conversation.id, text=f"SLA {text}: {about}")
        for agent_id in sorted(who)]))


# -- the checker ----------------------------------------------------------------------------


async def check_due(ctx: InboxContext, *, now: datetime | None = None) -> int:
    """Mark the clocks whose warning or breach is due (each worker takes different rows);
    return how many conversations changed."""
    now = now or utcnow()
    async with ctx.db.write() as session:
        query = (select(ConversationSla).where(col(ConversationSla.check_at) <= now)
                 .order_by(col(ConversationSla.check_at)).limit(CHECK_BATCH))
        if is_postgresql(session):
            query = query.with_for_update(skip_locked=True)
        rows = list(await session.exec(query))
        if not rows:
            return 0
        by_policy = {p.id: p for p in await active_policies(session)}
        for row in rows:
            policy = by_policy.get(row.policy_id) if row.policy_id else None
            targets = policy.targets if policy else NO_TARGETS
            clocks = Clocks.load(row.clocks)
            notices = clocks.advance(targets, now)
            await save(session, row, clocks, targets, now, notices)
    return len(rows)
