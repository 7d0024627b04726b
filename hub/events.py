"""Typed, versioned events: published by inbox actions after commit, read by every consumer.

The same shapes are what the JSON API returns, so the agent UI applies a websocket event
and an HTTP response with one piece of code.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

# 2: every event carries an `id`, fixed when the change is recorded: consumers dedupe on it.
EVENT_VERSION = 2


def new_event_id() -> str:
    """A fresh event id: unique, fixed when the event is made (not when it is published)."""
    return os.urandom(12).hex()


class View(BaseModel):
    model_config = ConfigDict(frozen=True)


class IdentityView(View):
    """A contact identity as agents see it."""

    kind: str
    value: str
    display_name: str | None = None


class ContactView(View):
    """A contact as agents see it."""

    id: int
    name: str | None
    email: str | None
    phone: str | None
    identities: list[IdentityView] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class ConversationView(View):
    """A conversation as the list and the thread header show it."""

    id: int
    inbox_id: int
    channel: str
    contact_id: int
    contact_name: str | None
    status: str
    assignee_id: int | None
    team_id: int | None
    subject: str | None
    last_message_preview: str | None
    unread_count: int
    snoozed_until: datetime | None
    last_activity_at: datetime
    created_at: datetime
    priority: str = "none"
    labels: list[str] = Field(default_factory=list)
    # Set while the conversation waits in the queue for an agent with capacity.
    waiting_since: datetime | None = None
    # Channels with a reply window (WhatsApp: 24 h after the customer last wrote): when it
    # closes or closed. Filled in by the conversation API; None elsewhere and on other channels.
    reply_window_closes_at: datetime | None = None
    # Merged into that conversation: its messages live there now.
    merged_into_id: int | None = None
    # Other people on the thread (email To/Cc), copied on replies unless the agent says not.
    cc: list[IdentityView] = Field(default_factory=list)
    # The SLA: when its soonest running target is due, and "ok", "at_risk", "breached",
    # "paused" or "met" (None: no SLA policy applies). Kept by the SLA clocks; an event that
    # is not about them ("sla" not in a conversation.updated's changes) may carry None here.
    sla_due_at: datetime | None = None
    sla_status: str | None = None
    # The customer's answer to the satisfaction survey, 1 (poor) to 5 (great).
    csat_score: int | None = None
    muted: bool = False  # the customer's new messages do not reopen it


class MessageView(View):
    """A message, note or activity line of a conversation."""

    id: int
    conversation_id: int
    inbox_id: int
    direction: str
    kind: str
    text: str
    html: str | None
    external_id: str | None
    contact_id: int | None
    agent_id: int | None
    status: str | None
    status_reason: str | None
    attachments: list[dict[str, Any]]
    accepted_at: datetime
    created_at: datetime
    edited_at: datetime | None = None  # the customer changed it after sending (see `text`)
    sent_elsewhere: bool = False  # the business sent it from outside Switchboard
    automated: bool = False  # machine mail (an auto-reply, a bounce): never answered or acted on
    survey: bool = False  # the satisfaction survey: the website widget shows its 1-5 buttons


class NotificationView(View):
    """A notification of one agent: a mention of them or a conversation assigned to them."""

    id: int
    agent_id: int
    kind: str
    conversation_id: int
    message_id: int | None
    by_agent_id: int | None
    text: str
    read_at: datetime | None
    created_at: datetime


# The automation rules whose actions are running now, outermost first: every event staged
# meanwhile carries them (`caused_by`), so a rule never fires on what it caused itself and
# chains stay short (inbox/automation_runner.py).
CAUSED_BY: ContextVar[tuple[int, ...]] = ContextVar("switchboard_caused_by", default=())


class _Event(View):
    v: int = EVENT_VERSION
    id: str = Field(default_factory=new_event_id)
    # The inbox whose agents receive the event; None: every agent (e.g. an agent went away).
    inbox_id: int | None
    at: datetime
    # The automation rules that caused it (see CAUSED_BY); empty for people's changes.
    caused_by: list[int] = Field(default_factory=list)
    # When set, only these agents receive the event, whatever their inboxes.
    audience: list[int] | None = None


class MessageCreated(_Event):
    """A message, note or activity line was added to a conversation."""

    type: Literal["message.created"] = "message.created"
    message: MessageView
    conversation: ConversationView


class MessageStatusChanged(_Event):
    """An outgoing message moved to sent, delivered, read or failed."""

    type: Literal["message.status_changed"] = "message.status_changed"
    message: MessageView


class MessageEdited(_Event):
    """A customer changed a message they had sent: its new text (and when)."""

    type: Literal["message.edited"] = "message.edited"
    message: MessageView


class ConversationCreated(_Event):
    """A new conversation was opened."""

    type: Literal["conversation.created"] = "conversation.created"
    conversation: ConversationView


class ConversationAssigned(_Event):
    """A conversation got a new assignee or team (or lost them)."""

    type: Literal["conversation.assigned"] = "conversation.assigned"
    conversation: ConversationView
    previous_assignee_id: int | None
    by_agent_id: int | None


class ConversationStatusChanged(_Event):
    """A conversation was resolved, reopened, snoozed or set pending."""

    type: Literal["conversation.status_changed"] = "conversation.status_changed"
    conversation: ConversationView
    previous_status: str
    by_agent_id: int | None


class ConversationRead(_Event):
    """An agent read a conversation: its unread count went back to zero."""

    type: Literal["conversation.read"] = "conversation.read"
    conversation: ConversationView
    by_agent_id: int


class ConversationTyping(_Event):
    """Someone is typing (or stopped): an agent (reply or note) or the contact."""

    type: Literal["conversation.typing"] = "conversation.typing"
    conversation_id: int
    contact_id: int
    by_agent_id: int | None  # None when the contact is typing
    mode: Literal["reply", "note"] = "reply"
    typing: bool


class ConversationUpdated(_Event):
    """A conversation's priority or labels changed."""

    type: Literal["conversation.updated"] = "conversation.updated"
    conversation: ConversationView
    changes: list[str]
    by_agent_id: int | None


