"""Outbound webhooks: Switchboard's events, signed, for every other system.

An admin registers an endpoint (a URL and the event types it wants). The durable consumer
`webhooks` of the events stream records one delivery per event and endpoint, in the same
transaction that marks the event consumed, so every event is recorded exactly once however
often the stream hands it over. Deliverers (one per worker) then send what is due:

- signed per the Standard Webhooks convention (`webhook-id` = the event id, the same on
  every try and replay; `webhook-timestamp`; `webhook-signature`: `v1,<base64 HMAC-SHA256>`
  of `id.timestamp.body`, one per valid secret during a rotation), by the `standardwebhooks`
  package that receivers verify with;
- through the process's guarded HTTP client (no private addresses, bounded answers);
- at least once: a delivery is claimed with a lease (its next try moved past the request's
  timeout), so one whose deliverer died is tried again by another;
- until the endpoint answers 2xx, waiting base * 2^(tries-1) (jittered, capped) between
  tries, for up to `webhook_give_up_seconds` (a day); then it is dead, kept in the log with
  every try, and can be replayed like any other delivery.

The schedule lives in the database (`next_attempt_at`), not in a retry loop in memory: a
day of retries must survive restarts, so no in-process retry library fits here.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from standardwebhooks.webhooks import Webhook

from crm_sync.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from hub.fetch import FetchPolicy, TargetRefused
from hub.types import utcnow
from inbox.agents import Principal
from inbox.context import InboxContext
from inbox.db import conflict_insert, execute, is_postgresql
from inbox.errors import NotFound, Refused, admins_only, existing
from inbox.event_consumers import EventConsumer
from inbox.models import table_of

log = logging.getLogger("switchboard.webhooks")

# The event types an endpoint may ask for, and what each means (docs/webhooks.md).
CATALOGUE: dict[str, str] = {
    "message.created": "a message, note or activity line was added to a conversation",
    "message.status_changed": "an outgoing message was sent, delivered, read or failed",
    "message.edited": "a customer changed a message they had sent",
    "conversation.created": "a conversation was opened",
    "conversation.assigned": "a conversation got a new assignee or team",
    "conversation.status_changed": "a conversation was resolved, reopened, snoozed or set "
                                   "pending",
    "conversation.updated": "a conversation's priority, labels or contact changed",
    "contact.created": "a contact was created from a new identity",
    "contact.updated": "a contact's name, email, phone or attributes changed",
    "contact.merged": "two contacts became one",
    "automation.webhook": "an automation rule's \"send the webhook\" action fired (the rule, "
                          "what it fired on, the conversation)",
}
CONSUMER = "webhooks"
MAX_ENDPOINTS = 50
CLAIM_BATCH = 50
SENDS_AT_ONCE = 10
REQUEST_TIMEOUT_S = 10.0
# A claimed delivery's next try, should its deliverer die mid-request: past the timeout.
LEASE_S = 60.0
RESPONSE_KEPT = 1000
SECRET_OVERLAP = timedelta(hours=24)
USER_AGENT = "Switchboard-Webhooks/1"


def new_secret() -> str:
    """A fresh signing secret in the Standard Webhooks form (`whsec_` + base64 of 24 bytes)."""
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def check_url(ctx: InboxContext, url: str) -> str:
    """The endpoint URL, or Refused with what is wrong (the address is checked per request)."""
    url = url.strip()
    policy = FetchPolicy.from_entries(ctx.settings.outbound_allow,
                                      allow_http=ctx.settings.outbound_http)
    try:
        parsed = httpx.URL(url)
        policy.check_url(parsed)
    except (TargetRefused, httpx.InvalidURL) as exc:
        raise Refused(f"url: {exc}") from None
    return url


def check_event_types(types: Sequence[str]) -> list[str]:
    """The event types, each from the catalogue (Refused naming one that is not)."""
    unknown = [t for t in types if t not in CATALOGUE]
    if unknown:
        raise Refused(f"event_types: {unknown[0]!r} is not an event type; one of "
                      + ", ".join(CATALOGUE))
    return sorted(set(types))


# -- endpoints (admins) -------------------------------------------------------------------


async def list_endpoints(session: AsyncSession, principal: Principal) -> list[WebhookEndpoint]:
    """Every endpoint, oldest first."""
    admins_only(principal, "see webhook endpoints")
    return list(await session.exec(select(WebhookEndpoint).order_by(col(WebhookEndpoint.id))))


async def get_endpoint(session: AsyncSession, principal: Principal,
                       endpoint_id: int) -> WebhookEndpoint:
    """One endpoint (NotFound when there is none)."""
    admins_only(principal, "see webhook endpoints")
    return await existing(session, WebhookEndpoint, endpoint_id, "webhook endpoint")


async def create_endpoint(ctx: InboxContext, principal: Principal, *, url: str,
                          event_types: Sequence[str], description: str = "",
                          ) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; returns it and its signing secret (shown this once)."""
    admins_only(principal, "manage webhook endpoints")
    url = check_url(ctx, url)
    types = check_event_types(event_types)
    secret = new_secret()
    async with ctx.db.write() as session:
        count = len(list(await session.exec(select(WebhookEndpoint.id))))
        if count >= MAX_ENDPOINTS:
            raise Refused(f"at most {MAX_ENDPOINTS} webhook endpoints")
        row = WebhookEndpoint(url=url, description=description.strip(), event_types=types,
                              secrets=[{"secret": ctx.secrets.seal(secret), "expires_at": None}])
        session.add(row)
        await session.flush()
    return row, secret


