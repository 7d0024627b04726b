"""The channel adapter contract every channel implements the part of that fits it."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from hub.types import (
    Capabilities,
    ChannelItem,
    InboundMessage,
    LoadAttachment,
    OutboundMessage,
    SendReceipt,
    StoreAttachment,
)

Parsed = list[ChannelItem]
Emit = Callable[[ChannelItem], Awaitable[None]]


@dataclass(frozen=True)
class WebhookRequest:
    """A provider's HTTP request, read once (body bounded) and handed to verify and parse."""

    method: str
    url: str  # as the provider called it: the configured public URL, not the proxy's
    headers: Mapping[str, str]
    body: bytes
    inbox_id: int
    inbox_settings: Mapping[str, Any]
    # For channels that share one webhook among accounts (SharesWebhooks): account id ->
    # inbox id of the inboxes this request may deliver for.
    routes: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SettingSpec:
    """One setting an inbox of this channel needs."""

    name: str
    description: str
    secret: bool = False
    required: bool = True
    # How a form asks for it: "text", "color" (#RRGGBB), "lines" (a list, one per line),
    # "json" (an object), "flag" (a yes/no checkbox), "number", "url".
    form: str = "text"


class VerificationFailed(Exception):
    """A webhook whose signature is missing or wrong: answered 401/403, nothing stored."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.status = status


class BadPayload(ValueError):
    """A signed webhook whose body cannot be understood: answered 400 with this reason."""


class PermanentSendError(Exception):
    """The provider refused the message for good: it is shown as failed with the reason."""


class TransientSendError(Exception):
    """A failure worth retrying later (timeouts, rate limits, 5xx); `retry_after`: how long
    the provider asked to wait, in seconds."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class ChannelAdapter(Protocol):
    """What a channel declares and does; see DESIGN.md, "Channel adapter"."""

    kind: ClassVar[str]
    display_name: ClassVar[str]
    settings: ClassVar[tuple[SettingSpec, ...]]
    capabilities: ClassVar[Capabilities]

    def verify(self, request: WebhookRequest) -> None:
        """Raise VerificationFailed unless the webhook is authentic."""

    def parse(self, request: WebhookRequest) -> Parsed:
        """Turn a verified webhook into messages and status updates (no I/O)."""

    async def send(
        self, message: OutboundMessage, inbox_settings: Mapping[str, Any]
    ) -> SendReceipt:
        """Deliver an outgoing message; raise Permanent/TransientSendError on failure."""


@dataclass(frozen=True)
class Acknowledgement:
    """The HTTP answer a provider expects once its webhook is safely on the bus."""

    status: int
    body: bytes
    content_type: str


@runtime_checkable
class Acknowledges(Protocol):
    """Optional: channels whose provider wants a specific answer (TwiML, a challenge...)."""

    def acknowledge(self, request: WebhookRequest, parsed: Parsed) -> Acknowledgement:
        """The answer to a verified, parsed, durably accepted webhook."""


@runtime_checkable
class AnswersChallenge(Protocol):
    """Optional: channels whose provider proves a webhook URL with a GET first (Meta's
    hub.challenge handshake)."""

    def challenge(self, request: WebhookRequest) -> Acknowledgement:
        """The answer to the provider's GET; raise VerificationFailed when it is not ours."""


@runtime_checkable
class SharesWebhooks(Protocol):
    """Optional: channels whose provider sends the events of several accounts (pages) to one
    webhook URL: each event goes to the inbox of its account."""

    def webhook_routes(
        self, this: Mapping[str, Any], inboxes: Mapping[int, Mapping[str, Any]]
    ) -> dict[str, int]:
        """Account id -> inbox id, among `inboxes` (this channel's, by id), of those a webhook
        verified with the settings `this` may deliver for."""


class PollerState(Protocol):
    """Durable state of one inbox's poller (cursors such as IMAP UIDs), and its quarantine."""

    async def load(self, key: str) -> dict[str, Any] | None:
        """The value saved under `key`, or None."""

    async def save(self, key: str, value: dict[str, Any]) -> None:
        """Replace the value under `key` (committed when this returns)."""

    async def quarantine(self, reason: str, raw: bytes) -> None:
        """Keep an item that could not be parsed aside, with the error, for an admin."""


@runtime_checkable
class Polls(Protocol):
    """Optional: pulled channels (IMAP IDLE, long polling) run one task per inbox."""

    async def run(
        self,
        inbox_id: int,
        inbox_settings: Mapping[str, Any],
        emit: Emit,
        store: StoreAttachment,
        state: PollerState,
    ) -> None:
        """Receive until cancelled, reconnecting by itself; store files, emit what arrives.

        `emit` returns once the item is durably on the bus: only then may a cursor in
        `state` move past it.
        """


