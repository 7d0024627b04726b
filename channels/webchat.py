"""The website chat widget channel: visitor tokens, identity verification, business hours.

Visitors talk to web/widget.py (HTTP and a websocket); this module holds what is specific
to the channel: signing and reading visitor tokens with the inbox secret, verifying a host
site's `identifier_hash`, the widget's settings, and turning a visitor's message into an
InboundMessage. Agent replies need no provider: the visitor's websocket shows them.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import ua_parser

from channels.base import (
    BadPayload,
    Parsed,
    SettingSpec,
    VerificationFailed,
    WebhookRequest,
    language_tag,
)
from hub.security import constant_time_equal
from hub.types import Capabilities, Identity, InboundMessage, OutboundMessage, SendReceipt, utcnow

TOKEN_DAYS = 180
MAX_TEXT = 5000
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


class TokenRefused(Exception):
    """A visitor token that is forged, expired or for another inbox."""


_ADJECTIVES = (
    "Amber", "Azure", "Bold", "Brave", "Bright", "Calm", "Clever", "Coral", "Cosy", "Crisp",
    "Daring", "Eager", "Fair", "Gentle", "Golden", "Happy", "Hazel", "Honest", "Jolly", "Keen",
    "Kind", "Lively", "Lucky", "Lunar", "Mellow", "Merry", "Misty", "Nimble", "Olive", "Patient",
    "Polite", "Proud", "Quick", "Quiet", "Rosy", "Ruby", "Sandy", "Silver", "Sunny", "Swift",
    "Teal", "Tidy", "Upbeat", "Velvet", "Violet", "Warm", "Witty", "Zesty",
)
_ANIMALS = (
    "Badger", "Bear", "Beaver", "Bison", "Crane", "Deer", "Dolphin", "Eagle", "Falcon",
    "Finch", "Fox", "Gecko", "Hare", "Hedgehog", "Heron", "Ibis", "Koala", "Lark", "Lemur",
    "Lynx", "Marten", "Moose", "Newt", "Otter", "Owl", "Panda", "Parrot", "Pelican", "Penguin",
    "Puffin", "Quail", "Rabbit", "Raven", "Robin", "Salmon", "Seal", "Sparrow", "Squirrel",
    "Stork", "Swan", "Tapir", "Tiger", "Toucan", "Turtle", "Walrus", "Whale", "Wolf", "Wren",
)


def friendly_name(visitor_id: str) -> str:
    """A name for an anonymous visitor until they give one: the same for the same visitor,
    different enough that agents tell two visitors apart ("Teal Otter 42"; 230,400 names)."""
    digest = hashlib.sha256(visitor_id.encode()).digest()
    adjective = _ADJECTIVES[digest[0] % len(_ADJECTIVES)]
    animal = _ANIMALS[digest[1] % len(_ANIMALS)]
    return f"{adjective} {animal} {int.from_bytes(digest[2:4], 'big') % 100}"


@dataclass(frozen=True)
class Visitor:
    """Who is behind a widget: an anonymous visitor or a user the host site vouched for."""

    inbox_id: int
    visitor_id: str
    identifier: str | None = None
    name: str | None = None

    @property
    def identity(self) -> Identity:
        """The identity their messages carry: verified users keep theirs on every device."""
        if self.identifier:
            return Identity(kind="visitor", value=f"{self.inbox_id}:user:{self.identifier}",
                            display_name=self.name)
        return Identity(kind="visitor", value=f"{self.inbox_id}:anon:{self.visitor_id}",
                        display_name=self.name or friendly_name(self.visitor_id))

    @property
    def thread(self) -> str:
        """The thread hint of their conversation: one stream per visitor or verified user."""
        return "widget:" + self.identity.value


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())


def issue_token(secret: str, visitor: Visitor, now: float | None = None) -> str:
    """A signed token the widget keeps in localStorage."""
    body: dict[str, object] = {
        "i": visitor.inbox_id, "v": visitor.visitor_id, "t": int(now or time.time())
    }
    if visitor.identifier:
        body["u"] = visitor.identifier
    if visitor.name:
        body["n"] = visitor.name
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    return f"{payload}.{_mac(secret, payload)}"


def read_token(secret: str, token: str, *, inbox_id: int, now: float | None = None) -> Visitor:
    """The visitor of a token; TokenRefused when forged, expired or for another inbox."""
    payload, _, mac = token.partition(".")
    if not payload or not mac or not constant_time_equal(mac, _mac(secret, payload)):
        raise TokenRefused("visitor token is not valid")
    try:
        body = json.loads(_unb64(payload))
    except ValueError:
        raise TokenRefused("visitor token is not valid") from None
    if body.get("i") != inbox_id:
        raise TokenRefused("visitor token belongs to another inbox")
    if (now or time.time()) - int(body.get("t", 0)) > TOKEN_DAYS * 86400:
        raise TokenRefused("visitor token has expired")
    return Visitor(inbox_id=inbox_id, visitor_id=str(body["v"]), identifier=body.get("u"),
                   name=body.get("n"))


def new_visitor(inbox_id: int, name: str | None = None, identifier: str | None = None) -> Visitor:
    """A visitor with a fresh random id."""
    return Visitor(inbox_id=inbox_id, visitor_id=secrets.token_urlsafe(12), identifier=identifier,
                   name=name)


def identifier_hash(secret: str, identifier: str) -> str:
    """What the host site's server computes to vouch for a logged-in user (hex HMAC-SHA256)."""
    return hmac.new(secret.encode(), identifier.encode(), hashlib.sha256).hexdigest()


