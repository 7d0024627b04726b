"""The messages that cross the bus between channels/ and inbox/, with a schema version."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

# 2: InboundMessage gained references, automated and bounce_of; OutboundMessage gained
# subject, references and automated. 3: InboundMessage gained threading, conversation_ref
# and cc; OutboundMessage gained cc. All have defaults, so older payloads still decode.
SCHEMA_VERSION = 3

IdentityKind = Literal["phone", "email", "telegram", "messenger", "instagram", "visitor", "api"]
DeliveryStatus = Literal["queued", "sent", "delivered", "read", "failed"]
# How a channel's messages find their conversation (DESIGN.md, Threading): "contact" keeps
# one running thread per contact and inbox (chat channels); "headers" follows only what the
# message names (email: In-Reply-To, References, a reply address), else a new conversation.
Threading = Literal["contact", "headers"]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Capabilities:
    """What a channel can do, declared as data by its adapter and enforced by inbox actions."""

    attachments: bool = False
    templates: bool = False
    read_receipts: bool = False
    reply_window_hours: int | None = None
    # A longer window an inbox may switch on with a setting of its own (Messenger's
    # HUMAN_AGENT tag: 7 days): (setting name, hours).
    extended_window: tuple[str, int] | None = None
    max_text: int = 20_000
    max_attachments: int = 10  # files one reply may carry (with `attachments`)

    def window_hours(self, inbox_settings: Mapping[str, Any]) -> int | None:
        """The reply window of an inbox of this channel: the longer one where the inbox
        switched it on (a yes/no setting as forms and the API give it)."""
        if self.extended_window is not None:
            value = inbox_settings.get(self.extended_window[0])
            if value is True or str(value).strip().lower() in ("1", "true", "yes", "on"):
                return self.extended_window[1]
        return self.reply_window_hours


@dataclass(frozen=True)
class ChannelProfile:
    """A channel as the inbox's rules see it: its name for people and what it can do."""

    display_name: str
    capabilities: Capabilities


# The largest row id: ids are 32-bit integer columns (PostgreSQL `integer`).
MAX_ROW_ID = 2**31 - 1
# An id in a request (a path, a JSON field): a whole number in the database's range, never
# a string or a boolean that happens to convert. Out of range is a 422, not a 500.
RowId = Annotated[int, Field(ge=1, le=MAX_ROW_ID, strict=True)]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Identity(Frozen):
    """Who a customer is on one channel: a kind and a normalised value."""

    kind: IdentityKind
    value: str = Field(min_length=1, max_length=320)
    display_name: str | None = Field(default=None, max_length=200)

    @field_validator("value", "display_name", mode="before")
    @classmethod
    def _without_nul(cls, value: Any) -> Any:
        return without_nul(value)


class AttachmentRef(Frozen):
    """An attachment already stored, referenced by id."""

    id: str
    filename: str
    content_type: str
    size: int


class AttachmentRefused(ValueError):
    """A file refused by the store (too large, empty): the reason is shown to the agent."""


# Stores a file for an inbox and returns its reference: (filename, content type, bytes).
StoreAttachment = Callable[[str, str, bytes], Awaitable[AttachmentRef]]
# The bytes of a stored file, by its id (a channel that carries files itself calls it).
LoadAttachment = Callable[[str], Awaitable[bytes]]


class InboundMessage(Frozen):
    """A customer's message accepted from a channel, before threading."""

    type: Literal["inbound_message"] = "inbound_message"
    v: int = SCHEMA_VERSION
    channel: str
    inbox_id: int
    external_id: str = Field(min_length=1, max_length=255)
    sender: Identity
    thread_hint: str | None = Field(default=None, max_length=998)
    in_reply_to: str | None = Field(default=None, max_length=998)
    text: str = ""
    html: str | None = None
    attachments: tuple[AttachmentRef, ...] = ()
    provider_ts: datetime | None = None
    received_at: datetime = Field(default_factory=utcnow)
    raw_ref: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    # Earlier messages this one answers (nearest last): thread keys beyond in_reply_to.
    references: tuple[str, ...] = Field(default=(), max_length=100)
    # Sent by a machine (auto-reply, bounce, our own mail): it never opens a conversation.
    automated: bool = False
    # The external id of our outgoing message this reports undeliverable (reason in text).
    bounce_of: str | None = Field(default=None, max_length=255)
    threading: Threading = "contact"
    # A conversation the message names itself (an email subject's "[#123]"): a weak hint,
    # followed only within the same inbox and for the same contact.
    conversation_ref: int | None = Field(default=None, ge=1, le=2**53)
    # Other people the customer wrote to along with us (email To/Cc): replies may copy them.
    cc: tuple[Identity, ...] = Field(default=(), max_length=50)
    # Sent by the business from outside Switchboard (a page's own inbox, the phone app): kept
    # as an outgoing message in the customer's running conversation (`sender` is still the
    # customer); it never opens, reopens or assigns a conversation.
    from_business: bool = False
    # Identities the provider vouches are the sender's own (a phone number Telegram checked
    # and the customer shared): linked to their contact; one that is already another
    # contact's makes the two one.
    verified_identities: tuple[Identity, ...] = Field(default=(), max_length=5)

    @field_validator("text", "html", "thread_hint", "in_reply_to", mode="before")
    @classmethod
    def _text_without_nul(cls, value: Any) -> Any:
        return without_nul(value)

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_without_nul(cls, value: Any) -> Any:
        if isinstance(value, dict) and any("\x00" in str(v) for v in value.values()):
            return {k: without_nul(v) for k, v in value.items()}
        return value


