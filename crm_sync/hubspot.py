"""HubSpot: contacts, transcript notes, the contact card, and contact webhooks (CRM v3).

Matching never duplicates a person: a linked contact is updated by its HubSpot id; one
with an email is upserted by email (`batch/upsert` with `idProperty=email`, one call per
hundred); those with only a phone are searched by phone first (one `IN` search per hundred),
then updated or created in batches. The other channels' identities
go in the `switchboard_identities` property and the contact's id in `switchboard_id` (both
created on connect when missing).

Credentials: a private app's access token, or OAuth 2.0 (an access token with its refresh
token, client id and secret: refreshed when HubSpot answers 401; a refused refresh breaks
the connection). Webhooks are verified with signature v3 (HMAC-SHA256 of method, URI, body
and timestamp with the app's client secret, base64), and refused when older than 5 minutes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx

from crm_sync.base import (
    Account,
    BadWebhook,
    Card,
    ContactData,
    Permanent,
    Pushed,
    RemoteChange,
    Revoked,
    Spec,
    Transcript,
    note_html,
)
from crm_sync.http import Budgeted
from hub.security import constant_time_equal

API = "https://api.hubapi.com"
AUTHORIZE = "https://app.hubspot.com/oauth/authorize"
SCOPES = ("crm.objects.contacts.read", "crm.objects.contacts.write", "crm.objects.deals.read",
          "crm.objects.owners.read", "crm.schemas.contacts.write")
# Note -> contact, HubSpot-defined (documented association type id).
NOTE_TO_CONTACT = 202
MAX_AGE_MS = 5 * 60 * 1000
CUSTOM_PROPERTIES = {
    "switchboard_id": "Switchboard contact id",
    "switchboard_identities": "Switchboard identities",
}
CARD_PROPERTIES = ["firstname", "lastname", "email", "phone", "lifecyclestage",
                   "hubspot_owner_id", "company"]
# HubSpot property -> Switchboard field, for webhooks of property changes.
WATCHED = {"firstname": "name", "lastname": "name", "email": "email", "phone": "phone"}


class HubSpot(Budgeted):
    """The HubSpot connector."""

    kind = "hubspot"
    display_name = "HubSpot"
    specs: Sequence[Spec] = (
        Spec("access_token", "Access token", secret=True, required=False,
             help="A private app's token (scopes: crm.objects.contacts.read/write, "
                  "crm.objects.deals.read, crm.schemas.contacts.write), or the OAuth "
                  "access token."),
        Spec("client_secret", "Client secret", secret=True,
             help="The app's client secret: HubSpot signs its webhooks with it."),
        Spec("refresh_token", "OAuth refresh token", secret=True, required=False),
        Spec("client_id", "OAuth client id", required=False),
        Spec("api_base", "API address", required=False, default=API),
        Spec("authorize_url", "OAuth authorization page", required=False, default=AUTHORIZE),
    )
    # Private apps may make 100 requests per rolling 10 s (the lowest tier's documented
    # budget). A bucket of 9 refilled at 9 per second stays under it in any 10 s window
    # (9 + 90); it also keeps under the search endpoints' 5 per second on average.
    api = API
    account_key = "client_secret"
    rate = 9
    per_seconds = 1.0
    batch = 100

    async def _call(self, account: Account, method: str, path: str, *, what: str,
                    **kwargs: Any) -> Any:
        """A call with the account's token; on 401, one refresh (OAuth) and a second try."""
        client = self.client(account)
        url = self.base(account) + path
        try:
            return await client.call(method, url, what=what, headers=self._auth(account),
                                     **kwargs)
        except Revoked:
            if not await self._refresh(account):
                raise
        return await client.call(method, url, what=what, headers=self._auth(account), **kwargs)

    def _auth(self, account: Account) -> dict[str, str]:
        return {"authorization": f"Bearer {account.get('access_token')}"}

    async def _refresh(self, account: Account) -> bool:
        """Trade the refresh token for a new access token; False without one. Revoked when
        HubSpot refuses it."""
        refresh, client_id = account.get("refresh_token"), account.get("client_id")
        if not (refresh and client_id):
            return False
        try:
            answer = await self.client(account).call(
                "POST", self.base(account) + "/oauth/v1/token", what="token refresh",
                data={"grant_type": "refresh_token", "client_id": client_id,
                      "client_secret": account.get("client_secret"),
                      "refresh_token": refresh})
        except Permanent as exc:  # 400 invalid_grant: the app was uninstalled
            raise Revoked(str(exc)) from exc
        account.updates["access_token"] = answer["access_token"]
        account.updates["refresh_token"] = answer.get("refresh_token", refresh)
        return True

    # -- set-up -----------------------------------------------------------------------

    def authorize_url(self, settings: Mapping[str, Any], redirect_uri: str, state: str) -> str:
        """HubSpot's page where an admin installs the app into their account."""
        base = str(settings.get("authorize_url") or AUTHORIZE)
        return str(httpx.URL(base, params={
            "client_id": str(settings.get("client_id", "")), "redirect_uri": redirect_uri,
            "scope": " ".join(SCOPES), "state": state}))

    async def exchange_code(self, account: Account, code: str, redirect_uri: str) -> None:
        """The authorization code for an access and a refresh token."""
        try:
            answer = await self.client(account).call(
                "POST", self.base(account) + "/oauth/v1/token", what="authorization code",
                data={"grant_type": "authorization_code", "client_id": account.get("client_id"),
                      "client_secret": account.get("client_secret"),
                      "redirect_uri": redirect_uri, "code": code})
        except Permanent as exc:
            raise Revoked(str(exc)) from exc
        account.updates["access_token"] = answer["access_token"]
        account.updates["refresh_token"] = answer.get("refresh_token", "")

    async def check(self, account: Account) -> dict[str, Any]:
        """The token works; the account id (for deep links); the custom properties exist."""
        if not account.get("access_token"):
            raise Permanent("an access token is needed: a private app's, or connect with "
                            "OAuth")
        details = await self._call(account, "GET", "/account-info/v3/details",
                                   what="account details")
        for name, label in CUSTOM_PROPERTIES.items():
            try:
                await self._call(account, "GET", f"/crm/v3/properties/contacts/{name}",
                                 what=f"property {name}")
            except Permanent:
                await self._call(account, "POST", "/crm/v3/properties/contacts",
                                 what=f"create property {name}", json={
                                     "name": name, "label": label, "type": "string",
                                     "fieldType": "textarea",
                                     "groupName": "contactinformation"})
        return {"portal_id": str(details.get("portalId", ""))}

    # -- contacts ---------------------------------------------------------------------

    async def push_contacts(self, account: Account,
                            contacts: Sequence[ContactData]) -> list[Pushed]:
        """Update linked ones, upsert by email, search-then-write by phone."""
        results: list[Pushed] = []
        linked = [c for c in contacts if c.remote_id]
        by_email = [c for c in contacts if not c.remote_id and c.email]
        by_phone = [c for c in contacts if not c.remote_id and not c.email and c.phone]
        for chunk in _chunks(linked, self.batch):
            answer = await self._call(account, "POST", "/crm/v3/objects/contacts/batch/update",
                                      what="update contacts", json={"inputs": [
                                          {"id": c.remote_id, "properties": _properties(c)}
                                          for c in chunk]})
            found = {str(r["id"]) for r in answer.get("results", [])}
            results += [Pushed(c.id, c.remote_id) for c in chunk if c.remote_id in found]
            # Records deleted in HubSpot since: matched (or made) again like new contacts,
            # and the link follows.
            gone = [replace(c, remote_id=None) for c in chunk if c.remote_id not in found]
            if gone:
                results += await self.push_contacts(account, gone)
        for chunk in _chunks(by_email, self.batch):
            answer = await self._call(account, "POST", "/crm/v3/objects/contacts/batch/upsert",
                                      what="upsert contacts", json={"inputs": [
                                          {"id": c.email, "idProperty": "email",
                                           "properties": _properties(c)} for c in chunk]})
            ids = {str(r.get("properties", {}).get("email", "")).lower(): r
                   for r in answer.get("results", [])}
            for c in chunk:
                record = ids.get(str(c.email).lower())
                results.append(Pushed(c.id, str(record["id"]), bool(record.get("new")))
                               if record else Pushed(c.id, None, error="not in the answer"))
        for chunk in _chunks(by_phone, self.batch):
            results += await self._push_by_phone(account, chunk)
        return results

    async def _push_by_phone(self, account: Account,
                             contacts: Sequence[ContactData]) -> list[Pushed]:
        """One search for the chunk's phones (`IN`), then one batch update of those found
        and one batch create of the others."""
        found = await self._call(account, "POST", "/crm/v3/objects/contacts/search",
                                 what="search by phone", json={
                                     "filterGroups": [{"filters": [{
                                         "propertyName": "phone", "operator": "IN",
                                         "values": [c.phone for c in contacts]}]}],
                                     "properties": ["phone"], "limit": 200})
        known = {str(r.get("properties", {}).get("phone")): str(r["id"])
                 for r in found.get("results", [])}
        results: list[Pushed] = []
        update = [c for c in contacts if c.phone in known]
        create = [c for c in contacts if c.phone not in known]
        if update:
            await self._call(account, "POST", "/crm/v3/objects/contacts/batch/update",
                             what="update contacts", json={"inputs": [
                                 {"id": known[str(c.phone)], "properties": _properties(c)}
                                 for c in update]})
            results += [Pushed(c.id, known[str(c.phone)]) for c in update]
        if create:
            made = await self._call(account, "POST", "/crm/v3/objects/contacts/batch/create",
                                    what="create contacts", idempotent=False, json={"inputs": [
                                        {"properties": _properties(c)} for c in create]})
            ids = {str(r.get("properties", {}).get("phone")): str(r["id"])
                   for r in made.get("results", [])}
            results += [Pushed(c.id, ids[str(c.phone)], created=True) if str(c.phone) in ids
                        else Pushed(c.id, None, error="not in the answer") for c in create]
        return results

    # -- notes ------------------------------------------------------------------------

    async def push_note(self, account: Account, remote_id: str, transcript: Transcript,
                        *, retrying: bool) -> str:
        """The transcript as a note associated with the contact (looked for first on a
        retry, by its reference, so a crash between HubSpot's answer and ours makes none
        twice)."""
        if retrying:
            found = await self._call(account, "POST", "/crm/v3/objects/notes/search",
                                     what="search notes", json={
                                         "filterGroups": [{"filters": [{
                                             "propertyName": "hs_note_body",
                                             "operator": "CONTAINS_TOKEN",
                                             "value": transcript.reference}]}],
                                         "limit": 1})
            if found.get("results"):
                return str(found["results"][0]["id"])
        made = await self._call(account, "POST", "/crm/v3/objects/notes", what="create note",
                                idempotent=False, json={
                                    "properties": {
                                        "hs_timestamp": transcript.resolved_at.isoformat(),
                                        "hs_note_body": note_html(transcript)},
                                    "associations": [{
                                        "to": {"id": remote_id},
                                        "types": [{"associationCategory": "HUBSPOT_DEFINED",
                                                   "associationTypeId": NOTE_TO_CONTACT}]}]})
        return str(made["id"])

    # -- the card ---------------------------------------------------------------------

    async def card(self, account: Account, remote_id: str) -> Card:
        """Owner, lifecycle stage, company and open deals, with a link into HubSpot."""
        record = await self._call(account, "GET", f"/crm/v3/objects/contacts/{remote_id}",
                                  what="read contact",
                                  params={"properties": ",".join(CARD_PROPERTIES),
                                          "associations": "deals"})
        props = record.get("properties", {})
        fields = [("Lifecycle stage", props.get("lifecyclestage") or ""),
                  ("Company", props.get("company") or "")]
        owner_id = props.get("hubspot_owner_id")
        if owner_id:
            owner = await self._call(account, "GET", f"/crm/v3/owners/{owner_id}",
                                     what="read owner")
            fields.insert(0, ("Owner", " ".join(filter(None, [owner.get("firstName"),
                                                              owner.get("lastName")]))
                              or owner.get("email", "")))
        deal_ids = [d["id"] for d in record.get("associations", {}).get("deals", {})
                    .get("results", [])][:20]
        deals: list[tuple[str, str]] = []
        if deal_ids:
            read = await self._call(account, "POST", "/crm/v3/objects/deals/batch/read",
                                    what="read deals", json={
                                        "properties": ["dealname", "dealstage", "amount",
                                                       "hs_is_closed"],
                                        "inputs": [{"id": d} for d in deal_ids]})
            for deal in read.get("results", []):
                p = deal.get("properties", {})
                if str(p.get("hs_is_closed", "false")).lower() != "true":
                    deals.append((p.get("dealname") or "Deal", " · ".join(
                        filter(None, [p.get("dealstage"), p.get("amount")]))))
        portal = account.get("portal_id")
        return Card(crm=self.display_name, remote_id=remote_id,
                    link=f"https://app.hubspot.com/contacts/{portal}/record/0-1/{remote_id}",
                    fields=[f for f in fields if f[1]], deals=deals)

    # -- webhooks ---------------------------------------------------------------------

    def read_webhook(self, account: Account, method: str, url: str,
                     headers: Mapping[str, str], body: bytes) -> list[RemoteChange]:
        """Signature v3 checked; contact property changes of the watched properties."""
        verify_v3(str(account.get("client_secret")), method, url, headers, body)
        try:
            events = json.loads(body)
        except ValueError:
            raise BadWebhook("the body is not JSON") from None
        if not isinstance(events, list):
            raise BadWebhook("HubSpot sends a list of events")
        changes: list[RemoteChange] = []
        for event in events:
            if not isinstance(event, dict):
                continue
            if event.get("subscriptionType") != "contact.propertyChange":
                continue
            prop = event.get("propertyName")
            if prop not in WATCHED or event.get("objectId") is None:
                continue
            value = event.get("propertyValue")
            changes.append(RemoteChange(
                remote_id=str(event["objectId"]),
                fields={prop: None if value in (None, "") else str(value)},
                occurred_at=datetime.fromtimestamp(int(event.get("occurredAt", 0)) / 1000, UTC),
                event_id=str(event.get("eventId", ""))))
        return changes