async def update_endpoint(ctx: InboxContext, principal: Principal, endpoint_id: int, *,
                          url: str | None = None, event_types: Sequence[str] | None = None,
                          description: str | None = None, enabled: bool | None = None,
                          ) -> WebhookEndpoint:
    """Change an endpoint's URL, event types, description, or turn it off and on."""
    admins_only(principal, "manage webhook endpoints")
    async with ctx.db.write() as session:
        row = await existing(session, WebhookEndpoint, endpoint_id, "webhook endpoint")
        if url is not None:
            row.url = check_url(ctx, url)
        if event_types is not None:
            row.event_types = check_event_types(event_types)
        if description is not None:
            row.description = description.strip()
        if enabled is not None:
            row.disabled_at = None if enabled else (row.disabled_at or utcnow())
        session.add(row)
        await session.flush()
    return row


async def delete_endpoint(ctx: InboxContext, principal: Principal, endpoint_id: int) -> None:
    """Remove an endpoint with its delivery log."""
    admins_only(principal, "manage webhook endpoints")
    async with ctx.db.write() as session:
        row = await existing(session, WebhookEndpoint, endpoint_id, "webhook endpoint")
        await session.delete(row)


async def rotate_secret(ctx: InboxContext, principal: Principal, endpoint_id: int, *,
                        overlap: timedelta = SECRET_OVERLAP) -> tuple[WebhookEndpoint, str]:
    """A new signing secret (returned this once); the current one keeps signing beside it
    for `overlap`, so receivers can switch without refusing a delivery."""
    admins_only(principal, "manage webhook endpoints")
    secret = new_secret()
    now = utcnow()
    async with ctx.db.write() as session:
        row = await existing(session, WebhookEndpoint, endpoint_id, "webhook endpoint")
        ends = (now + overlap).isoformat()
        row.secrets = [{"secret": ctx.secrets.seal(secret), "expires_at": None},
                       *({"secret": s["secret"], "expires_at": s["expires_at"] or ends}
                         for s in valid_secrets(row.secrets, now))]
        session.add(row)
        await session.flush()
    return row, secret


