"""Pipedrive: persons, transcript notes, the person card, and person webhooks (API v1,
webhooks v2 and v1).

Pipedrive has no batch endpoints for persons: each contact is matched (by link, then an
exact search on email, then on phone) and written on its own, within the search API's
documented limit of 10 requests per 2 seconds. Calls carry the API token in the
`x-api-token` header (never in a URL, where logs would keep it). Webhooks are
authenticated the way Pipedrive offers: HTTP Basic credentials set on the subscription,
compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from crm_sync.base import (
    Account,
    BadWebhook,
    Card,
    ContactData,
    Permanent,
    Pushed,
    RemoteChange,
    Spec,
    Transcript,
    note_html,
)
from crm_sync.http import Budgeted
from hub.security import constant_time_equal

API = "https://api.pipedrive.com"


class Pipedrive(Budgeted):
    """The Pipedrive connector."""

    kind = "pipedrive"
    display_name = "Pipedrive"
    specs: Sequence[Spec] = (
        Spec("api_token", "API token", secret=True,
             help="Personal preferences, API, in Pipedrive (a user who sees the persons)."),
        Spec("webhook_user", "Webhook user name",
             help="The HTTP auth user name set on the Pipedrive webhook (person, change)."),
        Spec("webhook_password", "Webhook password", secret=True),
        Spec("api_base", "API address", required=False, default=API),
    )
    # The search API allows 10 requests per 2 s per token: a bucket of 3 refilled at 3 per
    # second stays under it in any 2 s window (3 + 6).
    api = API
    account_key = "api_token"
    rate = 3
    per_seconds = 1.0
    # One person per call: what Pipedrive took is linked even when the next one fails.
    batch = 1

    async def _call(self, account: Account, method: str, path: str, *, what: str,
                    **kwargs: Any) -> Any:
        answer = await self.client(account).call(
            method, self.base(account) + path, what=what,
            headers={"x-api-token": str(account.get("api_token"))}, **kwargs)
        if not isinstance(answer, dict) or not answer.get("success", False):
            raise Permanent(f"{what}: {str(answer)[:200]}")
        return answer.get("data")

    async def check(self, account: Account) -> dict[str, Any]:
        """The token works; the company's domain (for deep links)."""
        me = await self._call(account, "GET", "/v1/users/me", what="current user")
        return {"company_domain": str(me.get("company_domain") or "")}

    # -- persons ------------------------------------------------------------------------

    async def push_contacts(self, account: Account,
                            contacts: Sequence[ContactData]) -> list[Pushed]:
        """Each contact: update the linked person, else the one with its email or phone,
        else create one. An update adds Switchboard's email and phone to the person's own
        lists (as primary) instead of replacing them, and leaves a name Switchboard does
        not know alone."""
        results: list[Pushed] = []
        for contact in contacts:
            remote = contact.remote_id
            person = None
            if remote is not None:
                try:
                    person = await self._call(account, "GET", f"/v1/persons/{remote}",
                                              what="read person")
                except Permanent:  # deleted in Pipedrive since: matched again below
                    remote = None
            if remote is None:
                remote = await self._find(account, contact)
                if remote is not None:
                    person = await self._call(account, "GET", f"/v1/persons/{remote}",
                                              what="read person")
            if remote is None:
                made = await self._call(account, "POST", "/v1/persons", what="create person",
                                        json=_person(contact), idempotent=False)
                results.append(Pushed(contact.id, str(made["id"]), True))
                continue
            change = _changes(contact, person or {})
            if change:
                await self._call(account, "PUT", f"/v1/persons/{remote}",
                                 what="update person", json=change)
            results.append(Pushed(contact.id, str(remote)))
        return results

    async def _find(self, account: Account, contact: ContactData) -> str | None:
        for field, value in (("email", contact.email), ("phone", contact.phone)):
            if not value:
                continue
            found = await self._call(account, "GET", "/v1/persons/search", what="search persons",
                                     params={"term": value, "fields": field,
                                             "exact_match": "true", "limit": 1})
            items = (found or {}).get("items") or []
            if items:
                return str(items[0]["item"]["id"])
        return None

    # -- notes ------------------------------------------------------------------------

    async def push_note(self, account: Account, remote_id: str, transcript: Transcript,
                        *, retrying: bool) -> str:
        """The transcript as a note on the person (looked for first on a retry)."""
        if retrying:
            notes = await self._call(account, "GET", "/v1/notes", what="list notes",
                                     params={"person_id": remote_id, "limit": 100,
                                             "sort": "add_time DESC"})
            for note in notes or []:
                if transcript.reference in str(note.get("content", "")):
                    return str(note["id"])
        made = await self._call(account, "POST", "/v1/notes", what="create note", json={
            "content": note_html(transcript), "person_id": int(remote_id)}, idempotent=False)
        return str(made["id"])

    # -- the card ---------------------------------------------------------------------

    async def card(self, account: Account, remote_id: str) -> Card:
        """Owner, organisation, label and open deals, with a link into Pipedrive."""
        person = await self._call(account, "GET", f"/v1/persons/{remote_id}",
                                  what="read person")
        deals = await self._call(account, "GET", f"/v1/persons/{remote_id}/deals",
                                 what="read deals", params={"status": "open", "limit": 20})
        fields = [("Owner", _name_of(person.get("owner_id"))),
                  ("Organization", _name_of(person.get("org_id"))),
                  ("Open deals", str(person.get("open_deals_count") or 0))]
        domain = account.get("company_domain")
        return Card(crm=self.display_name, remote_id=remote_id,
                    link=f"https://{domain}.pipedrive.com/person/{remote_id}",
                    fields=[f for f in fields if f[1]],
                    deals=[(str(d.get("title") or "Deal"),
                            " ".join(filter(None, [str(d.get("value") or ""),
                                                   str(d.get("currency") or "")])))
                           for d in deals or []])

    # -- webhooks ---------------------------------------------------------------------

    def read_webhook(self, account: Account, method: str, url: str,
                     headers: Mapping[str, str], body: bytes) -> list[RemoteChange]:
        """HTTP Basic credentials checked; a person's change (webhooks v2, or v1)."""
        _check_basic(headers.get("authorization", ""), str(account.get("webhook_user")),
                     str(account.get("webhook_password")))
        try:
            payload = json.loads(body)
        except ValueError:
            raise BadWebhook("the body is not JSON") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("meta"), dict):
            raise BadWebhook("a Pipedrive webhook has meta and data")
        meta = payload["meta"]
        entity = meta.get("entity") or meta.get("object")
        action = meta.get("action")
        person = payload.get("data") or payload.get("current")
        if entity != "person" or action not in ("change", "updated") \
                or not isinstance(person, dict) or person.get("id") is None:
            return []
        previous = payload.get("previous")
        changed = set(previous) if isinstance(previous, dict) else None
        fields: dict[str, str | None] = {}
        for ours, theirs in (("name", ("name",)), ("email", ("emails", "email")),
                             ("phone", ("phones", "phone"))):
            key = next((k for k in theirs if k in person), None)
            if key is None or (changed is not None and not changed & set(theirs)):
                continue
            fields[ours] = _primary(person[key]) if ours != "name" else (person[key] or None)
        if not fields:
            return []
        return [RemoteChange(remote_id=str(person["id"]), fields=fields,
                             occurred_at=_when(meta.get("timestamp")),
                             event_id=str(meta.get("id", "")))]