def verify_identifier(secret: str, identifier: str, given_hash: str) -> bool:
    """True when the host site really vouched for this identifier."""
    return constant_time_equal(given_hash.lower(), identifier_hash(secret, identifier))


def is_open(settings: Mapping[str, Any], now: datetime | None = None) -> bool:
    """Whether the widget's business hours include now (always open without hours)."""
    hours = settings.get("business_hours")
    if not hours:
        return True
    local = (now or utcnow()).astimezone(ZoneInfo(hours.get("timezone", "UTC")))
    window = hours.get("days", {}).get(DAYS[local.weekday()])
    if not window:
        return False
    match = _HOURS.match(window)
    if match is None:
        return False
    start = int(match[1]) * 60 + int(match[2])
    end = int(match[3]) * 60 + int(match[4])
    minute = local.hour * 60 + local.minute
    return start <= minute < end


def origin_allowed(settings: Mapping[str, Any], origin: str | None) -> bool:
    """Whether a website origin may use this widget (any, until the admin lists some)."""
    allowed = settings.get("allowed_origins") or []
    if not allowed:
        return True
    return origin is not None and origin.rstrip("/") in {o.rstrip("/") for o in allowed}


def client_message_id(value: object) -> str:
    """A widget-generated message id (the idempotency key of a visitor's message)."""
    if not isinstance(value, str) or not _CLIENT_ID.match(value):
        raise BadPayload("id must be 8-64 letters, digits, '-' or '_'")
    return value


def visitor_message(
    visitor: Visitor, *, client_id: str, text: object, language: object = None
) -> InboundMessage:
    """The InboundMessage of a visitor's message, refusing empty or oversized text.

    `language` is the browser's language (navigator.language): routing rules may match it;
    anything that is not a language tag is ignored rather than refused.
    """
    if not isinstance(text, str) or not text.strip():
        raise BadPayload("text must be a non-empty string")
    if len(text) > MAX_TEXT:
        raise BadPayload(f"a message may have at most {MAX_TEXT} characters")
    if "\x00" in text:
        raise BadPayload("text may not contain NUL (\\u0000)")
    tag = language_tag(language)
    return InboundMessage(
        channel=WebchatChannel.kind,
        inbox_id=visitor.inbox_id,
        external_id=f"widget:{visitor.visitor_id}:{client_id}",
        sender=visitor.identity,
        thread_hint=visitor.thread,
        text=text.strip(),
        metadata={"language": tag} if tag else {},
    )


