"""Report rollups: the figures of the reports, kept from the events stream as they happen.

The `reports` consumer of the events stream (in the shared "integrations" reader) adds each
event to the rows of `report_rollups` it counts in: one row per period (the day, the week
and the month, in the reports' time zone), inbox and group (everyone; the agent; the team; each
label). A report over any range then sums a few hundred rows (inbox/reports.py) instead of
reading conversations, so it answers as fast at a million conversations as at a thousand.

What counts where:

- created: `conversation.created`, for its assignee and team then;
- first response: the first reply of an agent (a person: rules' replies and surveys do
  not count), for the agent who sent it, timed from the conversation's creation;
- replies: every such reply, for its agent; at each resolve the replies since the
  conversation was created (or last reopened) are added to `resolved_replies`, so
  "replies per conversation" is what it took to resolve one;
- resolved / resolution time: each resolve, for the assignee then, timed from the creation
  or the last reopen; SLA attainment: of the resolves under an SLA policy, those whose every
  target was met;
- reopened: a resolved conversation opened again;
- CSAT: a survey sent counts as asked, for the assignee then; its answer counts in the same
  rows (a changed answer replaces the score, it is not a second response).

Times are business seconds in the calendar of the conversation's SLA policy (inbox/sla.py),
or plain seconds where no policy applies; they are kept in histograms ({seconds: count},
as the nearest of a few round durations: see `kept`) so medians and percentiles of any range
come from the sum of its rows. A batch of events is one transaction: its events recorded
as consumed (each counts once, however often it is delivered), the conversations' memory
read and written once, and each touched row read, locked and written once.
"""

from __future__ import annotations

import bisect
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, tuple_, update
from sqlalchemy import select as core_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.bus import Entry
from hub.consumer import Outage
from hub.events import (
    ConversationCreated,
    ConversationStatusChanged,
    ConversationUpdated,
    ConversationView,
    MessageCreated,
)
from inbox.business_hours import ALWAYS_OPEN, Calendar
from inbox.context import InboxContext
from inbox.db import conflict_insert, execute, is_postgresql
from inbox.event_consumers import decode_wanted, first_times, kinds_of, unless_down
from inbox.models import (
    ConversationSla,
    ReportConversation,
    ReportRollup,
    table_of,
)
from inbox.sla import Policy, active_policies, pick

log = logging.getLogger(__name__)

CONSUMER = "reports"
_TYPES = frozenset({"conversation.created", "message.created", "conversation.status_changed",
                    "conversation.updated"})
COUNTERS = ("created", "resolved", "reopened", "replies", "resolved_replies",
            "first_responses", "sla_total", "sla_met", "csat_asked", "csat_responses",
            "csat_sum", "csat_satisfied")
HISTOGRAMS = ("first_response_hist", "resolution_hist")
PERIODS = ("day", "week", "month")  # a week starts on Monday

# A rollup row's key: (period, start, inbox_id, dim, key).
Slot = tuple[str, date, int, str, str]


_MINUTE, _HOUR, _DAY = 60, 3600, 86400
# The times a histogram keeps: round durations, each at most about a third more than the one
# before (a few seconds apart at first, weeks apart at the end). Few buckets keep a year's
# report quick to add up; round ones keep what people read round ("2 h", "1 d").
BUCKETS: tuple[int, ...] = (
    *range(0, 11), 12, 15, 20, 25, 30, 40, 45, 50,
    *(int(m * _MINUTE) for m in (1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20, 25,
                                 30, 35, 40, 45, 50)),
    *(int(h * _HOUR) for h in (1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 18, 20)),
    *(int(d * _DAY) for d in (1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 10, 14, 21, 30, 45, 60,
                              90, 120, 180, 270, 365)))


def kept(seconds: float) -> int:
    """`seconds` as a histogram keeps it: the nearest of BUCKETS (by ratio): at most about
    15% off below a week (coarser beyond), and round durations (2 min, 90 min, 2 h, 1 d)
    exactly."""
    if seconds < 0.5:
        return 0
    at = bisect.bisect_left(BUCKETS, seconds)
    if at >= len(BUCKETS):
        return BUCKETS[-1]
    above, below = BUCKETS[at], BUCKETS[at - 1]
    return int(above if above * below < seconds * seconds else below) if below else int(above)


def period_start(period: str, day: date) -> date:
    if period == "day":
        return day
    return day - timedelta(days=day.weekday()) if period == "week" else day.replace(day=1)


