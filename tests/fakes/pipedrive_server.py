"""A local server that answers like Pipedrive's API v1, and sends its webhooks v2.

It follows Pipedrive's public documentation: the API token (`x-api-token` header or
`api_token` parameter; 401 `{"success": false, "error": "unauthorized access",
"errorCode": 401}`), `GET /v1/users/me`, persons (`POST /v1/persons` and `PUT
/v1/persons/{id}` with `email` / `phone` as lists of `{value, primary, label}`, `GET
/v1/persons/{id}` with `owner_id` / `org_id` objects and `open_deals_count`,
`GET /v1/persons/search?term&fields&exact_match` answering `data.items[].item`,
`GET /v1/persons/{id}/deals?status=open`), notes (`POST /v1/notes`,
`GET /v1/notes?person_id`). Every person change, whoever made it, is sent as a webhooks v2
`change` of entity `person` (`meta`, `data`, `previous`), with the subscription's HTTP Basic
credentials.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.services import LoopbackServer, free_port

TOKEN = "6c1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c"
COMPANY = "acme-trading"
HOOK_USER = "switchboard"
HOOK_PASSWORD = "hook-password-0123456789"


@dataclass
class FakePipedrive:
    """Pipedrive on a loopback port."""

    port: int = field(default_factory=free_port)
    tokens: set[str] = field(default_factory=lambda: {TOKEN})
    persons: dict[int, dict[str, Any]] = field(default_factory=dict)
    notes: dict[int, dict[str, Any]] = field(default_factory=dict)
    deals: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    hits: list[tuple[float, str, str]] = field(default_factory=list)
    webhook_url: str | None = None
    webhook_answers: list[int] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(100))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        routes = [
            Route("/v1/users/me", self._me, methods=["GET"]),
            Route("/v1/persons", self._create, methods=["POST"]),
            Route("/v1/persons/search", self._search, methods=["GET"]),
            Route("/v1/persons/{id:int}", self._person, methods=["GET", "PUT"]),
            Route("/v1/persons/{id:int}/deals", self._deals, methods=["GET"]),
            Route("/v1/notes", self._notes, methods=["GET", "POST"]),
        ]
        self._tasks: set[asyncio.Task[None]] = set()
        self._server = LoopbackServer(Starlette(routes=routes), self.port)
        await self._server.start()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self._server.stop()

    def edit(self, person_id: int, **changes: Any) -> None:
        """Change a person as a Pipedrive user would (a webhook follows)."""
        self._change(self.persons[person_id], changes, source="app")

    def by_email(self, email: str) -> dict[str, Any] | None:
        return next((p for p in self.persons.values()
                     if any(e["value"] == email for e in p.get("email", []))), None)

    def writes(self) -> int:
        return sum(1 for _, method, path in self.hits
                   if method in ("POST", "PUT") and path.startswith("/v1/persons"))

    # -- plumbing ----------------------------------------------------------------------

    def _gate(self, request: Request) -> JSONResponse | None:
        self.hits.append((time.monotonic(), request.method, request.url.path))
        token = request.headers.get("x-api-token") or request.query_params.get("api_token")
        if token not in self.tokens:
            return JSONResponse({"success": False, "error": "unauthorized access",
                                 "errorCode": 401}, 401)
        return None

    def _ok(self, data: Any, status: int = 200, **extra: Any) -> JSONResponse:
        return JSONResponse({"success": True, "data": data, **extra}, status)

    def _change(self, person: dict[str, Any], changes: dict[str, Any], *, source: str) -> None:
        previous = {k: person.get(k) for k, v in changes.items() if person.get(k) != v}
        if not previous:
            return
        person.update(changes)
        person["update_time"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        if self.webhook_url is None:
            return
        payload = {
            "meta": {"action": "change", "entity": "person", "entity_id": str(person["id"]),
                     "id": f"{next(self._ids)}-hook", "version": "2.0",
                     "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                     "change_source": source, "host": f"{COMPANY}.pipedrive.com",
                     "company_id": 12882925, "user_id": 18487521, "attempt": 1},
            "data": {"id": person["id"], "name": person["name"],
                     "emails": person.get("email", []), "phones": person.get("phone", []),
                     "owner_id": 18487521},
            "previous": {("emails" if k == "email" else "phones" if k == "phone" else k): v
                         for k, v in previous.items()},
        }
        task = asyncio.get_running_loop().create_task(self._deliver(payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, payload: dict[str, Any]) -> None:
        assert self.webhook_url is not None
        auth = base64.b64encode(f"{HOOK_USER}:{HOOK_PASSWORD}".encode()).decode()
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(self.webhook_url, content=json.dumps(payload).encode(),
                                       headers={"content-type": "application/json",
                                                "authorization": f"Basic {auth}",
                                                "user-agent": "Pipedrive-Webhook"})
            self.webhook_answers.append(answer.status_code)

    # -- endpoints ---------------------------------------------------------------------

    async def _me(self, request: Request) -> Response:
        if (refused := self._gate(request)) is not None:
            return refused
        return self._ok({"id": 18487521, "name": "Sam Seller", "company_id": 12882925,
                         "company_domain": COMPANY})

    async def _create(self, request: Request) -> Response:
        if (refused := self._gate(request)) is not None:
            return refused
        body = await request.json()
        if not body.get("name"):
            return JSONResponse({"success": False, "error": "Name must be given."}, 400)
        pid = next(self._ids)
        person = {"id": pid, "name": body["name"], "email": body.get("email", []),
                  "phone": body.get("phone", []), "owner_id": {"id": 18487521,
                                                              "name": "Sam Seller"},
                  "org_id": None, "open_deals_count": 0}
        self.persons[pid] = person
        return self._ok(person, 201)

    async def _person(self, request: Request) -> Response:
        if (refused := self._gate(request)) is not None:
            return refused
        person = self.persons.get(request.path_params["id"])
        if person is None:
            return JSONResponse({"success": False, "error": "Person not found"}, 404)
        if request.method == "PUT":
            self._change(person, await request.json(), source="api")
        return self._ok(person)

    async def _search(self, request: Request) -> Response:
        if (refused := self._gate(request)) is not None:
            return refused
        term = request.query_params.get("term", "")
        field_name = request.query_params.get("fields", "")
        found = [p for p in self.persons.values()
                 if any(v["value"] == term for v in p.get(field_name, []))]
        return self._ok({"items": [{"result_score": 1.0, "item": {
            "id": p["id"], "type": "person", "name": p["name"],
            "emails": [e["value"] for e in p.get("email", [])],
            "phones": [e["value"] for e in p.get("phone", [])]}} for p in found[:1]]})

    async def _deals(self, request: Request) -> Response:
        if (refused := self._gate(request)) is not None:
            return refused
        return self._ok(self.deals.get(request.path_params["id"], []) or None)

    async def _notes(self, request: Request) -> Response:
        if (refused := self._gate(request)) is not None:
            return refused
        if request.method == "GET":
            person = int(request.query_params.get("person_id", "0"))
            return self._ok([n for n in self.notes.values() if n["person_id"] == person])
        body = await request.json()
        if int(body.get("person_id", 0)) not in self.persons:
            return JSONResponse({"success": False, "error": "Person not found"}, 400)
        nid = next(self._ids)
        self.notes[nid] = {"id": nid, "content": body["content"],
                           "person_id": int(body["person_id"])}
        return self._ok(self.notes[nid], 201)
