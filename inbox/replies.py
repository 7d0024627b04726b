"""An agent's reply or internal note: checked, stored as `queued` (a reply), and handed to
the senders through the outbox, in one transaction of four statements on the common path.

Everything a reply needs to know is read in one statement: the conversation (locked on
PostgreSQL), its inbox's channel, the contact's name and address, its labels, whether the
idempotency key was used already, whether a colleague replied meanwhile, when the customer
last wrote, and the message to answer (the customer's latest, never an auto-reply). Then the
message is inserted, the conversation updated, the events and the send request staged.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, insert, null, or_, select, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.events import ConversationView, IdentityView, MessageCreated, MessageView
from hub.identity import InvalidIdentity, normalize_email
from hub.types import AttachmentRef, ChannelProfile, Identity, OutboundMessage, utcnow
from inbox.agents import Principal
from inbox.attachments import inbox_attachments
from inbox.context import InboxContext
from inbox.db import execute, is_postgresql
from inbox.errors import Collision, NotFound, Refused, WindowClosed
from inbox.mentions import MAX_MENTIONS, notify_mentioned, unmentionable
from inbox.models import (
    Agent,
    Contact,
    ContactIdentity,
    Conversation,
    ConversationLabel,
    Inbox,
    Label,
    Message,
    table_of,
)
from inbox.outbox import stage_events, stage_send
from inbox.views import PREVIEW_CHARS, message_view

MAX_TEXT = 20_000
MAX_ATTACHMENTS = 10
MAX_CC = 20
# A reply by someone else this recent, and not yet seen by the sender, is a collision.
COLLISION_SECONDS = 600


async def reply(
    ctx: InboxContext,
    principal: Principal,
    *,
    conversation_id: int,
    text: str,
    kind: Literal["message", "note"] = "message",
    idempotency_key: str | None = None,
    template: str | None = None,
    template_variables: dict[str, str] | None = None,
    attachment_ids: list[str] | None = None,
    mention_ids: list[int] | None = None,
    after_message_id: int | None = None,
    force: bool = False,
    cc: list[str] | None = None,
    meta: dict[str, Any] | None = None,
) -> MessageView:
    """Send a reply on the customer's channel (queued) or leave an internal note.

    The conversation's channel decides what may go out (`ctx.channel(...).capabilities`):
    templates and attachments only where the channel takes them, the text within its
    length, and on a channel with a reply window free text only while the window is open
    (WindowClosed); a template (with its variables) always may. Every caller gets these
    checks: the API, the UI, automation, a script. `attachment_ids` are files uploaded to
    the conversation's inbox; with them, the text may be empty. A note may mention agents
    of the inbox (`mention_ids`): each is notified. A reply with `after_message_id` (the
    newest message the agent saw) raises Collision when another agent replied after it in
    the last minutes, unless `force`. `cc`: the addresses copied on an email reply (None:
    the conversation's other participants). `meta`: what the system notes on the message
    (the satisfaction survey marks its own).
    """
    request = _Request.check(
        text=text, kind=kind, template=template, variables=template_variables,
        attachment_ids=attachment_ids, mention_ids=mention_ids, cc=cc,
    )
    key = idempotency_key or secrets.token_urlsafe(16)
    async with ctx.db.write() as session:
        now = utcnow()
        target = await _target(session, principal, conversation_id, key=key, now=now,
                               after=after_message_id if kind == "message" and not force
                               else None)
        if target.used_key is not None:
            return await _retried(session, target, conversation_id)
        if target.colliding is not None:
            await _collision(session, target.colliding, now)
        cannot = await unmentionable(session, inbox_id=target.inbox_id,
                                     agent_ids=request.mentioned)
        if cannot:
            raise Refused(f"mention_ids: agent {cannot[0]} cannot see this conversation's inbox")
        if kind == "message":
            if target.disconnected:
                raise Refused("this conversation's inbox was disconnected: nothing can be "
                              "sent from it any more (notes still can be left)")
            _channel_allows(ctx.channel(target.channel), request, target, now)
        files: list[AttachmentRef] = []
        if request.file_ids:
            files, unknown = await inbox_attachments(
                session, inbox_id=target.inbox_id, ids=request.file_ids)
            if unknown:
                raise Refused(f"attachment_ids: {unknown[0]} is not a file of this "
                              "conversation's inbox (upload it first)")
        if kind == "message" and target.identity is None:
            raise Refused("this conversation has no customer address to reply to")
        message = await _store(session, principal, target, request, key=key, files=files,
                               now=now, meta=meta)
        view = message_view(message)
        event = MessageCreated(inbox_id=target.inbox_id, at=now, message=view,
                               conversation=target.view)
        notifications = []
        if request.mentioned:
            notifications = await notify_mentioned(
                session, conversation=target.as_conversation(), note=message,
                agent_ids=request.mentioned, by_agent_id=principal.agent_id)
        stage_events(session, [event, *notifications])
        if kind == "message":
            stage_send(session, _send_request(target, message, key, files, request.cc))
    return view


def _channel_allows(
    channel: ChannelProfile, request: _Request, target: _Target, now: datetime
) -> None:
    """Refuse what the conversation's channel cannot carry, in the channel's own words."""
    name, can = channel.display_name, channel.capabilities
    if request.template is not None and not can.templates:
        raise Refused(f"{name} conversations take no templates")
    if request.file_ids and not can.attachments:
        raise Refused(f"{name} conversations take no attachments")
    if len(request.file_ids) > can.max_attachments:
        raise Refused(f"a {name} message carries at most {can.max_attachments} attachment(s)")
    if len(request.text) > can.max_text:
        raise Refused(f"a {name} message may have at most {can.max_text} characters")
    hours = can.window_hours(target.inbox_settings)
    if request.template is None and hours is not None:
        closes_at = (target.created_at if target.last_in_at is None
                     else target.last_in_at + timedelta(hours=hours))
        if closes_at <= now:
            raise WindowClosed(hours, closes_at, channel=name)


@dataclass(frozen=True)
class _Request:
    """A reply's own fields, checked before anything is read."""

    text: str
    kind: Literal["message", "note"]
    template: str | None
    variables: dict[str, str]
    file_ids: list[str]
    mentioned: list[int]
    cc: list[Identity] | None

    @classmethod
    def check(
        cls, *, text: str, kind: Literal["message", "note"], template: str | None,
        variables: dict[str, str] | None, attachment_ids: list[str] | None,
        mention_ids: list[int] | None, cc: list[str] | None,
    ) -> _Request:
        text = text.strip()
        values = dict(variables or {})
        file_ids = list(dict.fromkeys(attachment_ids or ()))
        if len(file_ids) > MAX_ATTACHMENTS:
            raise Refused(f"a message may carry at most {MAX_ATTACHMENTS} attachments")
        if template is not None:
            if kind != "message":
                raise Refused("only a message to the customer can be a template")
            if file_ids:
                raise Refused("a template message carries no attachments")
            text = text or template_text(template, values)
        elif values:
            raise Refused("template_variables go only with a template")
        if not text and not file_ids:
            raise Refused("a message needs some text or an attachment")
        if len(text) > MAX_TEXT:
            raise Refused(f"a message may have at most {MAX_TEXT} characters")
        mentioned = list(dict.fromkeys(mention_ids or ()))
        if mentioned and kind != "note":
            raise Refused("only an internal note can mention agents")
        if len(mentioned) > MAX_MENTIONS:
            raise Refused(f"a note may mention at most {MAX_MENTIONS} agents")
        copied: list[Identity] | None = None
        if cc is not None:
            if kind != "message":
                raise Refused("cc: only a message to the customer is copied to others")
            if len(cc) > MAX_CC:
                raise Refused(f"cc: at most {MAX_CC} addresses")
            try:
                copied = [Identity(kind="email", value=normalize_email(a)) for a in cc]
            except InvalidIdentity as exc:
                raise Refused(f"cc: {exc}") from None
        return cls(text, kind, template, values, file_ids, mentioned, copied)


@dataclass
class _Target:
    """The conversation a reply goes to, as the one statement of `_target` read it."""

    id: int
    inbox_id: int
    channel: str
    contact_id: int
    created_at: datetime
    subject: str | None
    cc: list[dict[str, Any]]
    identity: Identity | None
    view: ConversationView
    used_key: int | None
    colliding: int | None
    last_in_at: datetime | None
    answers: str | None
    references: list[str]
    disconnected: bool = False
    inbox_settings: dict[str, Any] = field(default_factory=dict)

    def as_conversation(self) -> Conversation:
        """A detached conversation row with what notifications read of it."""
        return Conversation(id=self.id, inbox_id=self.inbox_id, contact_id=self.contact_id,
                            subject=self.subject, created_at=self.created_at)


async def _target(
    session: AsyncSession, principal: Principal, conversation_id: int, *, key: str,
    now: datetime, after: int | None,
) -> _Target:
    c = table_of(Conversation)
    m = table_of(Message)
    inbound = m.c.conversation_id == c.c.id
    own_words = (
        select(m.c.external_id, m.c.meta)
        .where(inbound, m.c.direction == "in",
               or_(m.c.meta["automated"].as_string().is_(None),
                   m.c.meta["automated"].as_string() == ""))
        .order_by(m.c.accepted_at.desc(), m.c.id.desc()).limit(1)
    )
    collision = (
        select(m.c.id).where(
            inbound, m.c.kind == "message", m.c.direction == "out", m.c.id > after,
            m.c.agent_id != principal.agent_id,
            m.c.created_at >= now - timedelta(seconds=COLLISION_SECONDS),
        ).order_by(m.c.id.desc()).limit(1).scalar_subquery()
        if after is not None else null()
    )
    labels = (
        select(func.json_agg(col(Label.name)) if is_postgresql(session)
               else func.json_group_array(col(Label.name)))
        .join(ConversationLabel, col(ConversationLabel.label_id) == col(Label.id))
        .where(col(ConversationLabel.conversation_id) == c.c.id)
        .scalar_subquery()
    )
    query = (
        select(
            *c.columns, col(Inbox.channel), col(Inbox.disconnected_at),
            col(Inbox.settings).label("inbox_settings"),
            col(Contact.name).label("contact_name"),
            col(ContactIdentity.kind).label("identity_kind"),
            col(ContactIdentity.value).label("identity_value"),
            col(ContactIdentity.display_name).label("identity_name"),
            labels.label("labels"),
            select(m.c.id).where(m.c.idempotency_key == key).scalar_subquery().label("used"),
            collision.label("colliding"),
            select(func.max(m.c.accepted_at)).where(inbound, m.c.direction == "in")
            .scalar_subquery().label("last_in_at"),
            own_words.with_only_columns(m.c.external_id).scalar_subquery().label("answers"),
            own_words.with_only_columns(m.c.meta).scalar_subquery().label("answers_meta"),
        )
        .select_from(c)
        .join(Inbox, col(Inbox.id) == c.c.inbox_id)
        .join(Contact, col(Contact.id) == c.c.contact_id)
        .outerjoin(ContactIdentity, col(ContactIdentity.id) == c.c.identity_id)
        .where(c.c.id == conversation_id, c.c.inbox_id.in_(sorted(principal.inbox_ids)))
    )
    if is_postgresql(session):
        query = query.with_for_update(of=c)
    row = (await execute(session, query)).first()
    if row is None:
        raise NotFound(f"conversation {conversation_id} not found")
    meta = _json(row.answers_meta) or {}
    identity = (Identity(kind=row.identity_kind, value=row.identity_value,
                         display_name=row.identity_name) if row.identity_kind else None)
    view = ConversationView(
        id=row.id, inbox_id=row.inbox_id, channel=row.channel, contact_id=row.contact_id,
        contact_name=row.contact_name, status=row.status, assignee_id=row.assignee_id,
        team_id=row.team_id, subject=row.subject,
        last_message_preview=row.last_message_preview, unread_count=row.unread_count,
        snoozed_until=row.snoozed_until, priority=row.priority,
        labels=sorted(_json(row.labels) or [], key=lambda n: (str(n).lower(), str(n))),
        waiting_since=row.waiting_since, last_activity_at=row.last_activity_at,
        created_at=row.created_at, merged_into_id=row.merged_into_id,
        cc=[IdentityView.model_validate(p) for p in row.cc or []],
        sla_due_at=row.sla_due_at, sla_status=row.sla_status, csat_score=row.csat_score,
        muted=bool(row.muted),
    )
    return _Target(
        id=row.id, inbox_id=row.inbox_id, channel=row.channel, contact_id=row.contact_id,
        created_at=row.created_at, subject=row.subject, cc=list(row.cc or []),
        identity=identity, view=view, used_key=row.used, colliding=row.colliding,
        last_in_at=row.last_in_at, answers=row.answers,
        references=[str(r) for r in meta.get("references", [])],
        disconnected=row.disconnected_at is not None,
        inbox_settings=_json(row.inbox_settings) or {},
    )


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value



async def _retried(session: AsyncSession, target: _Target, conversation_id: int) -> MessageView:
    """A request sent again with the same idempotency key: nothing new happens."""
    existing = await session.get_one(Message, target.used_key)
    if existing.conversation_id != conversation_id:
        raise Refused("this idempotency key was used for another conversation")
    return message_view(existing)


async def _collision(session: AsyncSession, message_id: int, now: datetime) -> None:
    """Raise Collision naming who replied, and when."""
    found = (await execute(session, select(col(Agent.name), col(Message.created_at))
                           .join(Agent, col(Agent.id) == col(Message.agent_id))
                           .where(col(Message.id) == message_id))).one()
    name, at = found
    seconds = max(0, int((now - at).total_seconds()))
    raise Collision(f"{name} replied {seconds} second{'' if seconds == 1 else 's'} ago")


async def _store(
    session: AsyncSession, principal: Principal, target: _Target, request: _Request, *,
    key: str, files: Sequence[AttachmentRef], now: datetime, meta: dict[str, Any] | None = None,
) -> Message:
    """Insert the message and update the conversation (two statements)."""
    template = request.template
    message = Message(
        conversation_id=target.id, inbox_id=target.inbox_id, direction="out",
        kind=request.kind, text=request.text, agent_id=principal.agent_id,
        idempotency_key=key, status="queued" if request.kind == "message" else None,
        meta=({"template": template, "template_variables": request.variables} if template
              else {"mention_ids": request.mentioned} if request.mentioned else {})
        | (meta or {}),
        attachments=[ref.model_dump(mode="json") for ref in files],
        accepted_at=now, created_at=now,
    )
    values = message.model_dump(exclude={"id"})
    m = table_of(Message)
    message.id = (await execute(session, insert(m).values(values).returning(m.c.id))).scalar_one()
    changes: dict[str, Any] = {"last_activity_at": now}
    if request.kind == "message":
        preview = request.text or "📎 " + ", ".join(f.filename for f in files)
        changes |= {"last_message_preview": preview[:PREVIEW_CHARS], "unread_count": 0}
    c = table_of(Conversation)
    await execute(session, update(c).where(c.c.id == target.id).values(changes))
    target.view = target.view.model_copy(update=changes)
    return message


def _send_request(
    target: _Target, message: Message, key: str, files: Sequence[AttachmentRef],
    cc: list[Identity] | None,
) -> OutboundMessage:
    assert message.id is not None and target.identity is not None
    copied = cc if cc is not None else [Identity.model_validate(p) for p in target.cc]
    return OutboundMessage(
        message_id=message.id, conversation_id=target.id, inbox_id=target.inbox_id,
        channel=target.channel, recipient=target.identity, text=message.text,
        attachments=tuple(files), in_reply_to=target.answers, idempotency_key=key,
        template=message.meta.get("template"),
        template_variables=message.meta.get("template_variables") or {},
        automated=bool(message.meta.get("automated")),  # the survey: no auto-reply to it
        subject=target.subject, references=tuple(target.references),
        cc=tuple(p for p in copied if p != target.identity),
    )


def template_text(template: str, variables: dict[str, str]) -> str:
    """What the thread shows for a template message: its id and the values filled in."""
    filled = ", ".join(f"{{{{{name}}}}}={value}" for name, value in sorted(variables.items()))
    return f"[template {template}]" + (f" {filled}" if filled else "")

