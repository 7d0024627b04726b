"""Every registered channel goes through the same verify / parse / send cases.

A channel contributes its signed-request builder, its captured payload fixtures and the
local provider its send talks to; the cases below are the same for all of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl

import httpx
import pytest

from channels.api import ApiChannel, signed_headers
from channels.base import (
    BadPayload,
    ChannelAdapter,
    PermanentSendError,
    TransientSendError,
    VerificationFailed,
    WebhookRequest,
)
from channels.registry import build_channels
from channels.webchat import WebchatChannel
from config import load_settings
from hub.types import (
    Identity,
    InboundMessage,
    MessageEdit,
    OutboundMessage,
    ReadUpTo,
    StatusUpdate,
)
from tests.fakes.meta_server import APP_SECRET, PAGE_ID, PAGE_TOKEN, FakeGraph, signature
from tests.fakes.telegram_server import BOT_TOKEN, FakeTelegram
from tests.fakes.twilio_server import FakeTwilio, signed
from tests.helpers import Receiver
from tests.mail_services import SmtpRecorder

FIXTURES = Path(__file__).with_name("fixtures")


class LocalProvider(Protocol):
    """The local server a channel's send talks to, able to accept or refuse."""

    async def start(self) -> dict[str, Any]: ...  # the inbox settings that reach it
    async def stop(self) -> None: ...
    def texts(self) -> list[str]: ...
    def refuse(self, *, permanent: bool, reason: str) -> None: ...
    def unreachable(self) -> dict[str, Any]: ...


class HttpProvider:
    """A local HTTP receiver (webhook-style providers)."""

    def __init__(self) -> None:
        self.receiver = Receiver()

    async def start(self) -> dict[str, Any]:
        await self.receiver.start()
        return {"outbound_url": self.receiver.url}

    async def stop(self) -> None:
        await self.receiver.stop()

    def texts(self) -> list[str]:
        return [str(r["text"]) for r in self.receiver.received]

    def refuse(self, *, permanent: bool, reason: str) -> None:
        self.receiver.answers.append((400, {"error": reason}) if permanent else (503, {}))

    def unreachable(self) -> dict[str, Any]:
        return {"outbound_url": "http://127.0.0.1:9/nothing"}


class SmtpProvider:
    """A local SMTP server (aiosmtpd)."""

    def __init__(self) -> None:
        self.server = SmtpRecorder()

    async def start(self) -> dict[str, Any]:
        self.server.start()
        return {**self.server.settings(), "from_address": "support@acme.test"}

    async def stop(self) -> None:
        self.server.stop()

    def texts(self) -> list[str]:
        return [r.message.get_body(("plain",)).get_content().strip()  # type: ignore[union-attr]
                for r in self.server.received]

    def refuse(self, *, permanent: bool, reason: str) -> None:
        self.server.answers.append(f"554 {reason}" if permanent else "451 try again later")

    def unreachable(self) -> dict[str, Any]:
        return {"smtp_host": "127.0.0.1", "smtp_port": 9}


class TwilioProvider:
    """The local Twilio REST API (tests/fakes/twilio_server.py)."""

    def __init__(self) -> None:
        self.fake = FakeTwilio()

    async def start(self) -> dict[str, Any]:
        await self.fake.start()
        return self.fake.settings()

    async def stop(self) -> None:
        await self.fake.stop()

    def texts(self) -> list[str]:
        return [form["Body"][-1] for form in self.fake.created if "Body" in form]

    def refuse(self, *, permanent: bool, reason: str) -> None:
        if permanent:
            self.fake.fail_next(400, 21211, reason)
        else:
            self.fake.fail_next(503)

    def unreachable(self) -> dict[str, Any]:
        return {"api_base_url": "http://127.0.0.1:9"}


class TelegramProvider:
    """The local Bot API (tests/fakes/telegram_server.py)."""

    def __init__(self) -> None:
        self.fake = FakeTelegram()

    async def start(self) -> dict[str, Any]:
        await self.fake.start()
        return {"bot_token": BOT_TOKEN, "api_base_url": self.fake.url}

    async def stop(self) -> None:
        await self.fake.stop()

    def texts(self) -> list[str]:
        return [str(sent["text"]) for sent in self.fake.sent]

    def refuse(self, *, permanent: bool, reason: str) -> None:
        self.fake.failures.append((400, f"Bad Request: chat not found ({reason})", None)
                                  if permanent
                                  else (502, "Bad Gateway", None))

    def unreachable(self) -> dict[str, Any]:
        return {"api_base_url": "http://127.0.0.1:9"}


