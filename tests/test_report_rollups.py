"""Report figures against a hand-computed fixture, on both database shapes.

Events with chosen times go through the rollup code the `reports` consumer runs (in two
batches, one event delivered twice); the activity report over the range is then checked
figure by figure against what was worked out by hand below. Days are Berlin days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from config import Settings
from hub.events import (
    ConversationCreated,
    ConversationStatusChanged,
    ConversationUpdated,
    ConversationView,
    MessageCreated,
    MessageView,
)
from inbox.agents import Principal, create_agent
from inbox.db import Database
from inbox.inboxes import create_inbox
from inbox.models import Contact, Conversation, ConversationSla, SlaPolicy, Team
from inbox.report_rollups import kept, roll
from inbox.reports import activity_report, percentile, report_csv, split_range

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str) -> datetime:
    """A UTC instant written 'YYYY-MM-DD HH:MM'."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


class World:
    """The conversations of the fixture and the events about them."""

    def __init__(self, ids: dict[str, int]) -> None:
        self.ids = ids
        self.views: dict[str, ConversationView] = {}
        self.events: list[Any] = []
        self.message_id = 0

    def view(self, name: str, **change: Any) -> ConversationView:
        self.views[name] = self.views[name].model_copy(update=change)
        return self.views[name]

    def created(self, name: str, when: str, *, inbox: str, channel: str,
                assignee: str | None = None, team: str | None = None,
                labels: tuple[str, ...] = ()) -> None:
        self.views[name] = ConversationView(
            id=self.ids[name], inbox_id=self.ids[inbox], channel=channel, contact_id=1,
            contact_name="Ada", status="open",
            assignee_id=self.ids[assignee] if assignee else None,
            team_id=self.ids[team] if team else None, subject=None, last_message_preview=None,
            unread_count=0, snoozed_until=None, last_activity_at=at(when), created_at=at(when),
            labels=list(labels))
        self.events.append(ConversationCreated(inbox_id=self.ids[inbox], at=at(when),
                                               conversation=self.views[name]))

    def message(self, name: str, when: str, *, agent: str | None, direction: str = "out",
                caused_by: tuple[int, ...] = (), **flags: Any) -> None:
        self.message_id += 1
        view = self.views[name]
        message = MessageView(
            id=self.message_id, conversation_id=view.id, inbox_id=view.inbox_id,
            direction=direction, kind="message", text="…", html=None, external_id=None,
            contact_id=None, agent_id=self.ids[agent] if agent else None, status=None,
            status_reason=None, attachments=[], accepted_at=at(when), created_at=at(when),
            **flags)
        self.events.append(MessageCreated(inbox_id=view.inbox_id, at=at(when),
                                          conversation=view, message=message,
                                          caused_by=list(caused_by)))

    def status(self, name: str, when: str, status: str) -> None:
        before = self.views[name].status
        view = self.view(name, status=status)
        self.events.append(ConversationStatusChanged(
            inbox_id=view.inbox_id, at=at(when), conversation=view, previous_status=before,
            by_agent_id=None))

    def rated(self, name: str, when: str, score: int) -> None:
        view = self.view(name, csat_score=score)
        self.events.append(ConversationUpdated(inbox_id=view.inbox_id, at=at(when),
                                               conversation=view, changes=["csat"],
                                               by_agent_id=None))


async def _seed(db: Database) -> dict[str, int]:
    async with db.write() as s:
        support = await create_inbox(s, name="Support", channel="api", settings={})
        mail = await create_inbox(s, name="Mail", channel="email", settings={})
        alice = await create_agent(s, email="alice@example.com", name="Alice",
                                   password="correct horse battery")
        bob = await create_agent(s, email="bob@example.com", name="Bob",
                                 password="correct horse battery")
        team = Team(name="Tier 2")
        contact = Contact(name="Ada")
        s.add_all([team, contact])
        await s.flush()
        ids = {"support": support.id, "mail": mail.id, "alice": alice.id, "bob": bob.id,
               "tier2": team.id}
        for name in ("c1", "c2", "c3", "c4", "c5"):
            row = Conversation(inbox_id=ids["support"] if name != "c3" else ids["mail"],
                               contact_id=contact.id or 0)
            s.add(row)
            await s.flush()
            ids[name] = row.id or 0
        # c3 (the mail inbox) is under a policy with Berlin office hours, Mon-Fri 09-17;
        # it met its targets. c1 is under a 24/7 policy and missed one.
        office = SlaPolicy(name="Office", position=0, inbox_id=ids["mail"], calendar={
            "time_zone": "Europe/Berlin",
            "hours": {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}})
        always = SlaPolicy(name="Always", position=1, inbox_id=ids["support"], label="billing")
        s.add_all([office, always])
        await s.flush()
        s.add_all([
            ConversationSla(conversation_id=ids["c3"], policy_id=office.id, clocks={
                "first": {"met_at": "2026-03-09T08:30:00+00:00"}}),
            ConversationSla(conversation_id=ids["c1"], policy_id=always.id, clocks={
                "resolve": {"breached": True}})])
    return {k: int(v or 0) for k, v in ids.items()}