def without_nul(value: Any) -> Any:
    """Text without NUL characters: they carry nothing a person reads, and PostgreSQL
    refuses them, so a provider's message is kept without them rather than failing after
    it was accepted."""
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "")
    return value


class MessageEdit(Frozen):
    """A customer changed a message they had sent (Telegram's edited_message): its new text.
    The stored message takes it and keeps what it said before."""

    type: Literal["message_edit"] = "message_edit"
    v: int = SCHEMA_VERSION
    channel: str
    inbox_id: int
    external_id: str = Field(min_length=1, max_length=255)  # the edited message's
    text: str = ""
    provider_ts: datetime | None = None
    received_at: datetime = Field(default_factory=utcnow)

    @field_validator("text", mode="before")
    @classmethod
    def _text_without_nul(cls, value: Any) -> Any:
        return without_nul(value)


class ReadUpTo(Frozen):
    """A provider's watermark: every message sent to this person in this inbox up to a time
    has reached them or been read (Messenger's delivery and read watermarks name no
    message)."""

    type: Literal["read_up_to"] = "read_up_to"
    v: int = SCHEMA_VERSION
    channel: str
    inbox_id: int
    recipient: Identity
    up_to: datetime
    status: Literal["delivered", "read"] = "read"
    received_at: datetime = Field(default_factory=utcnow)


class StatusUpdate(Frozen):
    """A provider's word on an outgoing message: sent, delivered, read or failed."""

    type: Literal["status_update"] = "status_update"
    v: int = SCHEMA_VERSION
    channel: str
    inbox_id: int
    external_id: str = Field(min_length=1, max_length=255)
    status: DeliveryStatus
    reason: str | None = Field(default=None, max_length=1000)
    provider_ts: datetime | None = None
    received_at: datetime = Field(default_factory=utcnow)


class OutboundMessage(Frozen):
    """A send request: an agent's reply on its way to a channel."""

    type: Literal["outbound_message"] = "outbound_message"
    v: int = SCHEMA_VERSION
    message_id: int
    conversation_id: int
    inbox_id: int
    channel: str
    recipient: Identity
    text: str
    html: str | None = None
    attachments: tuple[AttachmentRef, ...] = ()
    in_reply_to: str | None = None
    idempotency_key: str
    template: str | None = None
    template_variables: dict[str, str] = Field(default_factory=dict)
    subject: str | None = None
    references: tuple[str, ...] = ()
    automated: bool = False
    cc: tuple[Identity, ...] = ()


class SendReceipt(Frozen):
    """What a channel's send returned: the provider's id and the state it reported."""

    external_id: str
    status: DeliveryStatus = "sent"


# What a channel puts on the inbound stream.
ChannelItem = InboundMessage | StatusUpdate | MessageEdit | ReadUpTo
BusMessage = Annotated[ChannelItem | OutboundMessage, Field(discriminator="type")]
_bus_message: TypeAdapter[ChannelItem | OutboundMessage] = TypeAdapter(BusMessage)


class UnsupportedSchema(ValueError):
    """A bus payload written by a newer Switchboard than this one."""


def encode(message: ChannelItem | OutboundMessage) -> bytes:
    """Serialise a bus message."""
    return message.model_dump_json().encode()


def decode(payload: bytes | str) -> ChannelItem | OutboundMessage:
    """Parse a bus message, refusing schema versions this code does not know."""
    message = _bus_message.validate_json(payload)
    if message.v > SCHEMA_VERSION:
        raise UnsupportedSchema(f"schema version {message.v} is newer than {SCHEMA_VERSION}")
    return message


def as_dict(message: BaseModel) -> dict[str, Any]:
    """JSON-ready dict of a model."""
    return message.model_dump(mode="json")
