"""The automation page (team leads and admins): rules in words, a form to write one, a dry
run over the latest conversations, and switching rules on and off, moving, removing them.

The form speaks in names (inboxes, teams, agents, labels, "/shortcut" for a canned
response); they become the ids the JSON API stores, and the rule is checked by the same
action (inbox/automation_rules.py), so its errors read the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from inbox import automation_rules as rules
from inbox import teams
from inbox.agents import Principal
from inbox.automation import TRIGGERS
from inbox.business_hours import DAYS
from inbox.canned import list_canned
from inbox.directory import colleagues
from inbox.inboxes import visible_inboxes
from inbox.labels import list_labels
from web.admin_rule_rows import rule_row_routes
from web.admin_ui import (
    Form,
    FormError,
    admin_page,
    form_act,
    form_model,
    form_value,
    notice,
    page,
    redirect,
    sentence,
)
from web.context import WebContext, web_context

NOTICES = {
    "created": "The rule was added: it acts on what happens from now on.",
    "saved": "Saved.",
    "deleted": "The rule was removed (what it did stays on the conversations).",
}
ROWS = 3  # blank condition and action rows the form offers (the page's script adds more)

# What the form's condition menu offers: "field|op" -> words.
CONDITIONS: dict[str, str] = {
    "text|contains_any": "The message mentions any of",
    "text|regex": "The message matches the pattern",
    "subject|contains_any": "The subject mentions any of",
    "subject|regex": "The subject matches the pattern",
    "channel|in": "The channel is one of",
    "channel|not_in": "The channel is none of",
    "inbox|in": "The inbox is one of",
    "team|in": "The team is one of",
    "team|is_empty": "No team has it",
    "assignee|in": "The assignee is one of",
    "assignee|is_empty": "Nobody is assigned",
    "assignee|is_set": "Someone is assigned",
    "status|in": "The status is one of",
    "priority|in": "The priority is one of",
    "priority|not_in": "The priority is none of",
    "label|has_any": "It has any of the labels",
    "label|has_none": "It has none of the labels",
    "language|in": "The customer's language is one of",
    "identity|has_any": "The customer can be reached by",
    "contact|in": "A contact attribute is one of (attribute: values)",
    "csat_score|at_most": "The satisfaction score is at most (1-5)",
    "csat_score|at_least": "The satisfaction score is at least (1-5)",
    "business_hours|open": "It is within the business hours "
                           "(zone; mon-fri 09:00-17:00; holidays DE)",
    "business_hours|closed": "It is outside the business hours "
                             "(zone; mon-fri 09:00-17:00; holidays DE)",
}
ACTIONS: dict[str, str] = {
    "add_label": "Add the label",
    "remove_label": "Remove the label",
    "assign_agent": "Assign to the agent",
    "assign_team": "Send to the team",
    "unassign": "Unassign",
    "assign_auto": "Assign by the assignment policy",
    "set_priority": "Set the priority",
    "reply": "Reply with (text, or /shortcut)",
    "add_note": "Add an internal note",
    "set_status": "Set the status (open, pending, resolved)",
    "snooze": "Snooze for hours",
    "notify": "Notify the agent",
    "mute": "Mute (resolve; new messages do not reopen it)",
    "send_webhook": "Send to the webhooks (endpoints taking automation.webhook)",
}


@dataclass(frozen=True)
class Names:
    """The names the form may use, and the ids they stand for (any case)."""

    inboxes: dict[str, int]
    teams: dict[str, int]
    agents: dict[str, int]
    canned: dict[str, int]

    def ids(self, kind: str, text: str, where: str) -> list[int]:
        known = {"inbox": self.inboxes, "team": self.teams, "agent": self.agents}[kind]
        out = []
        for name in _words(text):
            found = known.get(name.casefold())
            if found is None:
                raise FormError(f"{where}: no {kind} named {name!r}")
            out.append(found)
        return out


def _words(raw: str) -> list[str]:
    return [w.strip() for w in raw.replace("\n", ",").split(",") if w.strip()]


def _rows(form: Form, first: str, second: str) -> list[tuple[str, str]]:
    return [(a.strip(), b.strip()) for a, b in zip(form.get(first, []), form.get(second, []),
                                                   strict=False) if a.strip()]


_SPAN = re.compile(r"^([a-z]{3})(?:-([a-z]{3}))?$")


def calendar_of(text: str, where: str) -> dict[str, Any]:
    """A calendar from the form's words: "Europe/Berlin; mon-fri 09:00-17:00; sat
    10:00-13:00; holidays DE-BY" (the time zone first, then days with their hours, and the
    country, with its subdivision, whose public holidays are closed). The calendar's own
    checks (inbox/business_hours.py) run when the rule is saved."""
    parts = [p.strip() for p in text.split(";") if p.strip()]
    if len(parts) < 2:
        raise FormError(f"{where}: write the time zone, then the days and hours, separated "
                        "by semicolons (Europe/Berlin; mon-fri 09:00-17:00)")
    spec: dict[str, Any] = {"time_zone": parts[0], "hours": {}}
    for part in parts[1:]:
        words = part.casefold().split()
        if words[0] == "holidays" and len(words) == 2:
            country, _, region = part.split()[1].upper().partition("-")
            spec["country"] = country
            if region:
                spec["subdivision"] = region
            continue
        span = _SPAN.match(words[0])
        if span is None or len(words) < 2 or span[1] not in DAYS \
                or (span[2] is not None and span[2] not in DAYS):
            raise FormError(f"{where}: {part!r}: write days and hours like mon-fri 09:00-17:00")
        first = DAYS.index(span[1])
        last = DAYS.index(span[2]) if span[2] else first
        hours = [w.split("-") for w in words[1:]]
        if any(len(pair) != 2 for pair in hours) or last < first:
            raise FormError(f"{where}: {part!r}: write days and hours like mon-fri 09:00-17:00")
        for day in DAYS[first:last + 1]:
            spec["hours"].setdefault(day, []).extend(hours)
    return spec


def calendar_words(spec: Any) -> str:
    """A calendar in the form's words (see calendar_of)."""
    if not isinstance(spec, dict):
        return str(spec)
    parts = [str(spec.get("time_zone", ""))]
    for day, hours in (spec.get("hours") or {}).items():
        parts.append(f"{day} " + " ".join(f"{a}-{b}" for a, b in hours))
    if spec.get("country"):
        parts.append("holidays " + str(spec["country"])
                     + (f"-{spec['subdivision']}" if spec.get("subdivision") else ""))
    return "; ".join(parts)


