"""A one-line summary of a calendar invitation (text/calendar, .ics), read with icalendar."""

from __future__ import annotations

import warnings
from datetime import date, datetime
from typing import Any

MAX_CALENDAR_BYTES = 256 * 1024  # an invitation is a few KiB; a larger file is only kept
_METHODS = {"REQUEST": "Invitation", "CANCEL": "Cancelled", "REPLY": "Answer to invitation",
            "COUNTER": "New time proposed", "PUBLISH": "Event"}


def _when(value: Any) -> str:
    moment = getattr(value, "dt", None)
    if isinstance(moment, datetime):
        # A zone name the library does not know stays as the file writes it.
        zone = moment.tzname() or str(getattr(value, "params", {}).get("TZID", ""))
        return f"{moment:%a %d %b %Y %H:%M} {zone}".strip()
    if isinstance(moment, date):
        return f"{moment:%a %d %b %Y}"
    return ""


def _text(value: Any) -> str:
    return " ".join(str(value).split())[:200] if value is not None else ""


def calendar_summary(data: bytes) -> str | None:
    """"[Invitation: Quarterly review · Tue 17 Mar 2026 14:00 UTC · Room 4]", or None."""
    if len(data) > MAX_CALENDAR_BYTES:
        return None
    import icalendar  # imported for the mails that carry one, not at start-up

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a sloppy file is still worth summarising
            calendar = icalendar.Calendar.from_ical(data.decode("utf-8", "replace"))
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    event = next(iter(calendar.walk("VEVENT")), None)
    if event is None:
        return None
    method = _text(calendar.get("METHOD")).upper()
    what = _METHODS.get(method, "Event")
    if method == "REPLY":
        attendee = event.get("ATTENDEE")
        attendee = attendee[0] if isinstance(attendee, list) and attendee else attendee
        answer = _text(getattr(attendee, "params", {}).get("PARTSTAT", "")).lower()
        what = {"accepted": "Accepted", "declined": "Declined",
                "tentative": "Tentatively accepted"}.get(answer, what)
    parts = [_text(event.get("SUMMARY")) or "(no title)", _when(event.get("DTSTART")),
             _text(event.get("LOCATION"))]
    return f"[{what}: " + " · ".join(p for p in parts if p) + "]"
