"""Automation rules: what they may say, checked on save, and whether one matches an event.

A rule is a trigger, conditions (all or any of them must hold) and actions, in order:

triggers (the events that wake rules; see `trigger_of`)
  conversation_created   a new conversation was opened
  message_received       a customer wrote (never an auto-reply or a bounce)
  agent_replied          an agent (or a rule) answered the customer
  status_changed         resolved, reopened, snoozed, set pending
  assignee_changed       the assignee or team changed
  labels_changed         labels were put on or taken off
  priority_changed       the priority changed
  sla_at_risk            an SLA target will be due soon (inbox/sla.py)
  sla_breached           an SLA target is overdue
  csat_received          the customer answered the satisfaction survey (inbox/csat.py)
  pending_for            pending for `delay_hours` (timed: see inbox/automation_runner.py)
  no_customer_reply_for  the customer silent `delay_hours` after our last reply

conditions, stored as {"field": ..., "op": ..., "value": ...}
  inbox      in / not_in [ids]            channel   in / not_in [names]
  team       in / not_in [ids], is_set, is_empty
  assignee   in / not_in [ids], is_set, is_empty
  status     in / not_in [statuses]       priority  in / not_in [priorities]
  label      has_any / has_none [names]
  text       contains_any [words] / regex "pattern"   the message of the event ("" if none)
  subject    contains_any [words] / regex "pattern"
  language   in [tags]                     the contact's "language" attribute ("de" ~ "de-CH")
  identity   has_any [kinds]               the contact can be reached by (email, phone, telegram, …)
  contact.<attribute>  equals / in / contains_any   compared as text, any case
  csat_score at_most / at_least 1-5        the customer's answer to the survey
  business_hours  open / closed {calendar}  the event's time in a business-hours calendar
                                            (inbox/business_hours.py's CalendarSpec)

actions, stored as {"type": ..., ...}
  assign_agent {agent_id}   assign_team {team_id}   unassign {}   assign_auto {}
  add_label {label}         remove_label {label}    set_priority {priority}
  reply {text} | {canned_id}   add_note {text}       set_status {status}
  snooze {hours}            notify {agent_id}

Regular expressions run with the `regex` package's timeout (a pattern that backtracks for
ever is stopped, not the worker) on at most the first 10,000 characters.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, get_args

import regex

from hub.events import (
    ConversationAssigned,
    ConversationCreated,
    ConversationStatusChanged,
    ConversationUpdated,
    ConversationView,
    MessageCreated,
    MessageView,
)
from hub.types import IdentityKind, utcnow
from inbox.business_hours import InvalidCalendar, parse_calendar
from inbox.models import CONVERSATION_STATUSES, PRIORITIES
from inbox.routing import ATTRIBUTE, LANGUAGE

TRIGGERS: dict[str, str] = {
    "conversation_created": "A conversation is created",
    "message_received": "A customer message is received",
    "agent_replied": "An agent replies",
    "status_changed": "The status changes",
    "assignee_changed": "The assignee or team changes",
    "labels_changed": "The labels change",
    "priority_changed": "The priority changes",
    "sla_at_risk": "An SLA target is at risk",
    "sla_breached": "An SLA target is breached",
    "csat_received": "The customer rates the conversation",
}
# Time-based triggers: the rule fires when the state an event started has lasted
# `delay_hours` (pending that long; the customer silent that long after a reply).
TIMED = {"pending_for": "Pending for (hours)",
         "no_customer_reply_for": "No customer reply for (hours) after ours"}
TRIGGERS.update(TIMED)
# The event types each trigger listens to (what the runner decodes at all); a timed trigger
# listens to those that start and end its wait.
EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "conversation_created": ("conversation.created",),
    "message_received": ("message.created",),
    "agent_replied": ("message.created",),
    "status_changed": ("conversation.status_changed",),
    "assignee_changed": ("conversation.assigned",),
    "labels_changed": ("conversation.updated",),
    "priority_changed": ("conversation.updated",),
    "sla_at_risk": ("conversation.updated",),
    "sla_breached": ("conversation.updated",),
    "csat_received": ("conversation.updated",),
    "pending_for": ("conversation.status_changed",),
    "no_customer_reply_for": ("message.created", "conversation.status_changed"),
}
MAX_DELAY_HOURS = 24 * 366
OPS: dict[str, tuple[str, ...]] = {
    "inbox": ("in", "not_in"),
    "channel": ("in", "not_in"),
    "team": ("in", "not_in", "is_set", "is_empty"),
    "assignee": ("in", "not_in", "is_set", "is_empty"),
    "status": ("in", "not_in"),
    "priority": ("in", "not_in"),
    "label": ("has_any", "has_none"),
    "text": ("contains_any", "regex"),
    "subject": ("contains_any", "regex"),
    "language": ("in",),
    "identity": ("has_any",),
    "contact.": ("equals", "in", "contains_any"),
    "csat_score": ("at_most", "at_least"),
    "business_hours": ("open", "closed"),
}
NO_VALUE = ("is_set", "is_empty")
ACTIONS: dict[str, tuple[str, ...]] = {
    "assign_agent": ("agent_id",),
    "assign_team": ("team_id",),
    "unassign": (),
    "assign_auto": (),
    "add_label": ("label",),
    "remove_label": ("label",),
    "set_priority": ("priority",),
    "reply": ("text", "canned_id"),  # one of them
    "add_note": ("text",),
    "set_status": ("status",),
    "snooze": ("hours",),
    "notify": ("agent_id",),
    "mute": (),  # resolved, and the customer's new messages do not reopen it
    "send_webhook": (),  # to the outbound webhook endpoints that take automation.webhook
}
RULE_STATUSES = ("open", "pending", "resolved")  # set_status (snooze has its own action)
MAX_CONDITIONS = 20
MAX_ACTIONS = 10
MAX_VALUES = 100
MAX_VALUE_CHARS = 200
MAX_TEXT = 5000  # a reply or note
MAX_PATTERN = 500
MAX_SNOOZE_HOURS = 24 * 365
SCAN_CHARS = 10_000  # of a text a condition looks at
REGEX_TIMEOUT_S = 0.05
IDENTITY_KINDS = get_args(IdentityKind)


class InvalidRule(ValueError):
    """A rule that cannot be stored, with a message naming the bad part."""


# -- checking what a rule says ------------------------------------------------------------


def validate_trigger(trigger: Any, delay_hours: float | None = None) -> str:
    if trigger not in TRIGGERS:
        raise InvalidRule(f"trigger: unknown trigger {trigger!r}; use one of "
                          + ", ".join(TRIGGERS))
    if trigger in TIMED and not (delay_hours and 0 < delay_hours <= MAX_DELAY_HOURS):
        raise InvalidRule(f"delay_hours: {trigger} needs how many hours (more than 0, at "
                          f"most {MAX_DELAY_HOURS})")
    if trigger not in TIMED and delay_hours is not None:
        raise InvalidRule(f"delay_hours: only {' and '.join(TIMED)} wait; {trigger} fires at "
                          "once")
    return str(trigger)


def validate_conditions(conditions: Iterable[Mapping[str, Any]], *,
                        channels: Iterable[str]) -> list[dict[str, Any]]:
    """The conditions checked and normalised for storage; InvalidRule names the first
    problem. Ids are checked against the database by the caller (`referenced_ids`)."""
    known_channels = set(channels)
    out: list[dict[str, Any]] = []
    for n, condition in enumerate(conditions):
        where = f"conditions[{n}]"
        if n >= MAX_CONDITIONS:
            raise InvalidRule(f"conditions: at most {MAX_CONDITIONS}")
        if not isinstance(condition, Mapping):
            raise InvalidRule(f"{where}: an object with field, op and value")
        extra = set(condition) - {"field", "op", "value"}
        if extra:
            raise InvalidRule(f"{where}: unknown key {sorted(extra)[0]!r}; use field, op, value")
        name, op, value = condition.get("field"), condition.get("op"), condition.get("value")
        kind = _kind(name)
        if kind is None:
            raise InvalidRule(f"{where}.field: unknown field {name!r}; use "
                              + ", ".join(k if k != "contact." else "contact.<attribute>"
                                          for k in OPS))
        assert isinstance(name, str)
        if kind == "contact." and not ATTRIBUTE.match(name[len(kind):]):
            raise InvalidRule(f"{where}.field: an attribute name has 1-64 letters, digits, "
                              "'_', '.' or '-'")
        if op not in OPS[kind]:
            raise InvalidRule(f"{where}.op: {op!r} does not go with {name}; use "
                              + " or ".join(OPS[kind]))
        out.append({"field": name, "op": op,
                    "value": _checked_value(kind, op, value, where=f"{where}.value",
                                            channels=known_channels)})
    return out


def _checked_value(kind: str, op: str, value: Any, *, where: str, channels: set[str]) -> Any:
    if op in NO_VALUE:
        if value not in (None, "", []):
            raise InvalidRule(f"{where}: '{op}' takes no value")
        return None
    if kind == "business_hours":
        if not isinstance(value, Mapping):
            raise InvalidRule(f"{where}: a calendar: time_zone, hours, and optionally country, "
                              "subdivision, closed_dates")
        try:
            parse_calendar(value)
        except InvalidCalendar as exc:
            raise InvalidRule(f"{where}: {exc}") from None
        return dict(value)
    if kind == "csat_score":
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        score = value if isinstance(value, int) and not isinstance(value, bool) else (
            int(value.strip()) if isinstance(value, str) and value.strip().isdigit() else 0)
        if not 1 <= score <= 5:
            raise InvalidRule(f"{where}: a score from 1 to 5")
        return score
    if op == "regex":
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_PATTERN:
            raise InvalidRule(f"{where}: a regular expression of 1 to {MAX_PATTERN} characters")
        try:
            regex.compile(value, regex.IGNORECASE)
        except regex.error as exc:
            raise InvalidRule(f"{where}: not a regular expression ({exc})") from None
        return value
    if op == "equals":
        if isinstance(value, list | dict) or value is None:
            raise InvalidRule(f"{where}: one value for 'equals'")
        values = [value]
    else:
        if not isinstance(value, list) or not value:
            raise InvalidRule(f"{where}: a non-empty list")
        if len(value) > MAX_VALUES:
            raise InvalidRule(f"{where}: at most {MAX_VALUES} values")
        values = list(value)
    if kind in ("inbox", "team", "assignee"):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
            raise InvalidRule(f"{where}: {kind} ids are positive integers")
        return sorted(set(values))
    if not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in values):
        raise InvalidRule(f"{where}: text values only")
    texts = [_text(v) for v in values]
    if any(not t or len(t) > MAX_VALUE_CHARS for t in texts):
        raise InvalidRule(f"{where}: each value has 1 to {MAX_VALUE_CHARS} characters")
    allowed = {"channel": channels, "status": set(CONVERSATION_STATUSES),
               "priority": set(PRIORITIES), "identity": set(IDENTITY_KINDS)}.get(kind)
    if allowed is not None:
        unknown = [t for t in texts if t not in allowed]
        if unknown:
            raise InvalidRule(f"{where}: unknown {kind} {unknown[0]!r}; use one of "
                              + ", ".join(sorted(allowed)))
    if kind == "language":
        texts = [t.replace("_", "-") for t in texts]
        bad = [t for t in texts if not LANGUAGE.match(t)]
        if bad:
            raise InvalidRule(f"{where}: {bad[0]!r} is not a language tag like 'de' or 'pt-BR'")
    texts = list(dict.fromkeys(texts))
    return texts[0] if op == "equals" else texts


def validate_actions(actions: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The actions checked and normalised; at least one. Ids and names are checked against
    the database by the caller (`referenced_ids`)."""
    out: list[dict[str, Any]] = []
    for n, action in enumerate(actions):
        where = f"actions[{n}]"
        if n >= MAX_ACTIONS:
            raise InvalidRule(f"actions: at most {MAX_ACTIONS}")
        if not isinstance(action, Mapping):
            raise InvalidRule(f"{where}: an object with a type")
        kind = action.get("type")
        if kind not in ACTIONS:
            raise InvalidRule(f"{where}.type: unknown action {kind!r}; use one of "
                              + ", ".join(ACTIONS))
        params = ACTIONS[kind]
        extra = set(action) - {"type", *params}
        if extra:
            raise InvalidRule(f"{where}: {kind} takes no {sorted(extra)[0]!r}"
                              + (f"; it takes {', '.join(params)}" if params else ""))
        clean: dict[str, Any] = {"type": kind}
        if kind == "reply":
            given = [p for p in params if action.get(p) not in (None, "")]
            if len(given) != 1:
                raise InvalidRule(f"{where}: a reply has a text or a canned_id (one of them)")
            params = tuple(given)
        for param in params:
            clean[param] = _param(kind, param, action.get(param), where=f"{where}.{param}")
        out.append(clean)
    if not out:
        raise InvalidRule("actions: a rule needs at least one action")
    return out


