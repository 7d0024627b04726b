"""Business-hours calendars for SLA clocks and reports.

An admin stores a `CalendarSpec` (JSON): a time zone, weekly opening hours in local
wall-clock time, and optionally a country (and subdivision) whose public holidays are closed,
plus the company's own closed dates. `parse_calendar` validates one and builds a `Calendar`,
which answers "is it open?", "when is N business seconds after this?" and "how many business
seconds lie between these instants?". Instants go in time-zone aware (UTC from the database)
and come out in UTC.

Work is done day by day in the calendar's local time, so a call costs O(days crossed).

Wall-clock times become instants as "the first instant the local clock reads that time or
later". So on a day the clocks go back, 02:30 is its first occurrence (summer time) and an
interval spanning the change is an hour longer; on a day they jump forward, a time in the
skipped hour (02:30 in Berlin on 2026-03-29) is the moment of the jump (03:00 summer time) and
an interval spanning the change is an hour shorter. Moving a skipped time forward by the whole
gap (what `fold=0` arithmetic gives: 02:30 -> 03:30) was not used because it reorders times:
02:30-03:10 would end before it starts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from itertools import pairwise
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HORIZON_DAYS = 3 * 366
_LAST_DAY = date(9999, 12, 30)  # the last local day whose 24:00 a datetime can hold
_TIME = re.compile(r"(?:[01]\d|2[0-3]):[0-5]\d|24:00")
_LISTED_SUBDIVISIONS = 20  # list the valid subdivisions in an error only up to this many
_MINUTES_PER_DAY = 24 * 60


class InvalidCalendar(ValueError):
    """A calendar spec that cannot be used; the message names the bad part."""


def _minutes(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def _check_day_key(key: str) -> str:
    if key not in DAYS:
        raise ValueError(f"unknown day {key!r}, use {', '.join(DAYS)}")
    return key


def _check_interval(interval: tuple[str, str]) -> tuple[str, str]:
    start, end = interval
    for value in interval:
        if not _TIME.fullmatch(value):
            raise ValueError(f"{value!r} is not a time of day (HH:MM, 00:00 to 24:00)")
    if start == "24:00":
        raise ValueError("24:00 can only end an interval")
    if _minutes(end) <= _minutes(start):
        raise ValueError(f"end {end} is not after start {start}")
    return interval


def _check_day(intervals: list[tuple[str, str]]) -> list[tuple[str, str]]:
    for (start_a, end_a), (start_b, end_b) in pairwise(intervals):
        if _minutes(start_b) < _minutes(start_a):
            raise ValueError(
                f"intervals out of order: {start_b}-{end_b} is listed after {start_a}-{end_a}"
            )
        if _minutes(start_b) < _minutes(end_a):
            raise ValueError(f"{start_b}-{end_b} overlaps {start_a}-{end_a}")
    return intervals


_DayKey = Annotated[str, AfterValidator(_check_day_key)]
_Interval = Annotated[tuple[str, str], AfterValidator(_check_interval)]
_Intervals = Annotated[list[_Interval], AfterValidator(_check_day)]
_Hours = dict[str, list[tuple[str, str]]]


class CalendarSpec(BaseModel):
    """A business-hours calendar as admins store it; validated when built."""

    model_config = ConfigDict(extra="forbid")

    time_zone: str
    """IANA time zone name, e.g. "Europe/Berlin"."""
    hours: dict[_DayKey, _Intervals]
    """Opening hours per day (mon..sun, missing days closed): sorted ["09:00", "17:00"] pairs."""
    country: str | None = None
    """ISO country code whose public holidays are closed, e.g. "DE"."""
    subdivision: str | None = None
    """Subdivision of the country for regional holidays, e.g. "BY"; needs a country."""
    closed_dates: list[date] = []
    """The company's own days off."""

    @field_validator("time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        _zone(value)
        return value

    @field_validator("hours")
    @classmethod
    def _some_hours(cls, value: _Hours) -> _Hours:
        if not any(value.values()):
            raise ValueError("a calendar needs opening hours")
        return value

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str | None) -> str | None:
        if value is not None and value not in holidays.list_supported_countries():
            raise ValueError(
                f"unknown country code {value!r} (use an ISO 3166 code such as DE or US)"
            )
        return value

    @field_validator("subdivision")
    @classmethod
    def _known_subdivision(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or "country" not in info.data:  # a bad country is reported already
            return value
        country = info.data["country"]
        if country is None:
            raise ValueError(f"{value!r} needs a country")
        known: list[str] = holidays.list_supported_countries()[country]
        if value not in known:
            listed = f" (one of {', '.join(known)})" if known else " (it has none)"
            if len(known) > _LISTED_SUBDIVISIONS:
                listed = ""
            raise ValueError(f"{value!r} is not a subdivision of {country}{listed}")
        return value


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)"
        ) from None


