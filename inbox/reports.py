"""Load reports for team leads: open conversations per agent, team and inbox, and the queue.

A lead sees the agents of their inboxes and teams, their own teams and their inboxes;
an admin sees everyone. Each figure is one grouped query, not one per row.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy import Text, and_, case, cast, func, or_
from sqlalchemy import select as core_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.types import utcnow
from inbox.agent_events import is_online
from inbox.agents import Principal
from inbox.db import execute
from inbox.errors import Forbidden, Refused
from inbox.models import (
    Agent,
    Conversation,
    Inbox,
    InboxMember,
    ReportRollup,
    Team,
    TeamInbox,
    TeamMember,
    table_of,
)
from inbox.report_rollups import COUNTERS, HISTOGRAMS


class AgentLoad(BaseModel):
    """An agent's load: open conversations against their capacity."""

    id: int
    name: str
    availability: str
    online: bool
    open: int
    capacity: int | None


class TeamLoad(BaseModel):
    """A team's open conversations and its queue."""

    id: int
    name: str
    open: int
    waiting: int


class InboxLoad(BaseModel):
    """An inbox's open conversations, its queue and its open unassigned ones."""

    id: int
    name: str
    open: int
    waiting: int
    unassigned: int


class Waiting(BaseModel):
    """An open conversation nobody has taken: since when it waits."""

    id: int
    inbox_id: int
    title: str
    since: datetime


class LoadReport(BaseModel):
    """The load of the agents, teams and inboxes the lead steers, and the open conversations
    nobody has taken that wait longest."""

    agents: list[AgentLoad]
    teams: list[TeamLoad]
    inboxes: list[InboxLoad]
    waiting_longest: list[Waiting] = []


WAITING_SHOWN = 5


def _open_counts(group: Any, where: Sequence[Any]) -> Any:
    """open, waiting and unassigned-open counts grouped by `group`."""
    is_open = Conversation.status == "open"
    return (
        select(
            group,
            func.count(),
            func.sum(case((col(Conversation.waiting_since).is_not(None), 1), else_=0)),
            func.sum(case((col(Conversation.assignee_id).is_(None), 1), else_=0)),
        )
        .where(is_open, *where)
        .group_by(group)
    )


async def load_report(
    session: AsyncSession, principal: Principal, *, presence_seconds: int
) -> LoadReport:
    """The load report (team leads and admins)."""
    if not principal.is_lead:
        raise Forbidden("only team leads and admins read load reports")
    inbox_ids = sorted(principal.inbox_ids)
    team_ids = sorted(principal.team_ids)
    agent_query = select(Agent).where(col(Agent.is_active).is_(True))
    team_query = select(Team)
    if not principal.is_admin:
        agent_query = agent_query.where(or_(
            col(Agent.id).in_(select(InboxMember.agent_id)
                              .where(col(InboxMember.inbox_id).in_(inbox_ids))),
            col(Agent.id).in_(select(TeamMember.agent_id).where(
                col(TeamMember.team_id).in_(
                    select(TeamInbox.team_id).where(col(TeamInbox.inbox_id).in_(inbox_ids))
                ) | col(TeamMember.team_id).in_(team_ids))),
        ))
        team_query = team_query.where(col(Team.id).in_(team_ids))
    agents = list(await session.exec(agent_query.order_by(col(Agent.name), col(Agent.id))))
    teams = list(await session.exec(team_query.order_by(col(Team.name), col(Team.id))))
    inboxes = list(await session.exec(
        select(Inbox).where(col(Inbox.id).in_(inbox_ids)).order_by(col(Inbox.id))))
    agent_ids = [a.id for a in agents if a.id is not None]
    per_agent = {row[0]: row[1] for row in await session.exec(
        select(Conversation.assignee_id, func.count())
        .where(Conversation.status == "open", col(Conversation.assignee_id).in_(agent_ids))
        .group_by(col(Conversation.assignee_id)))}
    per_team = {row[0]: row for row in await session.exec(_open_counts(
        col(Conversation.team_id), [col(Conversation.team_id).in_([t.id for t in teams])]))}
    per_inbox = {row[0]: row for row in await session.exec(_open_counts(
        col(Conversation.inbox_id), [col(Conversation.inbox_id).in_(inbox_ids)]))}
    since = func.coalesce(col(Conversation.waiting_since), col(Conversation.created_at))
    waiting = [Waiting(id=c.id or 0, inbox_id=c.inbox_id, since=c.waiting_since or c.created_at,
                       title=c.subject or c.last_message_preview or f"Conversation #{c.id}")
               for c in await session.exec(
                   select(Conversation).where(
                       Conversation.status == "open", col(Conversation.assignee_id).is_(None),
                       col(Conversation.inbox_id).in_(inbox_ids),
                       col(Conversation.merged_into_id).is_(None))
                   .order_by(since, col(Conversation.id)).limit(WAITING_SHOWN))]
    now = utcnow()
    return LoadReport(
        agents=[AgentLoad(id=a.id or 0, name=a.name, availability=a.availability,
                          online=is_online(a, presence_seconds=presence_seconds, now=now),
                          open=per_agent.get(a.id, 0), capacity=a.capacity) for a in agents],
        teams=[TeamLoad(id=t.id or 0, name=t.name, open=_n(per_team.get(t.id), 1),
                        waiting=_n(per_team.get(t.id), 2)) for t in teams],
        inboxes=[InboxLoad(id=i.id or 0, name=i.name, open=_n(per_inbox.get(i.id), 1),
                           waiting=_n(per_inbox.get(i.id), 2),
                           unassigned=_n(per_inbox.get(i.id), 3)) for i in inboxes],
        waiting_longest=waiting,
    )


