"""Activity reports: how long a report over a year takes at 1,000,000 conversations.

The requirement: a report over a year at 1M conversations answers in under 500 ms (p99).
What is timed is `inbox.reports.activity_report(session, admin, start=..., end=...,
group=..., time_zone="UTC")`, wall time of the whole block `async with db.read() as
session: await activity_report(...)` (a read session from the app's pool, as a request has
it): the two rollup queries and the decoding of their rows (JSON histograms included), the
summing in Python, the medians and percentiles, the names query, the pydantic rows. Not
the HTTP layer around it, nor the CSV, which is timed apart: `report_csv(report,
"groups")`, once per scenario.

Set-up: a fresh database with the schema (SQLite in a temp dir; `--shape production`: a
fresh PostgreSQL database `sbtest_<hex>` on 127.0.0.1:5432, dropped afterwards, also on
Ctrl-C or SIGTERM; after the set-up `VACUUM ANALYZE report_rollups`, as autovacuum would
have done by then; the SQLite shape is left as the app leaves it, without ANALYZE),
migrated with `inbox.migrate`. 10 inboxes on six
channels (api, email, whatsapp, sms, webchat: the website widget, telegram), 60 agents
(6-10 per inbox, overlapping), 8 teams (1-3 per inbox) and 25 labels (drawn Zipf-like).

Then a year of `--conversations` (1,000,000) conversations, created 2026-01-01..2026-12-31
(UTC; weekdays about 2.5 times as busy as Sundays, daytime hours busier than nights), each
in an inbox (some busier than others), with a team for 75 %, 0-3 labels, an assignee among
the inbox's agents for 95 % (nobody's for the rest). Its events: `conversation.created`;
1-4 agents' replies (`message.created` of an outgoing message with agent_id set; the
first a log-normal 30 minutes (median) after creation, then about an hour apart; 10 % of
them by a colleague of the assignee); `conversation.status_changed` to resolved for 90 %
(median two hours after the last reply), of which 5 % are reopened (about a day later),
answered once more and resolved again; for 30 % of the resolved a CSAT survey (an
automated survey message, which counts as asked), answered by half of those
(`conversation.updated` with changes ["csat"] and csat_score 1-5, mostly 4-5). 60 % of
the conversations are under an SLA policy (15 % of those breached a target); no policy has
a calendar of business hours, so times are plain seconds. About 4.6 events per
conversation; customers' messages are left out (the consumer ignores them).

The rollup rows are made by the code the `reports` consumer runs, but not through the
events stream: the events are fed, conversation by conversation in the order of creation,
to one `inbox.report_rollups.Roller` (what `roll` does with a batch once its memory and
SLA facts are read), and its deltas are written with `inbox.report_rollups.write_deltas`
(what `roll` ends with), in one write transaction per `--chunk` (20,000) conversations
(about a week). A conversation's events are all rolled in one chunk (the Roller's memory
of conversations is cleared between chunks). A shortcut of the generator: after a chunk,
only the rows that no later conversation can add to are written (the days before the next
chunk's first creation, the months before its month); the rest stay in the Roller's
deltas and go on adding up, so each row is written once, with the sum the consumer's
batches would have added to it bit by bit. The consumer's bookkeeping (consumed events,
report_conversations) is not written; the reports do not read it.

Scenarios (an admin, who sees all 10 inboxes), each `--repeats` (30) times after 2
unmeasured calls: the year 2026 by agent, team, inbox, channel and label (month rows for
the groups, day rows of "everyone" for the total and the days); 2026-01-15..2026-12-14 by
agent and by label (day rows at both edges, the most rows); the last 30 days by agent; the
second quarter by label. For each: median, p99 (nearest rank: with 30 repeats it is the
slowest call) and min in ms; the rollup rows the report reads (groups + days) and their
histogram entries, counted by separate queries, not timed; "fetch": the median time of
those two queries alone (`inbox.reports.rollup_queries`; the histograms come as JSON text,
decoded in the rest of the call, which is Python); and the
CSV. Also the total of the year report against the conversations generated (a check that
every conversation was counted once).

`--profile DIR`: afterwards, each scenario whose p99 is over `--profile-over` (500 ms)
runs `--profile-runs` (10) more times, unmeasured, under py-spy (`record --idle
--nonblocking` on this process; `pip install py-spy` into the venv), and the main
thread's samples (idle included, so shares of wall time) are summed by innermost frame
and, for the product's functions (inbox/), inclusively. py-spy's raw stacks stay in DIR.

    .venv/bin/python bench/reports.py                                  # SQLite in a temp dir
    .venv/bin/python bench/reports.py --shape production               # fresh PostgreSQL db
    .venv/bin/python bench/reports.py --conversations 50000 --repeats 5   # a quick try

The set-up takes about 4 minutes at 1M conversations on 2 cores (two thirds of it the
Python of the events and the Roller, a third write_deltas); the measurements 9 x 32 calls
and a few more, about 6 minutes while a year's report takes a second (`--profile` adds
`--profile-runs` calls per slow scenario). Other work on the machine makes every figure
worse: the busy share of the machine and the load average during the measurements are
printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from sqlalchemy import func, text  # noqa: E402
from sqlalchemy import select as core_select  # noqa: E402

from bench.fresh_database import fresh_database  # noqa: E402
from hub.events import (  # noqa: E402
    ConversationCreated,
    ConversationStatusChanged,
    ConversationUpdated,
    ConversationView,
    MessageCreated,
    MessageView,
)
from inbox.agents import Principal, create_agent  # noqa: E402
from inbox.db import Database, execute  # noqa: E402
from inbox.inboxes import create_inbox  # noqa: E402
from inbox.models import ReportRollup, Team, table_of  # noqa: E402
from inbox.report_rollups import Roller, write_deltas  # noqa: E402
from inbox.reports import activity_report, report_csv, rollup_queries  # noqa: E402

YEAR = 2026
UTC_ZONE = ZoneInfo("UTC")
# (name, channel, weight: its share of the conversations)
INBOXES = [("Support", "email", 22), ("Billing", "email", 12), ("Shop chat", "webchat", 14),
           ("Help centre chat", "webchat", 8), ("WhatsApp DE", "whatsapp", 12),
           ("WhatsApp CH", "whatsapp", 8), ("SMS", "sms", 6), ("Telegram", "telegram", 5),
           ("Partner API", "api", 7), ("App feedback API", "api", 6)]
CHANNEL_NAMES = {"api": "API", "email": "Email", "whatsapp": "WhatsApp", "sms": "SMS",
                 "webchat": "Website chat", "telegram": "Telegram"}
TEAMS = ["Tier 1", "Tier 2", "Billing", "Returns", "Enterprise", "Onboarding", "Night shift",
         "Escalations"]
LABELS = ["billing", "refund", "shipping", "returns", "bug", "feature request", "login",
          "password", "invoice", "cancellation", "vip", "complaint", "delivery delay",
          "damaged item", "exchange", "discount", "account", "privacy", "api", "integration",
          "onboarding", "feedback", "spam", "urgent", "wholesale"]
LABEL_WEIGHTS = [1 / (rank + 1) for rank in range(len(LABELS))]
AGENTS = 60
PASSWORD = "correct horse battery staple"
HOUR_WEIGHTS = [1, 1, 1, 1, 1, 2, 4, 8, 12, 14, 14, 13, 11, 12, 13, 13, 12, 10, 8, 6, 4, 3,
                2, 1]
DAY_WEIGHTS = [1.0, 1.0, 1.0, 1.0, 0.95, 0.45, 0.4]  # Monday .. Sunday


@dataclass(frozen=True)
class Scenario:
    name: str
    start: date
    end: date
    group: str


SCENARIOS = [
    Scenario("year by agent", date(YEAR, 1, 1), date(YEAR, 12, 31), "agent"),
    Scenario("year by team", date(YEAR, 1, 1), date(YEAR, 12, 31), "team"),
    Scenario("year by inbox", date(YEAR, 1, 1), date(YEAR, 12, 31), "inbox"),
    Scenario("year by channel", date(YEAR, 1, 1), date(YEAR, 12, 31), "channel"),
    Scenario("year by label", date(YEAR, 1, 1), date(YEAR, 12, 31), "label"),
    Scenario("15 Jan-14 Dec by agent", date(YEAR, 1, 15), date(YEAR, 12, 14), "agent"),
    Scenario("15 Jan-14 Dec by label", date(YEAR, 1, 15), date(YEAR, 12, 14), "label"),
    Scenario("last 30 days by agent", date(YEAR, 12, 2), date(YEAR, 12, 31), "agent"),
    Scenario("Q2 by label", date(YEAR, 4, 1), date(YEAR, 6, 30), "label"),
]


def say(line: str) -> None:
    print(line, flush=True)


# -- the database -------------------------------------------------------------------------


@dataclass
class World:
    db: Database
    database: str | None  # the PostgreSQL database's name; None on SQLite
    path: Path | None  # the SQLite file
    inbox_ids: list[int]
    channel_of: dict[int, str]
    agents_of: dict[int, list[int]]  # inbox id -> its agents
    teams_of: dict[int, list[int]]  # inbox id -> its teams
    admin: Principal


@contextlib.asynccontextmanager
async def prepared(shape: str, seed: int) -> AsyncIterator[World]:
    """A fresh migrated database with the inboxes, agents and teams; dropped afterwards."""
    async with fresh_database(shape, "sb-reports-") as fresh:
        db = fresh.db
        rng = random.Random(seed)
        async with db.write() as session:
            inboxes = [await create_inbox(session, name=name, channel=channel, settings={})
                       for name, channel, _ in INBOXES]
            agents = [await create_agent(session, email=f"agent{n}@example.com",
                                         name=f"Agent {n:02d}", password=PASSWORD,
                                         role="admin" if n == 0 else "agent")
                      for n in range(AGENTS)]
            teams = [Team(name=name) for name in TEAMS]
            session.add_all(teams)
            await session.flush()
        inbox_ids = [int(i.id or 0) for i in inboxes]
        agent_ids = [int(a.id or 0) for a in agents]
        team_ids = [int(t.id or 0) for t in teams]
        yield World(
            db=db, database=fresh.database, path=fresh.path,
            inbox_ids=inbox_ids,
            channel_of={int(i.id or 0): i.channel for i in inboxes},
            agents_of={iid: sorted(rng.sample(agent_ids, 6 + n % 5))
                       for n, iid in enumerate(inbox_ids)},
            teams_of={iid: sorted(rng.sample(team_ids, 1 + n % 3))
                      for n, iid in enumerate(inbox_ids)},
            admin=Principal(agent_id=agent_ids[0], role="admin", inbox_ids=frozenset(),
                            csrf_token=""))


# -- the events -----------------------------------------------------------------------------


def creation_times(rng: random.Random, count: int) -> list[float]:
    """`count` creation instants (POSIX seconds) over the year, sorted."""
    first = date(YEAR, 1, 1)
    days = [first + timedelta(days=n) for n in range((date(YEAR + 1, 1, 1) - first).days)]
    day_starts = [datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() for d in days]
    day_weights = [DAY_WEIGHTS[d.weekday()] for d in days]
    picked_days = rng.choices(day_starts, weights=day_weights, k=count)
    hours = rng.choices(range(24), weights=HOUR_WEIGHTS, k=count)
    rand = rng.random
    return sorted(day + hour * 3600 + rand() * 3600 for day, hour in zip(picked_days, hours,
                                                                           strict=True))


@dataclass
class Counts:
    conversations: int = 0
    events: int = 0
    resolved: int = 0  # resolves (a reopened conversation resolves twice)
    breached: dict[int, bool | None] = field(default_factory=dict)


class Story:
    """Makes the events of one conversation after another (see the module)."""

    def __init__(self, world: World, rng: random.Random) -> None:
        self.world = world
        self.rng = rng
        self.inbox_weights = [weight for _, _, weight in INBOXES]
        self.message_id = 0
        self.counts = Counts()

    def _seconds(self, median: float, sigma: float, cap: float) -> timedelta:
        return timedelta(seconds=min(cap, self.rng.lognormvariate(math.log(median), sigma)))

    def _reply(self, view: ConversationView, at: datetime, agent_id: int | None, *,
               survey: bool = False) -> MessageCreated:
        self.message_id += 1
        message = MessageView(
            id=self.message_id, conversation_id=view.id, inbox_id=view.inbox_id,
            direction="out", kind="message",
            text="How did we do? Rate us 1-5." if survey else "Thanks, we are on it.",
            html=None, external_id=None, contact_id=None, agent_id=agent_id, status=None,
            status_reason=None, attachments=[], accepted_at=at, created_at=at,
            automated=survey, survey=survey)
        return MessageCreated(inbox_id=view.inbox_id, at=at, conversation=view,
                              message=message)

    def _status(self, view: ConversationView, at: datetime, status: str
                ) -> tuple[ConversationView, ConversationStatusChanged]:
        changed = view.model_copy(update={"status": status, "last_activity_at": at})
        return changed, ConversationStatusChanged(
            inbox_id=view.inbox_id, at=at, conversation=changed, previous_status=view.status,
            by_agent_id=changed.assignee_id)

    def conversation(self, cid: int, created_ts: float) -> Iterator[Any]:
        rng, world = self.rng, self.world
        inbox_id = rng.choices(world.inbox_ids, weights=self.inbox_weights)[0]
        agents = world.agents_of[inbox_id]
        assignee = None if rng.random() < 0.05 else rng.choice(agents)
        team = None if rng.random() < 0.25 else rng.choice(world.teams_of[inbox_id])
        labels = sorted(set(rng.choices(LABELS, weights=LABEL_WEIGHTS,
                                        k=rng.choices((0, 1, 2, 3), (35, 35, 20, 10))[0])))
        at = datetime.fromtimestamp(created_ts, UTC)
        view = ConversationView(
            id=cid, inbox_id=inbox_id, channel=world.channel_of[inbox_id], contact_id=cid,
            contact_name=f"Customer {cid}", status="open", assignee_id=assignee, team_id=team,
            subject=None, last_message_preview=None, unread_count=0, snoozed_until=None,
            last_activity_at=at, created_at=at, labels=labels)
        self.counts.conversations += 1
        yield ConversationCreated(inbox_id=inbox_id, at=at, conversation=view)

        def replier() -> int:
            if assignee is not None and rng.random() < 0.9:
                return assignee
            return rng.choice(agents)

        at += self._seconds(1800, 1.4, 5 * 86_400)  # the first response
        for n in range(rng.choices((1, 2, 3, 4), (40, 30, 20, 10))[0]):
            if n:
                at += self._seconds(3600, 1.3, 3 * 86_400)
            yield self._reply(view, at, replier())
        if rng.random() >= 0.9:
            return  # still open
        if rng.random() < 0.6:  # under an SLA policy
            self.counts.breached[cid] = rng.random() < 0.15
        at += self._seconds(7200, 1.5, 10 * 86_400)
        view, event = self._status(view, at, "resolved")
        self.counts.resolved += 1
        yield event
        if rng.random() < 0.05:  # reopened, answered and resolved again
            at += self._seconds(86_400, 1.0, 20 * 86_400)
            view, event = self._status(view, at, "open")
            yield event
            at += self._seconds(1800, 1.2, 2 * 86_400)
            yield self._reply(view, at, replier())
            at += self._seconds(3600, 1.3, 5 * 86_400)
            view, event = self._status(view, at, "resolved")
            self.counts.resolved += 1
            yield event
        if rng.random() < 0.3:  # a survey, answered by half
            at += timedelta(seconds=1)
            yield self._reply(view, at, None, survey=True)
            if rng.random() < 0.5:
                at += self._seconds(1200, 1.5, 3 * 86_400)
                view = view.model_copy(update={"csat_score": rng.choices(
                    (1, 2, 3, 4, 5), (6, 5, 10, 29, 50))[0]})
                yield ConversationUpdated(inbox_id=view.inbox_id, at=at, conversation=view,
                                          changes=["csat"], by_agent_id=None)


@dataclass
class SetUp:
    seconds: float
    rolling: float  # of which making the events and the Roller
    writing: float  # of which write_deltas
    events: int
    resolves: int  # a reopened conversation resolves twice
    rows: int
    row_writes: int  # rows passed to write_deltas, summed over the chunks
    size: int | None  # bytes
    size_what: str


async def fill(world: World, count: int, chunk: int, seed: int) -> SetUp:
    """Roll a year of `count` conversations into report_rollups (see the module)."""
    started = time.perf_counter()
    rng = random.Random(seed + 1)
    story = Story(world, rng)
    times = creation_times(rng, count)
    roller = Roller(UTC_ZONE, [], {}, story.counts.breached)
    rolling = writing = 0.0
    events = row_writes = 0
    last_said = started
    for first in range(0, count, chunk):
        t0 = time.perf_counter()
        roller.memories.clear()
        story.counts.breached.clear()
        for offset, created_ts in enumerate(times[first:first + chunk]):
            for event in story.conversation(first + offset + 1, created_ts):
                roller.add(event)
                events += 1
        # The rows no later conversation adds to (they are all created later): write them;
        # the others stay in the Roller's deltas and go on adding up.
        if first + chunk < count:
            boundary = datetime.fromtimestamp(times[first + chunk], UTC).date()
            month = boundary.replace(day=1)
            done = {slot: delta for slot, delta in roller.deltas.items()
                    if slot[1] < (boundary if slot[0] == "day" else month)}
            for slot in done:
                del roller.deltas[slot]
        else:
            done, roller.deltas = roller.deltas, {}
        t1 = time.perf_counter()
        async with world.db.write() as session:
            await write_deltas(session, done)
        row_writes += len(done)
        t2 = time.perf_counter()
        rolling += t1 - t0
        writing += t2 - t1
        if t2 - last_said > 15:
            last_said = t2
            rolled = min(count, first + chunk)
            say(f"  {rolled:,} conversations ({rolled / count:.0%}) in {t2 - started:.0f} s "
                f"(events + Roller {rolling:.0f} s, write_deltas {writing:.0f} s)")
    async with world.db.write() as session:
        rows = int((await execute(session, core_select(func.count()).select_from(
            table_of(ReportRollup)))).scalar_one())
    size: int | None = None
    size_what = ""
    if world.database is not None:
        engine = world.db.engine
        async with engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("VACUUM ANALYZE report_rollups"))
            size = int((await autocommit.execute(text(
                "SELECT pg_total_relation_size('report_rollups')"))).scalar_one())
        size_what = "pg_total_relation_size('report_rollups'), after VACUUM ANALYZE"
    elif world.path is not None:
        wal = world.path.with_name(world.path.name + "-wal")
        size = world.path.stat().st_size
        size_what = "the SQLite file (nearly all of it report_rollups)"
        if wal.exists():
            size_what += f", and a {wal.stat().st_size / 2**20:.0f} MiB WAL beside it"
    return SetUp(seconds=time.perf_counter() - started, rolling=rolling, writing=writing,
                 events=events, resolves=story.counts.resolved, rows=rows,
                 row_writes=row_writes, size=size, size_what=size_what)


# -- measuring ----------------------------------------------------------------------------


def p99(values: list[float]) -> float:
    """Nearest rank: with fewer than 100 values, the largest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