class GraphProvider:
    """The local Graph API (tests/fakes/meta_server.py)."""

    def __init__(self) -> None:
        self.fake = FakeGraph()

    async def start(self) -> dict[str, Any]:
        await self.fake.start()
        return {"page_access_token": PAGE_TOKEN, "graph_api_url": self.fake.url}

    async def stop(self) -> None:
        await self.fake.stop()

    def texts(self) -> list[str]:
        return [str(sent["message"]["text"]) for sent in self.fake.sent]

    def refuse(self, *, permanent: bool, reason: str) -> None:
        self.fake.failures.append((400, 100, 0, reason) if permanent
                                  else (503, 2, 0, "Service temporarily unavailable"))

    def unreachable(self) -> dict[str, Any]:
        return {"graph_api_url": "http://127.0.0.1:9/v21.0"}


def _meta_case(kind: str, account: dict[str, str]) -> ChannelCase:
    return ChannelCase(
        kind=kind,
        settings={**account, "app_secret": APP_SECRET, "verify_token": "vt-contract"},
        sign=lambda body, settings: {"X-Hub-Signature-256": signature(
            body, settings["app_secret"])},
        recipient=Identity(kind=kind, value="6001234567890123"),  # type: ignore[arg-type]
        provider=GraphProvider,
    )


def _twilio_case(kind: str) -> ChannelCase:
    def sign(body: bytes, settings: dict[str, Any]) -> dict[str, str]:
        fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
        return signed(f"https://sb.example/webhooks/{kind}/7", fields, settings["auth_token"])

    return ChannelCase(
        kind=kind,
        settings={**FakeTwilio().settings(), "from_number": "+14155238886"},
        sign=sign,
        recipient=Identity(kind="phone", value="+447700900123", display_name="Ada"),
        provider=TwilioProvider,
        fixture_glob="*.form",
    )


@dataclass
class ChannelCase:
    """What the shared cases need to know of one channel."""

    kind: str
    settings: dict[str, Any]
    sign: Callable[[bytes, dict[str, Any]], dict[str, str]]
    recipient: Identity
    # None: nothing to hand to a provider (the widget's visitors read replies live).
    provider: Callable[[], LocalProvider] | None = HttpProvider
    webhook: bool = True  # pulled channels (email) and the widget have no webhook to verify
    fixture_glob: str = "*.json"
    # Whether the signature covers the body (Telegram's secret token authenticates the
    # sender only; TLS keeps the body intact).
    signs_body: bool = True
    # What a permanent refusal tells the agent: the provider's reason, or (the API channel,
    # whose target is any URL) only the status, never what the target's body says.
    refusal_shows: str = "recipient unknown"


CASES = {
    "api": ChannelCase(
        kind="api",
        settings={"secret": "contract-secret"},
        sign=lambda body, settings: signed_headers(settings["secret"], body),
        recipient=Identity(kind="api", value="7:cust-1", display_name="Cust"),
        refusal_shows="refused the message: 400 Bad Request",
    ),
    "email": ChannelCase(
        kind="email",
        settings={"from_address": "support@acme.test"},
        sign=lambda body, settings: {},
        recipient=Identity(kind="email", value="ada@example.com", display_name="Ada"),
        provider=SmtpProvider,
        webhook=False,
        fixture_glob="*.eml",
    ),
    "sms": _twilio_case("sms"),
    "whatsapp": _twilio_case("whatsapp"),
    "webchat": ChannelCase(
        kind="webchat",
        settings=WebchatChannel().default_settings(),
        sign=lambda body, settings: {},
        recipient=Identity(kind="visitor", value="7:anon:abc", display_name="Vera"),
        provider=None,
        webhook=False,
    ),
    "telegram": ChannelCase(
        kind="telegram",
        settings={"webhook_secret": "whsec-contract-0123456789", "bot_token": BOT_TOKEN},
        sign=lambda body, settings: {
            "X-Telegram-Bot-Api-Secret-Token": settings["webhook_secret"]},
        recipient=Identity(kind="telegram", value="4242", display_name="Tom"),
        provider=TelegramProvider,
        signs_body=False,
    ),
    "messenger": _meta_case("messenger", {"page_id": PAGE_ID}),
    "instagram": _meta_case("instagram", {"account_id": "17841400000000001"}),
}