class ConversationViewing(_Event):
    """An agent opened (or left) a conversation: collision detection shows who is there."""

    type: Literal["conversation.viewing"] = "conversation.viewing"
    conversation_id: int
    by_agent_id: int
    viewing: bool


class NotificationCreated(_Event):
    """An agent was mentioned or got a conversation assigned (sent to that agent only)."""

    type: Literal["notification.created"] = "notification.created"
    notification: NotificationView


class AgentUpdated(_Event):
    """An agent's availability, role, memberships or active state changed.

    Sent to every agent (inbox_id None); web processes also close a deactivated agent's
    websockets and refresh the inboxes of one whose memberships changed.
    """

    type: Literal["agent.updated"] = "agent.updated"
    agent_id: int
    name: str
    role: str
    availability: str
    is_active: bool
    online: bool
    changes: list[str]


class ContactMerged(_Event):
    """Two contacts became one: every identity and conversation of `merged_contact_id` moved."""

    type: Literal["contact.merged"] = "contact.merged"
    contact: ContactView
    merged_contact_id: int
    by_agent_id: int | None


class ContactCreated(_Event):
    """A contact was created from a new identity."""

    type: Literal["contact.created"] = "contact.created"
    contact: ContactView


class ContactUpdated(_Event):
    """A contact's name, email, phone or attributes changed, by an agent or a CRM.

    For the durable consumers (CRM connectors, outbound webhooks): no agent receives it live
    (agents see the change through `conversation.updated` of the contact's conversations).
    """

    type: Literal["contact.updated"] = "contact.updated"
    audience: list[int] | None = Field(default_factory=list)
    contact: ContactView
    changes: list[str]
    by_agent_id: int | None
    # Who made it: "agent", or "crm:<connection id>" (a connector never pushes back what it
    # brought in itself).
    source: str = "agent"


class InboxChanged(_Event):
    """An inbox was added or its settings changed. For the processes that keep inboxes in
    memory (webhooks, the widget); no agent receives it."""

    type: Literal["inbox.changed"] = "inbox.changed"
    audience: list[int] | None = Field(default_factory=list)
    changed_inbox_id: int


class AutomationWebhook(_Event):
    """An automation rule's send_webhook action fired: for the outbound webhook endpoints
    that take "automation.webhook" (crm_sync/webhooks.py); no agent receives it."""

    type: Literal["automation.webhook"] = "automation.webhook"
    audience: list[int] | None = Field(default_factory=list)
    rule_id: int
    rule_name: str
    # The event the rule fired on (its type and id).
    trigger_type: str
    trigger_event_id: str
    conversation: ConversationView


Event = Annotated[
    MessageCreated
    | MessageStatusChanged
    | MessageEdited
    | ConversationCreated
    | ConversationAssigned
    | ConversationStatusChanged
    | ConversationRead
    | ConversationTyping
    | ConversationUpdated
    | ConversationViewing
    | NotificationCreated
    | AgentUpdated
    | ContactMerged
    | ContactCreated
    | ContactUpdated
    | InboxChanged
    | AutomationWebhook,
    Field(discriminator="type"),
]
EVENT_TYPES = (
    MessageCreated,
    MessageStatusChanged,
    MessageEdited,
    ConversationCreated,
    ConversationAssigned,
    ConversationStatusChanged,
    ConversationRead,
    ConversationTyping,
    ConversationUpdated,
    ConversationViewing,
    NotificationCreated,
    AgentUpdated,
    ContactMerged,
    ContactCreated,
    ContactUpdated,
    InboxChanged,
    AutomationWebhook,
)
event_adapter: TypeAdapter[Any] = TypeAdapter(Event)


def encode_event(event: View) -> bytes:
    """Serialise an event for the bus."""
    return event.model_dump_json().encode()


def decode_event(payload: bytes | str) -> Any:
    """Parse an event from the bus into its typed class."""
    return event_adapter.validate_json(payload)