async def measure(world: World, scenario: Scenario, repeats: int) -> dict[str, Any]:
    async def once() -> tuple[float, Any]:
        t0 = time.perf_counter()
        async with world.db.read() as session:
            report = await activity_report(
                session, world.admin, start=scenario.start, end=scenario.end,
                group=scenario.group, time_zone="UTC", channel_names=CHANNEL_NAMES)
        return time.perf_counter() - t0, report

    for _ in range(2):
        _, report = await once()
    times = [(await once())[0] * 1000 for _ in range(repeats)]
    t0 = time.perf_counter()
    csv_text = report_csv(report, "groups")
    csv_ms = (time.perf_counter() - t0) * 1000

    # Not timed with the report: what it reads, and how long reading it alone takes.
    groups, days = rollup_queries(world.inbox_ids, scenario.start, scenario.end,
                                  scenario.group)
    fetch: list[float] = []
    counted: list[int] = []
    entries = 0
    for n in range(5):
        async with world.db.read() as session:
            t0 = time.perf_counter()
            found = [(await execute(session, statement)).all() for statement in (groups, days)]
            fetch.append((time.perf_counter() - t0) * 1000)
        if n == 0:
            counted = [len(rows) for rows in found]
            entries = sum(len(orjson.loads(row.first_response_hist))
                          + len(orjson.loads(row.resolution_hist)) for row in found[0]) + sum(
                len(orjson.loads(row.first_response_hist)) for row in found[1])
    return {
        "scenario": scenario.name, "start": scenario.start.isoformat(),
        "end": scenario.end.isoformat(), "group": scenario.group,
        "ms": {"median": statistics.median(times), "p99": p99(times), "min": min(times),
               "all": times},
        "rows_read": {"groups": counted[0], "days": counted[1]},
        "hist_entries": entries,
        "fetch_ms_median": statistics.median(fetch),
        "csv_ms": csv_ms, "csv_lines": csv_text.count("\n"),
        "result_rows": len(report.rows),
        "total_created": report.total.created, "total_resolved": report.total.resolved,
    }