def _story(ids: dict[str, int]) -> World:
    w = World(ids)
    # c1: Support, Alice, label billing. Mon 2 March (Berlin = UTC+1).
    w.created("c1", "2026-03-02 09:00", inbox="support", channel="api", assignee="alice",
              labels=("billing",))
    w.message("c1", "2026-03-02 09:01", agent=None, direction="in")
    w.message("c1", "2026-03-02 09:02", agent="alice")  # first response 120 s
    w.message("c1", "2026-03-02 09:03", agent=None, automated=True)  # a rule's: not counted
    w.message("c1", "2026-03-02 09:04", agent="alice", caused_by=(7,))  # a rule's: not counted
    w.message("c1", "2026-03-02 09:10", agent="alice")
    w.status("c1", "2026-03-02 10:00", "resolved")  # resolution 3,600 s, 2 replies, SLA missed
    # c2: Support, Alice, no label, team Tier 2.
    w.created("c2", "2026-03-02 12:00", inbox="support", channel="api", assignee="alice",
              team="tier2")
    w.message("c2", "2026-03-02 12:10", agent="alice")  # first response 600 s
    w.status("c2", "2026-03-03 12:00", "resolved")  # a day: 86,400 s
    w.message("c2", "2026-03-03 12:00", agent=None, survey=True, automated=True)
    w.rated("c2", "2026-03-03 12:30", 5)
    # c3: Mail, Bob; under office hours. Created Fri 6 March 16:00 Berlin (15:00 UTC),
    # answered Mon 9 March 09:30 Berlin: 1 h + 30 min = 5,400 business seconds.
    w.created("c3", "2026-03-06 15:00", inbox="mail", channel="email", assignee="bob")
    w.message("c3", "2026-03-09 08:30", agent="bob")
    w.status("c3", "2026-03-09 09:00", "resolved")  # Mon 10:00 Berlin: 2 h business = 7,200
    w.message("c3", "2026-03-09 09:00", agent=None, survey=True, automated=True)
    w.rated("c3", "2026-03-09 09:05", 2)
    w.rated("c3", "2026-03-09 09:06", 4)  # changed: one answer, now a 4
    w.status("c3", "2026-03-10 09:00", "open")  # reopened Tue 10:00 Berlin
    w.message("c3", "2026-03-10 09:20", agent="bob")
    w.status("c3", "2026-03-10 10:00", "resolved")  # 1 h business from the reopen: 3,600
    # c4: Support, nobody's; created 31 March 22:30 UTC = 1 April 00:30 Berlin (CEST).
    w.created("c4", "2026-03-31 22:30", inbox="support", channel="api")
    # c5: Support, Bob answers once (a colleague's reply counts for him), still open.
    w.created("c5", "2026-03-20 10:00", inbox="support", channel="api", assignee="alice")
    w.message("c5", "2026-03-20 10:00", agent="bob")  # 0 s
    return w


async def _rolled(settings: Settings) -> tuple[Database, dict[str, int]]:
    db = Database(settings.sqlalchemy_url)
    ids = await _seed(db)
    events = _story(ids).events
    half = len(events) // 2
    async with db.write() as session:
        await roll(session, events[:half], BERLIN)
    async with db.write() as session:
        # The last event of the first batch comes again (at-least-once delivery).
        await roll(session, events[half - 1:], BERLIN)
    return db, ids


async def _report(db: Database, principal: Principal, group: str,
                  start: date = date(2026, 3, 1), end: date = date(2026, 4, 30)) -> Any:
    async with db.read() as session:
        return await activity_report(session, principal, start=start, end=end, group=group,
                                     time_zone="Europe/Berlin",
                                     channel_names={"api": "API", "email": "Email"})


def _admin(ids: dict[str, int]) -> Principal:
    return Principal(agent_id=ids["alice"], role="admin", inbox_ids=frozenset(), csrf_token="")