def _n(row: Any, index: int) -> int:
    return int(row[index] or 0) if row is not None else 0


# -- activity reports (from the rollups of inbox/report_rollups.py) -------------------------

GROUPS = ("agent", "team", "inbox", "channel", "label")
MAX_DAYS = 1100  # three years
_NONE_NAMES = {"agent": "Unassigned", "team": "No team", "label": "No label"}


class ActivityRow(BaseModel):
    """The figures of one group (or of everything: the total) over the report's range.
    Times are seconds (business seconds where an SLA calendar applies); rates are 0-1."""

    key: str
    name: str
    created: int
    resolved: int
    reopened: int
    replies: int
    replies_per_conversation: float | None
    first_responses: int
    first_response_median: int | None
    first_response_p90: int | None
    resolution_median: int | None
    resolution_p90: int | None
    sla_resolved: int
    sla_attainment: float | None
    csat_asked: int
    csat_responses: int
    csat_response_rate: float | None
    csat_score: float | None  # the share of answers that were 4 or 5
    csat_average: float | None


class ActivityDay(BaseModel):
    """One day of the range, everything the reader may see together."""

    day: date
    created: int
    resolved: int
    first_response_median: int | None
    csat_score: float | None


class ActivityReport(BaseModel):
    """Conversations, times, SLA and satisfaction over a range of days, by one grouping."""

    start: date
    end: date
    group: str
    time_zone: str
    total: ActivityRow
    rows: list[ActivityRow]
    days: list[ActivityDay]


_DAY_FIGURES = ("created", "resolved", "csat_responses", "csat_satisfied")
_DAY_TIMES = ("first_response_hist",)


class _Sum:
    """Rollup rows added up (histograms keyed by the seconds as the rows store them)."""

    __slots__ = ("counts", "hists")

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.hists: dict[str, dict[str, int]] = {name: {} for name in HISTOGRAMS}

    def add(self, row: Any, counters: Sequence[str] = COUNTERS,
            histograms: Sequence[str] = HISTOGRAMS) -> None:
        counts = self.counts
        for name in counters:
            counts[name] += getattr(row, name)
        for name in histograms:
            hist = getattr(row, name)  # JSON text (_as_text)
            if hist and hist != "{}":
                _merge(self.hists[name], orjson.loads(hist))

    def merge(self, other: _Sum) -> None:
        self.counts.update(other.counts)
        for name, hist in other.hists.items():
            _merge(self.hists[name], hist)

    def row(self, key: str, name: str) -> ActivityRow:
        c = self.counts
        first, resolution = self.hists["first_response_hist"], self.hists["resolution_hist"]
        return ActivityRow(
            key=key, name=name, created=c["created"], resolved=c["resolved"],
            reopened=c["reopened"], replies=c["replies"],
            replies_per_conversation=_ratio(c["resolved_replies"], c["resolved"]),
            first_responses=c["first_responses"],
            first_response_median=percentile(first, 0.5), first_response_p90=percentile(first, 0.9),
            resolution_median=percentile(resolution, 0.5),
            resolution_p90=percentile(resolution, 0.9),
            sla_resolved=c["sla_total"], sla_attainment=_ratio(c["sla_met"], c["sla_total"]),
            csat_asked=c["csat_asked"], csat_responses=c["csat_responses"],
            csat_response_rate=_ratio(c["csat_responses"], c["csat_asked"]),
            csat_score=_ratio(c["csat_satisfied"], c["csat_responses"]),
            csat_average=_ratio(c["csat_sum"], c["csat_responses"]))


_NOTHING = _Sum()


def _as_text(column: Any) -> Any:
    """A histogram column as its JSON text, decoded by orjson in `_Sum.add`: several times
    faster than the drivers' `json`, and a year of label rows decodes hundreds of thousands
    of entries. (Histograms hold small integers only, which orjson reads exactly.)"""
    return cast(column, Text).label(column.name)


