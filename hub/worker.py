"""The worker (assembly): consumes the inbound and outbound streams.

Inbound entries are threaded and stored by inbox/; outbound entries are delivered by the
channel adapter and their result recorded by inbox/. Both are at-least-once on the bus and
exactly-once in effect: ingest deduplicates on (inbox, external id); a send is skipped when
the message already left, and carries an idempotency key for the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from channels.base import (
    ChannelAdapter,
    FetchesMedia,
    PermanentSendError,
    SendsFiles,
    TransientSendError,
)
from hub.bus import INBOUND, OUTBOUND, Entry
from hub.consumer import Outage, run_batch_consumer, run_consumer
from hub.faults import crash_point
from hub.metrics import ACCEPT_TO_STORE_SECONDS, BUS_ENTRIES, INGEST_SECONDS, SENDS
from hub.pollers import Pollers
from hub.retry import honouring_retry_after
from hub.types import (
    InboundMessage,
    MessageEdit,
    OutboundMessage,
    ReadUpTo,
    StatusUpdate,
    UnsupportedSchema,
    decode,
)
from hub.types import utcnow as _utcnow
from inbox.actions import wake_snoozed
from inbox.assignment import drain_queue, release_offline_agents
from inbox.attachments import attachment_loader, attachment_store
from inbox.contacts import link_verified_identities
from inbox.context import InboxContext
from inbox.db import is_unavailable
from inbox.delivery import apply_edits, apply_statuses, apply_watermarks, set_send_result
from inbox.event_consumers import EventConsumer, SharedReader
from inbox.housekeeping import forget_old
from inbox.inboxes import inbox_settings
from inbox.ingest import Ingested, UnknownInbox, ingest_batch
from inbox.models import Message
from inbox.relay import Relay
from inbox.sla import CHECK_BATCH, check_due

log = logging.getLogger("switchboard.worker")

INBOUND_GROUP = "inbox"
OUTBOUND_GROUP = "senders"
SEND_ATTEMPTS = 5
T = TypeVar("T")


def default_worker_name() -> str:
    """This process's consumer name when SWITCHBOARD_WORKER_NAME does not give one."""
    return f"{socket.gethostname()}-{os.getpid()}"


async def _every(stop: asyncio.Event, seconds: float, what: str,
                 job: Callable[[], Awaitable[object]]) -> None:
    """Run `job` now and then every `seconds` until `stop`; a failure is logged and retried
    the next time."""
    while not stop.is_set():
        try:
            await job()
        except Exception:
            log.exception("%s failed; trying again later", what)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)


class _Dead(Exception):
    """An entry that can never be handled (undecodable, for an inbox that does not exist)."""


