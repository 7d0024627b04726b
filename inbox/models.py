"""The SQL tables of the inbox domain. Alembic owns the schema (inbox/migrations)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel

from hub.types import utcnow


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite keeps naive UTC text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; Switchboard stores aware UTC datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


TZ = UTCDateTime()

CONVERSATION_STATUSES = ("open", "pending", "snoozed", "resolved")
ROLES = ("admin", "lead", "agent")
# The one agent row automation acts as ("Automation" in the thread): never signs in, never
# listed or assigned (inactive), created on first use.
SYSTEM_ROLE = "system"
AVAILABILITY = ("online", "away")
PRIORITIES = ("none", "low", "medium", "high", "urgent")
ASSIGNMENT_POLICIES = ("round_robin", "least_loaded")
NOTIFICATION_KINDS = ("mention", "assigned", "rule", "sla")


def _ts(**kwargs: Any) -> Any:
    return Field(sa_type=TZ, **kwargs)


class Inbox(SQLModel, table=True):
    """A configured channel account: a number, a mailbox, a page, a widget, an API source."""

    __tablename__ = "inboxes"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    channel: str = Field(max_length=40, index=True)
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    auto_assign: bool = True
    # How auto-assignment picks among the inbox's online members: see ASSIGNMENT_POLICIES.
    assignment_policy: str = Field(default="round_robin", max_length=20)
    # When an assignee goes offline or is deactivated: their open conversations go back to
    # the queue (True) or stay theirs (False).
    requeue_on_offline: bool = False
    # A satisfaction survey goes to the customer when a conversation is resolved (inbox/csat.py).
    csat_survey: bool = Field(default=False, sa_column=Column(
        sa.Boolean, nullable=False, server_default=sa.false()))
    created_at: datetime = _ts(default_factory=utcnow)
    # Set when an admin deletes the inbox: intake stops (webhooks 404, pollers stop, replies
    # are refused) and its conversations stay readable.
    disconnected_at: datetime | None = _ts(default=None, nullable=True)


class Agent(SQLModel, table=True):
    """Someone who answers conversations: an agent, a team lead or an admin."""

    __tablename__ = "agents"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, sa_column_kwargs={"unique": True})
    name: str = Field(max_length=200)
    password_hash: str = Field(max_length=255)
    role: str = Field(default="agent", max_length=20)
    is_active: bool = True
    availability: str = Field(default="online", max_length=20)
    # Most open conversations auto-assignment gives this agent; None: no limit.
    capacity: int | None = Field(default=None, nullable=True)
    # TOTP two-factor authentication: the base32 secret, enabled once confirmed with a code.
    totp_secret: str | None = Field(default=None, max_length=64, nullable=True)
    totp_enabled: bool = False
    # The time step of the last code accepted: a code is refused if replayed in its window.
    totp_last_counter: int | None = Field(default=None, nullable=True)
    last_seen_at: datetime | None = _ts(default=None, nullable=True)
    # When a worker saw last_seen_at go stale and released the agent's conversations (per
    # inbox setting): a later last_seen_at means they came back, so the next drop counts.
    offline_noticed_at: datetime | None = _ts(default=None, nullable=True)
    password_changed_at: datetime = _ts(default_factory=utcnow)
    created_at: datetime = _ts(default_factory=utcnow)


class Team(SQLModel, table=True):
    """A group of agents that conversations can be assigned to."""

    __tablename__ = "teams"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, sa_column_kwargs={"unique": True})
    assignment_policy: str = Field(default="round_robin", max_length=20)
    created_at: datetime = _ts(default_factory=utcnow)


class TeamInbox(SQLModel, table=True):
    """An inbox a team works on: its leads see and steer it, its conversations can go to it."""

    __tablename__ = "team_inboxes"

    team_id: int = Field(foreign_key="teams.id", primary_key=True, ondelete="CASCADE")
    inbox_id: int = Field(foreign_key="inboxes.id", primary_key=True, ondelete="CASCADE",
                          index=True)


class InboxMember(SQLModel, table=True):
    """An agent allowed to see and answer an inbox's conversations."""

    __tablename__ = "inbox_members"

    inbox_id: int = Field(foreign_key="inboxes.id", primary_key=True, ondelete="CASCADE")
    agent_id: int = Field(foreign_key="agents.id", primary_key=True, ondelete="CASCADE", index=True)
    # Round robin picks the member assigned longest ago.
    last_assigned_at: datetime | None = _ts(default=None, nullable=True)