def _merge(into: dict[str, int], hist: Mapping[str, int]) -> None:
    # What Counter.update does for a mapping, without its per-call checks: at a year of
    # label rows (hundreds of thousands of entries) the loop is most of the report's time.
    get = into.get
    for value, count in hist.items():
        into[value] = get(value, 0) + count


def _sum_of(sums: dict[Any, _Sum], key: Any) -> _Sum:
    found = sums.get(key)
    if found is None:
        found = sums[key] = _Sum()
    return found


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def percentile(hist: Mapping[Any, int], share: float) -> int | None:
    """The nearest-rank percentile of a histogram ({seconds: count}, the seconds as numbers
    or as the rows' text): the smallest value with at least `share` of the values at or
    below it (the median of 60, 120, 300, 600 is 120)."""
    total = sum(hist.values())
    if not total:
        return None
    rank = max(1, math.ceil(share * total - 1e-9))
    seen = 0
    for value in sorted(hist, key=int):
        seen += hist[value]
        if seen >= rank:
            return int(value)
    return None  # pragma: no cover - the ranks add up to the total


def split_range(start: date, end: date
                ) -> tuple[list[date], list[date], list[tuple[date, date]]]:
    """[start, end] as the fewest rollup rows cover it: the whole months inside it (their
    first days), the whole weeks (Monday to Sunday) inside what is left, and the day ranges
    left around those."""
    months: list[date] = []
    first = start if start.day == 1 else _next_month(start)
    while _next_month(first) - timedelta(days=1) <= end:
        months.append(first)
        first = _next_month(first)
    edges = [(start, end)]
    if months:
        after = _next_month(months[-1])
        edges = [edge for edge in ((start, months[0] - timedelta(days=1)), (after, end))
                 if edge[0] <= edge[1]]
    weeks: list[date] = []
    days: list[tuple[date, date]] = []
    for low, high in edges:
        monday = low + timedelta(days=-low.weekday() % 7)
        inside = []
        while monday + timedelta(days=6) <= high:
            inside.append(monday)
            monday += timedelta(days=7)
        if not inside:
            days.append((low, high))
            continue
        weeks += inside
        if low < inside[0]:
            days.append((low, inside[0] - timedelta(days=1)))
        if inside[-1] + timedelta(days=7) <= high:
            days.append((inside[-1] + timedelta(days=7), high))
    return months, weeks, days


def covering(start: date, end: date) -> Any:
    """The condition on report_rollups of the rows that cover [start, end] (split_range)."""
    table = table_of(ReportRollup)
    months, weeks, day_ranges = split_range(start, end)
    parts = [and_(table.c.period == "day", table.c.start.between(a, b)) for a, b in day_ranges]
    if months:
        parts.append(and_(table.c.period == "month", table.c.start.in_(months)))
    if weeks:
        parts.append(and_(table.c.period == "week", table.c.start.in_(weeks)))
    return or_(*parts)


def _next_month(day: date) -> date:
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


async def report_inbox_ids(session: AsyncSession, principal: Principal) -> list[int]:
    """The inboxes whose figures a lead (their inboxes) or an admin (all) reads."""
    if not principal.is_lead:
        raise Forbidden("only team leads and admins read reports")
    if principal.is_admin:
        return list(await session.exec(select(Inbox.id).order_by(col(Inbox.id))))  # type: ignore[arg-type]
    return sorted(principal.inbox_ids)


def rollup_queries(inbox_ids: Sequence[int], start: date, end: date, group: str
                   ) -> tuple[Any, Any]:
    """The two reads of an activity report: the rows of the groups and of the total (the
    whole months, weeks and days that cover the range), and the day rows of everything
    (only what the day table and the chart show). Histograms come as JSON text."""
    c = table_of(ReportRollup).c
    dim = "all" if group in ("inbox", "channel") else group
    groups = core_select(
        c.dim, c.inbox_id, c.key, *(c[name] for name in COUNTERS),
        *(_as_text(c[name]) for name in HISTOGRAMS)).where(
        c.dim.in_({dim, "all"}), c.inbox_id.in_(inbox_ids), covering(start, end))
    days = core_select(
        c.start, *(c[name] for name in _DAY_FIGURES),
        *(_as_text(c[name]) for name in _DAY_TIMES)).where(
        c.dim == "all", c.period == "day", c.inbox_id.in_(inbox_ids),
        c.start.between(start, end))
    return groups, days


