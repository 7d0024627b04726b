"""Keeping CRMs in step: the `crm` consumer records jobs, one syncer does them.

- **Recording.** The durable consumer `crm` of the events stream turns each event into jobs
  (`crm_jobs`), one per connection, in the transaction that marks the event consumed: a
  contact created, changed or merged → push the contact; a conversation resolved → push its
  transcript as a note. A change a connection brought in itself (`source` "crm:<id>") is
  not pushed back to it: no ping-pong.
- **Syncing.** One syncer in the deployment (the holder of the bus lease `crm-sync`, every
  worker stands by) does the due jobs of each connected connection: the contacts a batch
  of jobs names are pushed together (the connector's batch calls), then the notes, in job
  order, so a contact is always linked before its note goes out. Each job pushes the
  contact's current state, so jobs of one contact can be merged and redone without harm.
- **Failures.** The connector retries briefly (crm_sync/http.py); what still fails waits
  in the table with growing waits (at most 5 minutes; as long as the CRM's Retry-After):
  a CRM down for an hour catches up afterwards. A refused token marks the connection
  broken (admins see why) and leaves its jobs pending until an admin reconnects it. Every
  push and every change that came in is in the connection's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, exists, insert, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_sync.base import (
    Account,
    Connector,
    ContactData,
    CrmError,
    Permanent,
    Pushed,
    Revoked,
    Transcript,
    TranscriptLine,
    Transient,
)
from crm_sync.models import CrmConnection, CrmJob, CrmLink, CrmLogEntry
from hub.types import utcnow
from inbox.context import InboxContext
from inbox.db import conflict_insert, execute, is_postgresql
from inbox.event_consumers import EventConsumer
from inbox.models import Agent, Contact, ContactIdentity, Conversation, Inbox, Message, table_of

log = logging.getLogger("switchboard.crm")

CONSUMER = "crm"
LEASE = "crm-sync"
LEASE_TTL_MS = 10_000
CLAIM = 500
MAX_WAIT_S = 300.0
TRANSCRIPT_LINES = 200


def source_of(connection_id: int) -> str:
    """The `source` of a contact change a connection brought in."""
    return f"crm:{connection_id}"


# -- recording ------------------------------------------------------------------------


async def record(session: AsyncSession, event: Any) -> None:
    """The jobs this event means for every connection (see the module)."""
    jobs: list[tuple[str, int, int | None]] = []  # kind, contact, conversation
    skip: str | None = None
    if event.type in ("contact.created", "contact.updated", "contact.merged"):
        jobs.append(("contact", event.contact.id, None))
        skip = getattr(event, "source", None)
        if event.type == "contact.merged":
            await _move_links(session, event.merged_contact_id, event.contact.id)
    elif (event.type == "conversation.status_changed"
          and event.conversation.status == "resolved"):
        jobs.append(("note", event.conversation.contact_id, event.conversation.id))
    if not jobs:
        return
    connections = [cid for cid in await session.exec(select(CrmConnection.id))
                   if cid is not None and source_of(cid) != skip]
    if not connections:
        return
    now = utcnow()
    await execute(session, conflict_insert(table_of(CrmJob), is_postgresql(session))
                  .on_conflict_do_nothing(index_elements=["connection_id", "event_id", "kind"]),
                  [{"connection_id": cid, "kind": kind, "contact_id": contact,
                    "conversation_id": conversation, "event_id": event.id, "status": "pending",
                    "attempts": 0, "next_attempt_at": now, "created_at": now}
                   for cid in connections for kind, contact, conversation in jobs])


async def _move_links(session: AsyncSession, from_contact: int, to_contact: int) -> None:
    """A merged contact's CRM records become the survivor's, where it has none there."""
    links = table_of(CrmLink)
    theirs = links.alias("theirs")
    await execute(session, update(links).where(
        links.c.contact_id == from_contact,
        ~exists().where(theirs.c.connection_id == links.c.connection_id,
                        theirs.c.contact_id == to_contact),
    ).values(contact_id=to_contact))


async def any_connection(ctx: InboxContext) -> bool:
    """Whether a CRM is connected at all (without one, events need no transaction)."""
    async with ctx.db.read() as session:
        return (await session.exec(select(CrmConnection.id).limit(1))).first() is not None


def crm_consumer() -> EventConsumer:
    """The durable consumer that records CRM jobs."""
    return EventConsumer(CONSUMER, record, active=any_connection, types=frozenset({
        "contact.created", "contact.updated", "contact.merged",
        "conversation.status_changed"}))


async def backfill(ctx: InboxContext, connection_id: int) -> int:
    """A job for every contact (not merged away): the first sync of a new connection."""
    now = utcnow()
    stamp = now.strftime("%Y%m%d%H%M%S")
    async with ctx.db.write() as session:
        rows = list(await session.exec(select(Contact.id)
                                       .where(col(Contact.merged_into_id).is_(None))
                                       .order_by(col(Contact.id))))
        await execute(session, conflict_insert(table_of(CrmJob), is_postgresql(session))
                      .on_conflict_do_nothing(
                          index_elements=["connection_id", "event_id", "kind"]),
                      [{"connection_id": connection_id, "kind": "contact", "contact_id": cid,
                        "event_id": f"backfill-{stamp}-{cid}", "status": "pending",
                        "attempts": 0, "next_attempt_at": now, "created_at": now}
                       for cid in rows]) if rows else None
        _log(session, connection_id, "out", "backfill", outcome="ok",
             detail=f"{len(rows)} contacts queued")
    return len(rows)


# -- syncing -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    id: int
    kind: str
    contact_id: int
    conversation_id: int | None
    event_id: str
    attempts: int


class Syncer:
    """Does the due jobs of every connection while holding the `crm-sync` lease."""

    def __init__(self, ctx: InboxContext, connectors: Mapping[str, Connector], *,
                 owner: str) -> None:
        self.ctx = ctx
        self.connectors = connectors
        self.owner = owner
        self.leading = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Sync until `stop` is set, taking over whenever the lease is free."""
        every = self.ctx.settings.crm_poll_seconds
        keeper: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                busy = False
                try:
                    if not self.leading.is_set() and await self.ctx.bus.acquire_lease(
                            LEASE, self.owner, LEASE_TTL_MS):
                        self.leading.set()
                        keeper = asyncio.create_task(self._keep_lease(stop), name="crm-lease")
                    if self.leading.is_set():
                        busy = await self.sync_due()
                except Exception:
                    log.exception("CRM sync failed; trying again shortly")
                if not busy:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=every)
        finally:
            if keeper is not None:
                keeper.cancel()
                with contextlib.suppress(BaseException):
                    await keeper
            if self.leading.is_set():
                with contextlib.suppress(Exception):
                    await self.ctx.bus.release_lease(LEASE, self.owner)
                self.leading.clear()

    async def _keep_lease(self, stop: asyncio.Event) -> None:
        """Renew the lease all along, during a long round too (a CRM that asks to wait a
        minute): another syncer must never believe it free while this one works."""
        while self.leading.is_set() and not stop.is_set():
            await asyncio.sleep(LEASE_TTL_MS / 3000)
            try:
                renewed = await self.ctx.bus.renew_lease(LEASE, self.owner, LEASE_TTL_MS)
            except Exception:
                renewed = False
            if not renewed:
                log.warning("lost the CRM sync lease; standing by")
                self.leading.clear()

    async def sync_due(self) -> bool:
        """One round over every connected connection; True when a connection had a full
        batch (more is waiting)."""
        async with self.ctx.db.read() as session:
            connections = list(await session.exec(
                select(CrmConnection).where(CrmConnection.status == "connected")))
        busy = False
        for connection in connections:
            connector = self.connectors.get(connection.kind)
            if connector is None or connection.id is None or not self.leading.is_set():
                continue
            jobs = await self._claim(connection.id)
            if not jobs:
                continue
            busy = busy or len(jobs) >= CLAIM
            account = Account(connection.id, self.ctx.secrets.open_settings(connection.settings))
            # What this round knows of the connection: an admin's save since (a new token)
            # must not be undone by what the old settings got back.
            seen = connection.status_changed_at
            try:
                await self._run(connector, account, jobs, seen=seen)
            finally:
                if account.updates:
                    await self._save_updates(connection.id, account.updates,
                                             {s.name for s in connector.specs if s.secret},
                                             seen=seen)
        return busy

    async def _claim(self, connection_id: int) -> list[_Job]:
        now = utcnow()
        jobs = table_of(CrmJob)
        async with self.ctx.db.write() as session:
            due = (select(jobs.c.id)
                   .where(jobs.c.connection_id == connection_id, jobs.c.status == "pending",
                          jobs.c.next_attempt_at <= now)
                   .order_by(jobs.c.id).limit(CLAIM))
            # Claimed until its next try would be due, should this syncer die on it; each
            # claim counts as a try, so a job taken over looks for what the last try made.
            lease = timedelta(seconds=self.ctx.settings.crm_claim_seconds)
            rows = await execute(session, update(jobs).where(jobs.c.id.in_(due.scalar_subquery()))
                                 .values(next_attempt_at=now + lease,
                                         attempts=jobs.c.attempts + 1)
                                 .returning(jobs.c.id, jobs.c.kind, jobs.c.contact_id,
                                            jobs.c.conversation_id, jobs.c.event_id,
                                            jobs.c.attempts))
            return sorted((_Job(*row) for row in rows), key=lambda j: j.id)

    async def _run(self, connector: Connector, account: Account, jobs: list[_Job], *,
                   seen: datetime) -> None:
        """Push the contacts, then the notes; what fails waits for the next try."""
        done: dict[int, str | None] = {}  # job id -> remote id
        skipped: dict[int, str] = {}  # job id -> why (done, nothing to push)
        finished: set[int] = set()  # notes, recorded as they went out
        try:
            links = await self._push_contacts(connector, account, jobs, done, skipped)
            for job in (j for j in jobs if j.kind == "note"):
                remote = links.get(job.contact_id)
                if remote is None:
                    skipped[job.id] = "the contact has no email or phone to match in the CRM"
                    continue
                transcript = await self._transcript(job)
                if transcript is None:
                    skipped[job.id] = "the conversation is gone"
                    continue
                try:
                    note = await connector.push_note(account, remote, transcript,
                                                     retrying=job.attempts > 1)
                except Permanent as exc:
                    skipped[job.id] = str(exc)
                    continue
                # Recorded at once: a later failure must not make this note again.
                await self._finish({job.id: note}, {}, account=account, log_entries=[
                    ("note.create", job.contact_id, note, "ok",
                     f"conversation {job.conversation_id}")])
                finished.add(job.id)
        except Revoked as exc:
            await self._finish(done, skipped, account=account)
            await self._broken(account.id, jobs, str(exc), seen=seen)
            return
        except (Transient, CrmError) as exc:
            await self._finish(done, skipped, account=account)
            await self._later(account.id, [j for j in jobs if j.id not in done
                                           and j.id not in skipped and j.id not in finished],
                              exc)
            return
        await self._finish(done, skipped, account=account)

    async def _push_contacts(self, connector: Connector, account: Account, jobs: list[_Job],
                             done: dict[int, str | None],
                             skipped: dict[int, str]) -> dict[int, str]:
        """Push every contact the jobs name (contact jobs; notes whose contact is not linked
        yet); the contacts' links after it. What the CRM took is linked even when a later
        batch fails (so a retry updates those records instead of making them again)."""
        data, links, gone = await self._contacts(account.id, {j.contact_id for j in jobs})
        target = {j.id: gone.get(j.contact_id, j.contact_id) for j in jobs}
        to_push = {target[j.id] for j in jobs
                   if j.kind == "contact" or target[j.id] not in links} & set(data)
        unmatched = {cid for cid in to_push
                     if not (data[cid].email or data[cid].phone or data[cid].remote_id)}
        pushed: list[Pushed] = []
        try:
            await self._push(connector, account, [data[c] for c in sorted(to_push - unmatched)],
                             pushed)
        finally:
            clashes = await self._save_links(account.id, pushed)
        results = {p.contact_id: p for p in pushed}
        for one in pushed:
            if one.remote_id and one.contact_id not in clashes:
                links[one.contact_id] = one.remote_id
        for job in (j for j in jobs if j.kind == "contact"):
            cid = target[job.id]
            result = results.get(cid)
            if cid not in data:
                skipped[job.id] = "the contact is gone"
            elif cid in unmatched:
                skipped[job.id] = "no email or phone to match in the CRM"
            elif cid in clashes:
                skipped[job.id] = clashes[cid]
            elif result is not None and result.remote_id:
                done[job.id] = result.remote_id
            else:
                skipped[job.id] = (result.error if result else None) or "not pushed"
        return {job.contact_id: links[target[job.id]] for job in jobs
                if target[job.id] in links}

    async def _push(self, connector: Connector, account: Account,
                    contacts: list[ContactData], results: list[Pushed]) -> None:
        """Batches, into `results` as each is answered; a batch the CRM refuses for its
        data is tried one contact at a time, so one bad address does not hold the others
        back."""
        for n in range(0, len(contacts), connector.batch):
            if not self.leading.is_set():
                raise Transient("this worker no longer holds the CRM sync lease")
            chunk = contacts[n:n + connector.batch]
            try:
                results += await connector.push_contacts(account, chunk)
            except Permanent as exc:
                if len(chunk) == 1:
                    results.append(Pushed(chunk[0].id, None, error=str(exc)))
                    continue
                for one in chunk:
                    try:
                        results += await connector.push_contacts(account, [one])
                    except Permanent as single:
                        results.append(Pushed(one.id, None, error=str(single)))

    async def _contacts(self, connection_id: int, ids: set[int]
                        ) -> tuple[dict[int, ContactData], dict[int, str], dict[int, int]]:
        """The contacts to push (merged ones followed to their survivor), their links, and
        which asked-for id became which survivor."""
        gone: dict[int, int] = {}
        async with self.ctx.db.read() as session:
            rows = {c.id: c for c in await session.exec(
                select(Contact).where(col(Contact.id).in_(ids))) if c.id is not None}
            for cid, row in list(rows.items()):
                hops = 0
                while row.merged_into_id is not None and hops < 20:
                    survivor = await session.get(Contact, row.merged_into_id)
                    if survivor is None or survivor.id is None:
                        break
                    row, hops = survivor, hops + 1
                    rows[survivor.id] = survivor
                if row.id != cid and row.id is not None:
                    gone[cid] = row.id
            live = {cid: row for cid, row in rows.items() if row.merged_into_id is None}
            links = {link.contact_id: link.remote_id for link in await session.exec(
                select(CrmLink).where(CrmLink.connection_id == connection_id,
                                      col(CrmLink.contact_id).in_(live)))}
            identities: dict[int, list[str]] = {}
            for identity in await session.exec(select(ContactIdentity).where(
                    col(ContactIdentity.contact_id).in_(live))):
                owner = live[identity.contact_id]
                if identity.value not in (owner.email, owner.phone):
                    # Every other way to reach them: Telegram, a widget visitor, an old
                    # address or number.
                    identities.setdefault(identity.contact_id, []).append(
                        f"{identity.kind}:{identity.value}")
        data = {cid: ContactData(id=cid, name=row.name, email=row.email, phone=row.phone,
                                 identities=tuple(sorted(identities.get(cid, []))),
                                 remote_id=links.get(cid))
                for cid, row in live.items()}
        return data, links, gone

    async def _transcript(self, job: _Job) -> Transcript | None:
        async with self.ctx.db.read() as session:
            conversation = await session.get(Conversation, job.conversation_id)
            if conversation is None or conversation.id is None:
                return None
            inbox = await session.get(Inbox, conversation.inbox_id)
            messages = list(await session.exec(
                select(Message).where(Message.conversation_id == conversation.id,
                                      Message.kind == "message")
                .order_by(col(Message.accepted_at).desc(), col(Message.id).desc())
                .limit(TRANSCRIPT_LINES)))[::-1]
            agent_ids = {m.agent_id for m in messages if m.agent_id}
            if conversation.assignee_id:
                agent_ids.add(conversation.assignee_id)
            agents = {a.id: a.name for a in await session.exec(
                select(Agent).where(col(Agent.id).in_(agent_ids)))} if agent_ids else {}
            contact = await session.get(Contact, conversation.contact_id)
        customer = (contact.name if contact and contact.name else "Customer")
        base = self.ctx.settings.base_url.rstrip("/")
        return Transcript(
            conversation_id=conversation.id, subject=conversation.subject,
            channel=inbox.channel if inbox else "",
            inbox=inbox.name if inbox else "", agent=agents.get(conversation.assignee_id or 0),
            opened_at=conversation.created_at,
            resolved_at=conversation.resolved_at or utcnow(),
            link=f"{base}/#/conversations/{conversation.id}",
            lines=tuple(TranscriptLine(m.accepted_at, customer if m.direction == "in"
                                       else agents.get(m.agent_id or 0, "Agent"), m.text)
                        for m in messages),
            reference=f"sb-{job.event_id}")

    # -- recording outcomes -------------------------------------------------------------

    async def _save_links(self, connection_id: int, pushed: Sequence[Pushed]
                          ) -> dict[int, str]:
        """Link each pushed contact to its record, and log it. A record already linked to
        another contact (two contacts that are one person: an email and a WhatsApp number
        that HubSpot holds on one record) is not linked twice: logged as a conflict, for an
        agent to merge the two. Returns those contacts, with why."""
        now = utcnow()
        made = [p for p in pushed if p.remote_id]
        clashes: dict[int, str] = {}
        entries: list[tuple[str, int, str | None, str, str]] = [
            ("contact.push", p.contact_id, None, "failed", p.error or "")
            for p in pushed if not p.remote_id]
        async with self.ctx.db.write() as session:
            owners = {remote: contact for remote, contact in await session.exec(
                select(CrmLink.remote_id, CrmLink.contact_id).where(
                    CrmLink.connection_id == connection_id,
                    col(CrmLink.remote_id).in_({p.remote_id for p in made})))} if made else {}
            linked: list[Pushed] = []
            for p in made:
                owner = owners.setdefault(str(p.remote_id), p.contact_id)
                if owner != p.contact_id:
                    clashes[p.contact_id] = (f"the CRM record {p.remote_id} is contact "
                                             f"{owner}'s already: merge the two contacts")
                    entries.append(("contact.link", p.contact_id, p.remote_id, "conflict",
                                    clashes[p.contact_id]))
                    continue
                linked.append(p)
                entries.append(("contact.create" if p.created else "contact.update",
                                p.contact_id, p.remote_id, "ok", ""))
            if linked:
                statement = conflict_insert(table_of(CrmLink), is_postgresql(session))
                await execute(session, statement.on_conflict_do_update(
                    index_elements=["connection_id", "contact_id"],
                    set_={"remote_id": statement.excluded.remote_id, "synced_at": now}),
                    [{"connection_id": connection_id, "contact_id": p.contact_id,
                      "remote_id": p.remote_id, "synced_at": now} for p in linked])
            await _log_many(session, connection_id, entries)
        return clashes

    async def _finish(self, done: Mapping[int, str | None], skipped: Mapping[int, str], *,
                      account: Account,
                      log_entries: Sequence[tuple[str, int, str | None, str, str]] = ()
                      ) -> None:
        """Mark jobs done (with the CRM's id) or skipped (done, with why)."""
        if not done and not skipped and not log_entries:
            return
        now = utcnow()
        jobs = table_of(CrmJob)
        finish = (update(jobs).where(jobs.c.id == bindparam("job_id"))
                  .values(status=bindparam("new_status"), done_at=now,
                          remote_id=bindparam("remote"), last_error=bindparam("why")))
        async with self.ctx.db.write() as session:
            rows = [{"job_id": job_id, "new_status": "done", "remote": remote, "why": None}
                    for job_id, remote in done.items()]
            rows += [{"job_id": job_id, "new_status": "skipped", "remote": None,
                      "why": why[:500]} for job_id, why in skipped.items()]
            if rows:
                await execute(session, finish, rows)
            await _log_many(session, account.id, log_entries)

    async def _later(self, connection_id: int, jobs: Sequence[_Job], exc: CrmError) -> None:
        """The CRM could not take them now: each waits longer (at least its Retry-After)."""
        if not jobs:
            return
        now = utcnow()
        after = getattr(exc, "retry_after", None) or 0.0
        table = table_of(CrmJob)
        later = (update(table).where(table.c.id == bindparam("job_id"))
                 .values(attempts=bindparam("tries"), last_error=str(exc)[:500],
                         next_attempt_at=bindparam("due")))
        async with self.ctx.db.write() as session:
            await execute(session, later, [
                {"job_id": job.id, "tries": job.attempts,
                 "due": now + timedelta(seconds=max(float(after), retry_wait(job.attempts)))}
                for job in jobs])
            _log(session, connection_id, "out", "sync", outcome="retry",
                 detail=f"{len(jobs)} waiting: {exc}"[:500])

    async def _broken(self, connection_id: int, jobs: Sequence[_Job], why: str, *,
                      seen: datetime) -> None:
        """The CRM refused the credentials: the connection waits for an admin; its jobs wait
        with it (all due at once when it is reconnected, see `connections.reconnect`).
        Unless an admin saved the connection since this round read it: then the refusal was
        of the old credentials, and the jobs are simply tried again with the new ones."""
        now = utcnow()
        table = table_of(CrmJob)
        connections = table_of(CrmConnection)
        async with self.ctx.db.write() as session:
            # Released from this round's claim (which would hold them a minute more).
            await execute(session, update(table).where(
                table.c.id.in_([j.id for j in jobs]), table.c.status == "pending",
            ).values(next_attempt_at=now))
            marked = await execute(session, update(connections).where(
                connections.c.id == connection_id, connections.c.status_changed_at == seen,
            ).values(status="broken", status_reason=why[:500], status_changed_at=now))
            if not marked.rowcount:
                _log(session, connection_id, "out", "connection", outcome="retry",
                     detail="refused with the settings of before the last save; trying again")
                return
            _log(session, connection_id, "out", "connection", outcome="broken",
                 detail=why[:500])
        log.warning("CRM connection %s is broken: %s", connection_id, why[:200])

    async def _save_updates(self, connection_id: int, updates: Mapping[str, Any],
                            secret: set[str], *, seen: datetime) -> None:
        """Store what the connector changed (a refreshed token), sealed like the rest; not
        over what an admin saved since this round read the connection."""
        async with self.ctx.db.write() as session:
            row = await session.get(CrmConnection, connection_id, with_for_update=True)
            if row is None or row.status_changed_at != seen:
                return
            row.settings = {**row.settings,
                            **self.ctx.secrets.seal_settings(updates, secret)}
            session.add(row)


def retry_wait(attempts: int) -> float:
    """Seconds before a job's next try after `attempts` failed rounds: 2, 4, 8 … up to 5
    minutes, jittered."""
    return float(min(MAX_WAIT_S, 2.0 ** attempts) * random.uniform(0.8, 1.2))


def _log(session: AsyncSession, connection_id: int, direction: str, action: str, *,
         outcome: str, contact_id: int | None = None, remote_id: str | None = None,
         detail: str = "") -> None:
    session.add(CrmLogEntry(connection_id=connection_id, direction=direction, action=action,
                            contact_id=contact_id, remote_id=remote_id, outcome=outcome,
                            detail=detail[:500]))


async def _log_many(session: AsyncSession, connection_id: int,
                    entries: Sequence[tuple[str, int, str | None, str, str]]) -> None:
    """Outgoing log lines (action, contact, remote id, outcome, detail) in one statement."""
    if not entries:
        return
    now = utcnow()
    await execute(session, insert(table_of(CrmLogEntry)), [
        {"connection_id": connection_id, "at": now, "direction": "out", "action": action,
         "contact_id": contact_id, "remote_id": remote, "outcome": outcome,
         "detail": detail[:500]} for action, contact_id, remote, outcome, detail in entries])