class TeamMember(SQLModel, table=True):
    """An agent's membership of a team."""

    __tablename__ = "team_members"

    team_id: int = Field(foreign_key="teams.id", primary_key=True, ondelete="CASCADE")
    agent_id: int = Field(foreign_key="agents.id", primary_key=True, ondelete="CASCADE", index=True)
    # Round robin within the team picks the member assigned longest ago.
    last_assigned_at: datetime | None = _ts(default=None, nullable=True)


class AgentSession(SQLModel, table=True):
    """A logged-in browser or API client; the cookie carries the token, we keep its hash."""

    __tablename__ = "agent_sessions"

    token_hash: str = Field(primary_key=True, max_length=64)
    agent_id: int = Field(foreign_key="agents.id", index=True, ondelete="CASCADE")
    csrf_token: str = Field(max_length=64)
    created_at: datetime = _ts(default_factory=utcnow)
    expires_at: datetime = _ts()


class Contact(SQLModel, table=True):
    """A customer, whatever channels they write from."""

    __tablename__ = "contacts"

    id: int | None = Field(default=None, primary_key=True)
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=32)
    attributes: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    # Set when this contact was merged into another: old links follow it there.
    merged_into_id: int | None = Field(
        default=None, foreign_key="contacts.id", nullable=True, ondelete="SET NULL"
    )
    created_at: datetime = _ts(default_factory=utcnow)
    # When an agent last changed the name, email, phone or attributes: another system's
    # change made before this loses (the later change wins).
    edited_at: datetime | None = _ts(default=None, nullable=True)