def _param(kind: str, param: str, value: Any, *, where: str) -> Any:
    if param.endswith("_id"):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise InvalidRule(f"{where}: a positive integer id")
        return value
    if param == "hours":
        if not isinstance(value, int | float) or isinstance(value, bool) \
                or not 0 < value <= MAX_SNOOZE_HOURS:
            raise InvalidRule(f"{where}: hours between 0 and {MAX_SNOOZE_HOURS}")
        return value
    if not isinstance(value, str) or not value.strip():
        raise InvalidRule(f"{where}: required")
    value = value.strip()
    if param == "priority" and value not in PRIORITIES:
        raise InvalidRule(f"{where}: use one of {', '.join(PRIORITIES)}")
    if param == "status" and value not in RULE_STATUSES:
        raise InvalidRule(f"{where}: use one of {', '.join(RULE_STATUSES)} (snooze is its "
                          "own action)")
    if param == "text" and len(value) > MAX_TEXT:
        raise InvalidRule(f"{where}: at most {MAX_TEXT} characters")
    if param == "label" and len(value) > MAX_VALUE_CHARS:
        raise InvalidRule(f"{where}: at most {MAX_VALUE_CHARS} characters")
    return value


@dataclass(frozen=True)
class References:
    """What a rule names in the database, for the caller to check exists."""

    inbox_ids: set[int] = field(default_factory=set)
    team_ids: set[int] = field(default_factory=set)
    agent_ids: set[int] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)
    canned_ids: set[int] = field(default_factory=set)