async def test_figures_match_the_hand_computed_fixture(settings: Settings) -> None:
    db, ids = await _rolled(settings)
    try:
        admin = _admin(ids)
        by_agent = await _report(db, admin, "agent")
        total = by_agent.total
        assert (total.created, total.resolved, total.reopened) == (5, 4, 1)
        assert total.replies == 6  # c1 2, c2 1, c3 2, c5 1
        # Resolves: c1 (2 replies), c2 (1), c3 (1 before the first resolve, 1 after).
        assert total.replies_per_conversation == pytest.approx(5 / 4)
        # First responses 120, 600, 5,400, 0 -> nearest rank: median 120, p90 5,400.
        assert (total.first_responses, total.first_response_median,
                total.first_response_p90) == (4, 120, 5400)
        # Resolutions 3,600, 86,400, 7,200, 3,600 -> median 3,600, p90 86,400.
        assert (total.resolution_median, total.resolution_p90) == (3600, 86400)
        assert (total.sla_resolved, total.sla_attainment) == (3, 0.6667)  # 2 of 3, rounded
        assert (total.csat_asked, total.csat_responses) == (2, 2)
        assert (total.csat_score, total.csat_average) == (1.0, 4.5)
        assert total.csat_response_rate == 1.0

        rows = {row.name: row for row in by_agent.rows}
        assert set(rows) == {"Alice", "Bob", "Unassigned"}
        alice, bob = rows["Alice"], rows["Bob"]
        assert (alice.created, alice.resolved, alice.replies) == (3, 2, 3)
        assert (alice.first_responses, alice.first_response_median) == (2, 120)
        assert alice.resolution_p90 == 86400
        assert (alice.csat_responses, alice.csat_average) == (1, 5.0)
        assert (alice.sla_resolved, alice.sla_attainment) == (1, 0.0)
        # Bob: c3, and the first response of c5 (Alice's conversation).
        assert (bob.created, bob.resolved, bob.reopened, bob.replies) == (1, 2, 1, 3)
        assert (bob.first_responses, bob.first_response_median, bob.first_response_p90) \
            == (2, 0, 5400)
        assert (bob.resolution_median, bob.resolution_p90) == (3600, 7200)
        assert (bob.csat_responses, bob.csat_score, bob.csat_average) == (1, 1.0, 4.0)
        assert rows["Unassigned"].created == 1

        by_label = {row.name: row for row in (await _report(db, admin, "label")).rows}
        assert by_label["billing"].resolved == 1
        assert by_label["No label"].created == 4
        by_team = {row.name: row for row in (await _report(db, admin, "team")).rows}
        assert by_team["Tier 2"].resolution_median == 86400
        by_channel = {row.name: row for row in (await _report(db, admin, "channel")).rows}
        assert (by_channel["Email"].created, by_channel["API"].created) == (1, 4)
        by_inbox = {row.name: row for row in (await _report(db, admin, "inbox")).rows}
        assert by_inbox["Mail"].first_response_median == 5400

        # Days are Berlin days: c4 was created on 1 April there (31 March in UTC).
        days = {day.day: day for day in by_agent.days}
        assert days[date(2026, 3, 31)].created == 0
        assert days[date(2026, 4, 1)].created == 1
        assert (days[date(2026, 3, 2)].created, days[date(2026, 3, 2)].resolved) == (2, 1)
        assert days[date(2026, 3, 2)].first_response_median == 120
        # March alone (read from the month's rows) and a range cut inside it (day rows)
        # say the same as the days they cover.
        march = await _report(db, admin, "agent", date(2026, 3, 1), date(2026, 3, 31))
        assert (march.total.created, march.total.resolved) == (4, 4)
        first_week = await _report(db, admin, "agent", date(2026, 3, 2), date(2026, 3, 8))
        assert (first_week.total.created, first_week.total.resolved) == (3, 2)
        assert {r.name: r.first_responses for r in first_week.rows} == {"Alice": 2, "Bob": 0}

        # A lead of Support sees Support's figures only (not the mail inbox).
        lead = Principal(agent_id=ids["alice"], role="lead",
                         inbox_ids=frozenset({ids["support"]}), csrf_token="")
        scoped = await _report(db, lead, "agent")
        assert (scoped.total.created, scoped.total.resolved) == (4, 2)
        assert {row.name for row in scoped.rows} == {"Alice", "Bob", "Unassigned"}
        assert {r.name: r.resolved for r in scoped.rows}["Bob"] == 0

        csv_text = report_csv(by_agent, "groups")
        lines = csv_text.splitlines()
        assert lines[0].startswith("Group,Created,Resolved,Reopened,Replies")
        assert lines[-1].startswith("Total,5,4,1,6,1.25,120,5400,3600,86400,3,0.6667,2,2,1.0")
        assert report_csv(by_agent, "days").splitlines()[2].startswith("2026-03-02,2,1,120,")
    finally:
        await db.close()