def verify_v3(secret: str, method: str, url: str, headers: Mapping[str, str],
              body: bytes, *, now_ms: int | None = None) -> None:
    """HubSpot's v3 signature, in constant time; BadWebhook when wrong, missing or stale."""
    signature = headers.get("x-hubspot-signature-v3", "")
    stamp = headers.get("x-hubspot-request-timestamp", "")
    if not secret or not signature or not stamp.isdigit():
        raise BadWebhook("missing X-HubSpot-Signature-v3 or X-HubSpot-Request-Timestamp")
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    if abs(now - int(stamp)) > MAX_AGE_MS:
        raise BadWebhook("the request is older than 5 minutes")
    expected = sign_v3(secret, method, url, body, stamp)
    if not constant_time_equal(signature, expected):
        raise BadWebhook("the signature does not match")


def sign_v3(secret: str, method: str, url: str, body: bytes, stamp: str) -> str:
    """base64(HMAC-SHA256(secret, method + URI + body + timestamp))."""
    message = method.upper().encode() + url.encode() + body + stamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()
                            ).decode()


def _properties(contact: ContactData) -> dict[str, str]:
    """What Switchboard knows, and nothing it does not: an empty value would erase
    HubSpot's (a one-word name leaves the last name alone)."""
    first, _, last = (contact.name or "").partition(" ")
    props = {"switchboard_id": str(contact.id),
             "switchboard_identities": "\n".join(contact.identities)}
    if first:
        props["firstname"] = first
    if last:
        props["lastname"] = last
    if contact.email:
        props["email"] = contact.email
    if contact.phone:
        props["phone"] = contact.phone
    return props


def _chunks(items: Sequence[ContactData], size: int) -> list[Sequence[ContactData]]:
    return [items[n:n + size] for n in range(0, len(items), size)]
