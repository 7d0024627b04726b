"""Delivery states of outgoing messages: what the channel's send did, the provider's status
callbacks, and bounces. A status only moves forward: a late "sent" never hides "read"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from sqlalchemy import bindparam, tuple_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.events import MessageEdited, MessageStatusChanged, View
from hub.types import MessageEdit, ReadUpTo, StatusUpdate, utcnow
from inbox.context import InboxContext
from inbox.db import execute, is_postgresql
from inbox.models import ContactIdentity, Conversation, Message, table_of
from inbox.outbox import stage_events
from inbox.views import message_view

STATUS_RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3, "failed": 4}
MAX_REASON = 1000


class UnknownMessage(Exception):
    """A status for a message not stored yet (its send result may still be on its way)."""


def moves_forward(current: str | None, new: str) -> bool:
    """Whether `new` is a later delivery state than `current`. A failure is news only
    before the message reached anyone: once delivered or read, a late "failed" (a retried
    callback, a confused provider) never takes that back."""
    if new == "failed":
        return (current or "queued") in ("queued", "sent")
    return STATUS_RANK.get(new, -1) > STATUS_RANK.get(current or "queued", -1)



async def _by_external_id(
    session: AsyncSession, pairs: Sequence[tuple[int, str]], direction: str = "out"
) -> dict[tuple[int, str], Message]:
    """Messages by (inbox, external id), locked on PostgreSQL: two callbacks of one message
    handled at once wait for each other, so the second sees the first's change."""
    query = (
        select(Message)
        .where(tuple_(col(Message.inbox_id), col(Message.external_id)).in_(sorted(set(pairs))),
               Message.direction == direction)
        .order_by(col(Message.id))
    )
    if is_postgresql(session):
        query = query.with_for_update()
    rows = list(await session.exec(query))
    for row in rows:
        session.expunge(row)  # changed rows are written by _save, in one statement
    return {(row.inbox_id, row.external_id or ""): row for row in rows}


async def _save(session: AsyncSession, rows: Sequence[Message]) -> list[View]:
    """Write the changed statuses (one statement) and make their events."""
    if not rows:
        return []
    table = table_of(Message)
    await execute(
        session,
        update(table).where(table.c.id == bindparam("row_id"))
        .values(status=bindparam("new_status"), status_reason=bindparam("new_reason"),
                external_id=bindparam("new_external_id")),
        [{"row_id": r.id, "new_status": r.status, "new_reason": r.status_reason,
          "new_external_id": r.external_id} for r in rows],
    )
    now = utcnow()
    return [MessageStatusChanged(inbox_id=r.inbox_id, at=now, message=message_view(r))
            for r in rows]


async def apply_statuses(
    ctx: InboxContext, updates: Sequence[StatusUpdate]
) -> list[bool | Exception]:
    """Move outgoing messages' statuses forward, in one transaction; per update: True when
    it changed something, False when it was stale, UnknownMessage when no outgoing message
    has its id yet (the bus delivers it again later instead of losing it)."""
    results: list[bool | Exception] = []
    async with ctx.db.write() as session:
        rows = await _by_external_id(session, [(u.inbox_id, u.external_id) for u in updates])
        changed: dict[int, Message] = {}
        for item in updates:
            row = rows.get((item.inbox_id, item.external_id))
            if row is None:
                results.append(UnknownMessage(f"no outgoing message {item.external_id!r} yet"))
                continue
            if not moves_forward(row.status, item.status):
                results.append(False)
                continue
            row.status = item.status
            row.status_reason = (item.reason or None) if item.status == "failed" else None
            assert row.id is not None
            changed[row.id] = row
            results.append(True)
        stage_events(session, await _save(session, list(changed.values())))
    return results


async def apply_status(ctx: InboxContext, update_: StatusUpdate) -> bool:
    """One status update (see apply_statuses); raises UnknownMessage."""
    result = (await apply_statuses(ctx, [update_]))[0]
    if isinstance(result, Exception):
        raise result
    return result


WATERMARK_ROWS = 200  # the newest messages one watermark moves (older ones moved before)


async def apply_watermarks(ctx: InboxContext, marks: Sequence[ReadUpTo]) -> int:
    """Mark what each watermark covers (the messages sent to its person in its inbox up to
    its time) delivered or read, in one transaction; how many messages moved forward."""
    moved: dict[int, Message] = {}
    async with ctx.db.write() as session:
        for mark in marks:
            # Only what left: a queued reply has not reached the provider yet.
            below = [s for s in ("sent", "delivered") if STATUS_RANK[s] < STATUS_RANK[mark.status]]
            query = (
                select(Message)
                .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
                .join(ContactIdentity, col(ContactIdentity.id) == col(Conversation.identity_id))
                .where(col(Message.inbox_id) == mark.inbox_id, Message.direction == "out",
                       Message.kind == "message", col(Message.status).in_(below),
                       col(Message.created_at) <= mark.up_to,
                       ContactIdentity.kind == mark.recipient.kind,
                       ContactIdentity.value == mark.recipient.value)
                .order_by(col(Message.id).desc()).limit(WATERMARK_ROWS)
            )
            if is_postgresql(session):
                query = query.with_for_update(of=Message)
            for row in await session.exec(query):
                session.expunge(row)
                if row.id is not None and moves_forward(row.status, mark.status):
                    row.status, row.status_reason = mark.status, None
                    moved[row.id] = row
        stage_events(session, await _save(session, list(moved.values())))
    return len(moved)


