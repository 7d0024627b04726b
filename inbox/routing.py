"""Routing rules: which team a new conversation goes to, decided by its first message.

A rule (AssignmentRule) holds conditions that must all be true; the first active rule by
position (then id) whose conditions hold, and whose team works on the conversation's inbox,
sets the conversation's team. The team's members then get it by the team's policy.

Conditions, as stored: {"field": ..., "op": ..., "value": ...}
- channel   equals "email" | in ["sms", "whatsapp"]
- inbox     equals 3 | in [3, 4]
- keywords  contains_any ["refund", "money back"]   whole words, any case, in the first message
- language  equals "de" | in ["de", "fr"]           "de" also matches "de-CH"; from the message's
                                                     metadata "language", else the contact's
                                                     attribute "language"
- contact.<attribute>  equals | in | contains_any   compared as text, any case
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from inbox.models import AssignmentRule, TeamInbox

OPS_BY_FIELD: dict[str, tuple[str, ...]] = {
    "channel": ("equals", "in"),
    "inbox": ("equals", "in"),
    "keywords": ("contains_any",),
    "language": ("equals", "in"),
    "contact.": ("equals", "in", "contains_any"),
}
MAX_CONDITIONS = 20
MAX_VALUES = 100
MAX_VALUE_CHARS = 200
ATTRIBUTE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
LANGUAGE = re.compile(r"^[a-z]{1,8}(-[a-z0-9]{1,8})*$")


class InvalidRule(ValueError):
    """A rule that cannot be stored, with a message naming the bad part."""


@dataclass(frozen=True)
class RoutingFacts:
    """What rules look at: the new conversation's inbox and channel, its first message, the
    contact."""

    inbox_id: int
    channel: str
    text: str
    language: str | None
    contact_attributes: Mapping[str, Any]


def message_language(
    metadata: Mapping[str, Any], contact_attributes: Mapping[str, Any]
) -> str | None:
    """The language of a message: its metadata (widget, Content-Language), else the contact's."""
    for value in (metadata.get("language"), contact_attributes.get("language")):
        if isinstance(value, str) and value.strip():
            return value
    return None


def validate_conditions(
    conditions: Iterable[Mapping[str, Any]], *, channels: Iterable[str]
) -> list[dict[str, Any]]:
    """The conditions checked and normalised for storage; InvalidRule naming the first problem."""
    known_channels = set(channels)
    out: list[dict[str, Any]] = []
    for n, condition in enumerate(conditions):
        where = f"conditions[{n}]"
        if n >= MAX_CONDITIONS:
            raise InvalidRule(f"conditions: at most {MAX_CONDITIONS}")
        extra = set(condition) - {"field", "op", "value"}
        if extra:
            raise InvalidRule(f"{where}: unknown key {sorted(extra)[0]!r}; use field, op, value")
        field, op, value = condition.get("field"), condition.get("op"), condition.get("value")
        if not isinstance(field, str) or _kind(field) is None:
            raise InvalidRule(f"{where}.field: unknown field {field!r}; use channel, inbox, "
                              "keywords, language or contact.<attribute>")
        kind = _kind(field)
        assert kind is not None
        if kind == "contact." and not ATTRIBUTE.match(field[len(kind):]):
            raise InvalidRule(f"{where}.field: an attribute name has 1-64 letters, digits, "
                              "'_', '.' or '-'")
        allowed = OPS_BY_FIELD[kind]
        if op not in allowed:
            raise InvalidRule(f"{where}.op: {op!r} does not go with {field}; use "
                              + " or ".join(allowed))
        values = _values(value, many=op != "equals", where=f"{where}.value")
        if kind == "inbox":
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise InvalidRule(f"{where}.value: inbox ids are integers")
        else:
            if not all(isinstance(v, str | int | float | bool) for v in values):
                raise InvalidRule(f"{where}.value: text values only")
            values = [_text(v) for v in values]
            if any(not v or len(v) > MAX_VALUE_CHARS for v in values):
                raise InvalidRule(f"{where}.value: each value has 1 to {MAX_VALUE_CHARS} "
                                  "characters")
        if kind == "channel":
            unknown = [v for v in values if v not in known_channels]
            if unknown:
                raise InvalidRule(f"{where}.value: unknown channel {unknown[0]!r}; use one of "
                                  + ", ".join(sorted(known_channels)))
        if kind == "language":
            values = [_language(v) for v in values]
            bad = [v for v in values if not LANGUAGE.match(v)]
            if bad:
                raise InvalidRule(f"{where}.value: {bad[0]!r} is not a language tag like "
                                  "'de' or 'pt-BR'")
        out.append({"field": field, "op": op, "value": values[0] if op == "equals" else values})
    return out