def _path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "calendar"


def parse_calendar(raw: Mapping[str, Any]) -> Calendar:
    """Validate a stored calendar spec and build its Calendar, or raise InvalidCalendar."""
    try:
        spec = CalendarSpec.model_validate(dict(raw) if isinstance(raw, Mapping) else raw)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            message = str(item["ctx"]["error"]) if item["type"] == "value_error" else item["msg"]
            problems.append(f"{_path(item['loc'])}: {message}")
        raise InvalidCalendar("; ".join(problems)) from None
    return Calendar(spec)


def _aware(at: datetime, name: str = "at") -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be time-zone aware (got a naive datetime)")
    return at.astimezone(UTC)


def _wall(at: datetime, zone: tzinfo) -> datetime:
    return at.astimezone(zone).replace(tzinfo=None)


def _instant(wall: datetime, zone: tzinfo) -> datetime:
    """The first instant at which the local clock reads `wall` or later (see module doc)."""
    first = wall.replace(tzinfo=zone).astimezone(UTC)  # fold=0: the first occurrence
    if _wall(first, zone) == wall:
        return first
    # `wall` falls in a gap: find the moment of the jump between the two readings.
    other = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    low, high = sorted((int(first.timestamp()), int(other.timestamp())))
    # Invariant: the clock reads earlier than `wall` at `low` and `wall` or later at `high`.
    while high - low > 1:
        middle = (low + high) // 2
        if _wall(datetime.fromtimestamp(middle, UTC), zone) >= wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


