"""The `api` channel: a generic signed inbound webhook, and replies POSTed to a set URL.

Signature (both directions): `X-Switchboard-Timestamp: <unix seconds>` and
`X-Switchboard-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`.
The timestamp bounds replays; the comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from channels.base import (
    BadPayload,
    Parsed,
    PermanentSendError,
    SettingSpec,
    TransientSendError,
    VerificationFailed,
    WebhookRequest,
)
from hub.fetch import TargetRefused
from hub.identity import InvalidIdentity, email_identity, phone_identity
from hub.security import constant_time_equal, file_link
from hub.types import (
    Capabilities,
    DeliveryStatus,
    Identity,
    InboundMessage,
    OutboundMessage,
    SendReceipt,
    StatusUpdate,
    utcnow,
)

SIGNATURE_HEADER = "x-switchboard-signature"
TIMESTAMP_HEADER = "x-switchboard-timestamp"
MAX_ITEMS = 100


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value for a body sent at `timestamp`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def signed_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """Headers that make `body` a valid signed request."""
    timestamp = int(now if now is not None else time.time())
    return {
        "X-Switchboard-Timestamp": str(timestamp),
        "X-Switchboard-Signature": sign(secret, timestamp, body),
        "Content-Type": "application/json",
    }


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Sender(_Strict):
    id: str | None = Field(default=None, min_length=1, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)

    @model_validator(mode="after")
    def _some_identity(self) -> _Sender:
        if not (self.id or self.email or self.phone):
            raise ValueError("a sender needs an id, an email or a phone")
        return self


class _Message(_Strict):
    id: str = Field(min_length=1, max_length=255)
    sender: _Sender
    text: str = Field(min_length=1, max_length=20_000)
    thread: str | None = Field(default=None, max_length=255)
    in_reply_to: str | None = Field(default=None, max_length=255)
    timestamp: datetime | None = None
    subject: str | None = Field(default=None, max_length=998)
    # The customer's language (a tag like "de" or "pt-BR"): routing rules may match it.
    language: str | None = Field(default=None, min_length=1, max_length=35,
                                 pattern=r"^[A-Za-z]{1,8}([_-][A-Za-z0-9]{1,8})*$")


class _Status(_Strict):
    message_id: str = Field(min_length=1, max_length=255)
    status: DeliveryStatus
    reason: str | None = Field(default=None, max_length=1000)


class _Payload(_Strict):
    messages: list[_Message] = Field(default_factory=list, max_length=MAX_ITEMS)
    statuses: list[_Status] = Field(default_factory=list, max_length=MAX_ITEMS)

    @model_validator(mode="after")
    def _not_empty(self) -> _Payload:
        if not self.messages and not self.statuses:
            raise ValueError("send at least one of 'messages' or 'statuses'")
        return self


def _metadata(item: _Message) -> dict[str, str]:
    found = {"subject": item.subject, "language": item.language}
    return {key: value for key, value in found.items() if value}


class ApiChannel:
    """Generic HTTP channel: any system that can sign a JSON POST can talk to Switchboard."""

    kind: ClassVar[str] = "api"
    display_name: ClassVar[str] = "API"
    settings: ClassVar[tuple[SettingSpec, ...]] = (
        SettingSpec("secret", "shared HMAC-SHA256 secret of signed requests", secret=True),
        SettingSpec("outbound_url", "URL replies are POSTed to", required=False,
                    form="url"),
    )
    capabilities: ClassVar[Capabilities] = Capabilities(attachments=True)

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        tolerance_seconds: int = 300,
        public_url: str = "http://localhost:8000",
    ) -> None:
        self._http = http
        self._tolerance = tolerance_seconds
        self._public_url = public_url.rstrip("/")

    def file_link_key(self, inbox_settings: Mapping[str, Any]) -> str | None:
        """The inbox's shared secret also signs the links to an agent's attached files."""
        return str(inbox_settings.get("secret") or "") or None

    def verify(self, request: WebhookRequest) -> None:
        """Check the HMAC signature and the timestamp's freshness."""
        secret = str(request.inbox_settings.get("secret") or "")
        given = request.headers.get(SIGNATURE_HEADER, "")
        stamp = request.headers.get(TIMESTAMP_HEADER, "")
        if not secret:
            raise VerificationFailed("inbox has no secret configured", status=403)
        if not given or not stamp.isdigit():
            raise VerificationFailed("missing signature or timestamp")
        expected = sign(secret, int(stamp), request.body)
        if not constant_time_equal(given, expected):
            raise VerificationFailed("signature does not match", status=403)
        if abs(time.time() - int(stamp)) > self._tolerance:
            raise VerificationFailed("timestamp outside the allowed window", status=403)

    def parse(self, request: WebhookRequest) -> Parsed:
        """The messages and statuses of a verified request."""
        try:
            payload = _Payload.model_validate_json(request.body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise BadPayload(f"{where}: {first['msg']}") from None
        received = utcnow()
        parsed: Parsed = []
        for item in payload.messages:
            parsed.append(
                InboundMessage(
                    channel=self.kind,
                    inbox_id=request.inbox_id,
                    external_id=item.id,
                    sender=_identity(request.inbox_id, item.sender),
                    thread_hint=item.thread,
                    in_reply_to=item.in_reply_to,
                    text=item.text,
                    provider_ts=item.timestamp,
                    received_at=received,
                    metadata=_metadata(item),
                )
            )
        for status in payload.statuses:
            parsed.append(
                StatusUpdate(
                    channel=self.kind,
                    inbox_id=request.inbox_id,
                    external_id=status.message_id,
                    status=status.status,
                    reason=status.reason,
                    received_at=received,
                )
            )
        return parsed

    async def send(
        self, message: OutboundMessage, inbox_settings: Mapping[str, Any]
    ) -> SendReceipt:
        """POST the reply, signed, to the inbox's outbound URL."""
        url = str(inbox_settings.get("outbound_url") or "")
        if not url:
            raise PermanentSendError("this API inbox has no outbound_url configured")
        secret = str(inbox_settings.get("secret", ""))
        body = json.dumps(
            {
                "id": message.idempotency_key,
                "message_id": message.message_id,
                "conversation_id": message.conversation_id,
                "recipient": {
                    "kind": message.recipient.kind,
                    "value": message.recipient.value,
                    "name": message.recipient.display_name,
                },
                "text": message.text,
                "html": message.html,
                "in_reply_to": message.in_reply_to,
                # Each file with an expiring link to download it (no session needed).
                "attachments": [
                    {**ref.model_dump(mode="json"),
                     "url": file_link(self._public_url, secret, ref.id)}
                    for ref in message.attachments
                ],
            }
        ).encode()
        headers = signed_headers(secret, body)
        headers["Idempotency-Key"] = message.idempotency_key
        try:
            response = await self._http.post(url, content=body, headers=headers, timeout=10)
        except TargetRefused as exc:
            raise PermanentSendError(f"{url} may not be reached: {exc}") from None
        except httpx.HTTPError as exc:
            raise TransientSendError(f"could not reach {url}: {type(exc).__name__}") from exc
        if response.status_code in (408, 425, 429) or response.status_code >= 500:
            raise TransientSendError(f"{url} answered {response.status_code}")
        if response.status_code >= 400:
            # The status and its standard reason only: what the target says in its body is
            # never shown to agents (an outbound URL must not become a way to read a service).
            raise PermanentSendError(f"{url} refused the message: {response.status_code} "
                                     f"{response.reason_phrase}")
        external_id = message.idempotency_key
        try:
            answer = response.json()
            if isinstance(answer, dict) and isinstance(answer.get("id"), str) and answer["id"]:
                external_id = answer["id"][:255]
        except ValueError:
            pass  # a 2xx without a JSON body still means accepted
        return SendReceipt(external_id=external_id, status="sent")


def _identity(inbox_id: int, sender: _Sender) -> Identity:
    try:
        if sender.phone:
            return phone_identity(sender.phone, sender.name)
        if sender.email:
            return email_identity(sender.email, sender.name)
    except InvalidIdentity as exc:
        raise BadPayload(f"sender: {exc}") from None
    # Ids are the sending system's own: scope them to the inbox so two systems never collide.
    return Identity(kind="api", value=f"{inbox_id}:{sender.id}", display_name=sender.name)