def conditions_of(form: Form, names: Names) -> list[dict[str, Any]]:
    """The conditions the form's rows describe (rows left blank are skipped)."""
    out: list[dict[str, Any]] = []
    for n, (what, value) in enumerate(_rows(form, "condition", "condition_value")):
        where = f"conditions[{n}]"
        if what not in CONDITIONS:
            raise FormError(f"{where}: choose what to check")
        field, op = what.split("|")
        if op in ("is_set", "is_empty"):
            out.append({"field": field, "op": op})
            continue
        if not value:
            raise FormError(f"{where}: {CONDITIONS[what].lower()} what? Fill in the value")
        if op == "regex" or field == "csat_score":
            out.append({"field": field, "op": op, "value": value})
        elif field == "business_hours":
            out.append({"field": field, "op": op, "value": calendar_of(value, where)})
        elif field in ("inbox", "team", "assignee"):
            out.append({"field": field, "op": op, "value": names.ids(
                "agent" if field == "assignee" else field, value, where)})
        elif field == "contact":
            attribute, _, values = value.partition(":")
            if not values.strip():
                raise FormError(f"{where}: write the attribute, a colon, then the values "
                                "(plan: gold, platinum)")
            out.append({"field": f"contact.{attribute.strip()}", "op": "in",
                        "value": _words(values)})
        else:
            out.append({"field": field, "op": op, "value": _words(value)})
    return out