def _adapters() -> dict[str, ChannelAdapter]:
    return build_channels(load_settings(), httpx.AsyncClient())


def test_every_registered_channel_has_a_contract_case() -> None:
    assert set(_adapters()) == set(CASES)


def _request(case: ChannelCase, body: bytes, headers: dict[str, str],
             settings: dict[str, Any] | None = None) -> WebhookRequest:
    return WebhookRequest(method="POST", url=f"https://sb.example/webhooks/{case.kind}/7",
                          headers={k.lower(): v for k, v in headers.items()}, body=body,
                          inbox_id=7, inbox_settings=settings or case.settings)


def _fixtures(kind: str, prefix: str = "") -> list[Path]:
    return sorted(p for p in (FIXTURES / kind).glob(prefix + CASES[kind].fixture_glob))


@pytest.mark.parametrize("kind", sorted(k for k, case in CASES.items() if case.webhook))
def test_verify_accepts_signed_and_refuses_unsigned_or_tampered(kind: str) -> None:
    adapter, case = _adapters()[kind], CASES[kind]
    body = _fixtures(kind)[0].read_bytes()
    headers = case.sign(body, case.settings)
    adapter.verify(_request(case, body, headers))
    with pytest.raises(VerificationFailed) as unsigned:
        adapter.verify(_request(case, body, {}))
    assert unsigned.value.status in (401, 403)
    if case.signs_body:
        with pytest.raises(VerificationFailed) as tampered:
            adapter.verify(_request(case, body + b" ", headers))
        assert tampered.value.status in (401, 403)
    other = {k: ("x" * len(v) if isinstance(v, str) else v) for k, v in case.settings.items()}
    with pytest.raises(VerificationFailed):
        adapter.verify(_request(case, body, headers, settings=other))


@pytest.mark.parametrize("path", [p for k in CASES for p in _fixtures(k)
                                  if not p.name.startswith(("invalid", "ignored"))],
                         ids=lambda p: p.stem)
def test_captured_payloads_parse_into_bus_messages(path: Path) -> None:
    kind = path.parent.name
    adapter, case = _adapters()[kind], CASES[kind]
    parsed = adapter.parse(_request(case, path.read_bytes(), {}))
    assert parsed
    for item in parsed:
        assert isinstance(item, InboundMessage | StatusUpdate | MessageEdit | ReadUpTo)
        assert item.channel == kind and item.inbox_id == 7
        assert item.received_at.tzinfo is not None


@pytest.mark.parametrize("path", [p for k in CASES for p in _fixtures(k, "ignored")],
                         ids=lambda p: p.stem)
def test_events_a_channel_does_not_keep_are_ignored_without_error(path: Path) -> None:
    kind = path.parent.name
    assert _adapters()[kind].parse(_request(CASES[kind], path.read_bytes(), {})) == []


@pytest.mark.parametrize("path", [p for k in CASES for p in _fixtures(k, "invalid")],
                         ids=lambda p: p.stem)
def test_invalid_payloads_get_a_clear_reason(path: Path) -> None:
    kind = path.parent.name
    with pytest.raises(BadPayload) as caught:
        _adapters()[kind].parse(_request(CASES[kind], path.read_bytes(), {}))
    assert str(caught.value)