@runtime_checkable
class FetchesMedia(Protocol):
    """Optional: channels whose webhooks only point at media the worker must download."""

    async def fetch_media(
        self,
        message: InboundMessage,
        inbox_settings: Mapping[str, Any],
        store: StoreAttachment,
    ) -> InboundMessage:
        """Download and store what the message points at; return it with attachment refs."""


@runtime_checkable
class SendsFiles(Protocol):
    """Optional: channels that carry an agent's attached files inside the message (email)."""

    async def send_files(
        self,
        message: OutboundMessage,
        inbox_settings: Mapping[str, Any],
        load: LoadAttachment,
    ) -> SendReceipt:
        """Like send, reading the bytes of `message.attachments` through `load`."""


@runtime_checkable
class LinksFiles(Protocol):
    """Optional: channels whose provider fetches an agent's files by link (MediaUrl, a POST).

    The links are expiring and signed with a secret of the inbox (hub.security.file_link);
    the web verifies them with the same key before serving the file.
    """

    def file_link_key(self, inbox_settings: Mapping[str, Any]) -> str | None:
        """The inbox secret that signs its file links (None: this inbox gives no links)."""


class ConnectFailed(Exception):
    """The provider refused or could not be reached while connecting or testing an inbox;
    the message is the provider's reason, shown to the admin."""


@runtime_checkable
class Connects(Protocol):
    """Optional: channels with provider-side set-up (a Telegram webhook, a Meta page
    subscription), done when an inbox is connected or its settings change, undone when it
    is deleted."""

    async def connect(
        self, inbox_id: int, inbox_settings: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Set the provider up for this inbox; settings to store with it (the bot's name...).
        Raise ConnectFailed with the provider's reason."""

    async def disconnect(self, inbox_id: int, inbox_settings: Mapping[str, Any]) -> None:
        """Undo the set-up (best effort: the inbox is gone on our side whatever happens).
        Raise ConnectFailed with the provider's reason."""


@runtime_checkable
class TestsConnection(Protocol):
    """Optional: channels that can ask their provider whether the settings work."""

    async def test_connection(self, inbox_settings: Mapping[str, Any]) -> str:
        """What the provider says about these settings ("Connected as @shop_bot"); raise
        ConnectFailed with its reason when they do not work."""


@dataclass
class ChannelInfo:
    """A channel as the admin screens list it."""

    kind: str
    display_name: str
    settings: tuple[SettingSpec, ...]
    capabilities: Capabilities
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class HasDefaults(Protocol):
    """Optional: channels that generate some settings (tokens, secrets) for a new inbox."""

    def default_settings(self) -> dict[str, Any]:
        """Settings a new inbox starts with; what the admin gives overrides them."""


@runtime_checkable
class ChecksSettings(Protocol):
    """Optional: channels with rules on their settings' values, not only their presence."""

    def check_settings(self, settings: Mapping[str, Any]) -> list[str]:
        """Problems with the values, one line each."""


def settings_for_new_inbox(adapter: ChannelAdapter, given: Mapping[str, Any]) -> dict[str, Any]:
    """The channel's generated defaults overridden by what the admin gave."""
    base = adapter.default_settings() if isinstance(adapter, HasDefaults) else {}
    return {**base, **given}


def secret_names(specs: Iterable[SettingSpec]) -> frozenset[str]:
    """The names of a channel's settings that are secrets (sealed at rest, never shown)."""
    return frozenset(spec.name for spec in specs if spec.secret)


def validate_settings(adapter: ChannelAdapter, values: Mapping[str, Any]) -> list[str]:
    """Problems with an inbox's settings for this channel, one line each (empty when fine)."""
    known = {spec.name for spec in adapter.settings}
    problems = [
        f"{spec.name}: required ({spec.description})"
        for spec in adapter.settings
        if spec.required and not values.get(spec.name)
    ]
    problems += [f"{name}: not a setting of the {adapter.kind} channel" for name in values
                 if name not in known]
    problems += [f"{spec.name}: must be text" for spec in adapter.settings
                 if spec.secret and spec.name in values and not isinstance(values[spec.name], str)]
    if isinstance(adapter, ChecksSettings):
        problems += adapter.check_settings(values)
    return problems


# A BCP 47 language tag as browsers and mail clients give it: "de", "pt-BR", "zh-Hant-TW".
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}")


def language_tag(value: object) -> str | None:
    """The first language tag of a value such as navigator.language or a Content-Language
    header ("de-DE, en"), or None: a customer's language is a hint, never a reason to refuse."""
    if not isinstance(value, str):
        return None
    first = value.split(",", 1)[0].strip()
    return first if _LANGUAGE_TAG.fullmatch(first) else None
