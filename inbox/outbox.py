"""The transactional outbox: events and send requests leave only through here.

An inbox action *stages* what it wants published (`stage_events`, `stage_send`) inside its
transaction; `Database.write` writes what was staged as `outbox` rows in that same
transaction, just before it commits. So a change and its events are committed together or
not at all. One relay (inbox/relay.py: the holder of the bus lease `outbox-relay`, in any
worker process) publishes the rows in id order and deletes them:

- events go to the "events" stream and out live (`Bus.relay` does both atomically);
  send requests go to the "outbound" stream;
- each relayed batch is recorded on the bus in the same atomic step, so a relay that dies
  between publishing a batch and deleting its rows leaves a mark: the next relay deletes
  those rows without publishing them again. Every row is published exactly once;
- the relay wakes at once after a commit: in its own process through `Database`'s commit
  hook, in other processes through PostgreSQL's NOTIFY (a trigger on the outbox table,
  delivered at commit), and polls once a second in case a notification was missed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.bus import EVENTS, OUTBOUND
from hub.events import CAUSED_BY, View, encode_event
from hub.types import OutboundMessage, encode, utcnow
from inbox.models import OutboxEntry, table_of

STAGED = "switchboard.outbox"


def stage_events(session: AsyncSession, events: Iterable[View]) -> None:
    """Publish these events once the session's transaction commits (never if it rolls back)."""
    staged: list[dict[str, Any]] = session.info.setdefault(STAGED, [])
    chain = CAUSED_BY.get()
    for event in events:
        if chain and hasattr(event, "caused_by"):
            event = event.model_copy(update={"caused_by": list(chain)})
        staged.append({"stream": EVENTS, "key": getattr(event, "id", ""),
                       "payload": encode_event(event)})


def stage_send(session: AsyncSession, message: OutboundMessage) -> None:
    """Hand this send request to the senders once the session's transaction commits."""
    session.info.setdefault(STAGED, []).append(
        {"stream": OUTBOUND, "key": message.idempotency_key, "payload": encode(message)})


async def write_staged(session: AsyncSession) -> bool:
    """Write what was staged in this transaction as outbox rows; True when there was any."""
    staged: list[dict[str, Any]] | None = session.info.pop(STAGED, None)
    if not staged:
        return False
    now = utcnow()
    for row in staged:
        row["created_at"] = now
    await session.exec(insert(table_of(OutboxEntry)), params=staged)
    return True