def referenced(conditions: Iterable[Mapping[str, Any]],
               actions: Iterable[Mapping[str, Any]]) -> References:
    refs = References()
    for condition in conditions:
        value = condition.get("value")
        values = value if isinstance(value, list) else []
        by_field: dict[str, set[Any]] = {
            "inbox": refs.inbox_ids, "team": refs.team_ids, "assignee": refs.agent_ids,
            "label": refs.labels}
        target = by_field.get(condition["field"])
        if target is not None:
            target.update(values)
    for action in actions:
        targets: tuple[tuple[str, set[Any]], ...] = (
            ("agent_id", refs.agent_ids), ("team_id", refs.team_ids),
            ("canned_id", refs.canned_ids), ("label", refs.labels))
        for param, target in targets:
            if param in action:
                target.add(action[param])
    return refs


def _kind(name: Any) -> str | None:
    if not isinstance(name, str):
        return None
    if name in OPS and name != "contact.":
        return name
    if name.startswith("contact.") and len(name) > len("contact."):
        return "contact."
    return None


def _text(value: Any) -> str:
    return " ".join(str(value).split()).casefold()


# -- matching ------------------------------------------------------------------------------


@dataclass
class Facts:
    """What conditions look at. The contact's part is loaded only when a condition needs it
    (`needs_contact`). The words of the text and subject and the labels are worked out once,
    however many rules look at them."""

    trigger: str
    conversation: ConversationView
    message: MessageView | None = None
    contact_attributes: Mapping[str, Any] | None = None
    identity_kinds: frozenset[str] | None = None
    at: datetime | None = None  # when the event happened (None: now)
    _words: dict[str, Words] = field(default_factory=dict, repr=False)
    _labels: frozenset[str] | None = field(default=None, repr=False)
    # The outcome of each condition tried so far (by `_condition_id`): rules that share a
    # condition (the same inbox, channel or label test) pay for it once per event.
    known: dict[int, bool] = field(default_factory=dict, repr=False)

    def text(self, name: str) -> str:
        if name == "text":
            return (self.message.text if self.message else "")[:SCAN_CHARS]
        return (self.conversation.subject or "")[:SCAN_CHARS]

    def words(self, name: str) -> Words:
        found = self._words.get(name)
        if found is None:
            found = self._words[name] = Words.of(self.text(name))
        return found

    def labels(self) -> frozenset[str]:
        if self._labels is None:
            self._labels = frozenset(_text(label) for label in self.conversation.labels)
        return self._labels