def condition_inbox_ids(conditions: Iterable[Mapping[str, Any]]) -> set[int]:
    """The inbox ids that "inbox" conditions name (the caller checks they exist)."""
    found: set[int] = set()
    for condition in conditions:
        if condition["field"] == "inbox":
            value = condition["value"]
            found.update(value if isinstance(value, list) else [value])
    return found


def _kind(field: str) -> str | None:
    if field in OPS_BY_FIELD and field != "contact.":
        return field
    if field.startswith("contact.") and len(field) > len("contact."):
        return "contact."
    return None


def _values(value: Any, *, many: bool, where: str) -> list[Any]:
    if not many:
        if isinstance(value, list | dict) or value is None:
            raise InvalidRule(f"{where}: one value for 'equals'")
        return [value]
    if not isinstance(value, list) or not value:
        raise InvalidRule(f"{where}: a non-empty list")
    if len(value) > MAX_VALUES:
        raise InvalidRule(f"{where}: at most {MAX_VALUES} values")
    return list(value)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return " ".join(str(value).split()).casefold()


def _language(tag: str) -> str:
    return tag.strip().replace("_", "-").casefold()


def _languages(raw: str) -> list[str]:
    """The tags of a language value ("de-DE", "de, en", "de-DE,de;q=0.9"), in order."""
    return [_language(part.split(";")[0]) for part in raw.split(",") if part.split(";")[0].strip()]


@functools.lru_cache(maxsize=512)
def _words(keywords: tuple[str, ...]) -> re.Pattern[str]:
    # Whole words in any case; the words of a phrase may be apart by any whitespace.
    alternatives = ["\\s+".join(re.escape(w) for w in k.split()) for k in keywords if k.split()]
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def _holds(condition: Mapping[str, Any], facts: RoutingFacts) -> bool:
    field, op, value = condition["field"], condition["op"], condition["value"]
    values = value if isinstance(value, list) else [value]
    if field == "channel":
        return facts.channel in values
    if field == "inbox":
        return facts.inbox_id in values
    if field == "keywords":
        return bool(_words(tuple(values)).search(facts.text))
    if field == "language":
        if facts.language is None:
            return False
        return any(tag == v or tag.startswith(v + "-")
                   for tag in _languages(facts.language) for v in values)
    attribute = facts.contact_attributes.get(field[len("contact."):])
    if attribute is None:
        return False
    items = attribute if isinstance(attribute, list) else [attribute]
    texts = [_text(item) for item in items if isinstance(item, str | int | float | bool)]
    if op in ("equals", "in"):
        return any(t in values for t in texts)
    pattern = _words(tuple(values))
    return any(t in values or pattern.search(t) for t in texts)


def matches(conditions: Iterable[Mapping[str, Any]], facts: RoutingFacts) -> bool:
    """Whether every condition holds (a rule without conditions always matches)."""
    return all(_holds(condition, facts) for condition in conditions)


Rule = tuple[list[dict[str, Any]], int]  # (conditions, team id)


async def rules_for(session: AsyncSession, inbox_ids: Iterable[int]) -> dict[int, list[Rule]]:
    """The active rules that may route each inbox's conversations, in order (one query):
    the inbox's own rules and the rules for every inbox whose team works on it."""
    wanted = sorted(set(inbox_ids))
    if not wanted:
        return {}
    rows = await session.exec(
        select(AssignmentRule.conditions, AssignmentRule.team_id, TeamInbox.inbox_id)
        .join(TeamInbox, col(TeamInbox.team_id) == col(AssignmentRule.team_id))
        .where(col(AssignmentRule.is_active).is_(True), col(TeamInbox.inbox_id).in_(wanted),
               or_(col(AssignmentRule.inbox_id).is_(None),
                   col(AssignmentRule.inbox_id) == col(TeamInbox.inbox_id)))
        .order_by(col(AssignmentRule.position), col(AssignmentRule.id))
    )
    found: dict[int, list[Rule]] = {inbox_id: [] for inbox_id in wanted}
    for conditions, team_id, inbox_id in rows:
        found[inbox_id].append((list(conditions), team_id))
    return found


def pick_team(rules: Iterable[Rule], facts: RoutingFacts) -> int | None:
    """The team of the first rule whose conditions hold, or None."""
    return next((team_id for conditions, team_id in rules if matches(conditions, facts)), None)


async def route(session: AsyncSession, facts: RoutingFacts) -> int | None:
    """The team of the first active matching rule whose team works on the inbox, or None."""
    rules = await rules_for(session, [facts.inbox_id])
    return pick_team(rules[facts.inbox_id], facts)