@dataclass
class Delta:
    """What a batch adds to one rollup row."""

    counts: Counter[str] = field(default_factory=Counter)
    hists: dict[str, Counter[str]] = field(default_factory=dict)

    def time(self, name: str, seconds: float) -> None:
        self.hists.setdefault(name, Counter())[str(kept(seconds))] += 1


@dataclass
class Memory:
    """A conversation as the consumer remembers it (a ReportConversation row's values)."""

    cycle_started_at: datetime
    first_response_at: datetime | None = None
    replies: int = 0
    csat_score: int | None = None
    csat_slots: list[Slot] | None = None
    changed: bool = False


class Roller:
    """Adds events to rollup deltas (pure: what it needs of the database is given to it)."""

    def __init__(self, zone: ZoneInfo, policies: Sequence[Policy],
                 memories: dict[int, Memory], breached: dict[int, bool | None]) -> None:
        self.zone = zone
        self.policies = policies
        self.memories = memories
        # Per conversation being resolved: whether an SLA target was missed (None: no policy).
        self.breached = breached
        self.deltas: dict[Slot, Delta] = {}

    def slots(self, view: ConversationView, at: datetime, agent_id: int | None) -> list[Slot]:
        day = at.astimezone(self.zone).date()
        groups = [("all", ""), ("agent", str(agent_id or "")), ("team", str(view.team_id or ""))]
        groups += [("label", label[:100]) for label in sorted(set(view.labels))] \
            or [("label", "")]
        return [(period, period_start(period, day), view.inbox_id, dim, key)
                for period in PERIODS for dim, key in groups]

    def _delta(self, slot: Slot) -> Delta:
        found = self.deltas.get(slot)
        if found is None:
            found = self.deltas[slot] = Delta()
        return found

    def count(self, slots: Iterable[Slot], name: str, by: int = 1) -> None:
        for slot in slots:
            self._delta(slot).counts[name] += by

    def time(self, slots: Iterable[Slot], name: str, seconds: float) -> None:
        for slot in slots:
            self._delta(slot).time(name, seconds)

    def memory(self, view: ConversationView) -> Memory:
        found = self.memories.get(view.id)
        if found is None:
            found = self.memories[view.id] = Memory(cycle_started_at=view.created_at)
        found.changed = True
        return found

    def calendar(self, view: ConversationView) -> Calendar:
        policy = pick(self.policies, view)
        return policy.targets.calendar if policy is not None else ALWAYS_OPEN

    def add(self, event: Any) -> None:
        view: ConversationView | None = getattr(event, "conversation", None)
        if view is None or view.merged_into_id is not None:
            return
        at: datetime = event.at
        if isinstance(event, ConversationCreated):
            # Nothing to remember yet: a later event knows the creation from its view.
            self.count(self.slots(view, at, view.assignee_id), "created")
        elif isinstance(event, MessageCreated):
            self._message(event, view, at)
        elif isinstance(event, ConversationStatusChanged):
            self._status(event, view, at)
        elif isinstance(event, ConversationUpdated) and "csat" in event.changes:
            self._csat(view, at)

    def _message(self, event: MessageCreated, view: ConversationView, at: datetime) -> None:
        message = event.message
        if message.survey:
            memory = self.memory(view)
            slots = self.slots(view, at, view.assignee_id)
            memory.csat_slots = slots
            self.count(slots, "csat_asked")
            return
        if not agent_reply(event):
            return
        memory = self.memory(view)
        slots = self.slots(view, at, message.agent_id)
        self.count(slots, "replies")
        memory.replies += 1
        if memory.first_response_at is None:
            memory.first_response_at = at
            self.count(slots, "first_responses")
            self.time(slots, "first_response_hist",
                      self.calendar(view).between(min(view.created_at, at), at))

    def _status(self, event: ConversationStatusChanged, view: ConversationView,
                at: datetime) -> None:
        status, before = view.status, event.previous_status
        if status == "resolved" and before != "resolved":
            memory = self.memory(view)
            slots = self.slots(view, at, view.assignee_id)
            self.count(slots, "resolved")
            self.count(slots, "resolved_replies", memory.replies)
            self.time(slots, "resolution_hist", self.calendar(view).between(
                min(memory.cycle_started_at, at), at))
            breached = self.breached.get(view.id)
            if breached is not None:
                self.count(slots, "sla_total")
                if not breached:
                    self.count(slots, "sla_met")
            memory.replies = 0
        elif before == "resolved" and status != "resolved":
            memory = self.memory(view)
            memory.cycle_started_at = at
            self.count(self.slots(view, at, view.assignee_id), "reopened")

    def _csat(self, view: ConversationView, at: datetime) -> None:
        score = view.csat_score
        if score is None:
            return
        memory = self.memory(view)
        slots = memory.csat_slots or self.slots(view, at, view.assignee_id)
        before = memory.csat_score
        if before is None:
            self.count(slots, "csat_responses")
        self.count(slots, "csat_sum", score - (before or 0))
        self.count(slots, "csat_satisfied", int(score >= 4) - int((before or 0) >= 4))
        memory.csat_score = score