async def activity_report(session: AsyncSession, principal: Principal, *, start: date,
                          end: date, group: str, time_zone: str,
                          channel_names: Mapping[str, str] | None = None) -> ActivityReport:
    """The activity report of the principal's inboxes over [start, end] (whole days);
    channels are named by `channel_names` (their display names, from the channel registry)."""
    channel_names = channel_names or {}
    if group not in GROUPS:
        raise Refused(f"group must be one of {', '.join(GROUPS)}")
    if end < start:
        raise Refused("the range ends before it starts")
    if (end - start).days >= MAX_DAYS:
        raise Refused(f"a report covers at most {MAX_DAYS} days")
    inbox_ids = await report_inbox_ids(session, principal)
    dim = "all" if group in ("inbox", "channel") else group
    grouped: dict[str, _Sum] = {}
    total = _Sum()
    per_day: dict[date, _Sum] = {}
    if inbox_ids:
        groups_query, days_query = rollup_queries(inbox_ids, start, end, group)
        for row in (await execute(session, groups_query)).all():
            if row.dim == "all":
                total.add(row)
            if row.dim == dim:
                key = str(row.inbox_id) if dim == "all" else row.key
                _sum_of(grouped, key).add(row)
        for row in (await execute(session, days_query)).all():
            _sum_of(per_day, row.start).add(row, _DAY_FIGURES, _DAY_TIMES)
    if group == "channel":
        channels = dict((await execute(session, core_select(
            col(Inbox.id), col(Inbox.channel)).where(
            col(Inbox.id).in_([int(k) for k in grouped])))).all()) if grouped else {}
        by_channel: dict[str, _Sum] = {}
        for key, summed in grouped.items():
            _sum_of(by_channel, channels.get(int(key), "?")).merge(summed)
        grouped = by_channel
    names = await _names(session, group, list(grouped), channel_names)
    rows = [summed.row(key, names.get(key, key)) for key, summed in grouped.items()]
    rows.sort(key=lambda r: (-r.created - r.resolved, r.name.casefold()))
    days = []
    day = start
    while day <= end:
        figures = (per_day.get(day) or _NOTHING).row("", "")
        days.append(ActivityDay(day=day, created=figures.created, resolved=figures.resolved,
                                first_response_median=figures.first_response_median,
                                csat_score=figures.csat_score))
        day += timedelta(days=1)
    return ActivityReport(start=start, end=end, group=group, time_zone=time_zone,
                          total=total.row("", "Total"), rows=rows, days=days)


async def _names(session: AsyncSession, group: str, keys: list[str],
                 channel_names: Mapping[str, str]) -> dict[str, str]:
    names = {key: _NONE_NAMES.get(group, key) for key in keys if key == ""}
    ids = [int(key) for key in keys if key.isdigit()]
    model: Any = {"agent": Agent, "team": Team, "inbox": Inbox}.get(group)
    if model is not None and ids:
        for found_id, name in (await execute(session, core_select(model.id, model.name).where(
                model.id.in_(ids)))).all():
            names[str(found_id)] = name
    if group == "channel":
        names.update({key: channel_names.get(key, key) for key in keys})
    elif group == "label":
        names.update({key: key for key in keys if key})
    return names


ROW_COLUMNS = (
    ("name", "Group"), ("created", "Created"), ("resolved", "Resolved"),
    ("reopened", "Reopened"), ("replies", "Replies"),
    ("replies_per_conversation", "Replies per resolved conversation"),
    ("first_response_median", "First response median (s)"),
    ("first_response_p90", "First response p90 (s)"),
    ("resolution_median", "Resolution median (s)"), ("resolution_p90", "Resolution p90 (s)"),
    ("sla_resolved", "Resolved under an SLA"), ("sla_attainment", "SLA attainment"),
    ("csat_asked", "Surveys sent"), ("csat_responses", "Survey answers"),
    ("csat_response_rate", "Survey response rate"), ("csat_score", "CSAT (share of 4-5)"),
    ("csat_average", "CSAT average"))
DAY_COLUMNS = (("day", "Day"), ("created", "Created"), ("resolved", "Resolved"),
               ("first_response_median", "First response median (s)"),
               ("csat_score", "CSAT (share of 4-5)"))


def report_csv(report: ActivityReport, table: str) -> str:
    """One table of the report as CSV (groups with the total last, or the days)."""
    out = io.StringIO()
    writer = csv.writer(out)
    if table == "days":
        writer.writerow([title for _, title in DAY_COLUMNS])
        items: list[BaseModel] = list(report.days)
        columns: tuple[tuple[str, str], ...] = DAY_COLUMNS
    else:
        writer.writerow([title for _, title in ROW_COLUMNS])
        items = [*report.rows, report.total]
        columns = ROW_COLUMNS
    for item in items:
        values = item.model_dump()
        writer.writerow([_cell(values[name]) for name, _ in columns])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    # A spreadsheet runs a cell that starts like a formula: names are people's input.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
