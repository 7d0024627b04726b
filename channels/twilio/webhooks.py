"""Twilio's messaging webhooks: the signature check, then messages and status callbacks.

Twilio POSTs form-encoded fields and signs them with the account's auth token over the URL
it called plus the sorted fields (X-Twilio-Signature, HMAC-SHA1). The URL is the public one
the admin configured, so the check holds behind a TLS-terminating proxy. Status callbacks
reach the same URL with `?kind=status`, the StatusCallback Switchboard gives on every send;
a callback configured in the Twilio console without it is recognised by its fields.
"""

from __future__ import annotations

import math
from urllib.parse import parse_qs, parse_qsl, quote, urlsplit

from twilio.request_validator import RequestValidator

from channels.base import BadPayload, Parsed, VerificationFailed, WebhookRequest
from channels.twilio.errors import explain, parse_code
from hub.identity import InvalidIdentity, phone_identity
from hub.types import DeliveryStatus, InboundMessage, StatusUpdate, utcnow

SIGNATURE_HEADER = "x-twilio-signature"
EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
MAX_MEDIA = 10  # Twilio's own limit per message (MMS); WhatsApp sends one

# Twilio's MessageStatus values; None: a step before "sent" that changes nothing visible.
STATUSES: dict[str, DeliveryStatus | None] = {
    "accepted": None,
    "scheduled": None,
    "queued": None,
    "sending": None,
    "delivery_unknown": None,
    "sent": "sent",
    "delivered": "delivered",
    "partially_delivered": "delivered",
    "read": "read",
    "failed": "failed",
    "undelivered": "failed",
    "canceled": "failed",
}


def form_fields(body: bytes) -> dict[str, str]:
    """The fields of a form-encoded body; ValueError when it is not UTF-8 text."""
    # A repeated field keeps its last value only: its signature then fails, safely.
    return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))


def verify(request: WebhookRequest) -> None:
    """Refuse (403) a webhook without a valid X-Twilio-Signature for this inbox's token."""
    token = str(request.inbox_settings.get("auth_token") or "")
    if not token:
        raise VerificationFailed("inbox has no auth_token configured", status=403)
    signature = request.headers.get(SIGNATURE_HEADER, "")
    if not signature:
        raise VerificationFailed("missing X-Twilio-Signature", status=403)
    try:
        fields = form_fields(request.body)
    except ValueError:
        raise VerificationFailed("body is not form data", status=403) from None
    # The validator compares in constant time and tries the URL with and without its port.
    if not RequestValidator(token).validate(request.url, fields, signature):
        raise VerificationFailed("X-Twilio-Signature does not match", status=403)


def parse(request: WebhookRequest, channel: str) -> Parsed:
    """A verified webhook as an inbound message or a status update (no I/O)."""
    try:
        fields = form_fields(request.body)
    except ValueError:
        raise BadPayload("body: not UTF-8 form data") from None
    query = parse_qs(urlsplit(request.url).query)
    if query.get("kind") == ["status"] or _looks_like_status(fields):
        return _status(request.inbox_id, channel, fields)
    return [_message(request.inbox_id, channel, fields)]


def _looks_like_status(fields: dict[str, str]) -> bool:
    return "MessageStatus" in fields and "Body" not in fields and "NumMedia" not in fields


def _status(inbox_id: int, channel: str, fields: dict[str, str]) -> Parsed:
    sid = fields.get("MessageSid") or fields.get("SmsSid") or ""
    raw = (fields.get("MessageStatus") or fields.get("SmsStatus") or "").strip().lower()
    if not sid:
        raise BadPayload("MessageSid: missing")
    if raw not in STATUSES:
        raise BadPayload(f"MessageStatus: unknown value {raw[:40]!r}")
    status = STATUSES[raw]
    if status is None:
        return []
    reason = None
    if status == "failed":
        code = parse_code(fields.get("ErrorCode"))
        if raw == "canceled":
            reason = "the message was canceled before Twilio sent it"
        elif code is None:
            reason = f"Twilio reported the message {raw} without an error code"
        else:
            reason = explain(code, fields.get("ErrorMessage", "").strip()[:300])
    return [
        StatusUpdate(
            channel=channel,
            inbox_id=inbox_id,
            external_id=sid[:255],
            status=status,
            reason=reason,
            received_at=utcnow(),
        )
    ]


def _message(inbox_id: int, channel: str, fields: dict[str, str]) -> InboundMessage:
    sid = fields.get("MessageSid") or fields.get("SmsMessageSid") or fields.get("SmsSid") or ""
    if not sid:
        raise BadPayload("MessageSid: missing")
    sender = fields.get("From", "")
    if not sender:
        raise BadPayload("From: missing")
    name = fields.get("ProfileName", "").strip()[:200] or None
    try:
        identity = phone_identity(sender, name)
    except InvalidIdentity as exc:
        raise BadPayload(f"From: {exc}") from None
    metadata = _media(fields)
    parts = [fields.get("Body", "").strip(), _location(fields)]
    text = "\n".join(p for p in parts if p)
    if not text and not metadata:
        text = f"[a {fields.get('MessageType') or 'message'} Switchboard cannot show]"
    return InboundMessage(
        channel=channel,
        inbox_id=inbox_id,
        external_id=sid[:255],
        sender=identity,
        # A WhatsApp reply to one of our messages names it: it threads into its conversation.
        in_reply_to=fields.get("OriginalRepliedMessageSid") or None,
        text=text,
        received_at=utcnow(),
        metadata=metadata,
    )


def _media(fields: dict[str, str]) -> dict[str, str]:
    """Where the message's files are: the worker downloads them (fetch_media)."""
    try:
        count = int(fields.get("NumMedia") or 0)
    except ValueError:
        raise BadPayload("NumMedia: not a number") from None
    found: dict[str, str] = {}
    index = 0
    for n in range(min(max(count, 0), MAX_MEDIA)):
        url = fields.get(f"MediaUrl{n}", "").strip()
        if not url:
            continue
        found[f"media_{index}_url"] = url
        found[f"media_{index}_type"] = fields.get(f"MediaContentType{n}", "").strip()[:255]
        index += 1
    if index:
        found["media_count"] = str(index)
    return found


def _location(fields: dict[str, str]) -> str:
    """A shared location as words and a map link (empty when the message has none)."""
    try:
        lat, lon = float(fields["Latitude"]), float(fields["Longitude"])
    except (KeyError, ValueError):
        return ""
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90
            and -180 <= lon <= 180):
        return ""
    place = " — ".join(
        v for v in (fields.get("Label", "").strip(), fields.get("Address", "").strip()) if v
    )
    link = "https://www.google.com/maps/search/?api=1&query=" + quote(f"{lat:.6f},{lon:.6f}")
    return f"📍 {place or 'Shared location'} ({lat:.6f}, {lon:.6f})\n{link}"


def status_callback_url(public_url: str, channel: str, inbox_id: int) -> str:
    """The StatusCallback URL of an inbox: its webhook, marked as a status callback."""
    return f"{public_url}/webhooks/{channel}/{inbox_id}?kind=status"