# -- the consumer ---------------------------------------------------------------------------


class ReportsConsumer:
    """The `reports` consumer (see the module); `apply` is what a SharedReader calls."""

    name = CONSUMER

    def __init__(self, time_zone: str = "UTC") -> None:
        self.zone = ZoneInfo(time_zone)

    async def apply(self, ctx: InboxContext, entries: Sequence[Entry]
                    ) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = [None] * len(entries)
        kinds = kinds_of(entries, _TYPES)
        if kinds is None:
            return outcomes
        decoded = decode_wanted(entries, kinds, _TYPES, outcomes)
        if not decoded:
            return outcomes
        try:
            await unless_down(self._roll(ctx, [event for _, event in decoded]))
        except Outage:
            raise
        except Exception as exc:
            # The batch's transaction rolled back (two workers made the memory of one new
            # conversation at once, say): its events come again, none counted twice.
            log.exception("report rollups failed on a batch of %d events", len(decoded))
            for n, _ in decoded:
                outcomes[n] = exc
        return outcomes

    async def _roll(self, ctx: InboxContext, events: Sequence[Any]) -> None:
        async with ctx.db.write() as session:
            await roll(session, events, self.zone)


def agent_reply(event: MessageCreated) -> bool:
    """A person's reply (not a rule's, not an automated message, not a note)."""
    message = event.message
    return (message.kind == "message" and message.direction == "out"
            and message.agent_id is not None and not message.automated and not event.caused_by)


def counts(event: Any) -> bool:
    """Whether the event changes a figure (the others, a customer's message above all, are
    not even recorded as consumed)."""
    if isinstance(event, MessageCreated):
        return event.message.survey or agent_reply(event)
    if isinstance(event, ConversationUpdated):
        return "csat" in event.changes
    return isinstance(event, ConversationCreated | ConversationStatusChanged)


async def roll(session: AsyncSession, events: Sequence[Any], zone: ZoneInfo) -> None:
    """Add `events` (those not added before) to the rollups, in the caller's transaction."""
    events = [event for event in events if counts(event)]
    fresh = await first_times(session, consumer=CONSUMER,
                              event_ids=[event.id for event in events])
    events = [event for event in events if event.id in fresh]
    conversation_ids = sorted({view.id for event in events
                               if (view := getattr(event, "conversation", None)) is not None})
    if not conversation_ids:
        return
    postgres = is_postgresql(session)
    # The memories these events need, made first if missing and locked in id order by one
    # statement (two workers on one new conversation then wait for each other, in order,
    # instead of one failing on the other's insert).
    started: dict[int, datetime] = {}
    for event in events:
        if not isinstance(event, ConversationCreated):
            started.setdefault(event.conversation.id, event.conversation.created_at)
    if started:
        memory_table = table_of(ReportConversation)
        made = conflict_insert(memory_table, postgres).values([
            {"conversation_id": cid, "cycle_started_at": started[cid], "replies": 0}
            for cid in sorted(started)])
        await execute(session, made.on_conflict_do_update(
            index_elements=["conversation_id"],
            set_={"conversation_id": made.excluded.conversation_id}) if postgres
            else made.on_conflict_do_nothing(index_elements=["conversation_id"]))
    query = select(ReportConversation).where(
        col(ReportConversation.conversation_id).in_(conversation_ids)).order_by(
        col(ReportConversation.conversation_id))
    if postgres:
        query = query.with_for_update()
    rows = {row.conversation_id: row for row in await session.exec(query)}
    memories = {cid: Memory(cycle_started_at=row.cycle_started_at,
                            first_response_at=row.first_response_at, replies=row.replies,
                            csat_score=row.csat_score,
                            csat_slots=[_slot(raw) for raw in row.csat_slots]
                            if row.csat_slots else None)
                for cid, row in rows.items()}
    resolving = sorted({event.conversation.id for event in events
                        if isinstance(event, ConversationStatusChanged)
                        and event.conversation.status == "resolved"})
    breached: dict[int, bool | None] = {}
    if resolving:
        for sla in await session.exec(select(ConversationSla).where(
                col(ConversationSla.conversation_id).in_(resolving))):
            if sla.policy_id is not None:
                breached[sla.conversation_id] = any(
                    bool((clock or {}).get("breached")) for clock in sla.clocks.values())
    roller = Roller(zone, await _policies(session, events), memories, breached)
    for event in events:
        roller.add(event)
    # Every memory this batch changed exists (made above): one UPDATE for all of them.
    changed = [{"b_id": cid, "cycle_started_at": memory.cycle_started_at,
                "first_response_at": memory.first_response_at, "replies": memory.replies,
                "csat_score": memory.csat_score,
                "csat_slots": [[p, s.isoformat(), i, d, k] for p, s, i, d, k
                               in memory.csat_slots] if memory.csat_slots else None}
               for cid, memory in sorted(roller.memories.items()) if memory.changed]
    if changed:
        memories_table = table_of(ReportConversation)
        await execute(session, update(memories_table).where(
            memories_table.c.conversation_id == bindparam("b_id")), changed)
    await write_deltas(session, roller.deltas)