_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Words:
    """A text's words (any case), to find whole words and phrases in it at set speed."""

    each: frozenset[str]
    joined: str  # " word word … " (for phrases)

    @classmethod
    def of(cls, text: str) -> Words:
        words = _WORD.findall(text.casefold())
        return cls(frozenset(words), " " + " ".join(words) + " ")


@dataclass(frozen=True)
class _Wanted:
    """A contains_any value list, prepared: single words, phrases, and the values that are
    not plain words (searched the slow way)."""

    single: frozenset[str]
    phrases: tuple[str, ...]
    other: tuple[str, ...]


@functools.lru_cache(maxsize=2048)
def _wanted(values: tuple[str, ...]) -> _Wanted:
    single: set[str] = set()
    phrases: list[str] = []
    other: list[str] = []
    for value in values:
        words = _WORD.findall(value.casefold())
        if " ".join(words) != " ".join(value.casefold().split()):
            other.append(value)  # punctuation inside: the regular expression decides
        elif len(words) == 1:
            single.add(words[0])
        elif words:
            phrases.append(" " + " ".join(words) + " ")
    return _Wanted(frozenset(single), tuple(phrases), tuple(other))


def _contains_any(values: tuple[str, ...], facts: Facts, name: str) -> bool:
    return _contains_wanted(_wanted(values), facts, name)


