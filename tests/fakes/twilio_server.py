"""A local server that answers like Twilio's REST API, and the webhooks Twilio would send.

It follows Twilio's public documentation (Message resource, Media resource, errors): Messages
create and fetch, media downloads behind HTTP basic auth (answered, like Twilio, with a
redirect to the media store), every request recorded, failures queued on demand. The real
twilio client talks to it over loopback; webhooks are signed with the real request validator.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from hub.types import utcnow
from tests.services import LoopbackServer, free_port

ACCOUNT_SID = "AC3f1e5b8c0d2a4e6f8091a2b3c4d5e6f7"
AUTH_TOKEN = "9c1f0e8d7b6a5c4d3e2f1a0b9c8d7e6f"
API = "/2010-04-01/Accounts/{account}"


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _error(status: int, code: int, message: str) -> JSONResponse:
    """Twilio's error body."""
    return JSONResponse(
        {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
         "status": status},
        status_code=status,
    )


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    form: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class FakeTwilio:
    """Twilio's REST API on a loopback port."""

    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    port: int = field(default_factory=free_port)
    requests: list[Recorded] = field(default_factory=list)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    media: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    # Answers to the next Messages create calls: (HTTP status, Twilio error code or None).
    failures: list[tuple[int, int | None, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        app = Starlette(routes=[
            Route(API + "/Messages.json", self._create, methods=["POST"]),
            Route(API + "/Messages/{sid}.json", self._fetch, methods=["GET"]),
            Route(API + "/Messages/{message}/Media/{media}", self._media, methods=["GET"]),
            Route("/media-store/{media}", self._store, methods=["GET"]),
        ])
        self._served = LoopbackServer(app, self.port)

    @property
    def base_url(self) -> str:
        """What an inbox's api_base_url is set to."""
        return f"http://127.0.0.1:{self.port}"

    def settings(self, **extra: str) -> dict[str, str]:
        """Inbox settings pointing at this fake."""
        return {"account_sid": self.account_sid, "auth_token": self.auth_token,
                "api_base_url": self.base_url, **extra}

    async def start(self) -> None:
        """Serve until stop()."""
        await self._served.start()

    async def stop(self) -> None:
        """Stop serving."""
        await self._served.stop()

    async def __aenter__(self) -> FakeTwilio:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def fail_next(self, status: int, code: int | None = None, message: str = "") -> None:
        """Make the next Messages create fail (a Twilio error, or a bare 429/5xx)."""
        self.failures.append((status, code, message))

    def add_media(self, content_type: str, data: bytes, message_sid: str | None = None) -> str:
        """Keep a file as Twilio does for an incoming message; its MediaUrl."""
        media_sid = _sid("ME")
        self.media[media_sid] = (content_type, data)
        message_sid = message_sid or _sid("MM")
        return f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Messages/" \
               f"{message_sid}/Media/{media_sid}"

    @property
    def created(self) -> list[dict[str, list[str]]]:
        """The form of every Messages create request, in order (refused ones too)."""
        return [r.form for r in self.requests
                if r.method == "POST" and r.path.endswith("/Messages.json")]

    @property
    def media_requests(self) -> list[Recorded]:
        """Every media download request."""
        return [r for r in self.requests if "/Media/" in r.path or "/media-store/" in r.path]

    async def wait_created(self, count: int, timeout: float = 15) -> list[dict[str, list[str]]]:
        """Wait until `count` create requests arrived."""
        deadline = time.monotonic() + timeout
        while len(self.created) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} sends, got {len(self.created)}")
            await asyncio.sleep(0.02)
        return self.created

    async def _record(self, request: Request) -> Recorded:
        body = (await request.body()).decode()
        entry = Recorded(request.method, request.url.path, parse_qs(body, keep_blank_values=True),
                         dict(request.headers))
        self.requests.append(entry)
        return entry

    def _authorized(self, request: Request) -> bool:
        if request.path_params.get("account") != self.account_sid:
            return False
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            given = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        expected = f"{self.account_sid}:{self.auth_token}"
        return scheme.lower() == "basic" and secrets.compare_digest(given, expected)

    async def _create(self, request: Request) -> Response:
        recorded = await self._record(request)
        if not self._authorized(request):
            return _error(401, 20003, "Authenticate")
        if self.failures:
            status, code, message = self.failures.pop(0)
            if code is None:
                return Response("Service unavailable" if status >= 500 else "Too Many Requests",
                                status_code=status)
            return _error(status, code, message or f"Error {code}")
        form = {k: v[-1] for k, v in recorded.form.items()}
        to, sender = form.get("To", ""), form.get("From", "")
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not sender and not form.get("MessagingServiceSid"):
            return _error(400, 21603, "A 'From' phone number is required.")
        if not (form.get("Body") or form.get("ContentSid") or form.get("MediaUrl")):
            return _error(400, 21602, "Message body is required.")
        if sender and to.startswith("whatsapp:") != sender.startswith("whatsapp:"):
            return _error(400, 21910, "Invalid From and To pair. From and To should be of "
                                      "the same channel")
        sid = _sid("SM")
        now = format_datetime(utcnow(), usegmt=True)
        resource = {
            "account_sid": self.account_sid, "api_version": "2010-04-01",
            "body": form.get("Body", ""), "date_created": now, "date_sent": None,
            "date_updated": now, "direction": "outbound-api", "error_code": None,
            "error_message": None, "from": sender or None,
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": str(len(recorded.form.get("MediaUrl", []))), "num_segments": "1",
            "price": None, "price_unit": "USD", "sid": sid,
            "status": "queued" if sender else "accepted",
            "subresource_uris": {
                "media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"},
            "to": to, "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        self.messages[sid] = resource
        return JSONResponse(resource, status_code=201)

    async def _fetch(self, request: Request) -> Response:
        await self._record(request)
        if not self._authorized(request):
            return _error(401, 20003, "Authenticate")
        resource = self.messages.get(request.path_params["sid"])
        if resource is None:
            return _error(404, 20404, f"The requested resource {request.url.path} was not found")
        return JSONResponse(resource)

    async def _media(self, request: Request) -> Response:
        await self._record(request)
        if not self._authorized(request):
            return _error(401, 20003, "Authenticate")
        if request.path_params["media"] not in self.media:
            return _error(404, 20404, f"The requested resource {request.url.path} was not found")
        # Twilio hands media out through a short-lived link to its media store.
        return RedirectResponse(f"{self.base_url}/media-store/{request.path_params['media']}",
                                status_code=307)

    async def _store(self, request: Request) -> Response:
        await self._record(request)
        found = self.media.get(request.path_params["media"])
        if found is None:
            return Response(status_code=404)
        return Response(found[1], media_type=found[0])


# --------------------------------------------------------------------------- webhooks


def inbound_fields(
    *,
    sid: str | None = None,
    sender: str,
    to: str,
    body: str = "",
    profile_name: str | None = None,
    media: Sequence[tuple[str, str]] = (),
    account_sid: str = ACCOUNT_SID,
    **extra: str,
) -> dict[str, str]:
    """The fields of Twilio's incoming-message webhook (WhatsApp when `sender` says so)."""
    sid = sid or _sid("MM" if media else "SM")
    fields = {
        "SmsMessageSid": sid, "NumMedia": str(len(media)), "SmsSid": sid,
        "SmsStatus": "received", "Body": body, "To": to, "NumSegments": "1",
        "MessageSid": sid, "AccountSid": account_sid, "From": sender, "ApiVersion": "2010-04-01",
    }
    if sender.startswith("whatsapp:"):
        fields |= {"WaId": sender.removeprefix("whatsapp:+"), "ReferralNumMedia": "0",
                   "MessageType": "image" if media else "text"}
        if profile_name:
            fields["ProfileName"] = profile_name
    for n, (url, content_type) in enumerate(media):
        fields[f"MediaUrl{n}"] = url
        fields[f"MediaContentType{n}"] = content_type
    return fields | extra


def status_fields(
    sid: str,
    status: str,
    *,
    sender: str,
    to: str,
    error_code: int | None = None,
    account_sid: str = ACCOUNT_SID,
) -> dict[str, str]:
    """The fields of a StatusCallback request for one of our messages."""
    fields = {"SmsSid": sid, "SmsStatus": status, "MessageStatus": status, "To": to,
              "MessageSid": sid, "AccountSid": account_sid, "From": sender,
              "ApiVersion": "2010-04-01"}
    if to.startswith("whatsapp:"):
        fields |= {"ChannelPrefix": "whatsapp", "ChannelToAddress": to.removeprefix("whatsapp:"),
                   "ChannelInstallSid": "XE" + "0" * 32}
    if error_code is not None:
        fields["ErrorCode"] = str(error_code)
    return fields


def signed(url: str, fields: dict[str, str], auth_token: str = AUTH_TOKEN) -> dict[str, str]:
    """Headers of a webhook POST as Twilio signs it for `url`."""
    return {
        "X-Twilio-Signature": RequestValidator(auth_token).compute_signature(url, fields),
        "Content-Type": "application/x-www-form-urlencoded",
        "I-Twilio-Idempotency-Token": secrets.token_hex(16),
    }


def form_body(fields: dict[str, str]) -> bytes:
    """A webhook body, form-encoded as Twilio sends it."""
    return urlencode(fields).encode()