class Calendar:
    """Opening hours in a time zone, closed on holidays. Immutable; build with parse_calendar."""

    __slots__ = ("_closed", "_country", "_public", "_spec", "_subdivision", "_week", "_zone")

    def __init__(self, spec: CalendarSpec) -> None:
        """Build from a validated spec."""
        set_ = object.__setattr__
        set_(self, "_spec", spec.model_copy(deep=True))
        set_(self, "_zone", _zone(spec.time_zone))
        set_(self, "_week", tuple(_merged(spec.hours.get(day, [])) for day in DAYS))
        set_(self, "_country", spec.country)
        set_(self, "_subdivision", spec.subdivision)
        set_(self, "_closed", frozenset(spec.closed_dates))
        set_(self, "_public", {})  # year -> {date: holiday name}, filled on first use

    _spec: CalendarSpec
    _zone: ZoneInfo
    _week: tuple[tuple[tuple[int, int], ...], ...]
    _country: str | None
    _subdivision: str | None
    _closed: frozenset[date]
    _public: dict[int, dict[date, str]]

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a Calendar cannot be changed")

    def __repr__(self) -> str:
        return f"Calendar({self._spec!r})"

    @property
    def spec(self) -> CalendarSpec:
        """A copy of the spec this calendar was built from."""
        return self._spec.model_copy(deep=True)

    @property
    def time_zone(self) -> ZoneInfo:
        """The calendar's time zone."""
        return self._zone

    @property
    def _always_open(self) -> bool:
        whole_day = ((0, _MINUTES_PER_DAY),)
        return self._country is None and not self._closed and all(
            day == whole_day for day in self._week
        )

    def holiday_name(self, day: date) -> str | None:
        """The public holiday's name on `day`, "closed" for a custom closed date, else None."""
        if self._country is not None:
            year = self._public.get(day.year)
            if year is None:
                found = holidays.country_holidays(
                    self._country, subdiv=self._subdivision, years=day.year
                )
                year = {when: str(name) for when, name in found.items()}
                self._public[day.year] = year
            if day in year:
                return year[day]
        return "closed" if day in self._closed else None

    def open_intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """The open intervals of a local calendar day, as UTC instants (none on holidays)."""
        if self.holiday_name(day) is not None:
            return []
        midnight = datetime.combine(day, time())
        intervals = []
        for start, end in self._week[day.weekday()]:
            opens = _instant(midnight + timedelta(minutes=start), self._zone)
            closes = _instant(midnight + timedelta(minutes=end), self._zone)
            if opens < closes:  # a day skipped by a time-zone change has nothing open
                intervals.append((opens, closes))
        return intervals

    def _intervals_from(self, at: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Open intervals ending after `at`, in order; gives up after HORIZON_DAYS closed days."""
        day = _wall(at, self._zone).date()
        closed_days = 0
        while closed_days < HORIZON_DAYS and day < _LAST_DAY:
            found = False
            for start, end in self.open_intervals(day):
                if end > at:
                    found = True
                    yield start, end
            closed_days = 0 if found else closed_days + 1
            day += timedelta(days=1)
        raise ValueError("no business time within 3 years")

    def is_open(self, at: datetime) -> bool:
        """Whether the calendar is open at the instant `at` (opening included, closing not)."""
        at = _aware(at)
        day = _wall(at, self._zone).date()
        # Around a midnight change of clocks an instant can belong to the next local day.
        for local_day in (day, day + timedelta(days=1)):
            for start, end in self.open_intervals(local_day):
                if start <= at < end:
                    return True
        return False

    def next_open(self, at: datetime) -> datetime:
        """`at` if open then, else the next opening; in UTC."""
        at = _aware(at)
        if self._always_open:
            return at
        for start, _end in self._intervals_from(at):
            return max(start, at)
        raise AssertionError("unreachable")  # pragma: no cover

    def add(self, start: datetime, seconds: float) -> datetime:
        """The instant (UTC) when `seconds` of business time have passed after `start`.

        A start in closed time counts from the next opening; a duration that ends exactly at
        a closing returns the closing.
        """
        start = _aware(start, "start")
        if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
            raise ValueError(f"seconds must be a finite number of at least 0, got {seconds}")
        remaining = timedelta(seconds=seconds)
        if self._always_open:
            return start + remaining
        for opens, closes in self._intervals_from(start):
            begin = max(opens, start)
            if remaining <= closes - begin:
                return begin + remaining
            remaining -= closes - begin
        raise AssertionError("unreachable")  # pragma: no cover

    def between(self, start: datetime, end: datetime) -> float:
        """Business seconds from `start` to `end` (0 if `end` is not after `start`)."""
        start, end = _aware(start, "start"), _aware(end, "end")
        if end <= start:
            return 0.0
        if self._always_open:
            return (end - start).total_seconds()
        total = timedelta()
        day = _wall(start, self._zone).date()
        while day < _LAST_DAY:
            intervals = self.open_intervals(day)
            for opens, closes in intervals:
                total += max(timedelta(), min(closes, end) - max(opens, start))
            if _instant(datetime.combine(day + timedelta(days=1), time()), self._zone) >= end:
                break
            day += timedelta(days=1)
        return total.total_seconds()


def _merged(intervals: list[tuple[str, str]]) -> tuple[tuple[int, int], ...]:
    """A day's intervals in minutes after midnight, touching ones joined."""
    merged: list[tuple[int, int]] = []
    for start, end in ((_minutes(s), _minutes(e)) for s, e in intervals):
        if merged and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return tuple(merged)


ALWAYS_OPEN = Calendar(
    CalendarSpec(time_zone="UTC", hours={day: [("00:00", "24:00")] for day in DAYS})
)
"""24/7 in UTC without holidays: what SLA clocks use when no calendar applies."""