async def _policies(session: AsyncSession, events: Sequence[Any]) -> list[Policy]:
    """The SLA policies (their calendars time the figures), read only when something is timed."""
    if any(isinstance(event, MessageCreated | ConversationStatusChanged) for event in events):
        return await active_policies(session)
    return []


def _slot(raw: Sequence[Any]) -> Slot:
    period, start, inbox_id, dim, key = raw
    return (str(period), date.fromisoformat(str(start)), int(inbox_id), str(dim), str(key))


async def write_deltas(session: AsyncSession, deltas: dict[Slot, Delta]) -> None:
    """Add the deltas to their rows: every row made if missing and locked by one statement in
    key order (so two workers never wait on each other in a circle), read, and written."""
    if not deltas:
        return
    table = table_of(ReportRollup)
    keys = sorted(deltas)
    postgres = is_postgresql(session)
    for chunk in _chunks(keys, 500):
        # Every row of the chunk, new or not, locked by this one statement in key order
        # (DO NOTHING would lock only the new ones, the rest later: two workers could then
        # each hold a row the other waits for).
        made = conflict_insert(table, postgres).values([
            {"period": p, "start": s, "inbox_id": i, "dim": d, "key": k,
             **dict.fromkeys(COUNTERS, 0), **{name: {} for name in HISTOGRAMS}}
            for p, s, i, d, k in chunk])
        await execute(session, made.on_conflict_do_update(
            index_elements=["period", "start", "inbox_id", "dim", "key"],
            set_={"period": made.excluded.period}) if postgres
            else made.on_conflict_do_nothing())
        columns = (table.c.period, table.c.start, table.c.inbox_id, table.c.dim, table.c.key)
        query = (core_select(*columns, *(table.c[name] for name in COUNTERS),
                             *(table.c[name] for name in HISTOGRAMS))
                 .where(tuple_(*columns).in_(chunk)).order_by(*columns))
        if postgres:
            query = query.with_for_update()
        changes: list[dict[str, Any]] = []
        for row in (await execute(session, query)).all():
            slot: Slot = (row.period, row.start, row.inbox_id, row.dim, row.key)
            delta = deltas[slot]
            change: dict[str, Any] = {
                "b_period": row.period, "b_start": row.start, "b_inbox_id": row.inbox_id,
                "b_dim": row.dim, "b_key": row.key}
            for name in COUNTERS:
                change[name] = getattr(row, name) + delta.counts.get(name, 0)
            for name in HISTOGRAMS:
                merged = Counter(getattr(row, name) or {})
                merged.update(delta.hists.get(name, {}))
                change[name] = dict(merged)
            changes.append(change)
        await execute(session, update(table).where(
            table.c.period == bindparam("b_period"), table.c.start == bindparam("b_start"),
            table.c.inbox_id == bindparam("b_inbox_id"), table.c.dim == bindparam("b_dim"),
            table.c.key == bindparam("b_key")), changes)


def _chunks(items: Sequence[Slot], size: int) -> Iterable[Sequence[Slot]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
