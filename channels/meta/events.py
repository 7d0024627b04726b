"""Meta webhook events (Messenger Platform and Instagram Messaging) as inbound messages.

Pure: no I/O. A POST carries `{"object": "page"|"instagram", "entry": [{"id": <page or
Instagram account id>, "time": ..., "messaging": [event, ...]}]}`; each entry goes to the
inbox of its account (`routes`), an entry of an account no inbox here serves is dropped
and logged. Per event:

- `message`: text, attachments (image/video/audio/file: their CDN URL named in the metadata
  for the worker to fetch), quick replies (their payload kept), Instagram story replies and
  story mentions (shown with their link); `mid` is the external id, so Meta's redeliveries
  are one message;
- `message.is_echo`: what the page sent. Ours (the Send API `metadata` mark) is left out;
  on Messenger, a reply written elsewhere (Meta's own inbox) joins the thread as the
  business's; `reaction`s are left out; `postback` (a button pressed) becomes a message
  with the button's title;
- `delivery` (its `mids`) and Instagram `read` (its `mid`) become delivery states; a
  Messenger `read` watermark marks everything sent to that person up to it read;
- anything else is ignored and logged, never an error.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from channels.base import BadPayload, Parsed
from hub.types import Identity, IdentityKind, InboundMessage, ReadUpTo, StatusUpdate, utcnow

log = logging.getLogger("switchboard.channels.meta")

# The Send API's `metadata` on every reply Switchboard sends: its echo is recognised as ours.
OWN_MARK = "switchboard"
MEDIA_TYPES = {"image": ("image.jpg", "image/jpeg"), "video": ("video.mp4", "video/mp4"),
               "audio": ("audio.mp4", "audio/mp4"), "file": ("file", "application/octet-stream")}


def parse_events(body: bytes, *, channel: str, identity: IdentityKind, expected_object: str,
                 routes: Mapping[str, int]) -> Parsed:
    """The messages and delivery states of one webhook POST."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise BadPayload("body: not JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("entry"), list):
        raise BadPayload("entry: missing; not a Meta webhook")
    if payload.get("object") != expected_object:
        raise BadPayload(f"object: {payload.get('object')!r}, expected {expected_object!r}")
    parsed: Parsed = []
    for entry in payload["entry"]:
        if not isinstance(entry, dict):
            raise BadPayload("entry: each must be an object")
        inbox_id = routes.get(str(entry.get("id", "")))
        if inbox_id is None:
            log.warning("meta event for account %s dropped: no inbox of this app serves it",
                        entry.get("id"))
            continue
        for event in entry.get("messaging") or []:
            try:
                parsed.extend(_event(event, channel=channel, identity=identity,
                                     inbox_id=inbox_id))
            except (KeyError, TypeError, ValueError) as exc:
                raise BadPayload(f"messaging: {exc}") from None
    return parsed


def _when(millis: Any) -> datetime | None:
    return datetime.fromtimestamp(int(millis) / 1000, UTC) if millis else None


def _event(event: dict[str, Any], *, channel: str, identity: IdentityKind, inbox_id: int
           ) -> Parsed:
    sender = str((event.get("sender") or {}).get("id") or "")
    at = _when(event.get("timestamp"))
    if "delivery" in event:
        return [StatusUpdate(channel=channel, inbox_id=inbox_id, external_id=str(mid),
                             status="delivered", provider_ts=at)
                for mid in event["delivery"].get("mids") or []]
    if "read" in event:
        mid = event["read"].get("mid")
        if mid:  # Instagram names the message
            return [StatusUpdate(channel=channel, inbox_id=inbox_id, external_id=str(mid),
                                 status="read", provider_ts=at)]
        watermark = _when(event["read"].get("watermark"))
        if watermark is None or not sender:
            return []
        # Messenger: everything sent to this person up to the watermark was read.
        return [ReadUpTo(channel=channel, inbox_id=inbox_id, up_to=watermark, status="read",
                         recipient=Identity(kind=identity, value=sender))]
    message = event.get("message")
    postback = event.get("postback")
    from_business = False
    if isinstance(message, dict) and message.get("is_echo"):
        # What the page sent. Ours (marked in the Send API's metadata) is stored already;
        # Messenger echoes of replies written elsewhere (Meta's own inbox, the phone app)
        # join the customer's thread as the business's. Instagram echoes carry no mark of
        # ours, so they are left out rather than risk storing our own replies twice.
        if identity != "messenger" or str(message.get("metadata") or "") == OWN_MARK:
            return []
        sender = str((event.get("recipient") or {}).get("id") or "")
        from_business = True
    if not sender or not (isinstance(message, dict) or isinstance(postback, dict)):
        log.info("meta event ignored: %s", ", ".join(sorted(event)) or "empty")
        return []
    meta: dict[str, str] = {}
    lines: list[str] = []
    if isinstance(postback, dict):
        lines.append(str(postback.get("title") or postback.get("payload") or "(button)"))
        meta["postback"] = str(postback.get("payload") or "")[:1000]
        external_id = str(postback.get("mid") or f"postback:{sender}:{event.get('timestamp')}")
        reply_to = None
    else:
        assert isinstance(message, dict)
        external_id = str(message["mid"])
        if message.get("text"):
            lines.append(str(message["text"]))
        quick = message.get("quick_reply")
        if isinstance(quick, dict) and quick.get("payload"):
            meta["quick_reply"] = str(quick["payload"])[:1000]
        story = (message.get("reply_to") or {}).get("story")
        if isinstance(story, dict) and story.get("url"):
            lines.insert(0, f"Replied to your story: {story['url']}")
        reply_to = (message.get("reply_to") or {}).get("mid")
        _attachments(message.get("attachments") or [], meta, lines)
    return [InboundMessage(
        channel=channel, inbox_id=inbox_id, external_id=external_id,
        sender=Identity(kind=identity, value=sender),
        thread_hint=f"{channel}:{sender}", in_reply_to=str(reply_to) if reply_to else None,
        text="\n".join(lines), provider_ts=at, received_at=utcnow(), metadata=meta,
        from_business=from_business,
    )]


def _attachments(items: list[Any], meta: dict[str, str], lines: list[str]) -> None:
    count = 0
    for item in items:
        kind = str(item.get("type") or "")
        url = str((item.get("payload") or {}).get("url") or "")
        if kind == "story_mention":
            lines.append(f"Mentioned you in their story: {url}")
        elif kind in MEDIA_TYPES and url:
            name, media_type = MEDIA_TYPES[kind]
            meta[f"media_{count}_url"] = url
            meta[f"media_{count}_name"] = name
            meta[f"media_{count}_type"] = media_type
            count += 1
        elif kind in ("fallback", "template", "share") and url:
            lines.append(f"Shared a link: {url}")
        elif kind == "location":
            coordinates = (item.get("payload") or {}).get("coordinates") or {}
            lines.append(f"Location: {coordinates.get('lat')}, {coordinates.get('long')}")
        else:
            lines.append(f"[{kind or 'attachment'} not shown]")
    if count:
        meta["media_count"] = str(count)