class WebchatChannel:
    """The chat widget on the customer's website."""

    kind: ClassVar[str] = "webchat"
    display_name: ClassVar[str] = "Website chat"
    settings: ClassVar[tuple[SettingSpec, ...]] = (
        SettingSpec("public_token", "identifies the inbox in the embed tag (generated)"),
        SettingSpec("secret", "signs visitor tokens and verifies identifier_hash (generated)",
                    secret=True),
        SettingSpec("greeting", "first line visitors see", required=False),
        SettingSpec("accent_color", "#RRGGBB colour of the widget", required=False,
                    form="color"),
        SettingSpec("allowed_origins", "website origins allowed to embed it (empty: any)",
                    required=False, form="lines"),
        SettingSpec("business_hours", '{"timezone": "Europe/Paris", "days": {"mon": '
                    '"09:00-17:00", ...}}', required=False, form="json"),
        SettingSpec("away_message", "shown outside business hours or with nobody online",
                    required=False),
        SettingSpec("enforce_identity", "refuse identifiers without a valid identifier_hash",
                    required=False, form="flag"),
    )
    capabilities: ClassVar[Capabilities] = Capabilities(attachments=True, max_text=MAX_TEXT)

    def default_settings(self) -> dict[str, Any]:
        """Generated settings of a new widget inbox."""
        return {"public_token": secrets.token_urlsafe(12), "secret": secrets.token_urlsafe(32),
                "greeting": "Hi! How can we help?", "accent_color": "#3157d5"}

    def check_settings(self, settings: Mapping[str, Any]) -> list[str]:
        """Problems with the widget's own settings, one line each."""
        problems = []
        color = settings.get("accent_color")
        if color is not None and not (isinstance(color, str) and _COLOR.match(color)):
            problems.append("accent_color: must look like #3157d5")
        origins = settings.get("allowed_origins")
        if origins is not None and not (
            isinstance(origins, list)
            and all(isinstance(o, str) and o.startswith(("http://", "https://")) for o in origins)
        ):
            problems.append("allowed_origins: must be a list of http(s) origins")
        hours = settings.get("business_hours")
        if hours is not None:
            problems += _check_hours(hours)
        return problems

    def verify(self, request: WebhookRequest) -> None:
        """The widget has no provider webhook."""
        raise VerificationFailed("the website chat has no webhook", status=404)

    def parse(self, request: WebhookRequest) -> Parsed:
        """The widget has no provider webhook."""
        raise BadPayload("the website chat has no webhook")

    async def send(
        self, message: OutboundMessage, inbox_settings: Mapping[str, Any]
    ) -> SendReceipt:
        """Nothing to hand to a provider: the visitor's websocket shows the reply and files."""
        return SendReceipt(external_id=f"widget-reply:{message.idempotency_key}", status="sent")


def _check_hours(hours: object) -> list[str]:
    if not isinstance(hours, dict):
        return ["business_hours: must be an object with timezone and days"]
    problems = []
    try:
        ZoneInfo(str(hours.get("timezone", "UTC")))
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"business_hours.timezone: unknown time zone {hours.get('timezone')!r}")
    days = hours.get("days", {})
    if not isinstance(days, dict):
        return [*problems, "business_hours.days: must be an object"]
    for day, window in days.items():
        if day not in DAYS:
            problems.append(f"business_hours.days: unknown day {day!r} (use {', '.join(DAYS)})")
        elif not (isinstance(window, str) and _HOURS.match(window)):
            problems.append(f"business_hours.days.{day}: use HH:MM-HH:MM")
    return problems


def _web_address(value: object) -> str | None:
    """An http(s) address without its fragment, or None."""
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        return None
    return value.replace("\x00", "").split("#", 1)[0][:2000] or None


@functools.lru_cache(maxsize=2048)
def browser_and_os(user_agent: str) -> tuple[str | None, str | None]:
    """"Chrome 131", "Windows 10" from a User-Agent header (ua-parser's regexes, the ones
    most analytics tools share), or None where it says nothing known."""
    found = ua_parser.parse(user_agent[:500])
    browser = found.user_agent
    system = found.os
    return (
        f"{browser.family} {browser.major}".strip() if browser and browser.major
        else (browser.family if browser else None),
        f"{system.family} {system.major}".strip() if system and system.major
        else (system.family if system else None),
    )


def _time_zone(value: object) -> str | None:
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return value


def visit_facts(given: object, user_agent: str | None) -> dict[str, Any]:
    """What the widget tells of the page it runs on, checked and bounded; whatever does not
    look right is left out rather than refused (the chat must start anyway)."""
    data = given if isinstance(given, dict) else {}
    title = data.get("title")
    browser, system = browser_and_os(user_agent) if user_agent else (None, None)
    return {
        "page_url": _web_address(data.get("url")),
        "page_title": title.replace("\x00", "").strip()[:300] or None
        if isinstance(title, str) else None,
        "referrer": _web_address(data.get("referrer")),
        "language": language_tag(data.get("language")),
        "time_zone": _time_zone(data.get("time_zone")),
        "browser": browser[:100] if browser else None,
        "os": system[:100] if system else None,
    }
