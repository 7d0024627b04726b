"""Automation rules: the CPU the automation consumer adds per inbound customer message.

The requirement: with 50 active rules, evaluating them costs at most 0.2 ms of CPU per
inbound message. What is timed is `AutomationConsumer().apply(ctx, entries)` (what the
shared events reader calls with each batch it reads, up to 1,000 entries), in this
process, with `time.process_time()` (CPU of every thread of the process, aiosqlite's
included; not wall time). No rule matches, so nothing fires: what a matching rule then does
(its actions, their writes) is the action's own work and not measured here.

Set-up: a fresh database with the schema (SQLite in a temp dir; `--shape production`: a
fresh PostgreSQL database `sbtest_<hex>` on 127.0.0.1:5432, dropped afterwards, whose
backends' CPU is read from /proc and shown apart), one API inbox, 20 contacts with
attributes and identities, and `--rules` (50) active `message_received` rules of 2-4
conditions each (text contains_any of 3-10 words, regular expressions, channel in, label
has_any, priority not_in / in, and on `--contact-rules` (5) of them a contact.<attribute>
equals, which makes the consumer read the contact once per event), two thirds for the
inbox and a third for every inbox. "all" rules fail on their last condition and "any"
rules on every one, so every condition is evaluated (the most expensive way not to match;
`--order first`: "all" rules fail on their first condition, so most rules try one).
The rules' holding conditions come from a pool of five (channel, label, priority tests, as
the rules of one inbox share theirs), which the consumer tries once per event;
`--conditions distinct` makes every condition unlike any other rule's, with the same
outcome (channel tests become inbox tests, priority tests label tests, a regular
expression gets a comment `(?#only-rule-i)`, a word list one more word).
Plus `--other-rules` (10) rules on other triggers (created, status, assignee, labels,
priority, agent replied), which inbound messages do not wake.

Batches: 75 % inbound `message.created` events (a ~200-character customer message on a
conversation with two labels, realistic texts that no rule matches), 25 % event types no
rule listens to (message.status_changed, conversation.read, notification.created,
contact.updated). A figure is the CPU of whole batches divided by their message.created
events (so the 25 % others are charged to them too).

Scenarios, run in turn in each of `--rounds` rounds (median and min-max are reported):
  floor      no active rule: reading each entry's type, one rule query per batch
  rules      the rules, none needing the contact
  contact    the same rules, `--contact-rules` of them reading the contact
  timed      the rules plus one `no_customer_reply_for` rule: an inbound message ends its
             wait (which writes nothing: the timer checks, when due, that the wait held)
and, without the consumer around it, on already decoded events: `decode_event` of a
message.created, and trigger_of + the inbox/trigger filter + `matches` over the rules
(the contact's facts given, as after its read).

    .venv/bin/python bench/automation.py
    .venv/bin/python bench/automation.py --shape production
    .venv/bin/python bench/automation.py --rules 50 --rounds 7 --json /tmp/automation.json

Each measurement runs until `--seconds` (0.7) of CPU are used (at least one batch, at most
20,000 entries); at most 15 rounds; about a minute and a half by default. Other work on the
machine makes every figure worse: the busy share of the whole machine during the run is
printed; rerun when it is high.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import delete, func  # noqa: E402
from sqlmodel import select  # noqa: E402

from bench.fresh_database import fresh_database  # noqa: E402
from hub.app import build_bus  # noqa: E402
from hub.bus import Entry  # noqa: E402
from hub.events import (  # noqa: E402
    ContactUpdated,
    ContactView,
    ConversationRead,
    ConversationView,
    MessageCreated,
    MessageStatusChanged,
    MessageView,
    NotificationCreated,
    NotificationView,
    View,
    decode_event,
    encode_event,
)
from hub.types import utcnow  # noqa: E402
from inbox.automation import (  # noqa: E402
    EVENT_TYPES,
    Facts,
    trigger_of,
    validate_actions,
    validate_conditions,
    validate_trigger,
)
from inbox.automation_rules import contact_facts  # noqa: E402
from inbox.automation_runner import AutomationConsumer, RuleSet  # noqa: E402
from inbox.context import InboxContext  # noqa: E402
from inbox.event_consumers import event_type  # noqa: E402
from inbox.inboxes import create_inbox  # noqa: E402
from inbox.models import (  # noqa: E402
    AutomationFiring,
    AutomationRule,
    Contact,
    ContactIdentity,
)

CHANNELS = ("api", "email", "instagram", "messenger", "sms", "telegram", "webchat", "whatsapp")
MAX_ENTRIES = 20_000
CONTACTS = 20
LABELS = ["vip", "returning customer"]  # on every benchmark conversation
ATTRIBUTES = {"plan": "pro", "country": "CH", "language": "de", "tier": "gold",
              "company": "Acme GmbH", "segment": "smb"}

# Customer messages (about 200 characters) that no rule below matches.
TEXTS = [
    "Hi there, I bought the blue running shoes last week and they fit a little small. Could I "
    "swap them for the next size up? I still have the box and the receipt. Thanks a lot!",
    "Hello, when will the autumn collection be back in stock? I have been waiting for the "
    "green wool jacket in medium for a while now and would love to get one before winter.",
    "Good morning. Our team would like to know whether the standard plan includes the "
    "reporting dashboard, or whether that comes with a higher tier. Kind regards, Maria",
    "Hey, quick question about delivery times to Switzerland. If I place something today, "
    "roughly how many days should I expect it to take? No rush, just planning ahead.",
    "Hi, the app keeps showing me an old address at checkout even though I changed it in my "
    "profile yesterday. Is there something else I need to update? Many thanks in advance.",
    "Hello! Do you ship to Norway, and if so, are duties included in the price shown on the "
    "site? I would like to send a birthday present to my sister who lives in Bergen.",
    "Dear support, could you tell me which cable goes with the desk lamp model in walnut? "
    "The one that came with it is a bit short for my room. Best wishes from Zurich.",
    "Hi again, thanks for the quick reply earlier. One more thing: can I pick the parcel up "
    "at the shop in town instead of waiting at home for the courier on Thursday?",
]
# Words and patterns of the rules; none occurs in the texts above.
WORDS = ["refund", "invoice", "chargeback", "cancel", "cancellation", "lawyer", "lawsuit",
         "fraud", "gdpr", "unsubscribe", "complaint", "broken", "damaged", "urgent", "asap",
         "password", "hacked", "discount", "coupon", "voucher", "wholesale", "partnership",
         "journalist", "career", "resume", "warranty", "recall", "allergy", "gluten",
         "vat number", "tracking number", "bank transfer", "credit card", "paypal",
         "klarna", "stolen", "missing parcel", "invoice copy", "data deletion", "escalate"]
PATTERNS = [
    r"\b(?:order|ord)[\s#:-]*\d{6,}\b",
    r"\bINV-?\d{4,}\b",
    r"\b\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}\b",
    r"https?://\S+\.(?:exe|zip|scr)\b",
    r"^\s*(?:stop|unsubscribe)\s*$",
    r"\b[A-Z]{2}\d{2}(?:\s?\d{4}){4,7}\b",
    r"(?:!!!|\?\?\?)",
    r"\b(?:re|fwd?):\s*re:",
    r"\bkündig\w*",
    r"\b(?:remboursement|rembourser|reembolso)\b",
]
# A contact condition that fails for every benchmark contact (their attributes: ATTRIBUTES).
CONTACT_CONDITIONS = [
    {"field": "contact.plan", "op": "equals", "value": "enterprise"},
    {"field": "contact.country", "op": "equals", "value": "US"},
    {"field": "contact.tier", "op": "equals", "value": "platinum"},
    {"field": "contact.company", "op": "equals", "value": "Globex"},
    {"field": "contact.segment", "op": "equals", "value": "churn-risk"},
]
OTHER_TRIGGERS = ["conversation_created", "status_changed", "assignee_changed",
                  "labels_changed", "priority_changed", "agent_replied"]
ACTIONS = [
    [{"type": "add_label", "label": "billing"}, {"type": "set_priority", "priority": "high"}],
    [{"type": "add_note", "text": "Check the customer's plan before answering."}],
    [{"type": "set_priority", "priority": "urgent"}],
    [{"type": "add_label", "label": "escalation"}, {"type": "set_status", "status": "open"}],
    [{"type": "reply", "text": "Thanks {{contact.first_name}}, we are on it."}],
]
SCENARIOS = {
    "floor": "0 rules (the consumer's floor)",
    "rules": "{n} rules, none needs the contact",
    "contact": "{n} rules, {c} need the contact",
    "timed": "{n} rules + 1 no_customer_reply_for",
}


# -- the rules ----------------------------------------------------------------------------


def _words(i: int) -> list[str]:
    count = 3 + i % 8  # 3-10 words
    return [WORDS[(i * 7 + k) % len(WORDS)] for k in range(count)]


def _holding(i: int) -> list[dict[str, Any]]:
    """Conditions that hold for the benchmark messages, in an order that varies by rule."""
    pool = [
        {"field": "channel", "op": "in", "value": ["api", "webchat", "whatsapp"][: 1 + i % 3]},
        {"field": "label", "op": "has_any", "value": ["vip", "returning customer", "b2b"]},
        {"field": "priority", "op": "not_in", "value": ["urgent", "high"]},
    ]
    return pool[i % 3:] + pool[: i % 3]


def _failing(i: int) -> list[dict[str, Any]]:
    """Conditions that fail for the benchmark messages."""
    return [
        {"field": "text", "op": "contains_any", "value": _words(i)},
        {"field": "text", "op": "regex", "value": PATTERNS[i % len(PATTERNS)]},
        {"field": "channel", "op": "in", "value": ["email", "whatsapp", "sms"][: 1 + i % 3]},
        {"field": "label", "op": "has_any", "value": ["spam", "legal"]},
        {"field": "priority", "op": "not_in", "value": ["none", "low"]},
    ]


def rule_specs(count: int, contact_rules: int, *, contact: bool, fail_first: bool = False
               ) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(scope, match, conditions) of each message_received rule; scope "inbox" or "all".

    Rule i has 2-4 conditions. An "all" rule (3 in 4) has holding conditions and fails on its
    last one (a text condition, or a contact condition on the contact rules), or on its
    first one with `fail_first`; an "any" rule fails on each of its conditions. With
    `contact` False the contact rules fail on a text condition instead (the same rules
    otherwise).
    """
    step = count // contact_rules if contact_rules else 0
    on_contact = {k * step + step // 2 for k in range(contact_rules)} if step else set()
    specs: list[tuple[str, str, list[dict[str, Any]]]] = []
    for i in range(count):
        size = 2 + i % 3
        failing = _failing(i)
        if i % 4 == 3:
            match = "any"
            conditions = [failing[(i + k) % len(failing)] for k in range(size)]
            if i in on_contact and contact:
                conditions[-1] = CONTACT_CONDITIONS[i % len(CONTACT_CONDITIONS)]
        else:
            match = "all"
            last = failing[i % 2]  # contains_any or regex
            if i in on_contact and contact:
                last = CONTACT_CONDITIONS[i % len(CONTACT_CONDITIONS)]
            holding = _holding(i)[: size - 1]
            conditions = [last, *holding] if fail_first else [*holding, last]
        specs.append(("all" if i % 3 == 2 else "inbox", match, conditions))
    return specs


def distinct(i: int, condition: dict[str, Any], inbox_id: int) -> dict[str, Any]:
    """`condition` of rule i made unlike any other rule's, with the same outcome on the
    benchmark's events (for --conditions distinct: no condition shared between rules).
    A channel test becomes the same test on the inbox, a priority test one on labels."""
    field, op, value = condition["field"], condition["op"], condition["value"]
    never = f"only-rule-{i}"  # a label, word or text no event has
    if field == "channel":
        holds = ("api" in value) == (op == "in")
        return {"field": "inbox", "op": "in",
                "value": [inbox_id, 100_000 + i] if holds else [100_000 + i]}
    if field == "priority":
        holds = ("none" in value) == (op == "in")  # the benchmark's conversations: "none"
        return {"field": "label", "op": "has_none" if holds else "has_any", "value": [never]}
    if field == "label" or (field == "text" and op == "contains_any"):
        return {**condition, "value": [*value, never.replace("-", "")]}
    if field == "text" and op == "regex":
        return {**condition, "value": f"{value}(?#{never})"}  # a comment: the same pattern
    return condition  # contact conditions: one per contact rule already


def rule_rows(scenario: str, args: argparse.Namespace, inbox_id: int) -> list[AutomationRule]:
    """The rules of a scenario, checked as the API checks them."""
    if scenario == "floor":
        return []
    rows: list[AutomationRule] = []
    specs = rule_specs(args.rules, args.contact_rules, contact=scenario == "contact",
                       fail_first=args.order == "first")
    for i, (scope, match, conditions) in enumerate(specs):
        if args.conditions == "distinct":
            conditions = [distinct(i, c, inbox_id) for c in conditions]
        rows.append(AutomationRule(
            name=f"Rule {i}", position=i, inbox_id=inbox_id if scope == "inbox" else None,
            trigger=validate_trigger("message_received"), match=match,
            conditions=validate_conditions(conditions, channels=CHANNELS),
            actions=validate_actions(ACTIONS[i % len(ACTIONS)])))
    for k in range(args.other_rules):
        trigger = OTHER_TRIGGERS[k % len(OTHER_TRIGGERS)]
        rows.append(AutomationRule(
            name=f"Other {k}", position=args.rules + k, inbox_id=inbox_id if k % 2 else None,
            trigger=validate_trigger(trigger), match="all",
            conditions=validate_conditions(
                [{"field": "priority", "op": "in", "value": ["urgent"]}], channels=CHANNELS),
            actions=validate_actions([{"type": "add_label", "label": "other"}])))
    if scenario == "timed":
        rows.append(AutomationRule(
            name="Chase silent customers", position=args.rules + args.other_rules,
            inbox_id=inbox_id, trigger=validate_trigger("no_customer_reply_for", 24.0),
            delay_s=24 * 3600, match="all", conditions=[],
            actions=validate_actions([{"type": "add_note", "text": "No answer for a day."}])))
    return rows


# -- the events ---------------------------------------------------------------------------


OTHER_TYPES = ("message.status_changed", "conversation.read", "notification.created",
               "contact.updated")


def build_pool(inbox_id: int, contact_ids: Sequence[int], size: int) -> list[bytes]:
    """Encoded events: 3 in 4 inbound message.created, the others types no rule wants."""
    now = utcnow()
    payloads: list[bytes] = []
    for n in range(size):
        contact_id = contact_ids[n % len(contact_ids)]
        conversation_id = 1000 + n % 200
        view = ConversationView(
            id=conversation_id, inbox_id=inbox_id, channel="api", contact_id=contact_id,
            contact_name=f"Customer {contact_id}", status="open", assignee_id=None,
            team_id=None, subject=None, last_message_preview=TEXTS[n % len(TEXTS)][:80],
            unread_count=1 + n % 3, snoozed_until=None, last_activity_at=now,
            created_at=now - timedelta(days=2), priority="none", labels=list(LABELS))
        event: View
        if n % 4 != 3:
            message = MessageView(
                id=100_000 + n, conversation_id=conversation_id, inbox_id=inbox_id,
                direction="in", kind="message", text=TEXTS[n % len(TEXTS)], html=None,
                external_id=f"ext-{n}", contact_id=contact_id, agent_id=None, status=None,
                status_reason=None, attachments=[], accepted_at=now, created_at=now)
            event = MessageCreated(inbox_id=inbox_id, at=now, message=message,
                                   conversation=view)
        else:
            kind = OTHER_TYPES[(n // 4) % len(OTHER_TYPES)]
            if kind == "message.status_changed":
                event = MessageStatusChanged(inbox_id=inbox_id, at=now, message=MessageView(
                    id=200_000 + n, conversation_id=conversation_id, inbox_id=inbox_id,
                    direction="out", kind="message", text="Thanks, we will look into it.",
                    html=None, external_id=f"out-{n}", contact_id=None, agent_id=1,
                    status="delivered", status_reason=None, attachments=[],
                    accepted_at=now, created_at=now))
            elif kind == "conversation.read":
                event = ConversationRead(inbox_id=inbox_id, at=now, conversation=view,
                                         by_agent_id=1)
            elif kind == "notification.created":
                event = NotificationCreated(inbox_id=None, audience=[1], at=now,
                                            notification=NotificationView(
                    id=n, agent_id=1, kind="mention", conversation_id=conversation_id,
                    message_id=None, by_agent_id=2, text="@alice can you look?",
                    read_at=None, created_at=now))
            else:
                event = ContactUpdated(inbox_id=None, at=now, contact=ContactView(
                    id=contact_id, name=f"Customer {contact_id}", email=None, phone=None,
                    attributes=dict(ATTRIBUTES), created_at=now),
                    changes=["attributes"], by_agent_id=None, source="crm:1")
        payloads.append(encode_event(event))
    listened = {t for types in EVENT_TYPES.values() for t in types}
    for payload in payloads:
        found = event_type(payload)
        assert found is not None, "event_type cannot read a benchmark event"
        assert found == "message.created" or found not in listened, f"a rule listens to {found}"
    return payloads


def batches_of(pool: list[bytes], size: int, total: int) -> list[list[Entry]]:
    """`total` entries from the pool, in batches of `size` (as the reader hands them)."""
    out: list[list[Entry]] = []
    at = 0
    base = int(time.time() * 1000)
    while at < total:
        out.append([Entry(id=f"{base}-{at + k}", payload=pool[(at + k) % len(pool)],
                          deliveries=1) for k in range(min(size, total - at))])
        at += size
    return out


# -- the database -------------------------------------------------------------------------


@dataclass
class Setup:
    ctx: InboxContext
    inbox_id: int
    contact_ids: list[int]
    database: str | None  # the PostgreSQL database's name (its backends' CPU is read)


@contextlib.asynccontextmanager
async def prepared(shape: str) -> AsyncIterator[Setup]:
    """A fresh migrated database with one inbox and the contacts; dropped afterwards."""
    async with fresh_database(shape, "sb-automation-") as fresh:
        settings, db = fresh.settings, fresh.db
        ctx = InboxContext(settings=settings, db=db, bus=build_bus(settings))  # bus unused
        async with db.write() as session:
            inbox = await create_inbox(session, name="Support", channel="api",
                                       settings={"secret": "bench-secret-0123456789"})
            contacts = [Contact(name=f"Customer {n}", email=f"customer{n}@example.com",
                                attributes=dict(ATTRIBUTES)) for n in range(CONTACTS)]
            session.add_all(contacts)
            await session.flush()
            contact_ids = [c.id for c in contacts if c.id is not None]
            for n, cid in enumerate(contact_ids):
                session.add(ContactIdentity(contact_id=cid, kind="email",
                                            value=f"customer{n}@example.com"))
                session.add(ContactIdentity(contact_id=cid, kind="phone",
                                            value=f"+4179555{n:04d}"))
            assert inbox.id is not None
            inbox_id = inbox.id
        yield Setup(ctx=ctx, inbox_id=inbox_id, contact_ids=contact_ids,
                    database=fresh.database)


async def install(setup: Setup, rows: list[AutomationRule]) -> None:
    """Make `rows` the only rules."""
    async with setup.ctx.db.write() as session:
        await session.exec(delete(AutomationRule))
        session.add_all(rows)


def _cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backend_cpu(database: str | None) -> float:
    """CPU seconds of the PostgreSQL backends serving `database` (alive now); 0 on SQLite."""
    if database is None:
        return 0.0
    total = 0.0
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    cmdline = (entry / "cmdline").read_bytes()
                    if b"postgres" in cmdline and database.encode() in cmdline:
                        total += _cpu_of(int(entry.name))
    return total


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


# -- measuring ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    entries: list[Entry]
    messages: int  # inbound message.created among them


def plan(pool: list[bytes], size: int) -> list[Batch]:
    """Batches of `size` over the pool (at least one), cycled through by `time_apply`."""
    return [Batch(entries, sum(1 for e in entries if event_type(e.payload) == "message.created"))
            for entries in batches_of(pool, size, max(size, len(pool)))]


async def time_apply(setup: Setup, batches: list[Batch], budget: float,
                     ) -> tuple[float, float, int]:
    """Apply the batches in turn until `budget` CPU seconds are used (at least one batch, at
    most MAX_ENTRIES entries): (process CPU, PostgreSQL backend CPU, message.created)."""
    consumer = AutomationConsumer()
    backends = backend_cpu(setup.database)
    start = time.process_time()
    used, messages, entries = 0.0, 0, 0
    while not used or (used < budget and entries < MAX_ENTRIES):
        batch = batches[entries // len(batches[0].entries) % len(batches)]
        outcomes = await consumer.apply(setup.ctx, batch.entries)
        failed = [outcome for outcome in outcomes if outcome is not None]
        if failed:
            raise RuntimeError(f"the consumer failed an event: {failed[0]!r}")
        messages += batch.messages
        entries += len(batch.entries)
        used = time.process_time() - start
    return used, backend_cpu(setup.database) - backends, messages


def time_sync(work: Callable[[], int], budget: float) -> tuple[float, int]:
    """Run `work` until `budget` CPU seconds are used (at least once): (CPU seconds, the
    events it did)."""
    start = time.process_time()
    used, done = 0.0, 0
    while not used or used < budget:
        done += work()
        used = time.process_time() - start
    return used, done


def evaluator(events: list[Any], rules: RuleSet,
              facts_of: dict[int, tuple[dict[str, Any], frozenset[str]]]) -> Callable[[], int]:
    """What `AutomationConsumer.handle` does with decoded events, minus the database: the
    triggers, the rules they wake, and their conditions (the contact's facts given)."""

    def run() -> int:
        for event in events:
            triggers = trigger_of(event)
            chain = tuple(event.caused_by)
            if not triggers:
                continue
            conversation = event.conversation
            woken = rules.woken(triggers, conversation.inbox_id, chain)
            facts = Facts(trigger=triggers[0], conversation=conversation,
                          message=event.message)
            for rule in woken:
                if rule.needs_contact and facts.contact_attributes is None:
                    facts.contact_attributes, facts.identity_kinds = \
                        facts_of[conversation.contact_id]
                if rule.holds(facts):
                    raise AssertionError(f"rule {rule.name} matches a benchmark message")
        return len(events)

    return run


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    busy0 = machine_busy()
    async with prepared(args.shape) as setup:
        pool = build_pool(setup.inbox_id, setup.contact_ids, 1000)
        per_pool = sum(1 for p in pool if event_type(p) == "message.created")
        scenarios = ["floor", "rules", "contact", *(["timed"] if args.timed else [])]
        sizes = args.batch
        figures: dict[str, dict[int, list[float]]] = {s: {b: [] for b in sizes}
                                                      for s in scenarios}
        backend: dict[str, dict[int, list[float]]] = {s: {b: [] for b in sizes}
                                                      for s in scenarios}
        plans = {b: plan(pool, b) for b in sizes}

        # In memory: the rules as the consumer holds them, decoded events, contact facts.
        async with setup.ctx.db.read() as session:
            facts_of = {cid: await contact_facts(session, cid) for cid in setup.contact_ids}
        decoded = [decode_event(p) for p in pool if event_type(p) == "message.created"]
        created = [p for p in pool if event_type(p) == "message.created"]
        held: dict[str, RuleSet] = {}
        for scenario in ("rules", "contact"):
            await install(setup, rule_rows(scenario, args, setup.inbox_id))
            held[scenario] = RuleSet(await AutomationConsumer()._rules(setup.ctx))
        memory: dict[str, list[float]] = {"decode": [], "rules": [], "contact": []}
        loading: list[float] = []  # ms of CPU per `_rules` (the rule query of each batch)

        def decode_all() -> int:
            for payload in created:
                decode_event(payload)
            return len(created)

        say(f"{args.shape}: {args.rules} message_received rules ({args.contact_rules} with a "
            f"contact condition in the contact scenario; \"all\" rules fail on their "
            f"{args.order} condition; {args.conditions} conditions) + {args.other_rules} on "
            f"other triggers; {args.rounds} "
            f"rounds, each measurement at least {args.seconds:g} s of CPU")
        for round_no in range(args.rounds):
            for scenario in scenarios:
                await install(setup, rule_rows(scenario, args, setup.inbox_id))
                await time_apply(setup, plans[min(sizes)], 0.0)  # warm the caches
                for size in sizes:
                    cpu, pg, messages = await time_apply(setup, plans[size], args.seconds)
                    figures[scenario][size].append(cpu / messages * 1e6)
                    backend[scenario][size].append(pg / messages * 1e6)
            await install(setup, rule_rows("rules", args, setup.inbox_id))
            start, loads = time.process_time(), 0
            while not loads or time.process_time() - start < args.seconds / 2:
                await AutomationConsumer()._rules(setup.ctx)
                loads += 1
            loading.append((time.process_time() - start) / loads * 1e3)
            cpu, done = time_sync(decode_all, args.seconds / 2)
            memory["decode"].append(cpu / done * 1e6)
            for scenario in ("rules", "contact"):
                work = evaluator(decoded, held[scenario], facts_of)
                work()  # warm the pattern caches
                cpu, done = time_sync(work, args.seconds)
                memory[scenario].append(cpu / done * 1e6)
            say(f"  round {round_no + 1}/{args.rounds}: " + ", ".join(
                f"{s} {figures[s][sizes[-1]][-1]:.0f}" for s in scenarios)
                + f" µs/message (batch {sizes[-1]}); in memory {memory['rules'][-1]:.0f}")

        async with setup.ctx.db.read() as session:
            fired = (await session.exec(select(func.count()).select_from(
                AutomationFiring))).one()
        if fired:
            raise RuntimeError(f"{fired} rules fired: the benchmark messages must match none")
    busy1 = machine_busy()
    total = busy1[1] - busy0[1]
    return {
        "shape": args.shape, "order": args.order, "conditions": args.conditions,
        "rules": args.rules,
        "contact_rules": args.contact_rules, "other_rules": args.other_rules,
        "rounds": args.rounds, "seconds": args.seconds,
        "message_created_share": per_pool / len(pool),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "busy_share": (busy1[0] - busy0[0]) / total if total else None,
                    "loadavg": os.getloadavg()},
        "apply_us_per_message": {s: {str(b): summary(v) for b, v in by.items()}
                                 for s, by in figures.items()},
        "postgres_backend_us_per_message": {
            s: {str(b): summary(v) for b, v in by.items()} for s, by in backend.items()}
        if args.shape == "production" else None,
        "in_memory_us_per_message": {k: summary(v) for k, v in memory.items()},
        "rule_query_ms_per_batch": summary(loading),
    }


def say(line: str) -> None:
    print(line, flush=True)


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    def cell(s: dict[str, float]) -> str:
        return f"{s['median']:7.1f} [{s['min']:.1f}-{s['max']:.1f}]"

    names = {k: v.format(n=args.rules, c=args.contact_rules) for k, v in SCENARIOS.items()}
    sizes = [str(b) for b in args.batch]
    pg = result["postgres_backend_us_per_message"]
    say("")
    say(f"µs of CPU per inbound message.created, median [min-max] of {args.rounds} rounds "
        f"({result['shape']}; the batch's other events charged to its messages too)")
    header = f"{'':44}" + "".join(f"{'batch ' + b:>26}" for b in sizes)
    if pg:
        header += "   + PostgreSQL backends (batch " + sizes[-1] + ")"
    say(header)
    applied = result["apply_us_per_message"]
    for scenario, by in applied.items():
        line = f"{'apply: ' + names[scenario]:44}" + "".join(f"{cell(by[b]):>26}" for b in sizes)
        if pg:
            line += f"   {cell(pg[scenario][sizes[-1]])}"
        say(line)
    mem = result["in_memory_us_per_message"]
    say(f"{'in memory: decode_event (message.created)':44}{cell(mem['decode']):>26}")
    say(f"{'in memory: trigger_of + matches, ' + str(args.rules) + ' rules':44}"
        f"{cell(mem['rules']):>26}")
    say(f"{'in memory: the same, contact facts given':44}{cell(mem['contact']):>26}")
    load = result["rule_query_ms_per_batch"]
    say(f"loading the {args.rules + args.other_rules} rules (one query per batch): "
        f"{load['median']:.2f} ms [{load['min']:.2f}-{load['max']:.2f}] of CPU per batch, "
        + ", ".join(f"{load['median'] * 1000 / (int(b) * result['message_created_share']):.1f}"
                    f" µs per message at batch {b}" for b in sizes))
    for b in sizes:
        floor = applied["floor"][b]["median"]
        rules = applied["rules"][b]["median"]
        contact = applied["contact"][b]["median"]
        say(f"batch {b}: rules add {rules - floor:.1f} µs over the floor; reading the contact "
            f"adds {contact - rules:.1f} µs more"
            + (f"; the timed rule {applied['timed'][b]['median'] - rules:.1f} µs more"
               if "timed" in applied else ""))
    busy = result["machine"]["busy_share"]
    if busy is not None:
        say(f"machine: {busy:.0%} of its {result['machine']['cpus']} CPUs busy during the run "
            f"(this benchmark alone is at most {1 / (result['machine']['cpus'] or 1):.0%} plus "
            "PostgreSQL); load average " + " ".join(
                f"{v:.2f}" for v in result["machine"]["loadavg"]))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("embedded", "production"), default="embedded",
                        help="embedded: SQLite in a temp dir; production: a fresh PostgreSQL "
                        "database on 127.0.0.1:5432 (SWITCHBOARD_TEST_PG_ADMIN_URL)")
    parser.add_argument("--rules", type=int, default=50, help="message_received rules")
    parser.add_argument("--contact-rules", type=int, default=5,
                        help="of them, how many read the contact (contact scenario)")
    parser.add_argument("--other-rules", type=int, default=10,
                        help="rules on other triggers, which inbound messages do not wake")
    parser.add_argument("--batch", type=int, nargs="+", default=[100, 1000],
                        help="batch sizes (entries per apply)")
    parser.add_argument("--seconds", type=float, default=0.7,
                        help="CPU seconds per measurement (at least one batch; at most "
                        f"{MAX_ENTRIES:,} entries)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--order", choices=("last", "first"), default="last",
                        help="where an \"all\" rule's failing condition is: last (every "
                        "condition is evaluated) or first (one is)")
    parser.add_argument("--no-timed", dest="timed", action="store_false",
                        help="leave out the scenario with a no_customer_reply_for rule")
    parser.add_argument("--conditions", choices=("shared", "distinct"), default="shared",
                        help="shared: the rules' holding conditions come from a pool of five "
                        "(as rules of one inbox share their channel and label tests); "
                        "distinct: no two rules share a condition")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    args.rules = max(1, min(args.rules, 500))
    args.contact_rules = max(0, min(args.contact_rules, args.rules))
    args.other_rules = max(0, min(args.other_rules, 100))
    args.batch = sorted({max(1, min(b, 1000)) for b in args.batch})
    args.seconds = max(0.05, min(args.seconds, 10.0))
    args.rounds = max(1, min(args.rounds, 15))
    return args


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    result = asyncio.run(run(args))
    result["wall_seconds"] = time.monotonic() - started
    report(result, args)
    say(f"({result['wall_seconds']:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        say(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