def actions_of(form: Form, names: Names) -> list[dict[str, Any]]:
    """The actions the form's rows describe, in order."""
    out: list[dict[str, Any]] = []
    for n, (kind, value) in enumerate(_rows(form, "action", "action_value")):
        where = f"actions[{n}]"
        if kind not in ACTIONS:
            raise FormError(f"{where}: choose an action")
        if kind in ("unassign", "assign_auto", "mute", "send_webhook"):
            out.append({"type": kind})
        elif kind in ("assign_agent", "notify"):
            out.append({"type": kind, "agent_id": _one(names.ids("agent", value, where), where)})
        elif kind == "assign_team":
            out.append({"type": kind, "team_id": _one(names.ids("team", value, where), where)})
        elif kind == "reply" and value.startswith("/"):
            canned = names.canned.get(value[1:].strip().casefold())
            if canned is None:
                raise FormError(f"{where}: no canned response with the shortcut {value!r}")
            out.append({"type": kind, "canned_id": canned})
        elif kind == "snooze":
            try:
                out.append({"type": kind, "hours": float(value)})
            except ValueError:
                raise FormError(f"{where}: snooze for how many hours? A number") from None
        else:
            param = {"add_label": "label", "remove_label": "label", "set_priority": "priority",
                     "set_status": "status"}.get(kind, "text")
            out.append({"type": kind, param: value})
    return out


def _one(ids: list[int], where: str) -> int:
    if len(ids) != 1:
        raise FormError(f"{where}: name exactly one")
    return ids[0]


def describe_rule(rule: rules.AutomationRuleView, labels: dict[str, dict[int, str]]) -> str:
    """A rule in words, for the list."""
    def named(kind: str, ids: Any) -> str:
        return ", ".join(labels[kind].get(i, f"#{i}") for i in (ids or []))

    parts = []
    for c in rule.conditions:
        field, op, value = c["field"], c["op"], c.get("value")
        key = f"{field}|{op}" if not field.startswith("contact.") else "contact|in"
        words = CONDITIONS.get(key, f"{field} {op}").split(" (")[0].lower()
        if field in ("inbox", "team", "assignee"):
            shown = named("agent" if field == "assignee" else field, value)
        elif field.startswith("contact."):
            shown = f"{field[len('contact.'):]}: " + ", ".join(map(str, value or []))
        elif field == "business_hours":
            shown = calendar_words(value)
        else:
            shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value or "")
        parts.append(f"{words} {shown}".strip())
    joiner = " and " if rule.match == "all" else " or "
    done = []
    for a in rule.actions:
        words = ACTIONS.get(a["type"], a["type"]).split(" (")[0].lower()
        value = (labels["agent"].get(a["agent_id"], "") if "agent_id" in a
                 else labels["team"].get(a["team_id"], "") if "team_id" in a
                 else labels["canned"].get(a["canned_id"], "") if "canned_id" in a
                 else next((str(v) for k, v in a.items() if k != "type"), ""))
        done.append(f"{words} {value}".strip())
    when = TRIGGERS.get(rule.trigger, rule.trigger)
    if rule.delay_hours is not None:
        when = when.replace("(hours)", f"{rule.delay_hours:g} hours")
    return (f"{when}" + (f", if {joiner.join(parts)}" if parts else "") + ": "
            + "; ".join(done))


async def _names(ctx: WebContext, principal: Principal) -> tuple[Names, dict[str, Any]]:
    async with ctx.inbox.db.read() as session:
        inboxes = await visible_inboxes(session, principal)
        all_teams = await teams.list_teams(session)
        agents = await colleagues(session, principal)
        canned = await list_canned(session)
        labels = await list_labels(session)
    names = Names(inboxes={i.name.casefold(): i.id for i in inboxes if i.id},
                  teams={t.name.casefold(): t.id for t in all_teams},
                  agents={a.name.casefold(): a.id for a in agents},
                  canned={c.shortcut.casefold(): c.id for c in canned if c.id})
    shown = {"inboxes": inboxes, "teams": all_teams, "agents": agents, "canned": canned,
             "labels": labels,
             "by_id": {"inbox": {i.id: i.name for i in inboxes},
                       "team": {t.id: t.name for t in all_teams},
                       "agent": {a.id: a.name for a in agents},
                       "canned": {c.id: "/" + c.shortcut for c in canned}}}
    return names, shown