def test_helpers() -> None:
    assert [kept(s) for s in (0, 0.4, 42.4, 43, 99, 105, 4980, 5400, 86400, 123456, 4e6,
                              1e9)] == \
        [0, 0, 40, 45, 90, 120, 5400, 5400, 86400, 129600, 3888000, 31536000]
    from collections import Counter
    assert percentile(Counter({60: 1, 120: 1, 300: 1, 600: 1}), 0.5) == 120
    assert percentile(Counter({60: 1, 120: 1, 300: 1, 600: 1}), 0.9) == 600
    assert percentile(Counter(), 0.5) is None
    # 15 Jan 2026 is a Thursday; the week of Monday 19 Jan is inside the edge, that of 26 Jan
    # runs into February (a month row), that of 6 April past the end.
    assert split_range(date(2026, 1, 15), date(2026, 4, 10)) == (
        [date(2026, 2, 1), date(2026, 3, 1)], [date(2026, 1, 19)],
        [(date(2026, 1, 15), date(2026, 1, 18)), (date(2026, 1, 26), date(2026, 1, 31)),
         (date(2026, 4, 1), date(2026, 4, 10))])
    assert split_range(date(2026, 3, 1), date(2026, 3, 31)) == ([date(2026, 3, 1)], [], [])
    assert split_range(date(2026, 3, 2), date(2026, 3, 30)) == (
        [], [date(2026, 3, 2), date(2026, 3, 9), date(2026, 3, 16), date(2026, 3, 23)],
        [(date(2026, 3, 30), date(2026, 3, 30))])
    assert split_range(date(2026, 3, 3), date(2026, 3, 8)) == (
        [], [], [(date(2026, 3, 3), date(2026, 3, 8))])
    assert split_range(date(2026, 12, 1), date(2027, 1, 31)) == (
        [date(2026, 12, 1), date(2027, 1, 1)], [], [])
    assert timedelta(seconds=kept(3599)) == timedelta(seconds=3600)


async def test_a_batch_costs_a_handful_of_statements_whatever_its_size(
        settings: Settings) -> None:
    from tests.inbox.test_ingest_statements import counting

    db = Database(settings.sqlalchemy_url)
    try:
        ids = await _seed(db)
        events = _story(ids).events
        async with db.write() as session:
            with counting(db) as few:
                await roll(session, events[:4], BERLIN)
        async with db.write() as session:
            with counting(db) as many:
                await roll(session, events[4:], BERLIN)
        # consumed events, memories read, SLA clocks, policies, memories written (insert and
        # update), rollup rows inserted, read and written: the same for 4 events or 20.
        assert len(events[4:]) >= 20
        assert many.count <= 10, many.statements
        assert few.count <= 10, few.statements
    finally:
        await db.close()


async def test_a_failed_batch_is_handed_back_whole_and_unreadable_entries_say_why() -> None:
    """A batch whose transaction fails answers each of its events with the error (they come
    again; nothing of them was kept); an entry this version cannot read says so; entries of
    other types pass untouched."""
    import contextlib
    from collections.abc import AsyncIterator
    from typing import cast

    from hub.bus import Entry
    from hub.events import encode_event
    from inbox.context import InboxContext
    from inbox.report_rollups import ReportsConsumer

    class Failing:
        @contextlib.asynccontextmanager
        async def write(self) -> AsyncIterator[Any]:
            raise RuntimeError("the transaction failed")
            yield  # pragma: no cover

    ctx = cast(InboxContext, type("Ctx", (), {"db": Failing()})())
    events = _story({"support": 1, "mail": 2, "alice": 3, "bob": 4, "tier2": 5, "c1": 11,
                     "c2": 12, "c3": 13, "c4": 14, "c5": 15}).events[:2]
    entries = [Entry(id=f"{n}-0", payload=encode_event(e), deliveries=1)
               for n, e in enumerate(events)]
    entries.append(Entry(id="9-0", payload=b'{"v":99,"id":"x","inbox_id":1,"audience":null,'
                                           b'"type":"conversation.created"}', deliveries=1))
    entries.append(Entry(id="10-0", payload=b'{"v":2,"audience":null,"type":"contact.created"}',
                         deliveries=1))
    outcomes = await ReportsConsumer().apply(ctx, entries)
    assert [type(o).__name__ for o in outcomes[:2]] == ["RuntimeError", "RuntimeError"]
    assert isinstance(outcomes[2], ValueError)  # unreadable: dead-lettered in the end
    assert outcomes[3] is None