# -- profiling (--profile) ------------------------------------------------------------------

_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _frame(raw: str) -> str:
    """`function (path/to/file.py)` of a py-spy frame, without the line number; paths are
    cut to the package (site-packages/…, or relative to the repository) if py-spy has not."""
    found = _FRAME.match(raw.strip())
    if found is None:
        return raw.strip()
    where = found["file"]
    for cut in ("site-packages/", "lib/python3", str(ROOT) + "/"):
        if cut in where:
            where = where.split(cut, 1)[1]
    return f"{found['name']} ({where})"


def summarize(raw: Path, top: int) -> dict[str, Any]:
    """Shares of the main thread's samples (idle included: wall time) from py-spy's raw
    (collapsed) output: where the time is spent (the innermost frame), and the inclusive
    share of the product's functions (inbox/)."""
    main = f"thread ({threading.get_native_id()})"
    total = other = 0
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if not frames[0].startswith(main):
            other += count
            continue
        names = [_frame(f) for f in frames[1:]] or ["?"]
        if names[-1].startswith("profile (reports.py"):
            continue  # waiting for py-spy to attach, or stopping it
        total += count
        own[names[-1]] = own.get(names[-1], 0) + count
        for name in set(names):
            if "(inbox/" in name:
                inclusive[name] = inclusive.get(name, 0) + count
    if not total:
        return {"samples": 0}

    def shares(counts: dict[str, int]) -> list[tuple[str, float]]:
        ordered = sorted(counts.items(), key=lambda item: -item[1])[:top]
        return [(name, count / total) for name, count in ordered]

    return {"samples": total, "other_threads_samples": other, "innermost": shares(own),
            "inclusive_inbox": shares(inclusive)}


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