EDITS_KEPT = 20  # earlier wordings a message keeps (meta["edits"]), newest last


async def apply_edits(ctx: InboxContext, edits: Sequence[MessageEdit]) -> list[bool | Exception]:
    """Give customers' messages the text they changed them to, keeping what they said before
    (meta["edits"]), in one transaction; per edit: True when it changed the message, False
    when it was the same or older than the last one applied, UnknownMessage when the
    message is not stored yet (the bus delivers the edit again later)."""
    results: list[bool | Exception] = []
    async with ctx.db.write() as session:
        rows = await _by_external_id(session, [(e.inbox_id, e.external_id) for e in edits],
                                     direction="in")
        changed: dict[int, Message] = {}
        for edit in edits:
            row = rows.get((edit.inbox_id, edit.external_id))
            if row is None:
                results.append(UnknownMessage(f"no message {edit.external_id!r} yet"))
                continue
            at = (edit.provider_ts or edit.received_at).isoformat()
            meta = dict(row.meta or {})
            if edit.text == row.text or str(meta.get("edited_at") or "") >= at:
                results.append(False)
                continue
            history = [*meta.get("edits", []), {"text": row.text, "until": at}]
            meta.update(edits=history[-EDITS_KEPT:], edited_at=at)
            row.text, row.meta = edit.text, meta
            assert row.id is not None
            changed[row.id] = row
            results.append(True)
        if changed:
            table = table_of(Message)
            await execute(session, update(table).where(table.c.id == bindparam("row_id"))
                          .values(text=bindparam("new_text"), meta=bindparam("new_meta")),
                          [{"row_id": r.id, "new_text": r.text, "new_meta": r.meta}
                           for r in changed.values()])
            now = utcnow()
            stage_events(session, [MessageEdited(inbox_id=r.inbox_id, at=now,
                                                 message=message_view(r))
                                   for r in changed.values()])
    return results


MAX_RECEIPTS = 200  # message ids one receipt from a widget may name


async def visitor_receipt(
    ctx: InboxContext, *, conversation_id: int, message_ids: Sequence[int],
    status: Literal["delivered", "read"],
) -> int:
    """The visitor's own widget received ("delivered") or showed ("read") replies of their
    conversation: those replies move forward (never back, never a note, never another
    conversation's message). Answers how many changed; two statements at most."""
    ids = sorted({i for i in message_ids if isinstance(i, int)})[:MAX_RECEIPTS]
    if not ids:
        return 0
    async with ctx.db.write() as session:
        query = (select(Message)
                 .where(col(Message.id).in_(ids), Message.conversation_id == conversation_id,
                        Message.direction == "out", Message.kind == "message")
                 .order_by(col(Message.id)))
        if is_postgresql(session):
            query = query.with_for_update()
        rows = list(await session.exec(query))
        changed = []
        for row in rows:
            session.expunge(row)  # written by _save
            if moves_forward(row.status, status):
                row.status, row.status_reason = status, None
                changed.append(row)
        stage_events(session, await _save(session, changed))
    return len(changed)


async def set_send_result(
    ctx: InboxContext,
    *,
    message_id: int,
    status: str,
    external_id: str | None = None,
    reason: str | None = None,
) -> None:
    """Record what a channel's send did to an outgoing message."""
    async with ctx.db.write() as session:
        # Locked for the same reason as apply_statuses: a callback may race the send result.
        row = await session.get(Message, message_id, with_for_update=is_postgresql(session))
        if row is None:
            return
        session.expunge(row)  # written by _save
        changed = False
        if external_id and not row.external_id:
            row.external_id = external_id
            changed = True
        if moves_forward(row.status, status):
            row.status = status
            row.status_reason = reason[:MAX_REASON] if status == "failed" and reason else None
            changed = True
        if changed:
            stage_events(session, await _save(session, [row]))


async def mark_bounced(
    session: AsyncSession, bounces: Sequence[tuple[int, str, str]]
) -> list[View]:
    """Reports that our outgoing messages could not be delivered mark them failed:
    (inbox, external id of our message, reason) each; their events, for the caller to stage."""
    if not bounces:
        return []
    rows = await _by_external_id(session, [(inbox_id, ext) for inbox_id, ext, _ in bounces])
    changed: dict[int, Message] = {}
    for inbox_id, ext, reason in bounces:
        row = rows.get((inbox_id, ext))
        if row is None or not moves_forward(row.status, "failed"):
            continue
        row.status = "failed"
        row.status_reason = reason[:MAX_REASON]
        assert row.id is not None
        changed[row.id] = row
    return await _save(session, list(changed.values()))
