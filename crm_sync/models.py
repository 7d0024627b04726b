"""The tables of outbound webhooks and CRM connections. Alembic owns the schema
(inbox/migrations, which registers these tables beside the inbox domain's)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel

from hub.types import utcnow
from inbox.models import TZ

DELIVERY_STATUSES = ("pending", "delivered", "dead")


def _ts(**kwargs: Any) -> Any:
    return Field(sa_type=TZ, **kwargs)


class WebhookEndpoint(SQLModel, table=True):
    """A URL of another system that receives Switchboard's events, signed."""

    __tablename__ = "webhook_endpoints"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=2000)
    description: str = Field(default="", max_length=200)
    # The event types it wants; empty: every type of the catalogue.
    event_types: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Its signing secrets, sealed (hub.secrets), newest first: [{"secret": ..., "expires_at":
    # iso or null}]. After a rotation the old one signs too until it expires.
    secrets: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts(default_factory=utcnow)
    # Set when an admin turned it off: no new deliveries (what was recorded stays replayable).
    disabled_at: datetime | None = _ts(default=None, nullable=True)


class WebhookDelivery(SQLModel, table=True):
    """One event for one endpoint: sent until the endpoint answers 2xx, or given up (dead)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_delivery_event"),
        sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        sa.Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    endpoint_id: int = Field(foreign_key="webhook_endpoints.id", ondelete="CASCADE")
    # The event's id: the `webhook-id` header, the same on every try and replay.
    event_id: str = Field(max_length=64)
    event_type: str = Field(max_length=60)
    payload: str = Field(sa_type=sa.Text)
    status: str = Field(default="pending", max_length=20)
    attempts: int = 0
    next_attempt_at: datetime = _ts(default_factory=utcnow)
    # Tries are given up once this is older than the give-up window (a replay restarts it).
    first_attempt_at: datetime = _ts(default_factory=utcnow)
    created_at: datetime = _ts(default_factory=utcnow)
    delivered_at: datetime | None = _ts(default=None, nullable=True)
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    last_latency_ms: int | None = None


class WebhookAttempt(SQLModel, table=True):
    """One try of a delivery: what the endpoint answered (or why there was no answer)."""

    __tablename__ = "webhook_attempts"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(foreign_key="webhook_deliveries.id", ondelete="CASCADE",
                             index=True)
    at: datetime = _ts(default_factory=utcnow)
    status_code: int | None = None
    latency_ms: int = 0
    response: str = Field(default="", max_length=1000)
    error: str | None = Field(default=None, max_length=500)


CONNECTION_STATES = ("connected", "broken")
JOB_KINDS = ("contact", "note")


class CrmConnection(SQLModel, table=True):
    """A CRM account Switchboard syncs with (HubSpot, Pipedrive)."""

    __tablename__ = "crm_connections"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=40)
    name: str = Field(max_length=200)
    # The connector's settings; those it marks secret (tokens) sealed (hub.secrets).
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="connected", max_length=20)
    # Why it is broken (the CRM's answer), shown to admins until they reconnect.
    status_reason: str | None = Field(default=None, max_length=500)
    status_changed_at: datetime = _ts(default_factory=utcnow)
    created_at: datetime = _ts(default_factory=utcnow)


class CrmLink(SQLModel, table=True):
    """A Switchboard contact and its record in one connected CRM."""

    __tablename__ = "crm_links"
    __table_args__ = (
        sa.UniqueConstraint("connection_id", "remote_id", name="uq_crm_link_remote"),
    )

    connection_id: int = Field(foreign_key="crm_connections.id", ondelete="CASCADE",
                               primary_key=True)
    contact_id: int = Field(foreign_key="contacts.id", ondelete="CASCADE", primary_key=True)
    remote_id: str = Field(max_length=64)
    synced_at: datetime = _ts(default_factory=utcnow)


class CrmJob(SQLModel, table=True):
    """One thing to push to a CRM: a contact's current state, or a conversation's transcript.

    Recorded by the `crm` consumer of the events stream (once per event, connection and
    kind); done by the syncer in order per contact, retried until the CRM takes it."""

    __tablename__ = "crm_jobs"
    __table_args__ = (
        sa.UniqueConstraint("connection_id", "event_id", "kind", name="uq_crm_job_event"),
        sa.Index("ix_crm_jobs_due", "status", "next_attempt_at"),
        sa.Index("ix_crm_jobs_contact", "connection_id", "contact_id", "status", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    connection_id: int = Field(foreign_key="crm_connections.id", ondelete="CASCADE")
    kind: str = Field(max_length=20)
    contact_id: int
    conversation_id: int | None = None
    event_id: str = Field(max_length=64)
    status: str = Field(default="pending", max_length=20)
    attempts: int = 0
    next_attempt_at: datetime = _ts(default_factory=utcnow)
    created_at: datetime = _ts(default_factory=utcnow)
    done_at: datetime | None = _ts(default=None, nullable=True)
    last_error: str | None = Field(default=None, max_length=500)
    # What the CRM made of it (the note's id): a retry after a crash finds it there.
    remote_id: str | None = Field(default=None, max_length=64)


class CrmLogEntry(SQLModel, table=True):
    """The sync log of a connection: what went out or came in, and the CRM's answer."""

    __tablename__ = "crm_log"
    __table_args__ = (sa.Index("ix_crm_log_connection", "connection_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    connection_id: int = Field(foreign_key="crm_connections.id", ondelete="CASCADE")
    at: datetime = _ts(default_factory=utcnow)
    direction: str = Field(max_length=4)  # out | in
    action: str = Field(max_length=60)
    contact_id: int | None = None
    remote_id: str | None = Field(default=None, max_length=64)
    outcome: str = Field(max_length=20)  # ok | retry | broken | failed | conflict | skipped
    detail: str = Field(default="", max_length=500)
