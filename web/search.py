"""Search across conversations, messages, notes and contacts (JSON API under /api/v1)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from pydantic import BaseModel
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from hub.events import ContactView
from inbox import search
from inbox.agents import Principal
from inbox.queries import InvalidQuery
from web.context import web_context
from web.http import HTTPProblem, Operation, authenticated, json_response
from web.openapi import Doc


class SearchPage(BaseModel):
    items: list[search.SearchHit]
    next_cursor: str | None


class ContactPage(BaseModel):
    items: list[ContactView]
    next_cursor: str | None


def _int(params: QueryParams, name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit()) or len(value) > 12:
        raise InvalidQuery(f"{name} must be a positive integer")
    return int(value)


def _when(params: QueryParams, name: str, *, end: bool) -> datetime | None:
    """An ISO date or date-time; a bare date `to` means the end of that day (UTC)."""
    value = params.get(name)
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value) + timedelta(days=1 if end else 0)
            return datetime.combine(day, time(), UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidQuery(f"{name} must be an ISO date (2026-01-31) or date-time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _filters(params: QueryParams) -> search.SearchFilter:
    return search.SearchFilter(
        inbox_id=_int(params, "inbox_id"),
        statuses=tuple(s for s in params.get("status", "").split(",") if s),
        assignee=params.get("assignee") or None,
        label=params.get("label") or None,
        channel=params.get("channel") or None,
        since=_when(params, "from", end=False),
        until=_when(params, "to", end=True),
        kinds=tuple(k for k in params.get("kind", "").split(",") if k),
    )


async def search_all(request: Request, principal: Principal) -> Response:
    """Messages, notes, conversations and contacts you may see that match every word."""
    params = request.query_params
    query = params.get("q", "")
    try:
        if not query.strip():
            raise InvalidQuery("q is required")
        filters = _filters(params)
        async with web_context(request).inbox.db.read() as session:
            items, cursor = await search.search(
                session, principal, query, filters, cursor=params.get("cursor") or None,
                limit=_int(params, "limit", 25) or 0,
            )
    except InvalidQuery as exc:
        raise HTTPProblem(422, "invalid_parameter", str(exc)) from None
    return json_response(SearchPage(items=items, next_cursor=cursor))

async def contacts(request: Request, principal: Principal) -> Response:
    """Contacts you may see, newest first; with q, those matching every word."""
    params = request.query_params
    try:
        async with web_context(request).inbox.db.read() as session:
            items, cursor = await search.search_contacts(
                session, principal, params.get("q") or None,
                cursor=params.get("cursor") or None, limit=_int(params, "limit", 25) or 0,
            )
    except InvalidQuery as exc:
        raise HTTPProblem(422, "invalid_parameter", str(exc)) from None
    return json_response(ContactPage(items=items, next_cursor=cursor))


OPERATIONS: list[Operation] = [
    (Doc("GET", "/api/v1/search", "Search messages, notes, conversations and contacts",
         response=SearchPage,
         query=(("q", "words to find, all of them; \"a phrase\", -left-out (docs/search.md)"),
            ("kind", "comma-separated: message, note, conversation, contact"),
            ("inbox_id", "only this inbox"), ("channel", "only inboxes of this channel"),
            ("status", "comma-separated: open, pending, snoozed, resolved"),
            ("assignee", "'me', 'none' or an agent id"),
            ("label", "only conversations with this label"),
            ("from", "on or after this ISO date or date-time"),
            ("to", "up to this ISO date (inclusive) or date-time"),
            ("cursor", "next_cursor of the previous page"),
            ("limit", "1-100, default 25"))),
     authenticated(search_all)),
    (Doc("GET", "/api/v1/contacts", "List or search contacts", response=ContactPage,
         query=(("q", "words to find in names, emails, phones and identities"),
            ("cursor", "next_cursor of the previous page"),
            ("limit", "1-100, default 25"))),
     authenticated(contacts)),
]