def _contains_wanted(wanted: _Wanted, facts: Facts, name: str) -> bool:
    words = facts.words(name)
    if not wanted.single.isdisjoint(words.each):
        return True
    if wanted.phrases and any(phrase in words.joined for phrase in wanted.phrases):
        return True
    return bool(wanted.other) and bool(_words(wanted.other).search(facts.text(name)))


def trigger_of(event: Any) -> tuple[str, ...]:
    """The triggers an event is (a labels-and-priority change is both)."""
    if isinstance(event, MessageCreated):
        message = event.message
        if message.kind != "message" or message.automated:
            return ()
        if message.direction == "in" and not message.sent_elsewhere:
            # On a conversation left resolved, it was the answer to the satisfaction
            # survey (csat_received is its trigger).
            return () if event.conversation.status == "resolved" else ("message_received",)
        if message.direction == "out" and message.agent_id is not None:
            return ("agent_replied",)
        return ()
    if isinstance(event, ConversationCreated):
        return ("conversation_created",)
    if isinstance(event, ConversationStatusChanged):
        return ("status_changed",)
    if isinstance(event, ConversationAssigned):
        return ("assignee_changed",)
    if isinstance(event, ConversationUpdated):
        return tuple(t for t, change in (("labels_changed", "labels"),
                                         ("priority_changed", "priority"),
                                         ("sla_at_risk", "sla_at_risk"),
                                         ("sla_breached", "sla_breached"),
                                         ("csat_received", "csat"))
                     if change in event.changes)
    return ()


def needs_contact(conditions: Iterable[Mapping[str, Any]]) -> bool:
    return any(c["field"] in ("language", "identity") or c["field"].startswith("contact.")
               for c in conditions)


Test = Callable[[Facts], bool]
_VIEW_FIELDS = {"inbox": "inbox_id", "team": "team_id", "assignee": "assignee_id",
                "channel": "channel", "status": "status", "priority": "priority"}


def compile_rule(match: str, conditions: list[dict[str, Any]]) -> Test:
    """The rule's conditions as one function of the facts ("all" of them, or "any"; none:
    always), each condition made ready once: what runs per event is only the comparing.
    A condition another rule has too is tried once per event (Facts.known)."""
    tests = tuple((_condition_id(c), _compiled(c)) for c in conditions)
    if not tests:
        return lambda facts: True
    wanted = match != "any"  # "all" stops at the first that fails, "any" at the first that holds

    def holds(facts: Facts) -> bool:
        known = facts.known
        for key, test in tests:
            outcome = known.get(key)
            if outcome is None:
                outcome = known[key] = test(facts)
            if (not outcome) is wanted:  # failed in "all", held in "any"
                return not wanted
        return wanted
    return holds


_condition_ids: dict[str, int] = {}
_next_condition_id = itertools.count(1)


def _condition_id(condition: Mapping[str, Any]) -> int:
    """The same number for the same condition, whichever rule has it (never one number for
    two conditions: numbers are not reused)."""
    text = json.dumps([condition["field"], condition["op"], condition["value"]],
                      sort_keys=True, default=str)
    found = _condition_ids.get(text)
    if found is None:
        if len(_condition_ids) > 100_000:  # rules edited for years: start again
            _condition_ids.clear()
        found = _condition_ids[text] = next(_next_condition_id)
    return found