async def automation_page(ctx: WebContext, principal: Principal, status: int = 200,
                          **values: Any) -> Response:
    async with ctx.inbox.db.read() as session:
        found = await form_act(rules.list_rules(session, principal))
    _, shown = await _names(ctx, principal)
    typed = values.pop("typed", None) or {}
    conditions = list(typed.get("conditions", []))
    actions = list(typed.get("actions", []))
    return page("admin_automation.html", status, csrf_token=principal.csrf_token,
                is_admin=principal.is_admin, rules=found, triggers=TRIGGERS,
                condition_menu=CONDITIONS, action_menu=ACTIONS, typed=typed,
                condition_rows=conditions + [("", "")] * max(1, ROWS - len(conditions)),
                action_rows=actions + [("", "")] * max(1, ROWS - len(actions)),
                channels=sorted(ctx.channels),
                describe=lambda rule: describe_rule(rule, shown["by_id"]),
                inbox_names=shown["by_id"]["inbox"], **shown, **values)


async def automation_get(request: Request, principal: Principal, form: Form | None) -> Response:
    done = NOTICES.get(request.query_params.get("done", "")) or notice(request)
    return await automation_page(web_context(request), principal, notice=done)


def _typed(form: Form) -> dict[str, Any]:
    return {**{k: form_value(form, k) for k in ("name", "inbox_id", "trigger", "match",
                                                 "position", "stop_processing",
                                                 "delay_hours")},
            "conditions": _rows(form, "condition", "condition_value"),
            "actions": _rows(form, "action", "action_value")}


async def _body(ctx: WebContext, principal: Principal,
                form: Form) -> rules.AutomationRuleCreate:
    names, _ = await _names(ctx, principal)
    inbox, position = form_value(form, "inbox_id"), form_value(form, "position")
    conditions, actions = conditions_of(form, names), actions_of(form, names)
    if not actions:
        raise FormError("actions: choose at least one thing the rule does")
    match = form_value(form, "match") or "all"
    hours = form_value(form, "delay_hours")
    try:
        delay = float(hours) if hours else None
    except ValueError:
        raise FormError("delay_hours: how many hours? A number") from None
    return form_model(lambda: rules.AutomationRuleCreate(
        name=form_value(form, "name") or "Dry run", trigger=form_value(form, "trigger"),
        delay_hours=delay,
        inbox_id=int(inbox) if inbox.isdigit() else None,
        match="any" if match == "any" else "all",
        position=int(position) if position.isdigit() else 0,
        stop_processing=form_value(form, "stop_processing") == "1",
        conditions=conditions, actions=actions))


async def rule_create(request: Request, principal: Principal, form: Form | None) -> Response:
    assert form is not None
    ctx = web_context(request)
    try:
        body = await _body(ctx, principal, form)
        await form_act(rules.create_rule(ctx.inbox, principal, body, channels=ctx.channels))
    except FormError as exc:
        return await automation_page(ctx, principal, exc.status, error=sentence(str(exc)),
                                     typed=_typed(form))
    return redirect("/admin/automation?done=created")


async def rule_dry_run(request: Request, principal: Principal, form: Form | None) -> Response:
    """The form's rule tried on the latest conversations; nothing is saved or done."""
    assert form is not None
    ctx = web_context(request)
    try:
        body = await _body(ctx, principal, form)
        tried = await form_act(rules.dry_run(ctx.inbox, principal, body, channels=ctx.channels))
    except FormError as exc:
        return await automation_page(ctx, principal, exc.status, error=sentence(str(exc)),
                                     typed=_typed(form))
    return await automation_page(ctx, principal, dry_run=tried, typed=_typed(form))


ROUTES: list[BaseRoute] = [
    Route("/admin/automation", admin_page(automation_get, leads=True), methods=["GET"]),
    Route("/admin/automation", admin_page(rule_create, leads=True), methods=["POST"]),
    Route("/admin/automation/dry-run", admin_page(rule_dry_run, leads=True),
          methods=["POST"]),
    *rule_row_routes("/admin/automation", page=automation_page, patch=rules.AutomationRulePatch,
                     update=rules.update_rule, delete=rules.delete_rule),
]