def valid_secrets(secrets: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """The secrets that sign now (a rotated one until it expires)."""
    return [s for s in secrets
            if not s.get("expires_at") or datetime.fromisoformat(s["expires_at"]) > now]


# -- the delivery log ------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryPage:
    """Deliveries of an endpoint, newest first, and the cursor of the next page."""

    deliveries: list[WebhookDelivery]
    next_before: int | None


async def list_deliveries(session: AsyncSession, principal: Principal, endpoint_id: int, *,
                          status: str | None = None, before: int | None = None,
                          limit: int = 50) -> DeliveryPage:
    """An endpoint's deliveries, newest first (`before`: the id to page from)."""
    await get_endpoint(session, principal, endpoint_id)
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if before is not None:
        query = query.where(col(WebhookDelivery.id) < before)
    rows = list(await session.exec(query.order_by(col(WebhookDelivery.id).desc())
                                   .limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return DeliveryPage(rows, rows[-1].id if more and rows else None)


async def get_delivery(session: AsyncSession, principal: Principal, endpoint_id: int,
                       delivery_id: int) -> tuple[WebhookDelivery, list[WebhookAttempt]]:
    """One delivery of the endpoint and its tries, latest first."""
    await get_endpoint(session, principal, endpoint_id)
    row = await session.get(WebhookDelivery, delivery_id)
    if row is None or row.endpoint_id != endpoint_id:
        raise NotFound(f"delivery {delivery_id} not found")
    attempts = await session.exec(select(WebhookAttempt)
                                  .where(WebhookAttempt.delivery_id == delivery_id)
                                  .order_by(col(WebhookAttempt.id).desc()).limit(100))
    return row, list(attempts)


async def replay(ctx: InboxContext, principal: Principal, endpoint_id: int, *,
                 delivery_id: int | None = None, since: datetime | None = None) -> int:
    """Send one delivery again (`delivery_id`), or every delivery recorded since a time;
    with the same webhook-id, so a receiver that has one already can tell. How many."""
    if (delivery_id is None) == (since is None):
        raise Refused("replay one delivery or everything since a time, not both or neither")
    now = utcnow()
    async with ctx.db.write() as session:
        await get_endpoint(session, principal, endpoint_id)
        which = update(table_of(WebhookDelivery)).where(
            table_of(WebhookDelivery).c.endpoint_id == endpoint_id)
        if delivery_id is not None:
            await get_delivery(session, principal, endpoint_id, delivery_id)
            which = which.where(table_of(WebhookDelivery).c.id == delivery_id)
        else:
            which = which.where(table_of(WebhookDelivery).c.created_at >= since)
        result = await execute(session, which.values(
            status="pending", next_attempt_at=now, first_attempt_at=now, delivered_at=None,
            attempts=0))
        return int(result.rowcount or 0)


# -- recording: the consumer of the events stream -------------------------------------------


def _payload(event: Any) -> str:
    data = event.model_dump(mode="json", exclude={"audience", "v"})
    return json.dumps({"type": event.type, "timestamp": data["at"], "data": data},
                      separators=(",", ":"))


async def record(session: AsyncSession, event: Any) -> None:
    """One delivery of this event for each enabled endpoint that wants it."""
    if event.type not in CATALOGUE:
        return
    endpoints = await session.exec(select(WebhookEndpoint.id, WebhookEndpoint.event_types)
                                   .where(col(WebhookEndpoint.disabled_at).is_(None)))
    wanting = [endpoint_id for endpoint_id, types in endpoints
               if not types or event.type in types]
    if not wanting:
        return
    now = utcnow()
    payload = _payload(event)
    table = table_of(WebhookDelivery)
    await execute(session, conflict_insert(table, is_postgresql(session))
                  .on_conflict_do_nothing(index_elements=["endpoint_id", "event_id"]),
                  [{"endpoint_id": endpoint_id, "event_id": event.id, "event_type": event.type,
                    "payload": payload, "status": "pending", "attempts": 0,
                    "next_attempt_at": now, "first_attempt_at": now, "created_at": now}
                   for endpoint_id in wanting])


async def any_endpoint(ctx: InboxContext) -> bool:
    """Whether an enabled endpoint exists (without one, events need no transaction)."""
    async with ctx.db.read() as session:
        return (await session.exec(select(WebhookEndpoint.id).where(
            col(WebhookEndpoint.disabled_at).is_(None)).limit(1))).first() is not None


def webhook_consumer() -> EventConsumer:
    """The durable consumer that records outbound webhook deliveries."""
    return EventConsumer(CONSUMER, record, types=frozenset(CATALOGUE), active=any_endpoint)


# -- sending ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Due:
    id: int
    endpoint_id: int
    event_id: str
    payload: str
    attempts: int
    first_attempt_at: datetime


@dataclass(frozen=True)
class _Outcome:
    status_code: int | None
    latency_ms: int
    response: str
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Deliverer:
    """Sends the due deliveries of every endpoint (any number of these, one per worker)."""

    def __init__(self, ctx: InboxContext, http: httpx.AsyncClient) -> None:
        self.ctx = ctx
        self.http = http

    async def run(self, stop: asyncio.Event) -> None:
        """Send what is due until `stop` is set."""
        every = self.ctx.settings.webhook_poll_seconds
        while not stop.is_set():
            try:
                sent = await self.send_due()
            except Exception:
                log.exception("sending webhook deliveries failed; trying again shortly")
                sent = 0
            if sent < CLAIM_BATCH:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=every)
                except TimeoutError:
                    pass

    async def send_due(self) -> int:
        """Claim and send one batch of due deliveries; how many."""
        due = await self._claim()
        if not due:
            return 0
        secrets = await self._secrets({d.endpoint_id for d in due})
        slots = asyncio.Semaphore(SENDS_AT_ONCE)

        async def one(delivery: _Due) -> None:
            found = secrets.get(delivery.endpoint_id)
            if found is None:
                return  # the endpoint was removed (with its deliveries) meanwhile
            async with slots:
                outcome = await self._send(delivery, *found)
            # Recorded as soon as it is known: a slow endpoint holds nobody else's outcome.
            try:
                await self._record([(delivery, outcome)])
            except IntegrityError:
                pass  # the endpoint was removed while its delivery was on its way

        await asyncio.gather(*(one(d) for d in due))
        return len(due)

    async def _claim(self) -> list[_Due]:
        now = utcnow()
        table = table_of(WebhookDelivery)
        async with self.ctx.db.write() as session:
            enabled = select(WebhookEndpoint.id).where(col(WebhookEndpoint.disabled_at).is_(None))
            due = (select(table.c.id)
                   .where(table.c.status == "pending", table.c.next_attempt_at <= now,
                          table.c.endpoint_id.in_(enabled.scalar_subquery()))
                   .order_by(table.c.next_attempt_at, table.c.id).limit(CLAIM_BATCH)
                   .with_for_update(skip_locked=True))
            rows = await execute(session, update(table).where(table.c.id.in_(due.scalar_subquery()))
                                 .values(next_attempt_at=now + timedelta(seconds=LEASE_S),
                                         attempts=table.c.attempts + 1)
                                 .returning(table.c.id, table.c.endpoint_id, table.c.event_id,
                                            table.c.payload, table.c.attempts,
                                            table.c.first_attempt_at))
            return [_Due(*row) for row in rows]

    async def _secrets(self, endpoint_ids: set[int]) -> dict[int, tuple[str, list[str]]]:
        """Per endpoint: its URL and its valid secrets, opened."""
        now = utcnow()
        async with self.ctx.db.read() as session:
            rows = await session.exec(select(WebhookEndpoint)
                                      .where(col(WebhookEndpoint.id).in_(endpoint_ids)))
            return {row.id: (row.url, [self.ctx.secrets.open(s["secret"])
                                       for s in valid_secrets(row.secrets, now)])
                    for row in rows if row.id is not None}

    async def _send(self, delivery: _Due, url: str, secrets: list[str]) -> _Outcome:
        body = delivery.payload.encode()
        at = utcnow()
        signatures = " ".join(Webhook(secret).sign(delivery.event_id, at, body)
                              for secret in secrets)
        headers = {"content-type": "application/json", "user-agent": USER_AGENT,
                   "webhook-id": delivery.event_id,
                   "webhook-timestamp": str(int(at.timestamp())),
                   "webhook-signature": signatures}
        started = time.monotonic()
        try:
            # The whole exchange within the timeout (httpx's bounds each phase on its own).
            async with asyncio.timeout(REQUEST_TIMEOUT_S), self.http.stream(
                    "POST", url, content=body, headers=headers,
                    timeout=REQUEST_TIMEOUT_S) as response:
                kept = bytearray()
                async for chunk in response.aiter_bytes():
                    kept += chunk
                    if len(kept) >= RESPONSE_KEPT:
                        break
                text = bytes(kept[:RESPONSE_KEPT]).decode("utf-8", "replace")
                return _Outcome(response.status_code, _ms(started), text, None)
        except TimeoutError:
            return _Outcome(None, _ms(started), "",
                            f"no answer within {REQUEST_TIMEOUT_S:g} s")
        except TargetRefused as exc:
            return _Outcome(None, _ms(started), "", f"refused: {exc}"[:500])
        except httpx.HTTPError as exc:
            return _Outcome(None, _ms(started), "",
                            (f"{type(exc).__name__}: {exc}" if str(exc)
                             else type(exc).__name__)[:500])

    async def _record(self, outcomes: Sequence[tuple[_Due, _Outcome]]) -> None:
        settings = self.ctx.settings
        now = utcnow()
        give_up = timedelta(seconds=settings.webhook_give_up_seconds)
        table = table_of(WebhookDelivery)
        async with self.ctx.db.write() as session:
            await execute(session, table_of(WebhookAttempt).insert(), [
                {"delivery_id": d.id, "at": now, "status_code": o.status_code,
                 "latency_ms": o.latency_ms, "response": o.response, "error": o.error}
                for d, o in outcomes])
            for delivery, outcome in outcomes:
                common = {"last_status_code": outcome.status_code, "last_error": outcome.error,
                          "last_latency_ms": outcome.latency_ms}
                if outcome.ok:
                    values = {"status": "delivered", "delivered_at": now}
                elif now - delivery.first_attempt_at >= give_up:
                    values = {"status": "dead"}
                    log.warning("webhook delivery %s to endpoint %s is dead after %s tries",
                                delivery.id, delivery.endpoint_id, delivery.attempts)
                else:
                    values = {"next_attempt_at": now + timedelta(
                        seconds=retry_wait(delivery.attempts, settings.webhook_retry_base_seconds,
                                           settings.webhook_retry_max_seconds))}
                # Only a delivery still pending: a replay meanwhile keeps its fresh schedule.
                await execute(session, update(table).where(
                    table.c.id == delivery.id, table.c.status == "pending",
                    table.c.first_attempt_at == delivery.first_attempt_at,
                ).values(**common, **values))


def retry_wait(attempts: int, base: float, cap: float) -> float:
    """Seconds before the next try after `attempts` failed ones: doubling, jittered ±20 %."""
    wait = min(cap, base * 2 ** max(0, attempts - 1))
    return float(wait * random.uniform(0.8, 1.2))  # spreads retries; not a secret


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