async def profile(world: World, scenario: Scenario, runs: int, out: Path) -> dict[str, Any]:
    """The scenario `runs` more times (not measured) with py-spy sampling this process."""
    binary = py_spy()
    if binary is None:
        raise SystemExit("--profile needs py-spy: .venv/bin/python -m pip install py-spy")
    spy = subprocess.Popen(
        [binary, "record", "--pid", str(os.getpid()), "--format", "raw", "--idle",
         "--threads", "--nonblocking", "--rate", "250", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # py-spy attaches (these samples, in `profile` itself, are left out)
        started = time.perf_counter()
        for _ in range(runs):
            async with world.db.read() as session:
                await activity_report(session, world.admin, start=scenario.start,
                                      end=scenario.end, group=scenario.group,
                                      time_zone="UTC", channel_names=CHANNEL_NAMES)
        seconds = time.perf_counter() - started
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
    found = summarize(out, 14)
    found["seconds"] = seconds
    found["runs"] = runs
    found["output"] = str(out)
    return found


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return (total - idle) / ticks, total / ticks


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with prepared(args.shape, args.seed) as world:
        say(f"{args.shape}: {len(world.inbox_ids)} inboxes, {AGENTS} agents, {len(TEAMS)} "
            f"teams, {len(LABELS)} labels; rolling {args.conversations:,} conversations "
            f"of {YEAR}, {args.chunk:,} per write")
        setup = await fill(world, args.conversations, args.chunk, args.seed)
        say(f"set-up: {setup.seconds:.0f} s (events + Roller {setup.rolling:.0f} s, "
            f"write_deltas {setup.writing:.0f} s); {setup.events:,} events, "
            f"{setup.resolves:,} resolves, {setup.rows:,} rollup rows "
            f"({setup.row_writes:,} row writes)"
            + (f"; {setup.size / 2**20:.0f} MiB: {setup.size_what}"
               if setup.size is not None else ""))
        scenarios = [s for s in SCENARIOS if not args.only or args.only in s.name]
        loads = [os.getloadavg()]
        busy0 = machine_busy()
        results = []
        for scenario in scenarios:
            result = await measure(world, scenario, args.repeats)
            loads.append(os.getloadavg())
            results.append(result)
            ms, rows = result["ms"], result["rows_read"]
            say(f"  {scenario.name:24} median {ms['median']:7.1f}  p99 {ms['p99']:7.1f}  "
                f"min {ms['min']:7.1f} ms; rows {rows['groups']:,} + {rows['days']:,}, "
                f"{result['hist_entries']:,} hist entries, fetch {result['fetch_ms_median']:.1f}"
                f" ms; CSV {result['csv_ms']:.2f} ms")
        busy1 = machine_busy()
        profiles: dict[str, Any] = {}
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            for scenario, result in zip(scenarios, results, strict=True):
                if result["ms"]["p99"] <= args.profile_over:
                    continue
                slug = re.sub(r"\W+", "-", scenario.name)
                out = args.profile / f"{args.shape}-{slug}.txt"
                found = await profile(world, scenario, args.profile_runs, out)
                profiles[scenario.name] = found
                show_profile(scenario.name, found)
    total = busy1[1] - busy0[1]
    return {
        "shape": args.shape, "conversations": args.conversations, "repeats": args.repeats,
        "chunk": args.chunk, "seed": args.seed,
        "setup": {"seconds": setup.seconds, "events_and_roller_seconds": setup.rolling,
                  "write_deltas_seconds": setup.writing, "events": setup.events,
                  "rollup_rows": setup.rows, "row_writes": setup.row_writes,
                  "size_bytes": setup.size, "size_what": setup.size_what,
                  "resolves": setup.resolves},
        "scenarios": results,
        "profiles": profiles,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "busy_share": (busy1[0] - busy0[0]) / total if total else None,
                    "loadavg_during": loads},
    }


def show_profile(name: str, found: dict[str, Any]) -> None:
    if not found.get("samples"):
        say(f"  profile of {name}: no samples (py-spy could not attach?)")
        return
    say(f"  profile of {name}: {found['runs']} calls, {found['seconds']:.1f} s, "
        f"{found['samples']:,} samples of the main thread (idle included); {found['output']}")
    say("    innermost frame (where the main thread is):")
    for frame, share in found["innermost"]:
        say(f"      {share:6.1%}  {frame}")
    say("    inclusive, the product's functions:")
    for frame, share in found["inclusive_inbox"]:
        say(f"      {share:6.1%}  {frame}")


def report(result: dict[str, Any]) -> None:
    say("")
    say(f"activity_report, {result['shape']}, {result['conversations']:,} conversations, "
        f"ms of wall time per call over {result['repeats']} calls (p99 nearest rank"
        + (": the slowest call)" if result["repeats"] < 100 else ")"))
    say(f"{'scenario':26}{'median':>9}{'p99':>9}{'min':>9}{'rows read':>18}"
        f"{'hist entries':>14}{'fetch':>9}{'CSV':>8}")
    over = []
    for r in result["scenarios"]:
        ms, rows = r["ms"], r["rows_read"]
        say(f"{r['scenario']:26}{ms['median']:9.1f}{ms['p99']:9.1f}{ms['min']:9.1f}"
            f"{rows['groups']:>9,} +{rows['days']:>7,}{r['hist_entries']:>14,}"
            f"{r['fetch_ms_median']:9.1f}{r['csv_ms']:8.2f}")
        if ms["p99"] > 500:
            over.append(r["scenario"])
    say("rows read: group rows + day rows of everyone (the total and the days); fetch: the "
        "median of those two queries alone, rows decoded; CSV: report_csv(groups) once")
    year = next((r for r in result["scenarios"] if r["scenario"] == "year by agent"), None)
    if year is not None:
        say(f"year total: created {year['total_created']:,} (of {result['conversations']:,} "
            f"generated), resolved {year['total_resolved']:,} (of "
            f"{result['setup']['resolves']:,} resolves, some in {YEAR + 1})")
    say("over 500 ms (p99): " + (", ".join(over) if over else "none"))
    machine = result["machine"]
    if machine["busy_share"] is not None:
        say(f"machine: {machine['busy_share']:.0%} of its {machine['cpus']} CPUs busy during "
            "the measurements; load average (1 min) " + " ".join(
                f"{load[0]:.2f}" for load in machine["loadavg_during"]))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("embedded", "production"), default="embedded",
                        help="embedded: SQLite in a temp dir; production: a fresh PostgreSQL "
                        "database on 127.0.0.1:5432 (SWITCHBOARD_TEST_PG_ADMIN_URL)")
    parser.add_argument("--conversations", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=20_000,
                        help="conversations rolled per write_deltas transaction")
    parser.add_argument("--repeats", type=int, default=30, help="measured calls per scenario")
    parser.add_argument("--only", help="run the scenarios whose name contains this")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="afterwards, run each scenario slower than --profile-over (p99) "
                        "--profile-runs more times under py-spy (in the venv or on the PATH) "
                        "and print where the time goes; py-spy's raw stacks go to DIR")
    parser.add_argument("--profile-over", type=float, default=500.0, metavar="MS")
    parser.add_argument("--profile-runs", type=int, default=10)
    args = parser.parse_args()
    args.conversations = max(1_000, min(args.conversations, 5_000_000))
    args.chunk = max(100, min(args.chunk, 200_000))
    args.repeats = max(1, min(args.repeats, 1_000))
    return args


async def guarded(args: argparse.Namespace) -> dict[str, Any]:
    """`run`, cancelled by SIGTERM as by Ctrl-C, so the database is dropped either way."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run(args)


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    result = asyncio.run(guarded(args))
    result["wall_seconds"] = time.monotonic() - started
    report(result)
    say(f"({result['wall_seconds']:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        say(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
