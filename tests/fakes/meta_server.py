"""A local server that answers like Meta's Graph API for Messenger and Instagram messaging.

It follows Meta's public documentation: the Send API (`POST /{page-id}/messages` →
`{"recipient_id", "message_id"}`), page subscriptions (`/{page-id}/subscribed_apps`), the
User Profile API (`GET /{psid}?fields=first_name,last_name,profile_pic`), node reads
(`GET /{id}?fields=id,name`), and the error shape `{"error": {"message", "type", "code",
"error_subcode", "fbtrace_id"}}` (190: bad token; 10/2018278: outside the 24-hour window;
551: person unavailable; 4/613: rate limits). A CDN path serves attachment files. Webhooks
are signed as Meta signs them (X-Hub-Signature-256 over the raw body with the app secret).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.services import LoopbackServer, free_port

PAGE_ID = "104857600123456"
IG_ACCOUNT_ID = "17841400000000001"
PAGE_TOKEN = "EAAGm0PX4ZCpsBAFakePageToken0123456789"
APP_SECRET = "3f1e5b8c0d2a4e6f8091a2b3c4d5e6f7"
VERSION = "v21.0"


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, str]
    body: dict[str, Any] | None
    token: str


@dataclass
class FakeGraph:
    """The Graph API on a loopback port."""

    port: int = field(default_factory=free_port)
    calls: list[Call] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    subscribed: dict[str, str] = field(default_factory=dict)  # page id -> fields
    people: dict[str, dict[str, str]] = field(default_factory=lambda: {
        "6001234567890123": {"first_name": "Ada", "last_name": "Lovelace",
                             "profile_pic": "https://cdn.example/ada.jpg"},
        "17850000000000002": {"name": "Grace Hopper", "username": "grace.h",
                              "profile_pic": "https://cdn.example/grace.jpg"}})
    # People whose 24-hour window is closed: a RESPONSE to them is refused (10/2018278).
    window_closed: set[str] = field(default_factory=set)
    files: dict[str, bytes] = field(default_factory=dict)
    # Answers to the next Send API calls: (HTTP status, code, subcode, message).
    failures: list[tuple[int, int, int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        base = f"/{VERSION}"
        app = Starlette(routes=[
            Route(base + "/{node}/messages", self._messages, methods=["POST"]),
            Route(base + "/{node}/subscribed_apps", self._subscribed_apps,
                  methods=["POST", "DELETE"]),
            Route(base + "/{node}", self._node, methods=["GET"]),
            Route("/cdn/{name}", self._cdn, methods=["GET"]),
        ])
        self._served = LoopbackServer(app, self.port)

    @property
    def url(self) -> str:
        """What an inbox's graph_api_url is set to."""
        return f"http://127.0.0.1:{self.port}/{VERSION}"

    def cdn(self, name: str, data: bytes) -> str:
        """Serve a file as Meta's CDN would; its URL."""
        self.files[name] = data
        return f"http://127.0.0.1:{self.port}/cdn/{name}"

    async def start(self) -> None:
        await self._served.start()

    async def stop(self) -> None:
        await self._served.stop()

    async def _record(self, request: Request) -> tuple[Call, Response | None]:
        body = None
        if request.method == "POST" and request.headers.get("content-type", "").startswith(
                "application/json"):
            body = json.loads(await request.body())
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        call = Call(request.method, request.url.path, dict(request.query_params), body, token)
        self.calls.append(call)
        if token != PAGE_TOKEN:
            return call, _error(400, 190, 0, "Invalid OAuth access token - Cannot parse "
                                "access token", "OAuthException")
        return call, None

    async def _node(self, request: Request) -> Response:
        call, refused = await self._record(request)
        if refused:
            return refused
        node = request.path_params["node"]
        if node == PAGE_ID:
            return JSONResponse({"id": PAGE_ID, "name": "Acme Garden Supplies"})
        if node == IG_ACCOUNT_ID:
            return JSONResponse({"id": IG_ACCOUNT_ID, "username": "acme.garden",
                                 "name": "Acme Garden"})
        if node in self.people:
            fields = call.params.get("fields", "").split(",")
            return JSONResponse({k: v for k, v in self.people[node].items() if k in fields})
        return _error(400, 100, 33, f"Unsupported get request. Object with ID '{node}' does "
                      "not exist", "GraphMethodException")

    async def _subscribed_apps(self, request: Request) -> Response:
        call, refused = await self._record(request)
        if refused:
            return refused
        node = request.path_params["node"]
        if request.method == "DELETE":
            self.subscribed.pop(node, None)
        else:
            self.subscribed[node] = call.params.get("subscribed_fields", "")
        return JSONResponse({"success": True})

    async def _messages(self, request: Request) -> Response:
        call, refused = await self._record(request)
        if refused:
            return refused
        body = call.body or {}
        if self.failures:
            status, code, subcode, message = self.failures.pop(0)
            return _error(status, code, subcode, message)
        recipient = str((body.get("recipient") or {}).get("id"))
        if recipient in self.window_closed and body.get("messaging_type") == "RESPONSE":
            return _error(400, 10, 2018278, "(#10) This message is sent outside of allowed "
                          "window.")
        if body.get("messaging_type") == "MESSAGE_TAG" and body.get("tag") != "HUMAN_AGENT":
            return _error(400, 100, 2018280, "(#100) Invalid tag")
        self.sent.append({"node": request.path_params["node"], **body})
        return JSONResponse({"recipient_id": recipient,
                             "message_id": "m_" + secrets.token_urlsafe(24)})

    async def _cdn(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.files:
            return Response(status_code=404)
        return Response(self.files[name], media_type="image/jpeg")


def _error(status: int, code: int, subcode: int, message: str,
           kind: str = "OAuthException") -> JSONResponse:
    error: dict[str, Any] = {"message": message, "type": kind, "code": code,
                             "fbtrace_id": "AbCdEf" + secrets.token_hex(4)}
    if subcode:
        error["error_subcode"] = subcode
    return JSONResponse({"error": error}, status_code=status)


def signature(body: bytes, secret: str = APP_SECRET) -> str:
    """X-Hub-Signature-256 as Meta computes it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def page_event(account: str, *events: dict[str, Any], obj: str = "page") -> dict[str, Any]:
    """A webhook POST body with one entry."""
    now = int(time.time() * 1000)
    return {"object": obj, "entry": [{"id": account, "time": now, "messaging": list(events)}]}


def text_event(sender: str, account: str, mid: str, text: str, **message: Any
               ) -> dict[str, Any]:
    """A `messaging` event with a text message from a person to the page / account."""
    return {"sender": {"id": sender}, "recipient": {"id": account},
            "timestamp": int(time.time() * 1000),
            "message": {"mid": mid, "text": text, **message}}
