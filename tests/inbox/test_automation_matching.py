"""Which events wake which triggers, and each condition's operators, on hand-made facts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from hub.events import (
    ConversationAssigned,
    ConversationCreated,
    ConversationStatusChanged,
    ConversationUpdated,
    ConversationView,
    MessageCreated,
    MessageView,
)
from inbox import automation
from inbox.automation import (
    Facts,
    InvalidRule,
    compile_rule,
    matches,
    needs_contact,
    trigger_of,
    validate_actions,
    validate_conditions,
)
from web.admin_automation import calendar_of, calendar_words
from web.admin_ui import FormError

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def conversation(**changes: Any) -> ConversationView:
    base: dict[str, Any] = dict(
        id=7, inbox_id=1, channel="whatsapp", contact_id=3, contact_name="Ada", status="open",
        assignee_id=None, team_id=None, subject="Order 42 is late", last_message_preview="hi",
        unread_count=1, snoozed_until=None, last_activity_at=NOW, created_at=NOW,
        priority="none", labels=["VIP"])
    return ConversationView(**(base | changes))


def msg(**changes: Any) -> MessageView:
    base: dict[str, Any] = dict(
        id=1, conversation_id=7, inbox_id=1, direction="in", kind="message",
        text="Where is my invoice?", html=None, external_id="x", contact_id=3, agent_id=None,
        status=None, status_reason=None, attachments=[], accepted_at=NOW, created_at=NOW)
    return MessageView(**(base | changes))


def created(**changes: Any) -> MessageCreated:
    return MessageCreated(inbox_id=1, at=NOW, message=msg(**changes), conversation=conversation())


@pytest.mark.parametrize(("event", "triggers"), [
    (created(), ("message_received",)),
    (created(automated=True), ()),  # an auto-reply or a bounce wakes nothing
    (created(sent_elsewhere=True), ()),  # the business wrote from its phone
    (created(direction="out", agent_id=2), ("agent_replied",)),
    (created(direction="out", agent_id=None), ()),
    (created(kind="note", direction="out", agent_id=2), ()),
    (created(kind="activity", direction="out"), ()),
    (ConversationCreated(inbox_id=1, at=NOW, conversation=conversation()),
     ("conversation_created",)),
    (ConversationStatusChanged(inbox_id=1, at=NOW, conversation=conversation(),
                               previous_status="open", by_agent_id=2), ("status_changed",)),
    (ConversationAssigned(inbox_id=1, at=NOW, conversation=conversation(),
                          previous_assignee_id=None, by_agent_id=None), ("assignee_changed",)),
    (ConversationUpdated(inbox_id=1, at=NOW, conversation=conversation(),
                         changes=["labels", "priority"], by_agent_id=2),
     ("labels_changed", "priority_changed")),
])
def test_triggers(event: Any, triggers: tuple[str, ...]) -> None:
    assert trigger_of(event) == triggers


CHANNELS = ("whatsapp", "sms", "email", "api")


def holds(condition: dict[str, Any], *, message: MessageView | None = None,
          attributes: dict[str, Any] | None = None, kinds: frozenset[str] = frozenset(),
          **view: Any) -> bool:
    stored = validate_conditions([condition], channels=CHANNELS)
    facts = Facts(trigger="message_received", conversation=conversation(**view),
                  message=message if message is not None else msg(),
                  contact_attributes=attributes or {}, identity_kinds=kinds)
    return matches("all", stored, facts)


@pytest.mark.parametrize(("condition", "view", "want"), [
    ({"field": "inbox", "op": "in", "value": [1, 2]}, {}, True),
    ({"field": "inbox", "op": "not_in", "value": [1]}, {}, False),
    ({"field": "channel", "op": "in", "value": ["whatsapp"]}, {}, True),
    ({"field": "channel", "op": "not_in", "value": ["sms"]}, {}, True),
    ({"field": "team", "op": "is_empty"}, {}, True),
    ({"field": "team", "op": "is_set"}, {"team_id": 4}, True),
    ({"field": "team", "op": "in", "value": [4]}, {"team_id": 5}, False),
    ({"field": "assignee", "op": "is_set"}, {}, False),
    ({"field": "assignee", "op": "in", "value": [9]}, {"assignee_id": 9}, True),
    ({"field": "status", "op": "in", "value": ["open", "pending"]}, {}, True),
    ({"field": "priority", "op": "not_in", "value": ["urgent"]}, {"priority": "urgent"}, False),
    ({"field": "label", "op": "has_any", "value": ["vip"]}, {}, True),  # any case
    ({"field": "label", "op": "has_none", "value": ["vip", "spam"]}, {}, False),
    ({"field": "subject", "op": "contains_any", "value": ["order"]}, {}, True),
    ({"field": "subject", "op": "regex", "value": r"order \d+"}, {}, True),
    ({"field": "subject", "op": "contains_any", "value": ["ord"]}, {}, False),  # whole words
])
def test_conditions_on_the_conversation(condition: dict[str, Any], view: dict[str, Any],
                                        want: bool) -> None:
    assert holds(condition, **view) is want


def test_conditions_on_the_message_and_the_contact() -> None:
    words = {"field": "text", "op": "contains_any", "value": ["invoice", "money back"]}
    assert holds(words)
    assert holds(words, message=msg(text="I want my MONEY\n back"))
    assert not holds(words, message=msg(text="invoices"))
    assert holds({"field": "text", "op": "regex", "value": r"\binv(oice)?\b"})
    plan = {"field": "contact.plan", "op": "equals", "value": "Gold"}
    assert holds(plan, attributes={"plan": "gold"})
    assert not holds(plan, attributes={"plan": "silver"})
    assert not holds(plan)
    assert holds({"field": "contact.tags", "op": "contains_any", "value": ["beta"]},
                 attributes={"tags": ["early beta", "eu"]})
    assert holds({"field": "language", "op": "in", "value": ["de"]},
                 attributes={"language": "de-CH"})
    assert not holds({"field": "language", "op": "in", "value": ["de"]},
                     attributes={"language": "den"})
    assert holds({"field": "identity", "op": "has_any", "value": ["email"]},
                 kinds=frozenset({"phone", "email"}))
    assert needs_contact([plan]) and not needs_contact([words])


def test_a_regular_expression_that_backtracks_for_ever_is_stopped() -> None:
    evil = {"field": "text", "op": "regex", "value": r"(x+x+)+y"}
    # Unbounded, this search runs for hours; stopped, it is treated as not matching.
    assert not holds(evil, message=msg(text="x" * 5000))


def test_any_and_all() -> None:
    conditions = validate_conditions([
        {"field": "channel", "op": "in", "value": ["sms"]},
        {"field": "label", "op": "has_any", "value": ["vip"]}], channels=CHANNELS)
    facts = Facts(trigger="message_received", conversation=conversation(), message=msg())
    assert matches("any", conditions, facts)
    assert not matches("all", conditions, facts)
    assert matches("all", [], facts)


def test_a_condition_several_rules_share_is_tried_once_per_event(
        monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[str] = []
    real = automation._found

    def counted(pattern: Any, text: str) -> bool:
        tried.append(pattern.pattern)
        return bool(real(pattern, text))

    monkeypatch.setattr(automation, "_found", counted)
    invoice = {"field": "text", "op": "regex", "value": r"invoice"}
    refund = {"field": "text", "op": "regex", "value": r"refund"}
    sms = {"field": "channel", "op": "in", "value": ["sms"]}
    rules = [compile_rule("all", [invoice, sms]), compile_rule("any", [refund, dict(invoice)]),
             compile_rule("all", [refund]), compile_rule("any", [sms, refund])]
    facts = Facts(trigger="message_received", conversation=conversation(), message=msg())
    assert [rule(facts) for rule in rules] == [False, True, False, False]
    assert sorted(tried) == ["invoice", "refund"]  # each once, whichever rule asked first
    # The next event is asked again.
    again = Facts(trigger="message_received", conversation=conversation(channel="sms"),
                  message=msg(text="a refund please"))
    assert [rule(again) for rule in rules] == [False, True, True, True]
    assert len(tried) == 4


@pytest.mark.parametrize(("conditions", "actions", "error"), [
    ([{"field": "channel", "op": "in", "value": ["fax"]}], None, "unknown channel 'fax'"),
    ([{"field": "team", "op": "is_set", "value": [1]}], None, "'is_set' takes no value"),
    ([{"field": "inbox", "op": "in", "value": ["1"]}], None, "ids are positive integers"),
    ([{"field": "label", "op": "equals", "value": "x"}], None, "does not go with label"),
    ([{"field": "contact.bad name", "op": "equals", "value": "x"}], None, "attribute name"),
    ([{"field": "language", "op": "in", "value": ["not a tag"]}], None, "not a language tag"),
    ([{"field": "text", "op": "in", "value": ["x"], "extra": 1}], None, "unknown key 'extra'"),
    (None, [], "at least one action"),
    (None, [{"type": "snooze", "hours": 0}], "hours between"),
    (None, [{"type": "reply", "text": "a", "canned_id": 1}], "one of them"),
    (None, [{"type": "unassign", "agent_id": 1}], "unassign takes no 'agent_id'"),
    (None, [{"type": "set_priority", "priority": "asap"}], "use one of none"),
])
def test_what_a_rule_may_not_say(conditions: list[dict[str, Any]] | None,
                                 actions: list[dict[str, Any]] | None, error: str) -> None:
    with pytest.raises(InvalidRule, match=error.replace("(", r"\(")):
        if conditions is not None:
            validate_conditions(conditions, channels=CHANNELS)
        if actions is not None:
            validate_actions(actions)


BERLIN_OFFICE = {"time_zone": "Europe/Berlin", "country": "DE",
                 "hours": {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}}


@pytest.mark.parametrize(("at", "open_"), [
    (datetime(2026, 12, 7, 8, 30, tzinfo=UTC), True),  # Monday 09:30 in Berlin
    (datetime(2026, 12, 7, 7, 59, tzinfo=UTC), False),  # Monday 08:59 in Berlin
    (datetime(2026, 12, 5, 10, 0, tzinfo=UTC), False),  # Saturday
    (datetime(2026, 12, 25, 10, 0, tzinfo=UTC), False),  # Friday, Christmas Day
])
def test_business_hours_condition_uses_the_events_time_in_the_calendar(
        at: datetime, open_: bool) -> None:
    for op, holds in (("open", open_), ("closed", not open_)):
        conditions = validate_conditions(
            [{"field": "business_hours", "op": op, "value": BERLIN_OFFICE}], channels=())
        facts = Facts(trigger="message_received", conversation=conversation(), message=msg(),
                      at=at)
        assert matches("all", conditions, facts) is holds


def test_a_business_hours_condition_needs_a_calendar_that_works() -> None:
    for value, said in (
            ("9-5", "a calendar: time_zone, hours"),
            ({**BERLIN_OFFICE, "time_zone": "Mars/Olympus"}, "time_zone"),
            ({**BERLIN_OFFICE, "hours": {"mon": [["17:00", "09:00"]]}}, "hours.mon")):
        with pytest.raises(InvalidRule, match=r"conditions\[0\]\.value: ") as raised:
            validate_conditions([{"field": "business_hours", "op": "open", "value": value}],
                                channels=())
        assert said in str(raised.value)


def test_the_rule_forms_business_hours_words_make_a_calendar_and_back() -> None:
    spec = calendar_of("Europe/Berlin; mon-fri 09:00-12:00 13:00-17:00; sat 10:00-13:00; "
                       "holidays de-by", "conditions[0]")
    assert spec == {"time_zone": "Europe/Berlin", "country": "DE", "subdivision": "BY",
                    "hours": {**{d: [["09:00", "12:00"], ["13:00", "17:00"]]
                                 for d in ("mon", "tue", "wed", "thu", "fri")},
                              "sat": [["10:00", "13:00"]]}}
    assert validate_conditions([{"field": "business_hours", "op": "closed", "value": spec}],
                               channels=())[0]["value"] == spec
    assert calendar_words(spec) == (
        "Europe/Berlin; mon 09:00-12:00 13:00-17:00; tue 09:00-12:00 13:00-17:00; "
        "wed 09:00-12:00 13:00-17:00; thu 09:00-12:00 13:00-17:00; "
        "fri 09:00-12:00 13:00-17:00; sat 10:00-13:00; holidays DE-BY")
    for bad in ("Europe/Berlin", "Europe/Berlin; weekdays 9-5", "Europe/Berlin; fri-mon 9:00-1"):
        with pytest.raises(FormError, match="conditions\\[0\\]"):
            calendar_of(bad, "conditions[0]")