class ContactIdentity(SQLModel, table=True):
    """One way to reach a contact: an E.164 phone, an email, a chat user id, a visitor id."""

    __tablename__ = "contact_identities"
    __table_args__ = (sa.UniqueConstraint("kind", "value", name="uq_identity_kind_value"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contacts.id", index=True, ondelete="CASCADE")
    kind: str = Field(max_length=20)
    value: str = Field(max_length=320)
    display_name: str | None = Field(default=None, max_length=200)
    created_at: datetime = _ts(default_factory=utcnow)


class Conversation(SQLModel, table=True):
    """A thread between a contact and the team, in one inbox."""

    __tablename__ = "conversations"
    __table_args__ = (
        sa.Index("ix_conversations_inbox_activity", "inbox_id", "last_activity_at", "id"),
        sa.Index("ix_conversations_status_activity", "status", "last_activity_at", "id"),
        sa.Index("ix_conversations_assignee_activity", "assignee_id", "last_activity_at", "id"),
        sa.Index("ix_conversations_contact", "contact_id", "inbox_id", "status"),
        sa.Index("ix_conversations_queue", "waiting_since", "id"),
        # An agent's load (open conversations), counted on every auto-assignment; and the
        # list of "my open conversations", newest first, read straight off it.
        sa.Index("ix_conversations_assignee_status", "assignee_id", "status",
                 "last_activity_at", "id"),
        sa.Index("ix_conversations_team_activity", "team_id", "last_activity_at", "id"),
        # The at-risk and breached lists, soonest due first.
        sa.Index("ix_conversations_sla", "sla_status", "sla_due_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    inbox_id: int = Field(foreign_key="inboxes.id", ondelete="CASCADE")
    contact_id: int = Field(foreign_key="contacts.id", ondelete="CASCADE")
    status: str = Field(default="open", max_length=20)
    assignee_id: int | None = Field(
        default=None, foreign_key="agents.id", nullable=True, ondelete="SET NULL"
    )
    team_id: int | None = Field(
        default=None, foreign_key="teams.id", nullable=True, ondelete="SET NULL"
    )
    # The identity the customer writes from here: where replies go.
    identity_id: int | None = Field(
        default=None, foreign_key="contact_identities.id", nullable=True, ondelete="SET NULL"
    )
    subject: str | None = Field(default=None, max_length=998)
    priority: str = Field(default="none", max_length=10)
    # Set while the conversation waits in the queue for an agent with capacity (oldest first).
    waiting_since: datetime | None = _ts(default=None, nullable=True)
    last_message_preview: str | None = Field(default=None, max_length=300)
    # Other people on the thread besides the contact (email To/Cc), offered as Cc on replies:
    # [{"kind": "email", "value": ..., "display_name": ...}].
    cc: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Set when this conversation was merged into another (of the same inbox: both go when
    # the inbox goes): its messages live there now.
    merged_into_id: int | None = Field(
        default=None, foreign_key="conversations.id", nullable=True
    )
    unread_count: int = 0
    snoozed_until: datetime | None = _ts(default=None, nullable=True)
    last_activity_at: datetime = _ts(default_factory=utcnow)
    resolved_at: datetime | None = _ts(default=None, nullable=True)
    created_at: datetime = _ts(default_factory=utcnow)
    # The SLA (inbox/sla.py): when its soonest running target is due, and "ok", "at_risk",
    # "breached" or "met"; None without a policy.
    sla_due_at: datetime | None = _ts(default=None, nullable=True)
    sla_status: str | None = Field(default=None, max_length=10, nullable=True)
    # The satisfaction survey (inbox/csat.py): when it was sent, and the customer's 1-5.
    csat_asked_at: datetime | None = _ts(default=None, nullable=True)
    csat_score: int | None = Field(default=None, nullable=True)
    # Muted (inbox/actions.py set_muted): resolved, and the customer's new messages join it
    # without reopening it or notifying anyone, however late they come.
    muted: bool = Field(default=False, sa_column=Column(
        sa.Boolean(), nullable=False, server_default=sa.false()))


class ThreadKey(SQLModel, table=True):
    """A channel's thread hint (email Message-ID, chat id, widget session) for a conversation."""

    __tablename__ = "thread_keys"
    __table_args__ = (sa.UniqueConstraint("inbox_id", "key", name="uq_thread_key"),)

    id: int | None = Field(default=None, primary_key=True)
    inbox_id: int = Field(foreign_key="inboxes.id", ondelete="CASCADE")
    key: str = Field(max_length=998)
    conversation_id: int = Field(foreign_key="conversations.id", index=True, ondelete="CASCADE")


class Message(SQLModel, table=True):
    """A message, an internal note or an activity line of a conversation."""

    __tablename__ = "messages"
    __table_args__ = (
        sa.UniqueConstraint("inbox_id", "external_id", name="uq_message_external"),
        sa.UniqueConstraint("idempotency_key", name="uq_message_idempotency"),
        sa.Index("ix_messages_conversation_order", "conversation_id", "accepted_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversations.id", ondelete="CASCADE")
    inbox_id: int = Field(foreign_key="inboxes.id", ondelete="CASCADE")
    direction: str = Field(max_length=8)  # "in" | "out"
    kind: str = Field(default="message", max_length=10)  # message | note | activity
    text: str = Field(default="", sa_type=sa.Text)
    html: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    external_id: str | None = Field(default=None, max_length=255, nullable=True)
    idempotency_key: str | None = Field(default=None, max_length=255, nullable=True)
    in_reply_to: str | None = Field(default=None, max_length=998, nullable=True)
    contact_id: int | None = Field(
        default=None, foreign_key="contacts.id", nullable=True, ondelete="SET NULL"
    )
    agent_id: int | None = Field(
        default=None, foreign_key="agents.id", nullable=True, ondelete="SET NULL"
    )
    status: str | None = Field(default=None, max_length=12, nullable=True)
    status_reason: str | None = Field(default=None, max_length=1000, nullable=True)
    attachments: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    provider_ts: datetime | None = _ts(default=None, nullable=True)
    # When Switchboard accepted the message: the order of a conversation's thread.
    accepted_at: datetime = _ts(default_factory=utcnow)
    created_at: datetime = _ts(default_factory=utcnow)


class Attachment(SQLModel, table=True):
    """A file a customer sent (or an agent attached), stored before its message is."""

    __tablename__ = "attachments"

    id: str = Field(primary_key=True, max_length=32)
    inbox_id: int = Field(foreign_key="inboxes.id", index=True, ondelete="CASCADE")
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=255)
    size: int
    sha256: str = Field(max_length=64)
    # Where the bytes are: "database" (in `data`), "directory" or "s3" (inbox/blobs.py;
    # `data` is empty then).
    storage: str = Field(default="database", sa_column=Column(
        sa.String(20), nullable=False, server_default="database"))
    data: bytes = Field(sa_type=sa.LargeBinary)
    created_at: datetime = _ts(default_factory=utcnow)


class ChannelState(SQLModel, table=True):
    """A pulled channel's cursor for one inbox (e.g. IMAP UIDVALIDITY and last UID)."""

    __tablename__ = "channel_state"

    inbox_id: int = Field(foreign_key="inboxes.id", primary_key=True, ondelete="CASCADE")
    key: str = Field(primary_key=True, max_length=200)
    value: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = _ts(default_factory=utcnow)


class QuarantinedMessage(SQLModel, table=True):
    """Something a channel received but could not parse, kept with its error for an admin."""

    __tablename__ = "quarantined_messages"

    id: int | None = Field(default=None, primary_key=True)
    inbox_id: int = Field(foreign_key="inboxes.id", index=True, ondelete="CASCADE")
    reason: str = Field(max_length=1000)
    raw: bytes = Field(sa_type=sa.LargeBinary)
    created_at: datetime = _ts(default_factory=utcnow)


class Label(SQLModel, table=True):
    """A tag agents put on conversations (e.g. "billing", "vip")."""

    __tablename__ = "labels"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=60, sa_column_kwargs={"unique": True})
    # The name folded for comparison (labels.label_key): unique, so "VIP" and "vip" are one
    # label in any script, on both databases (SQLite's lower() folds only ASCII).
    name_key: str = Field(max_length=120, sa_column_kwargs={"unique": True})
    color: str = Field(default="#6b7280", max_length=7)
    # What the label is for, shown to agents choosing it ("Invoices, refunds, payments").
    description: str = Field(default="", max_length=200)
    # The team whose leads manage it; None: the workspace's (admins manage it).
    team_id: int | None = Field(default=None, foreign_key="teams.id", nullable=True)
    created_at: datetime = _ts(default_factory=utcnow)


class ConversationLabel(SQLModel, table=True):
    """A label on a conversation."""

    __tablename__ = "conversation_labels"

    conversation_id: int = Field(foreign_key="conversations.id", primary_key=True,
                                 ondelete="CASCADE")
    label_id: int = Field(foreign_key="labels.id", primary_key=True, ondelete="CASCADE",
                          index=True)


class CannedResponse(SQLModel, table=True):
    """A saved reply, inserted with /shortcut; may use variables like {{contact.name}}."""

    __tablename__ = "canned_responses"

    id: int | None = Field(default=None, primary_key=True)
    shortcut: str = Field(max_length=60, sa_column_kwargs={"unique": True})
    title: str = Field(default="", max_length=200)
    text: str = Field(sa_type=sa.Text)
    created_by: int | None = Field(
        default=None, foreign_key="agents.id", nullable=True, ondelete="SET NULL"
    )
    # The team whose leads manage it; None: the workspace's, or its author's own.
    team_id: int | None = Field(default=None, foreign_key="teams.id", nullable=True)
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)


class Invitation(SQLModel, table=True):
    """A single-use, expiring link that lets someone become an agent."""

    __tablename__ = "invitations"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    email: str = Field(max_length=320)
    name: str = Field(default="", max_length=200)
    role: str = Field(default="agent", max_length=20)
    inbox_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    team_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    invited_by: int | None = Field(
        default=None, foreign_key="agents.id", nullable=True, ondelete="SET NULL"
    )
    expires_at: datetime = _ts()
    accepted_at: datetime | None = _ts(default=None, nullable=True)
    revoked_at: datetime | None = _ts(default=None, nullable=True)
    created_at: datetime = _ts(default_factory=utcnow)


class Notification(SQLModel, table=True):
    """Something an agent should see: a mention of them, a conversation assigned to them."""

    __tablename__ = "notifications"
    __table_args__ = (sa.Index("ix_notifications_agent", "agent_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    agent_id: int = Field(foreign_key="agents.id", ondelete="CASCADE")
    kind: str = Field(max_length=20)
    conversation_id: int = Field(foreign_key="conversations.id", ondelete="CASCADE",
                                 index=True)
    message_id: int | None = Field(
        default=None, foreign_key="messages.id", nullable=True, ondelete="CASCADE"
    )
    by_agent_id: int | None = Field(
        default=None, foreign_key="agents.id", nullable=True, ondelete="SET NULL"
    )
    # What it is about, in short (the note's text, "Alice assigned you ..."), as it was then.
    text: str = Field(default="", max_length=200)
    read_at: datetime | None = _ts(default=None, nullable=True)
    created_at: datetime = _ts(default_factory=utcnow)


class ConversationViewer(SQLModel, table=True):
    """An agent with the conversation open right now (refreshed while they look at it)."""

    __tablename__ = "conversation_viewers"

    conversation_id: int = Field(foreign_key="conversations.id", primary_key=True,
                                 ondelete="CASCADE")
    agent_id: int = Field(foreign_key="agents.id", primary_key=True, ondelete="CASCADE")
    seen_at: datetime = _ts(default_factory=utcnow)


class AssignmentRule(SQLModel, table=True):
    """Route a new conversation to a team when its conditions all hold (first rule wins)."""

    __tablename__ = "assignment_rules"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    position: int = 0
    # None: every inbox.
    inbox_id: int | None = Field(
        default=None, foreign_key="inboxes.id", nullable=True, ondelete="CASCADE"
    )
    # [{"field": "channel|inbox|keywords|language|contact.<attribute>", "op": ..., "value": ...}]
    conditions: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    team_id: int = Field(foreign_key="teams.id", ondelete="CASCADE")
    is_active: bool = True
    created_at: datetime = _ts(default_factory=utcnow)


class AutomationRule(SQLModel, table=True):
    """When a trigger's event happens and the conditions hold, do the actions (in order of
    position, then id; see inbox/automation.py for what each part may hold)."""

    __tablename__ = "automation_rules"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    position: int = 0
    # None: every inbox (admins only).
    inbox_id: int | None = Field(
        default=None, foreign_key="inboxes.id", nullable=True, ondelete="CASCADE"
    )
    trigger: str = Field(max_length=40)
    # Timed triggers: how long the state lasts before the rule fires.
    delay_s: int | None = Field(default=None, nullable=True)
    # "all": every condition must hold; "any": one is enough.
    match: str = Field(default="all", max_length=3)
    conditions: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    actions: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    # After this rule fired, later rules are not tried for that event.
    stop_processing: bool = False
    is_active: bool = True
    created_by: int | None = Field(
        default=None, foreign_key="agents.id", nullable=True, ondelete="SET NULL"
    )
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)


class AutomationTimer(SQLModel, table=True):
    """A timed rule waiting on a conversation: it fires at due_at unless the state that
    armed it (pending; the customer's silence) ends first."""

    __tablename__ = "automation_timers"
    __table_args__ = (sa.Index("ix_automation_timers_due", "due_at"),)

    rule_id: int = Field(foreign_key="automation_rules.id", primary_key=True,
                         ondelete="CASCADE")
    conversation_id: int = Field(foreign_key="conversations.id", primary_key=True,
                                 ondelete="CASCADE")
    # The event that armed it (the firing's key: a timer fires once per arming), and when.
    armed_by: str = Field(max_length=64)
    armed_at: datetime = _ts()
    due_at: datetime = _ts()
    # The rules whose changes armed it: they are the firing's chain (no rule wakes itself
    # through another, and chains stay short).
    caused_by: list[int] = Field(default_factory=list, sa_column=Column(
        JSON, nullable=False, server_default=sa.text("'[]'")))


class AutomationFiring(SQLModel, table=True):
    """A rule fired on an event (once: the pair is the key) and what its actions did."""

    __tablename__ = "automation_firings"
    __table_args__ = (sa.Index("ix_automation_firings_conversation", "conversation_id"),)

    rule_id: int = Field(foreign_key="automation_rules.id", primary_key=True,
                         ondelete="CASCADE")
    event_id: str = Field(primary_key=True, max_length=64)
    conversation_id: int = Field(foreign_key="conversations.id", ondelete="CASCADE")
    at: datetime = _ts(default_factory=utcnow)
    summary: str = Field(max_length=1000)


class SlaPolicy(SQLModel, table=True):
    """Response and resolution targets for the conversations it applies to (the first active
    policy by position whose scope holds: inbox, team, priorities, label), counted in the
    business hours of its calendar (none: around the clock)."""

    __tablename__ = "sla_policies"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    position: int = 0
    inbox_id: int | None = Field(
        default=None, foreign_key="inboxes.id", nullable=True, ondelete="CASCADE"
    )
    team_id: int | None = Field(
        default=None, foreign_key="teams.id", nullable=True, ondelete="CASCADE"
    )
    # Any of these priorities (empty: any priority); a label the conversation has (None: any).
    priorities: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    label: str | None = Field(default=None, max_length=200, nullable=True)
    first_response_s: int | None = Field(default=None, nullable=True)
    next_response_s: int | None = Field(default=None, nullable=True)
    resolution_s: int | None = Field(default=None, nullable=True)
    # "At risk" this long before a target is due.
    warn_s: int = 900
    # A business-hours calendar (inbox/business_hours.py's CalendarSpec); None: 24/7.
    calendar: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # The clocks stop while the conversation is pending or snoozed (waiting on the customer).
    pause_when_waiting: bool = True
    is_active: bool = True
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)


class ConversationSla(SQLModel, table=True):
    """A conversation's SLA clocks (inbox/sla.py). Its soonest due time and state are copied
    on the conversation (sla_due_at, sla_status) for the list, its filters and its sort."""

    __tablename__ = "conversation_slas"
    __table_args__ = (sa.Index("ix_conversation_slas_check_at", "check_at"),)

    conversation_id: int = Field(foreign_key="conversations.id", primary_key=True,
                                 ondelete="CASCADE")
    policy_id: int | None = Field(default=None, foreign_key="sla_policies.id", nullable=True,
                                  ondelete="SET NULL")
    # The clocks: JSON of inbox/sla.py's Clocks (what was spent, since when, met or breached).
    clocks: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # When the checker must look next (a warning or a breach is due then); None: nothing runs.
    check_at: datetime | None = _ts(default=None, nullable=True)
    updated_at: datetime = _ts(default_factory=utcnow)


class CsatSurvey(SQLModel, table=True):
    """A conversation's satisfaction survey (one per conversation) and the answer to it; who
    and what it was about are kept as they were when it was sent, for the reports."""

    __tablename__ = "csat_surveys"
    __table_args__ = (sa.Index("ix_csat_surveys_asked", "asked_at"),)

    conversation_id: int = Field(foreign_key="conversations.id", primary_key=True,
                                 ondelete="CASCADE")
    inbox_id: int = Field(foreign_key="inboxes.id", ondelete="CASCADE")
    channel: str = Field(max_length=40)
    contact_id: int | None = Field(default=None, foreign_key="contacts.id", nullable=True,
                                   ondelete="SET NULL")
    assignee_id: int | None = Field(default=None, foreign_key="agents.id", nullable=True,
                                    ondelete="SET NULL")
    team_id: int | None = Field(default=None, foreign_key="teams.id", nullable=True,
                                ondelete="SET NULL")
    # Signed into the email links: a link works once, and only for this survey.
    nonce: str = Field(max_length=64)
    asked_at: datetime = _ts(default_factory=utcnow)
    score: int | None = Field(default=None, nullable=True)
    comment: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    answered_at: datetime | None = _ts(default=None, nullable=True)
    answered_via: str | None = Field(default=None, max_length=20, nullable=True)
    link_used_at: datetime | None = _ts(default=None, nullable=True)


class LoginAttempt(SQLModel, table=True):
    """A failed login, counted per email and per client address to slow down guessing."""

    __tablename__ = "login_attempts"
    __table_args__ = (sa.Index("ix_login_attempts_key_at", "key", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=400)
    at: datetime = _ts(default_factory=utcnow)


class ContactNote(SQLModel, table=True):
    """An agent's note about a contact (not tied to one conversation)."""

    __tablename__ = "contact_notes"

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contacts.id", index=True, ondelete="CASCADE")
    agent_id: int | None = Field(
        default=None, foreign_key="agents.id", nullable=True, ondelete="SET NULL"
    )
    text: str = Field(sa_type=sa.Text)
    created_at: datetime = _ts(default_factory=utcnow)


# Integer primary keys that may pass 2^31 (an outbox row per event); SQLite's rowid is 64-bit.
BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class OutboxEntry(SQLModel, table=True):
    """An event or send request written with the change that caused it, waiting for the relay.

    The relay (inbox/outbox.py) publishes entries in id order and deletes them; see
    DESIGN.md, Events.
    """

    __tablename__ = "outbox"

    id: int | None = Field(default=None, sa_column=Column(BIGINT_ID, primary_key=True))
    # The bus stream it goes to: "events" (also broadcast live) or "outbound".
    stream: str = Field(max_length=20)
    # The event's id, or the send request's idempotency key: what consumers dedupe on.
    key: str = Field(max_length=255)
    payload: bytes = Field(sa_type=sa.LargeBinary)
    created_at: datetime = _ts(default_factory=utcnow)


class ConsumedEvent(SQLModel, table=True):
    """An event a durable consumer (CRM sync, outbound webhooks, automation) has handled.

    Written in the same transaction as the consumer's effect, so an event delivered again
    after a crash is recognised and skipped: exactly once per consumer.
    """

    __tablename__ = "consumed_events"
    # Housekeeping forgets the oldest (inbox/housekeeping.py).
    __table_args__ = (sa.Index("ix_consumed_events_at", "consumed_at"),)

    consumer: str = Field(primary_key=True, max_length=100)
    event_id: str = Field(primary_key=True, max_length=64)
    consumed_at: datetime = _ts(default_factory=utcnow)


def table_of(model: type[SQLModel]) -> sa.Table:
    """A model's Core table: statements on it skip the ORM (bulk writes of plain rows)."""
    found: sa.Table = model.__table__  # type: ignore[attr-defined]
    return found


class VisitorVisit(SQLModel, table=True):
    """What the website chat knows of a visitor (one row per widget identity): where they
    are on the site, their browser, language and time zone, when they came first and last.
    Written when the widget starts or resumes; read by the contact panel."""

    __tablename__ = "visitor_visits"

    id: int | None = Field(default=None, primary_key=True)
    inbox_id: int = Field(foreign_key="inboxes.id", ondelete="CASCADE")
    identity_value: str = Field(max_length=320, unique=True)
    page_url: str | None = Field(default=None, max_length=2000)
    page_title: str | None = Field(default=None, max_length=300)
    referrer: str | None = Field(default=None, max_length=2000)
    browser: str | None = Field(default=None, max_length=100)
    os: str | None = Field(default=None, max_length=100)
    language: str | None = Field(default=None, max_length=35)
    time_zone: str | None = Field(default=None, max_length=64)
    # The host site vouched for the visitor's identifier (HMAC identifier_hash).
    verified: bool = False
    first_seen_at: datetime = _ts(default_factory=utcnow)
    last_seen_at: datetime = _ts(default_factory=utcnow)


class ReportRollup(SQLModel, table=True):
    """One day's (or month's) figures of one inbox for one group: everyone ("all", ""), an
    agent, a team or a label ("" in `key`: none). Kept by the `reports` consumer of the events
    stream (inbox/report_rollups.py); the reports read only these (inbox/reports.py).

    Times are histograms, {seconds (a round bucket: report_rollups.kept): count}, so
    medians and percentiles of any range are read from the sum of its rows."""

    __tablename__ = "report_rollups"
    __table_args__ = (sa.Index("ix_report_rollups_range", "dim", "period", "start"),)

    period: str = Field(max_length=5, primary_key=True)  # "day" | "month"
    start: date = Field(primary_key=True)
    inbox_id: int = Field(primary_key=True)
    dim: str = Field(max_length=10, primary_key=True)  # "all" | "agent" | "team" | "label"
    key: str = Field(max_length=100, primary_key=True)
    created: int = 0
    resolved: int = 0
    reopened: int = 0
    replies: int = 0  # agents' replies sent
    resolved_replies: int = 0  # the replies of the conversations resolved (per resolve)
    first_responses: int = 0
    first_response_hist: dict[str, int] = Field(default_factory=dict,
                                                sa_column=Column(JSON, nullable=False))
    resolution_hist: dict[str, int] = Field(default_factory=dict,
                                            sa_column=Column(JSON, nullable=False))
    sla_total: int = 0  # resolves of conversations under an SLA policy
    sla_met: int = 0  # ... whose every target was met
    csat_asked: int = 0
    csat_responses: int = 0
    csat_sum: int = 0
    csat_satisfied: int = 0  # answers of 4 or 5


class ReportConversation(SQLModel, table=True):
    """What the `reports` consumer remembers of a conversation between its events."""

    __tablename__ = "report_conversations"

    conversation_id: int = Field(primary_key=True)
    cycle_started_at: datetime = _ts()  # created, or reopened last
    first_response_at: datetime | None = _ts(default=None, nullable=True)
    replies: int = 0  # agents' replies since the cycle started
    csat_score: int | None = Field(default=None, nullable=True)
    # The rollup rows the survey was counted in (its answer is counted in the same ones).
    csat_slots: list[list[Any]] | None = Field(default=None,
                                               sa_column=Column(JSON, nullable=True))