class Worker:
    """Handlers of the bus streams for one process."""

    def __init__(
        self, ctx: InboxContext, channels: Mapping[str, ChannelAdapter], *, name: str,
        event_consumers: Sequence[EventConsumer | SharedReader] = (),
        services: Sequence[Callable[[asyncio.Event], Awaitable[None]]] = (),
    ) -> None:
        self.ctx = ctx
        self.channels = channels
        self.name = name
        self.event_consumers = tuple(event_consumers)
        # More loops of this process, each run until stop (the outbound webhook deliverer).
        self.services = tuple(services)
        self.send_wait = honouring_retry_after(wait_exponential(multiplier=0.5, max=8))
        self.load_file = attachment_loader(ctx.db, ctx.blobs)
        self.relay = Relay(ctx, owner=name)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume both streams, relay the outbox, run the pollers until `stop` is set."""
        s = self.ctx.settings
        common: dict[str, Any] = {
            "max_deliveries": s.max_deliveries,
            "claim_idle_ms": s.claim_idle_ms,
            "trim_maxlen": s.stream_maxlen,
            "stop": stop,
            "healthy": self.healthy,
        }
        await asyncio.gather(
            run_batch_consumer(self.ctx.bus, INBOUND, INBOUND_GROUP, self.name,
                               self.handle_inbound, batch=s.ingest_batch,
                               batches=1, **common),
            run_consumer(self.ctx.bus, OUTBOUND, OUTBOUND_GROUP, self.name, self.handle_outbound,
                         concurrency=s.worker_concurrency, **common),
            self.relay.run(stop),
            Pollers(self.ctx, self.channels, owner=self.name,
                    rescan_s=s.poller_rescan_seconds).run(stop),
            self.wake_snoozed(stop),
            self.keep_assigning(stop),
            self.check_slas(stop),
            self.keep_house(stop),
            *(consumer.run(self.ctx, worker=self.name, **common)
              for consumer in self.event_consumers),
            *(service(stop) for service in self.services),
        )

    async def healthy(self) -> bool:
        """Whether the database and the bus both answer."""
        return await self.ctx.db.ping() and await self.ctx.bus.ping()

    async def wake_snoozed(self, stop: asyncio.Event) -> None:
        """Reopen snoozed conversations when their time comes, until `stop` is set."""
        await _every(stop, self.ctx.settings.snooze_check_seconds, "waking snoozed "
                     "conversations", lambda: wake_snoozed(self.ctx))

    async def check_slas(self, stop: asyncio.Event) -> None:
        """Until `stop`: mark the SLA clocks whose warning or breach time came (each worker
        takes different conversations)."""
        async def check() -> None:
            while await check_due(self.ctx) >= CHECK_BATCH and not stop.is_set():
                pass  # more were due

        await _every(stop, self.ctx.settings.sla_check_seconds, "checking SLA clocks", check)

    async def keep_assigning(self, stop: asyncio.Event) -> None:
        """Until `stop`: release the conversations of agents who went offline (per inbox
        setting) and assign what waits in the queue (a safety net: every change that frees
        a place drains the queue at once)."""
        async def upkeep() -> None:
            await release_offline_agents(self.ctx)
            await drain_queue(self.ctx)

        await _every(stop, self.ctx.settings.assignment_check_seconds, "assignment upkeep",
                     upkeep)

    async def keep_house(self, stop: asyncio.Event) -> None:
        """Until `stop`: forget what the retention settings no longer keep."""
        await _every(stop, self.ctx.settings.housekeeping_seconds, "housekeeping",
                     lambda: forget_old(self.ctx))

    async def handle_inbound(self, entries: Sequence[Entry]) -> list[BaseException | None]:
        """Thread and store a batch of inbound messages (one transaction) and apply the
        status updates among them; per entry None (done) or why it failed."""
        outcomes: list[BaseException | None] = [None] * len(entries)
        messages: list[tuple[int, InboundMessage]] = []
        statuses: list[tuple[int, StatusUpdate]] = []
        edits: list[tuple[int, MessageEdit]] = []
        marks: list[ReadUpTo] = []
        for n, entry in enumerate(entries):
            try:
                item = decode(entry.payload)
            except (UnsupportedSchema, ValueError) as exc:
                await self._dead(INBOUND, INBOUND_GROUP, entry, f"undecodable: {exc}")
                continue
            if isinstance(item, InboundMessage):
                messages.append((n, item))
            elif isinstance(item, StatusUpdate):
                statuses.append((n, item))
            elif isinstance(item, MessageEdit):
                edits.append((n, item))
            elif isinstance(item, ReadUpTo):
                marks.append(item)
            else:
                await self._dead(INBOUND, INBOUND_GROUP, entry, f"unexpected {item.type}")
        started = time.perf_counter()
        if messages:
            fetched = await asyncio.gather(*(self._fetch_media(m) for _, m in messages),
                                           return_exceptions=True)
            ready: list[tuple[int, InboundMessage]] = []
            for (n, _), got in zip(messages, fetched, strict=True):
                if isinstance(got, BaseException):
                    if isinstance(got, Outage) or is_unavailable(got):
                        raise Outage(str(got)) from got
                    outcomes[n] = got
                else:
                    ready.append((n, got))
            results = await self._guard(ingest_batch(self.ctx, [m for _, m in ready]))
            crash_point(self.ctx.settings, "ingest-after-commit")
            for (n, message), result in zip(ready, results, strict=True):
                outcomes[n] = await self._stored(entries[n], message, result)
                if message.verified_identities and isinstance(result, Ingested) \
                        and result.conversation_id is not None and not result.duplicate:
                    await self._link(result.conversation_id, message)
            if ready:
                INGEST_SECONDS.observe((time.perf_counter() - started) / len(ready))
        if statuses:
            applied = await self._guard(apply_statuses(self.ctx, [u for _, u in statuses]))
            for (n, _), done in zip(statuses, applied, strict=True):
                outcomes[n] = done if isinstance(done, Exception) else None
                BUS_ENTRIES.labels(INBOUND, "status").inc()
        if edits:
            edited = await self._guard(apply_edits(self.ctx, [e for _, e in edits]))
            for (n, _), done in zip(edits, edited, strict=True):
                outcomes[n] = done if isinstance(done, Exception) else None
                BUS_ENTRIES.labels(INBOUND, "edit").inc()
        if marks:
            await self._guard(apply_watermarks(self.ctx, marks))
            BUS_ENTRIES.labels(INBOUND, "watermark").inc(len(marks))
        return outcomes

    async def _stored(self, entry: Entry, message: InboundMessage,
                      result: Ingested | Exception) -> BaseException | None:
        if isinstance(result, UnknownInbox):
            await self._dead(INBOUND, INBOUND_GROUP, entry, str(result))
            return None
        if isinstance(result, Exception):
            return result
        if not result.duplicate:
            delay = (_utcnow() - message.received_at).total_seconds()
            ACCEPT_TO_STORE_SECONDS.observe(max(0.0, delay))
        BUS_ENTRIES.labels(INBOUND, "duplicate" if result.duplicate else "stored").inc()
        return None

    async def _link(self, conversation_id: int, message: InboundMessage) -> None:
        """Link what the provider vouches for to the sender's contact (rare: a shared phone
        number); a failure is logged, the message is stored whatever happens."""
        try:
            await self._guard(link_verified_identities(
                self.ctx, conversation_id, message.verified_identities))
        except Outage:
            raise
        except Exception:
            log.exception("linking the verified identities of %s failed", message.external_id)

    async def _guard(self, work: Awaitable[T]) -> T:
        """Run database work; an unreachable database becomes an Outage (retried later)."""
        try:
            return await work
        except Exception as exc:
            if is_unavailable(exc):
                raise Outage(f"database unavailable: {type(exc).__name__}: {exc}") from exc
            raise

    async def _fetch_media(self, item: InboundMessage) -> InboundMessage:
        adapter = self.channels.get(item.channel)
        if not isinstance(adapter, FetchesMedia):
            return item
        async with self.ctx.db.read() as session:
            found = await inbox_settings(session, item.inbox_id, self.ctx.secrets)
        if found is None:
            return item
        store = attachment_store(self.ctx.db, self.ctx.blobs, inbox_id=item.inbox_id,
                                 max_bytes=self.ctx.settings.attachment_max_bytes)
        return await adapter.fetch_media(item, found[1], store)

    async def handle_outbound(self, entry: Entry) -> None:
        """Deliver one outgoing message through its channel and record the result."""
        try:
            item = decode(entry.payload)
        except (UnsupportedSchema, ValueError) as exc:
            await self._dead(OUTBOUND, OUTBOUND_GROUP, entry, f"undecodable: {exc}")
            return
        if not isinstance(item, OutboundMessage):
            await self._dead(OUTBOUND, OUTBOUND_GROUP, entry, f"unexpected {item.type}")
            return
        stored, found = await self._guard(self._send_request_state(item))
        if stored is None or stored.status != "queued":
            BUS_ENTRIES.labels(OUTBOUND, "already_sent").inc()
            return  # a redelivery after the send was recorded: never send twice
        adapter = self.channels.get(item.channel)
        if adapter is None or found is None:
            await self._record(message_id=item.message_id, status="failed",
                               reason=f"channel {item.channel!r} is not available")
            return
        try:
            receipt = None
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(TransientSendError),
                stop=stop_after_attempt(SEND_ATTEMPTS),
                wait=self.send_wait,
                reraise=False,
            ):
                with attempt:
                    if isinstance(adapter, SendsFiles):  # it carries the files' bytes itself
                        receipt = await adapter.send_files(item, found[1], self.load_file)
                    else:
                        receipt = await adapter.send(item, found[1])
            assert receipt is not None
        except PermanentSendError as exc:
            SENDS.labels(item.channel, "failed").inc()
            await self._record(message_id=item.message_id, status="failed", reason=str(exc))
            return
        except RetryError as exc:
            SENDS.labels(item.channel, "gave_up").inc()
            last = exc.last_attempt.exception()
            await self._record(message_id=item.message_id, status="failed",
                               reason=f"gave up after {SEND_ATTEMPTS} attempts: {last}")
            return
        SENDS.labels(item.channel, "sent").inc()
        await self._record(message_id=item.message_id, status=receipt.status,
                           external_id=receipt.external_id)

    async def _send_request_state(
        self, item: OutboundMessage
    ) -> tuple[Message | None, tuple[str, dict[str, Any]] | None]:
        async with self.ctx.db.read() as session:
            return (await session.get(Message, item.message_id),
                    await inbox_settings(session, item.inbox_id, self.ctx.secrets))

    async def _record(self, **result: Any) -> None:
        """Record a send's result, waiting out a database outage: what left must never be
        sent again because its result could not be written."""
        delay = 0.2
        while True:
            try:
                await set_send_result(self.ctx, **result)
                return
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                log.warning("recording a send result failed (%s); retrying", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _dead(self, stream: str, group: str, entry: Entry, reason: str) -> None:
        log.error("dead-lettering %s entry %s: %s", stream, entry.id, reason)
        BUS_ENTRIES.labels(stream, "dead").inc()
        await self.ctx.bus.dead_letter(stream, group, entry, reason)
