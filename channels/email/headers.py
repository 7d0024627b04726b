"""Reading header values, and the Message-IDs they name (tolerant of the forms seen in mail)."""

from __future__ import annotations

import hashlib
import re
from email.message import Message

_MSG_ID = re.compile(r"<([^<>\s]{1,250})>")
_BARE_ID = re.compile(r"^[^<>\s@]{1,200}@[^<>\s@]{1,200}$")
MAX_IDS = 50


def message_ids(value: str | None) -> list[str]:
    """The Message-IDs named in a header value, in order, without angle brackets."""
    if not value:
        return []
    found = _MSG_ID.findall(value)
    if not found and _BARE_ID.match(value.strip()):
        found = [value.strip()]  # some clients forget the brackets
    return found[:MAX_IDS]


def first_message_id(value: str | None) -> str | None:
    """The first Message-ID in a header value, or None."""
    found = message_ids(value)
    return found[0] if found else None


def raw_id(raw: bytes) -> str:
    """A stable id for a message without Message-ID, so re-fetches deduplicate."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def header(message: Message, name: str) -> str:
    """A header's value as the standard parser decodes it ('' when missing or broken)."""
    try:
        value = message.get(name)
    except (ValueError, IndexError, TypeError, AttributeError):
        return ""
    return str(value).strip() if value is not None else ""