def test_api_payload_fields_are_normalised() -> None:
    case = CASES["api"]
    first = ApiChannel(http=httpx.AsyncClient()).parse(
        _request(case, (FIXTURES / "api/message_with_email_sender.json").read_bytes(), {}))
    [message] = first
    assert isinstance(message, InboundMessage)
    assert message.sender == Identity(kind="email", value="grace.hopper@example.com",
                                      display_name="Grace Hopper")
    assert message.thread_hint == "ticket-8812"
    assert message.metadata == {"subject": "Invoice address"}
    batch = ApiChannel(http=httpx.AsyncClient()).parse(
        _request(case, (FIXTURES / "api/batch_with_status.json").read_bytes(), {}))
    kinds = [(type(i).__name__, getattr(i, "external_id", None)) for i in batch]
    assert kinds == [("InboundMessage", "m-100"), ("InboundMessage", "m-101"),
                     ("StatusUpdate", "out-7"), ("StatusUpdate", "out-6")]
    assert batch[0].sender.value == "7:visitor-42"  # type: ignore[union-attr]
    assert batch[1].sender.value == "+14155550132"  # type: ignore[union-attr]
    assert batch[3].reason == "mailbox full"  # type: ignore[union-attr]


def _outbound(case: ChannelCase) -> OutboundMessage:
    return OutboundMessage(message_id=1, conversation_id=2, inbox_id=7, channel=case.kind,
                           recipient=case.recipient, text="Thanks, fixed!",
                           idempotency_key="idem-123", in_reply_to="m-100")


@pytest.mark.parametrize("kind", sorted(k for k, case in CASES.items() if case.provider))
async def test_send_success_permanent_and_transient(kind: str) -> None:
    case = CASES[kind]
    assert case.provider is not None
    provider = case.provider()
    async with httpx.AsyncClient() as http:
        adapter = build_channels(load_settings(), http)[kind]
        settings = {**case.settings, **await provider.start()}
        try:
            receipt = await adapter.send(_outbound(case), settings)
            assert receipt.external_id and receipt.status in ("sent", "delivered")
            assert provider.texts()[0] == "Thanks, fixed!"
            provider.refuse(permanent=True, reason="recipient unknown")
            with pytest.raises(PermanentSendError, match=case.refusal_shows) as refused:
                await adapter.send(_outbound(case), settings)
            if case.refusal_shows != "recipient unknown":
                assert "recipient unknown" not in str(refused.value)
            provider.refuse(permanent=False, reason="busy")
            with pytest.raises(TransientSendError):
                await adapter.send(_outbound(case), settings)
        finally:
            await provider.stop()
        with pytest.raises(TransientSendError):
            await adapter.send(_outbound(case), {**settings, **provider.unreachable()})


async def test_api_send_is_signed_like_inbound() -> None:
    from channels.api import sign

    receiver = Receiver()
    await receiver.start()
    try:
        async with httpx.AsyncClient() as http:
            await ApiChannel(http=http).send(
                _outbound(CASES["api"]),
                {"secret": "contract-secret", "outbound_url": receiver.url})
    finally:
        await receiver.stop()
    headers = receiver.headers[0]
    body = json.dumps(receiver.received[0]).encode()
    expected = sign("contract-secret", int(headers["x-switchboard-timestamp"]), body)
    assert headers["x-switchboard-signature"] == expected
    assert headers["idempotency-key"] == "idem-123"


async def test_widget_send_needs_no_provider_and_its_webhook_does_not_exist() -> None:
    case = CASES["webchat"]
    adapter = _adapters()["webchat"]
    receipt = await adapter.send(_outbound(case), case.settings)
    assert receipt.status == "sent" and receipt.external_id == "widget-reply:idem-123"
    with pytest.raises(VerificationFailed) as refused:
        adapter.verify(_request(case, b"{}", {}))
    assert refused.value.status == 404


def test_an_anonymous_visitor_has_a_stable_friendly_name() -> None:
    from channels.webchat import Visitor, friendly_name

    ada = Visitor(inbox_id=7, visitor_id="Qj4maPWJ1")
    assert ada.identity.display_name == friendly_name("Qj4maPWJ1")
    assert Visitor(inbox_id=7, visitor_id="Qj4maPWJ1").identity == ada.identity
    names = {friendly_name(f"visitor-{n}") for n in range(200)}
    assert len(names) >= 195  # 200 visitors, next to no two alike
    # A name the visitor gave, or one the site vouched for, wins.
    assert Visitor(inbox_id=7, visitor_id="x", name="Vera").identity.display_name == "Vera"