def _compiled(condition: Mapping[str, Any]) -> Test:
    name, op, value = str(condition["field"]), str(condition["op"]), condition["value"]
    attribute = _VIEW_FIELDS.get(name)
    if attribute is not None:
        if op == "is_set":
            return lambda facts: getattr(facts.conversation, attribute) is not None
        if op == "is_empty":
            return lambda facts: getattr(facts.conversation, attribute) is None
        values = frozenset(value)
        if op == "in":
            return lambda facts: getattr(facts.conversation, attribute) in values
        return lambda facts: getattr(facts.conversation, attribute) not in values
    if name == "label":
        labels = frozenset(value)
        if op == "has_any":
            return lambda facts: not facts.labels().isdisjoint(labels)
        return lambda facts: facts.labels().isdisjoint(labels)
    if name in ("text", "subject"):
        if op == "contains_any":
            wanted = _wanted(tuple(value))
            return lambda facts: _contains_wanted(wanted, facts, name)
        pattern = _pattern(value)
        return lambda facts: _found(pattern, facts.text(name))
    if name == "business_hours":
        calendar, open_wanted = parse_calendar(value), op == "open"
        return lambda facts: calendar.is_open(facts.at or utcnow()) == open_wanted
    return lambda facts: _holds(condition, facts)


def matches(match: str, conditions: list[dict[str, Any]], facts: Facts) -> bool:
    """Whether the rule's conditions hold ("all" of them, or "any"); none: always. (Where
    one rule meets many facts, `compile_rule` once.)"""
    return compile_rule(match, conditions)(facts)


def _holds(condition: Mapping[str, Any], facts: Facts) -> bool:
    name, op, value = str(condition["field"]), str(condition["op"]), condition["value"]
    c = facts.conversation
    if name in ("inbox", "team", "assignee"):
        have = {"inbox": c.inbox_id, "team": c.team_id, "assignee": c.assignee_id}[name]
        if op == "is_set":
            return have is not None
        if op == "is_empty":
            return have is None
        return bool(have in value) == (op == "in")
    if name in ("channel", "status", "priority"):
        have_text = {"channel": c.channel, "status": c.status, "priority": c.priority}[name]
        return bool(have_text in value) == (op == "in")
    if name == "label":
        return (not facts.labels().isdisjoint(value)) == (op == "has_any")
    if name in ("text", "subject"):
        if op == "contains_any":
            return _contains_any(tuple(value), facts, name)
        return _search(op, value, facts.text(name))
    if name == "language":
        tag = (facts.contact_attributes or {}).get("language")
        if not isinstance(tag, str) or not tag.strip():
            return False
        have_tag = tag.strip().replace("_", "-").casefold()
        return any(have_tag == v or have_tag.startswith(v + "-") for v in value)
    if name == "identity":
        return bool((facts.identity_kinds or frozenset()) & set(value))
    if name == "csat_score":
        score = c.csat_score
        return score is not None and (score <= value if op == "at_most" else score >= value)
    attribute = (facts.contact_attributes or {}).get(name[len("contact."):])
    if attribute is None:
        return False
    items = attribute if isinstance(attribute, list) else [attribute]
    texts = [_text(item) for item in items if isinstance(item, str | int | float | bool)]
    values = value if isinstance(value, list) else [value]
    if op in ("equals", "in"):
        return any(t in values for t in texts)
    return any(t in values or _words(tuple(values)).search(t) for t in texts)


def _search(op: str, value: Any, text: str) -> bool:
    if op == "contains_any":
        return bool(_words(tuple(value)).search(text))
    return _found(_pattern(value), text)


def _found(pattern: Any, text: str) -> bool:
    try:
        return pattern.search(text, timeout=REGEX_TIMEOUT_S) is not None
    except TimeoutError:
        return False  # a pattern that takes this long is treated as not matching


@functools.lru_cache(maxsize=512)
def _words(words: tuple[str, ...]) -> re.Pattern[str]:
    # Whole words in any case; the words of a phrase may be apart by any whitespace.
    alternatives = ["\\s+".join(re.escape(w) for w in k.split()) for k in words if k.split()]
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


@functools.lru_cache(maxsize=512)
def _pattern(pattern: str) -> Any:
    return regex.compile(pattern, regex.IGNORECASE)