def _check_basic(header: str, user: str, password: str) -> None:
    if not user or not password:
        raise BadWebhook("set the webhook's user name and password on the connection")
    if not header.lower().startswith("basic "):
        raise BadWebhook("no HTTP Basic credentials")
    try:
        given = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise BadWebhook("unreadable HTTP Basic credentials") from None
    if not constant_time_equal(given, f"{user}:{password}"):
        raise BadWebhook("wrong webhook credentials")


def _person(contact: ContactData) -> dict[str, Any]:
    """A new person (Pipedrive needs a name: the address stands in for an unknown one)."""
    body: dict[str, Any] = {"name": contact.name or contact.email or contact.phone or
                            f"Switchboard contact {contact.id}"}
    if contact.email:
        body["email"] = [{"value": contact.email, "primary": True, "label": "work"}]
    if contact.phone:
        body["phone"] = [{"value": contact.phone, "primary": True, "label": "mobile"}]
    return body


def _changes(contact: ContactData, person: Mapping[str, Any]) -> dict[str, Any]:
    """What to change on an existing person: the name when Switchboard knows one, the email
    and phone made primary, the person's other ones kept."""
    change: dict[str, Any] = {}
    if contact.name and contact.name != person.get("name"):
        change["name"] = contact.name
    for key, value, label in (("email", contact.email, "work"),
                              ("phone", contact.phone, "mobile")):
        if not value:
            continue
        current = [dict(v) for v in person.get(key) or [] if isinstance(v, dict)]
        if any(v.get("value") == value and v.get("primary") for v in current):
            continue
        others = [{**v, "primary": False} for v in current if v.get("value") != value]
        change[key] = [{"value": value, "primary": True, "label": label}, *others]
    return change


def _primary(values: Any) -> str | None:
    """The primary value of Pipedrive's list of emails or phones."""
    if isinstance(values, str):
        return values or None
    if not isinstance(values, list) or not values:
        return None
    chosen = next((v for v in values if isinstance(v, dict) and v.get("primary")), values[0])
    value = chosen.get("value") if isinstance(chosen, dict) else None
    return str(value) if value else None


def _name_of(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("name") or "")
    return ""


def _when(stamp: Any) -> datetime:
    if isinstance(stamp, int | float):
        return datetime.fromtimestamp(stamp / 1000 if stamp > 1e11 else stamp, UTC)
    if isinstance(stamp, str):
        try:
            moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime.now(UTC)
