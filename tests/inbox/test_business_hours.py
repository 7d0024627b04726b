"""Business-hours calendars: SLA arithmetic, holidays, DST, validation; hand-computed values."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from inbox.business_hours import (
    ALWAYS_OPEN,
    DAYS,
    Calendar,
    CalendarSpec,
    InvalidCalendar,
    parse_calendar,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
HOUR = 3600.0
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
NINE_TO_FIVE = {day: [["09:00", "17:00"]] for day in WEEKDAYS}


def calendar(time_zone: str = "Europe/Berlin", hours: Any = None, **more: Any) -> Calendar:
    return parse_calendar({"time_zone": time_zone, "hours": hours or NINE_TO_FIVE, **more})


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def new_york(*args: int) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK)


# -- add across closed time ----------------------------------------------------------------


def test_friday_afternoon_plus_one_hour_lands_monday_morning() -> None:
    # Friday 2026-06-12 16:30 CEST (14:30 UTC): 30 min on Friday, 30 min from Monday 09:00.
    due = calendar().add(berlin(2026, 6, 12, 16, 30), HOUR)
    assert due == utc(2026, 6, 15, 7, 30)
    assert due.tzinfo is UTC
    assert due.astimezone(BERLIN).replace(tzinfo=None) == datetime(2026, 6, 15, 9, 30)


def test_a_weekend_that_changes_the_clocks_shifts_the_utc_result() -> None:
    # Friday 2026-03-27 16:30 CET (15:30 UTC); Monday 2026-03-30 09:30 is CEST (07:30 UTC).
    due = calendar().add(utc(2026, 3, 27, 15, 30), HOUR)
    assert due == utc(2026, 3, 30, 7, 30)
    assert due.astimezone(BERLIN).replace(tzinfo=None) == datetime(2026, 3, 30, 9, 30)


def test_weekend_and_public_holiday_in_new_york() -> None:
    # Friday 2026-09-04 16:00 EDT, 2 hours: 1 on Friday, Monday 09-07 is Labor Day, so the
    # second is Tuesday 09:00-10:00 EDT (14:00 UTC).
    labor_day = calendar("America/New_York", country="US")
    due = labor_day.add(new_york(2026, 9, 4, 16), 2 * HOUR)
    assert due == utc(2026, 9, 8, 14)
    assert due.astimezone(NEW_YORK).replace(tzinfo=None) == datetime(2026, 9, 8, 10)
    assert labor_day.holiday_name(date(2026, 9, 7)) == "Labor Day"
    assert not labor_day.is_open(new_york(2026, 9, 7, 12))
    # Without the country Monday is an ordinary day.
    assert calendar("America/New_York").add(new_york(2026, 9, 4, 16), 2 * HOUR) == utc(
        2026, 9, 7, 14
    )


def test_a_custom_closed_date_after_the_holiday_moves_on_to_wednesday() -> None:
    closed = calendar("America/New_York", country="US", closed_dates=["2026-09-08"])
    assert closed.add(new_york(2026, 9, 4, 16), 2 * HOUR) == utc(2026, 9, 9, 14)
    assert closed.holiday_name(date(2026, 9, 8)) == "closed"
    assert closed.holiday_name(date(2026, 9, 7)) == "Labor Day"
    assert closed.holiday_name(date(2026, 9, 9)) is None
    assert closed.between(new_york(2026, 9, 4, 16), new_york(2026, 9, 9, 10)) == 2 * HOUR


def test_a_subdivision_adds_its_regional_holidays() -> None:
    # Tuesday 2026-01-06 is Epiphany in Bavaria, not in Germany as a whole.
    monday_4pm = berlin(2026, 1, 5, 16)
    assert calendar(country="DE").add(monday_4pm, 2 * HOUR) == utc(2026, 1, 6, 9)
    bavaria = calendar(country="DE", subdivision="BY")
    assert bavaria.add(monday_4pm, 2 * HOUR) == utc(2026, 1, 7, 9)
    assert bavaria.holiday_name(date(2026, 1, 6)) == "Epiphany"
    assert calendar(country="DE").holiday_name(date(2026, 1, 6)) is None


def test_a_year_of_german_business_days() -> None:
    # 2026 has 261 weekdays; 7 national holidays fall on one (Jan 1, Apr 3, Apr 6, May 1,
    # May 14, May 25, Dec 25; Oct 3 and Dec 26 are Saturdays).
    year = (berlin(2026, 1, 1), berlin(2027, 1, 1))
    assert calendar().between(*year) == 261 * 8 * HOUR
    assert calendar(country="DE").between(*year) == 254 * 8 * HOUR


def test_add_ending_exactly_at_closing_returns_the_closing() -> None:
    assert calendar().add(berlin(2026, 6, 12, 16), HOUR) == berlin(2026, 6, 12, 17)


def test_zero_seconds_from_closed_time_is_the_next_opening() -> None:
    assert calendar().add(berlin(2026, 6, 13, 12), 0) == berlin(2026, 6, 15, 9)
    assert calendar().add(berlin(2026, 6, 12, 12), 0) == berlin(2026, 6, 12, 12)


def test_negative_or_non_finite_durations_are_refused() -> None:
    for seconds in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite number of at least 0"):
            calendar().add(berlin(2026, 6, 12, 12), seconds)


# -- between ---------------------------------------------------------------------------------


def test_between_over_a_weekend_is_the_sum_of_the_open_parts() -> None:
    # Friday 15:00-17:00 (2 h) + Monday 09:00-10:30 (1.5 h).
    cal = calendar()
    assert cal.between(berlin(2026, 6, 12, 15), berlin(2026, 6, 15, 10, 30)) == 3.5 * HOUR
    assert cal.between(berlin(2026, 6, 13, 8), berlin(2026, 6, 14, 20)) == 0.0
    assert cal.between(berlin(2026, 6, 15, 10, 30), berlin(2026, 6, 12, 15)) == 0.0
    assert cal.between(berlin(2026, 6, 15, 10), berlin(2026, 6, 15, 10)) == 0.0


def test_between_counts_fractions_of_a_second() -> None:
    start = berlin(2026, 6, 12, 16, 59, 59)
    assert calendar().between(start, start + timedelta(microseconds=250_000)) == 0.25


# -- DST: intervals are wall-clock times --------------------------------------------------


def test_a_whole_day_interval_is_23_and_25_hours_on_change_days() -> None:
    sundays = calendar(hours={"sun": [["00:00", "24:00"]]})
    assert sundays.between(berlin(2026, 3, 29), berlin(2026, 3, 30)) == 23 * HOUR
    assert sundays.between(berlin(2026, 10, 25), berlin(2026, 10, 26)) == 25 * HOUR
    assert sundays.between(berlin(2026, 3, 22), berlin(2026, 3, 23)) == 24 * HOUR


def test_an_interval_spanning_the_change_is_an_hour_shorter_or_longer() -> None:
    nights = calendar(hours={"sun": [["01:00", "04:00"]]})
    assert nights.between(utc(2026, 3, 28), utc(2026, 3, 30)) == 2 * HOUR
    assert nights.between(utc(2026, 10, 24), utc(2026, 10, 26)) == 4 * HOUR
    # 01:00 CET is 00:00 UTC; 1.5 h later the clock reads 03:30 CEST (01:30 UTC).
    assert nights.add(utc(2026, 3, 28, 12), 1.5 * HOUR) == utc(2026, 3, 29, 1, 30)
    # 01:00 CEST is 23:00 UTC; 2 h later is the second 02:00 of the night (CET, 01:00 UTC).
    due = nights.add(utc(2026, 10, 24, 12), 2 * HOUR)
    assert due == utc(2026, 10, 25, 1)
    assert due.astimezone(BERLIN).replace(tzinfo=None) == datetime(2026, 10, 25, 2)


def test_a_skipped_wall_time_is_the_moment_the_clocks_jump() -> None:
    # 02:30 does not exist on 2026-03-29 in Berlin: opening then means 03:00 CEST (01:00 UTC).
    late = calendar(hours={"sun": [["02:30", "04:00"]]})
    assert late.next_open(utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 1)
    assert late.between(utc(2026, 3, 28), utc(2026, 3, 30)) == HOUR
    # On 2026-10-25 02:30 happens twice: the first one (CEST, 00:30 UTC) opens.
    assert late.next_open(utc(2026, 10, 24, 12)) == utc(2026, 10, 25, 0, 30)
    assert late.between(utc(2026, 10, 24), utc(2026, 10, 26)) == 2.5 * HOUR
    # An interval wholly inside the skipped hour has nothing open; it never runs backwards.
    gap = calendar(hours={"sun": [["02:10", "02:50"], ["03:00", "04:00"]]})
    assert gap.between(utc(2026, 3, 28), utc(2026, 3, 30)) == HOUR
    assert gap.between(utc(2026, 3, 21), utc(2026, 3, 23)) == HOUR + 40 * 60


def test_a_day_skipped_by_the_time_zone_has_no_business_time() -> None:
    # Samoa skipped 2011-12-30 when it moved across the date line.
    apia = ZoneInfo("Pacific/Apia")
    daily = calendar("Pacific/Apia", hours={day: [["09:00", "17:00"]] for day in DAYS})
    start, end = datetime(2011, 12, 29, tzinfo=apia), datetime(2012, 1, 1, tzinfo=apia)
    assert daily.between(start, end) == 2 * 8 * HOUR
    assert daily.add(datetime(2011, 12, 29, 16, tzinfo=apia), 2 * HOUR) == datetime(
        2011, 12, 31, 10, tzinfo=apia
    )


# -- between(a, add(a, s)) == s ------------------------------------------------------------

PROPERTY_CALENDARS = {
    "berlin 9-5": calendar(),
    "berlin 9-5 BY": calendar(country="DE", subdivision="BY", closed_dates=["2026-12-31"]),
    "split shifts": calendar(hours={day: [["09:00", "12:00"], ["13:00", "17:00"]]
                                    for day in WEEKDAYS}),
    "weekend": calendar(hours={"sat": [["10:00", "16:00"]], "sun": [["10:00", "16:00"]]}),
    "nights": calendar(hours={"fri": [["20:00", "24:00"]], "sat": [["00:00", "04:00"]],
                              "sun": [["01:00", "04:00"], ["22:00", "24:00"]]}),
    "new york US": calendar("America/New_York", country="US"),
    "always open": ALWAYS_OPEN,
}
PROPERTY_STARTS = [
    berlin(2026, 6, 12, 16, 30),  # Friday afternoon
    berlin(2026, 6, 13, 11),  # Saturday
    berlin(2026, 6, 15, 9),  # exactly at opening
    berlin(2026, 6, 15, 17),  # exactly at closing
    berlin(2026, 6, 15, 12, 30),  # lunch break of the split shifts
    berlin(2026, 3, 27, 23, 59, 59),  # before the spring change
    utc(2026, 3, 29, 0, 45),  # in the changing night (01:45 CET)
    utc(2026, 3, 29, 1),  # the jump itself (03:00 CEST)
    berlin(2026, 10, 24, 21, 15),  # before the autumn change
    utc(2026, 10, 25, 0, 30),  # first 02:30 (CEST)
    utc(2026, 10, 25, 1, 30),  # second 02:30 (CET)
    new_york(2026, 9, 4, 16),  # before Labor Day
    new_york(2026, 11, 26, 8),  # Thanksgiving
    berlin(2026, 12, 23, 15, 0, 0, 500_000),  # before Christmas, with a fraction
]
PROPERTY_SECONDS = [0.0, 0.5, 1.0, 59.0, 1800.0, HOUR, 2.5 * HOUR, 8 * HOUR, 11 * HOUR,
                    3 * 24 * HOUR, 45 * 8 * HOUR, 123456.25]


@pytest.mark.parametrize("name", PROPERTY_CALENDARS)
def test_between_undoes_add(name: str) -> None:
    cal = PROPERTY_CALENDARS[name]
    for start in PROPERTY_STARTS:
        for seconds in PROPERTY_SECONDS:
            due = cal.add(start, seconds)
            assert due.tzinfo is UTC
            assert cal.between(start, due) == seconds, (start, seconds, due)
            if seconds > 0:
                # The earliest such instant: a moment before, a little is still missing.
                assert cal.between(start, due - timedelta(microseconds=1)) < seconds
                assert cal.is_open(due - timedelta(microseconds=1))
            else:
                assert due == cal.next_open(start)


# -- shapes of opening hours -----------------------------------------------------------------


def test_split_shifts_skip_the_lunch_break() -> None:
    split = calendar(hours={day: [["09:00", "12:00"], ["13:00", "17:00"]] for day in WEEKDAYS})
    assert split.add(berlin(2026, 6, 15, 11, 30), HOUR) == berlin(2026, 6, 15, 13, 30)
    assert split.between(berlin(2026, 6, 15, 11), berlin(2026, 6, 15, 14)) == 2 * HOUR
    assert not split.is_open(berlin(2026, 6, 15, 12, 30))
    assert split.is_open(berlin(2026, 6, 15, 11, 59))
    assert split.next_open(berlin(2026, 6, 15, 12)) == berlin(2026, 6, 15, 13)
    # Friday 16:00 + 5 h: 1 h on Friday, then Monday 09:00-12:00 and 13:00-14:00.
    assert split.add(berlin(2026, 6, 12, 16), 5 * HOUR) == berlin(2026, 6, 15, 14)


def test_24_00_ends_the_day_and_runs_on_into_the_next() -> None:
    nights = calendar(hours={"fri": [["20:00", "24:00"]], "sat": [["00:00", "02:00"]]})
    assert nights.add(berlin(2026, 6, 12, 23), 2 * HOUR) == berlin(2026, 6, 13, 1)
    assert nights.between(berlin(2026, 6, 12, 19), berlin(2026, 6, 13, 3)) == 6 * HOUR
    assert nights.is_open(berlin(2026, 6, 13))
    assert nights.is_open(berlin(2026, 6, 12, 23, 59, 59))
    assert not nights.is_open(berlin(2026, 6, 13, 2))
    # Touching intervals of one day are one stretch too.
    touching = calendar(hours={"mon": [["09:00", "12:00"], ["12:00", "14:00"]]})
    assert touching.add(berlin(2026, 6, 15, 11), 2 * HOUR) == berlin(2026, 6, 15, 13)
    assert touching.is_open(berlin(2026, 6, 15, 12))


def test_a_weekend_only_calendar() -> None:
    weekend = calendar(hours={"sat": [["10:00", "16:00"]], "sun": [["10:00", "16:00"]]})
    assert weekend.add(berlin(2026, 6, 10, 12), HOUR) == berlin(2026, 6, 13, 11)
    assert weekend.next_open(berlin(2026, 6, 15, 10)) == berlin(2026, 6, 20, 10)
    # Saturday 15:00 + 2 h: 1 h Saturday, 1 h Sunday.
    assert weekend.add(berlin(2026, 6, 13, 15), 2 * HOUR) == berlin(2026, 6, 14, 11)
    assert weekend.between(berlin(2026, 6, 8), berlin(2026, 6, 15)) == 12 * HOUR


# -- is_open and next_open at the edges ----------------------------------------------------


def test_open_at_opening_closed_at_closing() -> None:
    cal = calendar()
    assert cal.is_open(berlin(2026, 6, 15, 9))
    assert not cal.is_open(berlin(2026, 6, 15, 9) - timedelta(microseconds=1))
    assert cal.is_open(berlin(2026, 6, 15, 17) - timedelta(microseconds=1))
    assert not cal.is_open(berlin(2026, 6, 15, 17))
    assert not cal.is_open(berlin(2026, 6, 13, 12))  # Saturday
    assert cal.is_open(utc(2026, 6, 15, 7))  # 09:00 CEST given in UTC


def test_next_open_is_the_instant_itself_when_open() -> None:
    cal = calendar()
    at = berlin(2026, 6, 15, 9)
    assert cal.next_open(at) == at
    assert cal.next_open(at).tzinfo is UTC
    assert cal.next_open(berlin(2026, 6, 15, 12, 0, 0, 1)) == berlin(2026, 6, 15, 12, 0, 0, 1)
    assert cal.next_open(berlin(2026, 6, 15, 17)) == utc(2026, 6, 16, 7)
    assert cal.next_open(berlin(2026, 6, 12, 17)) == utc(2026, 6, 15, 7)
    assert cal.next_open(berlin(2026, 6, 15, 6)) == utc(2026, 6, 15, 7)


def test_three_years_without_business_time_is_an_error() -> None:
    first_monday = date(2026, 6, 15)
    mondays = [first_monday + timedelta(weeks=week) for week in range(53 * 4)]
    never = calendar(hours={"mon": [["09:00", "17:00"]]}, closed_dates=mondays)
    with pytest.raises(ValueError, match="no business time within 3 years"):
        never.add(berlin(2026, 6, 14), HOUR)
    with pytest.raises(ValueError, match="no business time within 3 years"):
        never.next_open(berlin(2026, 6, 14))
    # Long durations still finish: ten years of Mondays.
    mondays_only = calendar(hours={"mon": [["09:00", "17:00"]]})
    start = berlin(2026, 6, 15, 9)
    assert mondays_only.add(start, 522 * 8 * HOUR) == berlin(2036, 6, 9, 17)


# -- ALWAYS_OPEN ---------------------------------------------------------------------------


def test_always_open_is_plain_arithmetic() -> None:
    for start in (utc(2026, 6, 13, 3), berlin(2026, 3, 29, 1, 30), berlin(2026, 10, 25, 1)):
        for seconds in (0.0, 0.25, HOUR, 25 * HOUR, 400 * 24 * HOUR):
            due = ALWAYS_OPEN.add(start, seconds)
            # Elapsed time, so in UTC: Python adds to a Berlin datetime on the wall clock.
            assert due == start.astimezone(UTC) + timedelta(seconds=seconds)
            assert due.tzinfo is UTC
            assert ALWAYS_OPEN.between(start, due) == seconds
        assert ALWAYS_OPEN.is_open(start)
        assert ALWAYS_OPEN.next_open(start) == start
    assert ALWAYS_OPEN.between(utc(2026, 1, 1), utc(2025, 1, 1)) == 0.0
    assert ALWAYS_OPEN.holiday_name(date(2026, 12, 25)) is None
    assert ALWAYS_OPEN.time_zone == ZoneInfo("UTC")
    # One hour after 01:30 CET on 2026-03-29 is 03:30 CEST.
    assert ALWAYS_OPEN.add(berlin(2026, 3, 29, 1, 30), HOUR) == berlin(2026, 3, 29, 3, 30)


# -- naive datetimes -------------------------------------------------------------------------


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2026, 6, 15, 10)
    aware = utc(2026, 6, 15, 10)
    for cal in (calendar(), ALWAYS_OPEN):
        with pytest.raises(ValueError, match="at must be time-zone aware"):
            cal.is_open(naive)
        with pytest.raises(ValueError, match="at must be time-zone aware"):
            cal.next_open(naive)
        with pytest.raises(ValueError, match="start must be time-zone aware"):
            cal.add(naive, HOUR)
        with pytest.raises(ValueError, match="start must be time-zone aware"):
            cal.between(naive, aware)
        with pytest.raises(ValueError, match="end must be time-zone aware"):
            cal.between(aware, naive)


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"time_zone": "Mars/Olympus"},
         "time_zone: unknown time zone 'Mars/Olympus' (use an IANA name such as Europe/Berlin)"),
        ({"time_zone": "Europe"}, "time_zone: unknown time zone 'Europe'"),
        ({"time_zone": "../etc/passwd"}, "time_zone: unknown time zone '../etc/passwd'"),
        ({"hours": {"mon": [["09:00", "25:00"]]}},
         "hours.mon[0]: '25:00' is not a time of day (HH:MM, 00:00 to 24:00)"),
        ({"hours": {"tue": [["9:00", "17:00"]]}}, "hours.tue[0]: '9:00' is not a time of day"),
        ({"hours": {"mon": [["09:00", "12:00"], ["18:00", "09:00"]]}},
         "hours.mon[1]: end 09:00 is not after start 18:00"),
        ({"hours": {"mon": [["09:00", "09:00"]]}},
         "hours.mon[0]: end 09:00 is not after start 09:00"),
        ({"hours": {"mon": [["24:00", "24:00"]]}},
         "hours.mon[0]: 24:00 can only end an interval"),
        ({"hours": {"wed": [["09:00", "12:00"], ["11:00", "13:00"]]}},
         "hours.wed: 11:00-13:00 overlaps 09:00-12:00"),
        ({"hours": {"wed": [["13:00", "17:00"], ["09:00", "12:00"]]}},
         "hours.wed: intervals out of order: 09:00-12:00 is listed after 13:00-17:00"),
        ({"hours": {"monday": [["09:00", "17:00"]]}},
         "hours.monday: unknown day 'monday', use mon, tue, wed, thu, fri, sat, sun"),
        ({"hours": {"mon": [["09:00"]]}}, "hours.mon[0][1]: Field required"),
        ({"hours": {}}, "hours: a calendar needs opening hours"),
        ({"hours": {"mon": [], "sun": []}}, "hours: a calendar needs opening hours"),
        ({"country": "XX"},
         "country: unknown country code 'XX' (use an ISO 3166 code such as DE or US)"),
        ({"subdivision": "BY"}, "subdivision: 'BY' needs a country"),
        ({"country": "DE", "subdivision": "ZZ"},
         "subdivision: 'ZZ' is not a subdivision of DE (one of BB, BE, BW, BY,"),
        ({"country": "US", "subdivision": "ZZ"}, "subdivision: 'ZZ' is not a subdivision of US"),
        ({"closed_dates": ["2026-02-30"]}, "closed_dates[0]: Input should be a valid date"),
        ({"colour": "blue"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_invalid_specs_name_the_field(changes: dict[str, Any], message: str) -> None:
    raw = {"time_zone": "Europe/Berlin", "hours": NINE_TO_FIVE, **changes}
    with pytest.raises(InvalidCalendar) as caught:
        parse_calendar(raw)
    assert str(caught.value).startswith(message)
    assert isinstance(caught.value, ValueError)


def test_several_problems_come_in_one_message() -> None:
    with pytest.raises(InvalidCalendar) as caught:
        parse_calendar({"hours": {"mon": [["18:00", "09:00"]]}, "country": "XX"})
    assert str(caught.value) == (
        "time_zone: Field required; hours.mon[0]: end 09:00 is not after start 18:00; "
        "country: unknown country code 'XX' (use an ISO 3166 code such as DE or US)"
    )


def test_the_spec_validates_on_its_own_and_round_trips_as_json() -> None:
    with pytest.raises(ValidationError):
        CalendarSpec.model_validate({"time_zone": "Nowhere/Town", "hours": NINE_TO_FIVE})
    spec = CalendarSpec.model_validate({
        "time_zone": "Europe/Berlin", "hours": NINE_TO_FIVE, "country": "DE",
        "subdivision": "BY", "closed_dates": ["2026-12-24"],
    })
    again = CalendarSpec.model_validate_json(spec.model_dump_json())
    assert again == spec
    assert Calendar(again).holiday_name(date(2026, 12, 24)) == "closed"
    assert Calendar(again).holiday_name(date(2026, 12, 25)) == "Christmas Day"


def test_a_calendar_cannot_be_changed_through_its_spec() -> None:
    spec = CalendarSpec(time_zone="Europe/Berlin", hours={"mon": [("09:00", "17:00")]})
    cal = Calendar(spec)
    spec.hours["tue"] = [("09:00", "17:00")]
    cal.spec.hours["wed"] = [("09:00", "17:00")]
    assert not cal.is_open(berlin(2026, 6, 16, 10))
    assert not cal.is_open(berlin(2026, 6, 17, 10))
    with pytest.raises(AttributeError):
        cal._zone = BERLIN
