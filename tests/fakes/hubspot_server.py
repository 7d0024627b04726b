"""A local server that answers like HubSpot's CRM v3 API, and sends its webhooks.

It follows HubSpot's public documentation: bearer tokens (401 `INVALID_AUTHENTICATION`),
the OAuth token endpoint (`POST /oauth/v1/token`, `grant_type=refresh_token`; 400
`BAD_REFRESH_TOKEN`), `GET /account-info/v3/details`, contact properties
(`/crm/v3/properties/contacts[/{name}]`), contacts (`POST /crm/v3/objects/contacts`, 409
`CONFLICT` on a known email; `PATCH`/`GET /crm/v3/objects/contacts/{id}` with
`associations=deals`; `batch/upsert` with `idProperty=email`, `batch/update`, at most 100
inputs; `search` with `EQ` filters), notes with associations (`POST /crm/v3/objects/notes`,
`search` with `CONTAINS_TOKEN`), owners, deals `batch/read`. Every property change,
whoever made it, is sent as a `contact.propertyChange` webhook signed with signature v3
(what the real HubSpot does for an app subscribed to those properties).

It can be down (503), throttle (429 with Retry-After) or refuse the token (401) on demand,
and records when each request came, to measure the request rate.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from crm_sync.hubspot import sign_v3
from tests.services import LoopbackServer, free_port

PORTAL_ID = 62515
CLIENT_ID = "5a1d0c3e-6b7f-4c2a-9e8d-0f1a2b3c4d5e"
CLIENT_SECRET = "b0c1d2e3-f4a5-4b6c-8d7e-9f0a1b2c3d4e"
WATCHED = ("firstname", "lastname", "email", "phone")
STANDARD = {"firstname", "lastname", "email", "phone", "company", "lifecyclestage",
            "hubspot_owner_id"}


@dataclass
class Hit:
    at: float
    method: str
    path: str
    status: int


@dataclass
class FakeHubSpot:
    """HubSpot on a loopback port."""

    port: int = field(default_factory=free_port)
    tokens: set[str] = field(default_factory=lambda: {"pat-na1-good-token"})
    refresh_tokens: set[str] = field(default_factory=set)
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: dict[str, dict[str, Any]] = field(default_factory=dict)
    deals: dict[str, dict[str, Any]] = field(default_factory=dict)
    owners: dict[str, dict[str, Any]] = field(default_factory=dict)
    properties: set[str] = field(default_factory=lambda: set(STANDARD))
    emails: dict[str, str] = field(default_factory=dict)  # lower-cased email -> contact id
    created_at: dict[str, float] = field(default_factory=dict)  # contact id -> monotonic
    hits: list[Hit] = field(default_factory=list)
    # Faults: 503 until this monotonic time; 429s still to answer; Retry-After of a 429.
    down_until: float = 0.0
    delay: float = 0.0
    throttle: int = 0
    retry_after: int = 1
    # Where webhooks go (the connection's webhook URL), and which property changes were sent.
    webhook_url: str | None = None
    sent_webhooks: list[dict[str, Any]] = field(default_factory=list)
    webhook_answers: list[int] = field(default_factory=list)
    codes: dict[str, str] = field(default_factory=dict)  # authorization code -> redirect URI
    scopes: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(51))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        routes = [
            Route("/oauth/v1/token", self._token, methods=["POST"]),
            Route("/oauth/authorize", self._authorize, methods=["GET"]),
            Route("/account-info/v3/details", self._details, methods=["GET"]),
            Route("/crm/v3/properties/contacts", self._create_property, methods=["POST"]),
            Route("/crm/v3/properties/contacts/{name}", self._property, methods=["GET"]),
            Route("/crm/v3/objects/contacts", self._create_contact, methods=["POST"]),
            Route("/crm/v3/objects/contacts/batch/upsert", self._upsert, methods=["POST"]),
            Route("/crm/v3/objects/contacts/batch/update", self._batch_update,
                  methods=["POST"]),
            Route("/crm/v3/objects/contacts/batch/create", self._batch_create,
                  methods=["POST"]),
            Route("/crm/v3/objects/contacts/search", self._search_contacts, methods=["POST"]),
            Route("/crm/v3/objects/contacts/{id}", self._contact, methods=["GET", "PATCH"]),
            Route("/crm/v3/objects/notes", self._create_note, methods=["POST"]),
            Route("/crm/v3/objects/notes/search", self._search_notes, methods=["POST"]),
            Route("/crm/v3/owners/{id}", self._owner, methods=["GET"]),
            Route("/crm/v3/objects/deals/batch/read", self._read_deals, methods=["POST"]),
        ]
        self._pending: set[asyncio.Task[None]] = set()
        self._queued: list[dict[str, Any]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._server = LoopbackServer(Starlette(routes=routes), self.port)
        await self._server.start()

    async def stop(self) -> None:
        for task in list(self._pending):
            task.cancel()
        await self._server.stop()

    # -- what tests do in "HubSpot's UI" ------------------------------------------------

    def edit(self, contact_id: str, **properties: str) -> None:
        """Change a contact as a HubSpot user would (a webhook follows)."""
        record = self.contacts[contact_id]
        self._set(record, properties, source="CRM_UI")

    def by_email(self, email: str) -> dict[str, Any] | None:
        found = self.emails.get(email.lower())
        return self.contacts.get(found) if found else None

    def by_phone(self, phone: str) -> list[dict[str, Any]]:
        return [c for c in self.contacts.values() if c["properties"].get("phone") == phone]

    def requests(self, path_part: str = "") -> list[Hit]:
        return [h for h in self.hits if path_part in h.path]

    def rate(self, seconds: float) -> int:
        """The most requests answered within any window of `seconds`."""
        times = sorted(h.at for h in self.hits)
        best, start = 0, 0
        for end, at in enumerate(times):
            while at - times[start] > seconds:
                start += 1
            best = max(best, end - start + 1)
        return best

    # -- plumbing ----------------------------------------------------------------------

    def _error(self, status: int, category: str, message: str,
               headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"status": "error", "message": message, "category": category,
                             "correlationId": "3f1e0c4a-0000-4000-8000-000000000000"},
                            status_code=status, headers=headers)

    def _gate(self, request: Request, *, auth: bool = True) -> JSONResponse | None:
        if time.monotonic() < self.down_until:
            return self._error(503, "SERVICE_UNAVAILABLE", "Service Unavailable")
        if self.throttle > 0:
            self.throttle -= 1
            return self._error(429, "RATE_LIMITS",
                               "You have reached your ten_secondly_rolling limit.",
                               {"Retry-After": str(self.retry_after)})
        if auth:
            token = request.headers.get("authorization", "").removeprefix("Bearer ")
            if token not in self.tokens:
                return self._error(401, "INVALID_AUTHENTICATION",
                                   "Authentication credentials not found.")
        return None

    def _hit(self, request: Request, status: int) -> None:
        self.hits.append(Hit(time.monotonic(), request.method, request.url.path, status))

    async def _guarded(self, request: Request, *, auth: bool = True) -> JSONResponse | None:
        if self.delay:
            await asyncio.sleep(self.delay)  # a slow HubSpot: a sync takes a while
        refused = self._gate(request, auth=auth)
        self._hit(request, refused.status_code if refused else 200)
        return refused

    def _record(self, record: dict[str, Any], new: bool | None = False) -> dict[str, Any]:
        return {"id": record["id"], "properties": dict(record["properties"]),
                "createdAt": record["createdAt"], "updatedAt": record["updatedAt"],
                "archived": False, **({"new": new} if new is not None else {})}

    def _now(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())

    def _new_contact(self, properties: dict[str, str]) -> dict[str, Any]:
        cid = str(next(self._ids))
        record = {"id": cid, "properties": {"hs_object_id": cid}, "createdAt": self._now(),
                  "updatedAt": self._now(), "deals": []}
        self.contacts[cid] = record
        self.created_at[cid] = time.monotonic()
        self._set(record, properties, source="INTEGRATION")
        return record

    def _set(self, record: dict[str, Any], properties: dict[str, str], *, source: str) -> None:
        for name, value in properties.items():
            if record["properties"].get(name) == value:
                continue
            record["properties"][name] = value
            record["updatedAt"] = self._now()
            if name == "email" and value:
                self.emails[value.lower()] = record["id"]
            if name in WATCHED:
                self._webhook(record["id"], name, value, source)

    def _unknown(self, properties: dict[str, Any]) -> str | None:
        return next((p for p in properties if p not in self.properties), None)

    def _webhook(self, object_id: str, name: str, value: str, source: str) -> None:
        if self.webhook_url is None:
            return
        event = {"eventId": next(self._ids) * 1000, "subscriptionId": 2581, "portalId": PORTAL_ID,
                 "appId": 1160452, "occurredAt": int(time.time() * 1000),
                 "subscriptionType": "contact.propertyChange", "attemptNumber": 0,
                 "objectId": int(object_id), "propertyName": name, "propertyValue": value,
                 "changeSource": source, "sourceId": "userId:1234" if source == "CRM_UI"
                 else "1160452"}
        self.sent_webhooks.append(event)
        # HubSpot sends events in batches (up to 100 per request).
        self._queued.append(event)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
            self._pending.add(self._flusher)
            self._flusher.add_done_callback(self._pending.discard)

    async def _flush(self) -> None:
        await asyncio.sleep(0.1)
        while self._queued:
            batch, self._queued = self._queued[:100], self._queued[100:]
            await self._deliver(batch)

    async def _deliver(self, events: list[dict[str, Any]]) -> None:
        assert self.webhook_url is not None
        body = json.dumps(events).encode()
        stamp = str(int(time.time() * 1000))
        headers = {"content-type": "application/json", "x-hubspot-request-timestamp": stamp,
                   "x-hubspot-signature-v3": sign_v3(CLIENT_SECRET, "POST", self.webhook_url,
                                                     body, stamp)}
        async with httpx.AsyncClient(timeout=10) as client:
            for _ in range(5):  # HubSpot retries a webhook that failed
                try:
                    answer = await client.post(self.webhook_url, content=body, headers=headers)
                    self.webhook_answers.append(answer.status_code)
                    if answer.status_code < 500:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.5)

    # -- endpoints ---------------------------------------------------------------------

    async def _authorize(self, request: Request) -> Response:
        """The page where a HubSpot user approves the app: here, approved at once."""
        query = request.query_params
        if query.get("client_id") != CLIENT_ID:
            return JSONResponse({"status": "error", "message": "Invalid client id"}, 400)
        code = f"code-{next(self._ids)}"
        self.codes[code] = query["redirect_uri"]
        self.scopes = query.get("scope", "").split(" ")
        return RedirectResponse(str(httpx.URL(query["redirect_uri"], params={
            "code": code, "state": query.get("state", "")})), status_code=302)

    async def _token(self, request: Request) -> Response:
        if (refused := await self._guarded(request, auth=False)) is not None:
            return refused
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") == "authorization_code":
            if (form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET
                    or self.codes.pop(form.get("code", ""), None) != form.get("redirect_uri")):
                return JSONResponse({"status": "BAD_AUTH_CODE",
                                     "message": "missing or unknown auth code"}, 400)
            token, refresh = f"CJ-access-{next(self._ids)}", f"refresh-{next(self._ids)}"
            self.tokens.add(token)
            self.refresh_tokens.add(refresh)
            return JSONResponse({"token_type": "bearer", "access_token": token,
                                 "refresh_token": refresh, "expires_in": 1800})
        if (form.get("grant_type") != "refresh_token" or form.get("client_id") != CLIENT_ID
                or form.get("client_secret") != CLIENT_SECRET
                or form.get("refresh_token") not in self.refresh_tokens):
            return JSONResponse({"status": "BAD_REFRESH_TOKEN",
                                 "message": "missing or invalid refresh token"}, 400)
        token = f"CJ-access-{next(self._ids)}"
        self.tokens.add(token)
        return JSONResponse({"token_type": "bearer", "access_token": token,
                             "refresh_token": form["refresh_token"], "expires_in": 1800})

    async def _details(self, request: Request) -> Response:
        if (refused := await self._guarded(request)) is not None:
            return refused
        return JSONResponse({"portalId": PORTAL_ID, "accountType": "STANDARD",
                             "timeZone": "Europe/London", "uiDomain": "app.hubspot.com"})

    async def _property(self, request: Request) -> Response:
        if (refused := await self._guarded(request)) is not None:
            return refused
        name = request.path_params["name"]
        if name not in self.properties:
            return self._error(404, "OBJECT_NOT_FOUND", f"Unable to find property {name}")
        return JSONResponse({"name": name, "label": name, "type": "string"})

    async def _create_property(self, request: Request) -> Response:
        if (refused := await self._guarded(request)) is not None:
            return refused
        body = await request.json()
        self.properties.add(body["name"])
        return JSONResponse({**body, "createdAt": self._now()}, 201)

    async def _create_contact(self, request: Request) -> Response:
        if (refused := await self._guarded(request)) is not None:
            return refused
        props = (await request.json()).get("properties", {})
        if (bad := self._unknown(props)) is not None:
            return self._error(400, "VALIDATION_ERROR", f"Property {bad} does not exist")
        email = props.get("email")
        if email and (found := self.by_email(email)) is not None:
            return self._error(409, "CONFLICT", f"Contact already exists. Existing ID: "
                                                f"{found['id']}")
        return JSONResponse(self._record(self._new_contact(props)), 201)

    async def _upsert(self, request: Request) -> Response:
        if (refused := await self._guarded(request)) is not None:
            return refused
        inputs = (await request.json()).get("inputs", [])
        if len(inputs) > 100:
            return self._error(400, "VALIDATION_ERROR", "Batch limit is 100 inputs")
        results = []
        for item in inputs:
            props = dict(item.get("properties", {}))
            if item.get("idProperty") != "email":
                return self._error(400, "VALIDATION_ERROR", "idProperty must be unique")
            if (bad := self._unknown(props)) is not None:
                return self._error(400, "VALIDATION_ERROR", f"Property {bad} does not exist")
            props.setdefault("email", item["id"])
            found = self.by_email(item["id"])
            if found is None:
                results.append(self._record(self._new_contact(props), new=True))
            else:
                self._set(found, props, source="INTEGRATION")
                results.append(self._record(found, new=False))
        return JSONResponse({"status": "COMPLETE", "results": results,
                             "startedAt": self._now(), "completedAt": self._now()})

    async def _batch_create(self, request: Request) -> Response:
        if (refused := await self._guarded(request)) is not None:
            return refused
        inputs = (await request.json()).get("inputs", [])
        if len(inputs) > 100:
            return self._error(400, "VALIDATION_ERROR", "Batch limit is 100 inputs")
        for item in inputs:
            props = item.get("properties", {})
            if (bad := self._unknown(props)) is not None:
                return self._error(400, "VALIDATION_ERROR", f"Property {bad} does not exist")
            if props.get("email") and self.by_email(props["email"]) is not None:
                return self._error(409, "CONFLICT", "Contact already exists")
        results = [self._record(self._new_contact(dict(item.get("properties", {}))), new=None)
                   for item in inputs]
        return JSONResponse({"status": "COMPLETE", "results": results,
                             "startedAt": self._now(), "completedAt": self._now()}, 201)

    async def _batch_update(self, request: Request) -> Response:
        if (refused := await self._guarded(request)) is not None:
            return refused
        inputs = (await request.json()).get("inputs", [])
        results, errors = [], []
        for item in inputs:
            record = self.contacts.get(str(item["id"]))
            if record is None:
                errors.append({"status": "error", "category": "OBJECT_NOT_FOUND",
                               "message": f"Object {item['id']} not found"})
                continue
            self._set(record, item.get("properties", {}), source="INTEGRATION")
            results.append(self._record(record))
        return JSONResponse({"status": "COMPLETE", "results": results, "errors": errors,
                             "numErrors": len(errors)}, 207 if errors else 200)

    def _matches(self, props: dict[str, Any], filters: list[dict[str, Any]]) -> bool:
        for f in filters:
            value = str(props.get(f["propertyName"], ""))
            if f["operator"] == "EQ" and value.lower() != str(f["value"]).lower():
                return False
            if f["operator"] == "IN" and value not in [str(v) for v in f["values"]]:
                return False
            if f["operator"] == "CONTAINS_TOKEN" and str(f["value"]) not in value.split(" ") \
                    and str(f["value"]) not in value.replace("<", " ").replace(">", " ").split():
                return False
        return True

    async def _search(self, request: Request, records: dict[str, dict[str, Any]]) -> Response:
        if (refused := await self._guarded(request)) is not None:
            return refused
        body = await request.json()
        groups = body.get("filterGroups", [])
        found = [self._record(r, new=None) for r in records.values()
                 if any(self._matches(r["properties"], g.get("filters", [])) for g in groups)]
        return JSONResponse({"total": len(found), "results": found[:body.get("limit", 10)]})

    async def _search_contacts(self, request: Request) -> Response:
        return await self._search(request, self.contacts)

    async def _search_notes(self, request: Request) -> Response:
        return await self._search(request, self.notes)

    async def _contact(self, request: Request) -> Response:
        if (refused := await self._guarded(request)) is not None:
            return refused
        record = self.contacts.get(request.path_params["id"])
        if record is None:
            return self._error(404, "OBJECT_NOT_FOUND", "resource not found")
        if request.method == "PATCH":
            self._set(record, (await request.json()).get("properties", {}),
                      source="INTEGRATION")
            return JSONResponse(self._record(record, new=None))
        answer = self._record(record, new=None)
        if "deals" in request.query_params.get("associations", ""):
            answer["associations"] = {"deals": {"results": [
                {"id": d, "type": "contact_to_deal"} for d in record["deals"]]}}
        return JSONResponse(answer)

    async def _create_note(self, request: Request) -> Response:
        if (refused := await self._guarded(request)) is not None:
            return refused
        body = await request.json()
        nid = str(next(self._ids))
        self.notes[nid] = {"id": nid, "properties": dict(body.get("properties", {})),
                           "createdAt": self._now(), "updatedAt": self._now(),
                           "associations": [a["to"]["id"] for a in body.get("associations", [])]}
        return JSONResponse(self._record(self.notes[nid], new=None), 201)

    async def _owner(self, request: Request) -> Response:
        if (refused := await self._guarded(request)) is not None:
            return refused
        owner = self.owners.get(request.path_params["id"])
        if owner is None:
            return self._error(404, "OBJECT_NOT_FOUND", "owner not found")
        return JSONResponse(owner)

    async def _read_deals(self, request: Request) -> Response:
        if (refused := await self._guarded(request)) is not None:
            return refused
        ids = [i["id"] for i in (await request.json()).get("inputs", [])]
        return JSONResponse({"status": "COMPLETE", "results": [
            {"id": d, "properties": self.deals[d]} for d in ids if d in self.deals]})
