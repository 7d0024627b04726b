"""SLA clocks with a frozen clock: business hours in New York across a weekend and Labor Day,
pauses while pending, next-response cycles, resolve and reopen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from inbox.business_hours import parse_calendar
from inbox.sla import Clocks, Targets

NY = ZoneInfo("America/New_York")
OFFICE = parse_calendar({"time_zone": "America/New_York", "country": "US",
                         "hours": {d: [("09:00", "17:00")] for d in
                                   ("mon", "tue", "wed", "thu", "fri")}})
TARGETS = Targets(first=3600, next=1800, resolve=8 * 3600, warn=900, calendar=OFFICE)


def ny(day: int, hour: int, minute: int = 0, month: int = 9) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=NY).astimezone(UTC)


def test_first_response_due_across_a_weekend_and_labor_day() -> None:
    clocks = Clocks()
    opened = ny(4, 16, 30)  # Friday 4 September 2026, half an hour before closing
    clocks.opened(opened, counting=True)
    # 30 minutes on Friday; Saturday, Sunday and Monday 7 (Labor Day) are closed.
    assert clocks.due("first", TARGETS) == ny(8, 9, 30)
    assert clocks.due("first", TARGETS) == datetime(2026, 9, 8, 13, 30, tzinfo=UTC)
    # Resolution: 30 min Friday + 7.5 h on Tuesday.
    assert clocks.due("resolve", TARGETS) == ny(8, 16, 30)
    assert clocks.status(TARGETS, ny(5, 12)) == "ok"  # Saturday: nothing counts
    assert clocks.check_at(TARGETS) == ny(8, 9, 15)  # the warning comes first

    assert clocks.advance(TARGETS, ny(8, 9, 14)) == []
    assert clocks.advance(TARGETS, ny(8, 9, 15)) == [("first", "at_risk")]
    assert clocks.status(TARGETS, ny(8, 9, 16)) == "at_risk"
    assert clocks.check_at(TARGETS) == ny(8, 9, 30)  # now the breach
    assert clocks.advance(TARGETS, ny(8, 9, 30)) == [("first", "breached")]
    assert clocks.advance(TARGETS, ny(8, 9, 40)) == []  # once
    assert clocks.status(TARGETS, ny(8, 9, 31)) == "breached"

    clocks.replied(ny(8, 10), TARGETS)
    assert clocks.first.met_at == ny(8, 10) and clocks.first.breached
    assert clocks.status(TARGETS, ny(8, 10, 1)) == "ok"  # resolution still runs, in time
    assert clocks.soonest(TARGETS) == ny(8, 16, 30)


def test_pending_pauses_the_clocks_and_open_resumes_them() -> None:
    clocks = Clocks()
    clocks.opened(ny(9, 9), counting=True)  # Wednesday 09:00
    clocks.pause(ny(9, 9, 20), TARGETS)  # pending after 20 minutes
    assert clocks.status(TARGETS, ny(9, 12)) == "paused"
    assert clocks.due("first", TARGETS) is None and clocks.check_at(TARGETS) is None
    clocks.resume(ny(10, 16, 50))  # Thursday, 10 minutes before closing
    # 40 minutes were left: 10 on Thursday, 30 on Friday morning.
    assert clocks.due("first", TARGETS) == ny(11, 9, 30)


def test_each_customer_message_after_a_reply_starts_the_next_response_clock() -> None:
    clocks = Clocks()
    clocks.opened(ny(9, 10), counting=True)
    clocks.replied(ny(9, 10, 5), TARGETS)
    assert clocks.due("next", TARGETS) is None
    clocks.customer_wrote(ny(9, 16, 45), TARGETS)
    assert clocks.due("next", TARGETS) == ny(10, 9, 15)  # 15 min today, 15 tomorrow
    clocks.customer_wrote(ny(9, 16, 50), TARGETS)  # still waiting: the clock goes on
    assert clocks.due("next", TARGETS) == ny(10, 9, 15)
    clocks.replied(ny(10, 9), TARGETS)
    assert clocks.next.met_at == ny(10, 9) and not clocks.next.breached
    assert clocks.due("next", TARGETS) is None


def test_resolve_stops_everything_and_a_reopen_goes_on_with_what_was_spent() -> None:
    clocks = Clocks()
    clocks.opened(ny(9, 9), counting=True)
    clocks.replied(ny(9, 9, 10), TARGETS)
    clocks.resolved(ny(9, 11), TARGETS)  # two business hours spent
    assert clocks.status(TARGETS, ny(9, 12)) == "met"
    assert clocks.check_at(TARGETS) is None
    clocks.reopened(ny(14, 9))  # Monday
    assert clocks.due("resolve", TARGETS) == ny(14, 15)  # the six hours left
    clocks.customer_wrote(ny(14, 9), TARGETS)
    assert clocks.due("next", TARGETS) == ny(14, 9, 30)


def test_round_trip_through_storage() -> None:
    clocks = Clocks()
    clocks.opened(ny(9, 9), counting=True)
    clocks.advance(TARGETS, ny(9, 9, 50))
    again = Clocks.load(clocks.dump())
    assert again == clocks


def test_around_the_clock_without_a_calendar() -> None:
    targets = Targets(first=600, warn=60)
    clocks = Clocks()
    start = datetime(2026, 12, 5, 23, 55, tzinfo=UTC)  # a Saturday night
    clocks.opened(start, counting=True)
    assert clocks.due("first", targets) == start + timedelta(minutes=10)
    assert clocks.status(Targets(), start) is None  # no targets: no SLA


def test_a_reply_in_time_read_after_the_checker_marked_the_breach_is_met_in_time() -> None:
    clocks = Clocks()
    clocks.opened(ny(9, 9), counting=True)  # Wednesday 09:00, first response due 10:00
    # The checker runs at 10:00; the reply sent at 09:59 is still on its way to the clocks.
    assert clocks.advance(TARGETS, ny(9, 10)) == [("first", "breached")]
    clocks.replied(ny(9, 9, 59), TARGETS)
    assert clocks.first.met_at == ny(9, 9, 59) and not clocks.first.breached
    clocks.resolved(ny(9, 11), TARGETS)
    assert clocks.status(TARGETS, ny(9, 11)) == "met"
    # A late one stays breached.
    late = Clocks()
    late.opened(ny(9, 9), counting=True)
    late.advance(TARGETS, ny(9, 10))
    late.replied(ny(9, 10, 1), TARGETS)
    assert late.first.breached
