"""CRM connections (admins): connect, reconnect, remove, the sync log; and what a CRM says
back: its webhooks applied to contacts, and its card of a person for the contact panel."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_sync.base import (
    Account,
    AuthorisesWithOAuth,
    BadWebhook,
    Card,
    Connector,
    CrmError,
    RemoteChange,
)
from crm_sync.models import CrmConnection, CrmJob, CrmLink, CrmLogEntry
from crm_sync.sync import _log, backfill, source_of
from hub.types import utcnow
from inbox.agents import Principal
from inbox.contacts import change_from_outside
from inbox.context import InboxContext
from inbox.db import execute
from inbox.errors import NotFound, Refused, admins_only, existing
from inbox.models import Contact, table_of
from inbox.queries import contact_is_visible

log = logging.getLogger("switchboard.crm")

MAX_CONNECTIONS = 20
CARD_SECONDS = 60.0


@dataclass(frozen=True)
class ConnectionState:
    """A connection as admins see it: never its secrets."""

    connection: CrmConnection
    pending: int
    linked: int
    settings: dict[str, Any]  # the values that are not secret
    secrets_set: list[str]


def _connector(connectors: Mapping[str, Connector], kind: str) -> Connector:
    found = connectors.get(kind)
    if found is None:
        raise Refused(f"kind: one of {', '.join(sorted(connectors))}")
    return found


def _clean(connector: Connector, settings: Mapping[str, Any],
           current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The settings the connector knows, text only, required ones present (a secret left
    empty on a change keeps its stored value)."""
    known = {spec.name: spec for spec in connector.specs}
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise Refused(f"settings.{unknown[0]}: not a {connector.display_name} setting")
    cleaned: dict[str, Any] = dict(current or {})
    for name, value in settings.items():
        if not isinstance(value, str):
            raise Refused(f"settings.{name}: text")
        if value.strip() or not known[name].secret:
            cleaned[name] = value.strip()
    for spec in connector.specs:
        if spec.required and not cleaned.get(spec.name):
            raise Refused(f"settings.{spec.name}: {spec.label} is required")
        if not cleaned.get(spec.name) and spec.default:
            cleaned[spec.name] = spec.default
    return cleaned


async def _checked(ctx: InboxContext, connector: Connector, connection_id: int,
                   cleaned: dict[str, Any]) -> dict[str, Any]:
    """The settings once the CRM accepted them (Refused with its answer otherwise), with what
    the check learnt (the account id), sealed as stored."""
    account = Account(connection_id, cleaned)
    try:
        found = await connector.check(account)
    except CrmError as exc:
        raise Refused(f"{connector.display_name} refused the connection: {exc}") from None
    return ctx.secrets.seal_settings({**cleaned, **account.updates, **found},
                                     {s.name for s in connector.specs if s.secret})


async def list_connections(session: AsyncSession, principal: Principal,
                           connectors: Mapping[str, Connector]) -> list[ConnectionState]:
    """Every connection with its backlog and how many contacts it links."""
    admins_only(principal, "manage CRM connections")
    rows = list(await session.exec(select(CrmConnection).order_by(col(CrmConnection.id))))
    pending = dict((await session.exec(
        select(CrmJob.connection_id, func.count()).where(CrmJob.status == "pending")
        .group_by(col(CrmJob.connection_id)))).all())
    linked = dict((await session.exec(
        select(CrmLink.connection_id, func.count()).group_by(col(CrmLink.connection_id)))).all())
    return [_state(row, connectors, pending.get(row.id or 0, 0), linked.get(row.id or 0, 0))
            for row in rows]


def _state(row: CrmConnection, connectors: Mapping[str, Connector], pending: int,
           linked: int) -> ConnectionState:
    connector = connectors.get(row.kind)
    secret = {s.name for s in connector.specs if s.secret} if connector else set(row.settings)
    return ConnectionState(
        connection=row, pending=pending, linked=linked,
        settings={k: v for k, v in row.settings.items() if k not in secret},
        secrets_set=sorted(k for k in row.settings if k in secret and row.settings[k]))


async def get_connection(session: AsyncSession, principal: Principal, connection_id: int,
                         connectors: Mapping[str, Connector]) -> ConnectionState:
    """One connection (NotFound when there is none)."""
    admins_only(principal, "manage CRM connections")
    row = await existing(session, CrmConnection, connection_id, "CRM connection")
    pending = (await session.exec(select(func.count()).select_from(CrmJob).where(
        CrmJob.connection_id == connection_id, CrmJob.status == "pending"))).one()
    linked = (await session.exec(select(func.count()).select_from(CrmLink).where(
        CrmLink.connection_id == connection_id))).one()
    return _state(row, connectors, int(pending), int(linked))


async def connect(ctx: InboxContext, principal: Principal, connectors: Mapping[str, Connector],
                  *, kind: str, name: str, settings: Mapping[str, Any],
                  sync_existing: bool = True) -> CrmConnection:
    """Check the credentials with the CRM (Refused with its answer), store the connection
    (secrets sealed) and, unless told not to, queue every existing contact."""
    admins_only(principal, "manage CRM connections")
    connector = _connector(connectors, kind)
    sealed = await _checked(ctx, connector, 0, _clean(connector, settings))
    async with ctx.db.write() as session:
        count = (await session.exec(select(func.count()).select_from(CrmConnection))).one()
        if count >= MAX_CONNECTIONS:
            raise Refused(f"at most {MAX_CONNECTIONS} CRM connections")
        row = CrmConnection(kind=kind, name=name.strip()[:200] or connector.display_name,
                            settings=sealed)
        session.add(row)
        await session.flush()
        assert row.id is not None
        _log(session, row.id, "out", "connect", outcome="ok", detail="credentials accepted")
    if sync_existing:
        await backfill(ctx, row.id)
    return row


async def connect_with_code(ctx: InboxContext, principal: Principal,
                            connectors: Mapping[str, Connector], *, kind: str, name: str,
                            settings: Mapping[str, Any], code: str,
                            redirect_uri: str) -> CrmConnection:
    """The end of OAuth's authorization code flow: trade the code for tokens, then connect
    as with a token (checked, stored sealed, existing contacts queued)."""
    admins_only(principal, "manage CRM connections")
    connector = _connector(connectors, kind)
    if not isinstance(connector, AuthorisesWithOAuth):
        raise Refused(f"{connector.display_name} does not connect with OAuth")
    account = Account(0, _clean(connector, settings))
    try:
        await connector.exchange_code(account, code, redirect_uri)
    except CrmError as exc:
        raise Refused(f"{connector.display_name} refused the authorization: {exc}") from None
    return await connect(ctx, principal, connectors, kind=kind, name=name,
                         settings={**account.settings, **account.updates})


async def reconnect(ctx: InboxContext, principal: Principal,
                    connectors: Mapping[str, Connector], connection_id: int, *,
                    settings: Mapping[str, Any], name: str | None = None) -> CrmConnection:
    """New credentials (or the same, once the CRM takes them again): checked, stored, and
    the connection resumes where it stopped."""
    admins_only(principal, "manage CRM connections")
    async with ctx.db.read() as session:
        row = await existing(session, CrmConnection, connection_id, "CRM connection")
    connector = _connector(connectors, row.kind)
    current = ctx.secrets.open_settings(row.settings)
    moved = [name for name in ("api_base", "authorize_url")
             if name in settings and str(settings[name]).strip() != str(current.get(name, ""))]
    if moved:
        # The stored secrets go only where they went: a new address needs them typed again.
        missing = [spec.label for spec in connector.specs
                   if spec.secret and current.get(spec.name) and not settings.get(spec.name)]
        if missing:
            raise Refused(f"settings.{moved[0]}: a new address needs the secrets again "
                          f"({', '.join(missing)})")
    sealed = await _checked(ctx, connector, connection_id, _clean(connector, settings, current))
    async with ctx.db.write() as session:
        row = await existing(session, CrmConnection, connection_id, "CRM connection")
        row.settings = sealed
        if name is not None and name.strip():
            row.name = name.strip()[:200]
        was = row.status
        row.status, row.status_reason, row.status_changed_at = "connected", None, utcnow()
        session.add(row)
        # What waited (on the broken token, or backing off from an outage the admin has
        # since fixed) is due now: a reconnect resumes at once, not after the backoff.
        await execute(session, update(table_of(CrmJob)).where(
            table_of(CrmJob).c.connection_id == connection_id,
            table_of(CrmJob).c.status == "pending").values(next_attempt_at=row.status_changed_at))
        _log(session, connection_id, "out", "connect", outcome="ok",
             detail="reconnected" if was == "broken" else "settings changed")
    return row


async def disconnect(ctx: InboxContext, principal: Principal, connection_id: int) -> None:
    """Remove a connection with its links, backlog and log (the CRM keeps its records)."""
    admins_only(principal, "manage CRM connections")
    async with ctx.db.write() as session:
        row = await existing(session, CrmConnection, connection_id, "CRM connection")
        await session.delete(row)


async def queue_everything(ctx: InboxContext, principal: Principal, connection_id: int) -> int:
    """Push every contact again (a backfill); how many were queued."""
    admins_only(principal, "manage CRM connections")
    async with ctx.db.read() as session:
        await existing(session, CrmConnection, connection_id, "CRM connection")
    return await backfill(ctx, connection_id)


async def sync_log(session: AsyncSession, principal: Principal, connection_id: int, *,
                   before: int | None = None, limit: int = 100) -> list[CrmLogEntry]:
    """The connection's log, newest first."""
    admins_only(principal, "manage CRM connections")
    await existing(session, CrmConnection, connection_id, "CRM connection")
    query = select(CrmLogEntry).where(CrmLogEntry.connection_id == connection_id)
    if before is not None:
        query = query.where(col(CrmLogEntry.id) < before)
    return list(await session.exec(query.order_by(col(CrmLogEntry.id).desc()).limit(limit)))


# -- from the CRM ------------------------------------------------------------------------


async def webhook_account(ctx: InboxContext, connectors: Mapping[str, Connector], kind: str,
                          connection_id: int) -> tuple[Connector, Account]:
    """The connector and opened settings a webhook of this connection is checked with
    (NotFound for an unknown connection or one of another CRM)."""
    async with ctx.db.read() as session:
        row = await session.get(CrmConnection, connection_id)
    connector = connectors.get(kind)
    if row is None or row.kind != kind or connector is None:
        raise NotFound("no such CRM connection")
    return connector, Account(connection_id, ctx.secrets.open_settings(row.settings))


async def apply_changes(ctx: InboxContext, connection_id: int,
                        changes: Sequence[RemoteChange]) -> int:
    """Apply what changed in the CRM to the linked contacts, in one transaction (a CRM sends
    up to a hundred changes a request); how many contacts changed. The later change wins:
    one older than an agent's last edit of the contact is logged and dropped. A value
    Switchboard has already (the echo of its own push) changes nothing and logs nothing."""
    if not changes:
        return 0
    applied = 0
    async with ctx.db.write() as session:
        links = {link.remote_id: link for link in await session.exec(select(CrmLink).where(
            CrmLink.connection_id == connection_id,
            col(CrmLink.remote_id).in_({c.remote_id for c in changes})))}
        edits = {cid: edited for cid, edited in await session.exec(
            select(Contact.id, Contact.edited_at).where(
                col(Contact.id).in_({link.contact_id for link in links.values()})))}
        for change in changes:
            link = links.get(change.remote_id)
            if link is None:
                _log(session, connection_id, "in", "contact.update", remote_id=change.remote_id,
                     outcome="skipped", detail="no Switchboard contact is linked to it")
                continue
            edited = edits.get(link.contact_id)
            if edited is not None and change.occurred_at < edited:
                _log(session, connection_id, "in", "contact.update",
                     contact_id=link.contact_id, remote_id=change.remote_id,
                     outcome="conflict",
                     detail=f"kept Switchboard's later change ({_at(edited)}) "
                            f"over {', '.join(change.fields)} changed in the CRM at "
                            f"{_at(change.occurred_at)}")
                continue
            try:
                async with session.begin_nested():  # a refused change undoes only itself
                    fields = await _fields_for(session, link.contact_id, change.fields)
                    changed = await change_from_outside(session, link.contact_id, fields,
                                                        source=source_of(connection_id))
            except (Refused, NotFound) as exc:
                _log(session, connection_id, "in", "contact.update",
                     contact_id=link.contact_id, remote_id=change.remote_id,
                     outcome="failed", detail=str(exc))
                continue
            if changed:
                applied += 1
                _log(session, connection_id, "in", "contact.update",
                     contact_id=link.contact_id, remote_id=change.remote_id, outcome="ok",
                     detail="changed " + ", ".join(changed))
    return applied


def _at(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


async def _fields_for(session: AsyncSession, contact_id: int,
                      remote: Mapping[str, str | None]) -> dict[str, str | None]:
    """The CRM's fields as Switchboard's: a first or last name changes its half of the name."""
    fields: dict[str, str | None] = {k: v for k, v in remote.items() if k in ("email", "phone")}
    if "firstname" in remote or "lastname" in remote or "name" in remote:
        contact = await session.get(Contact, contact_id)
        first, _, last = ((contact.name if contact else None) or "").partition(" ")
        if "name" in remote:
            fields["name"] = remote["name"]
        else:
            if "firstname" in remote:
                first = remote["firstname"] or ""
            if "lastname" in remote:
                last = remote["lastname"] or ""
            fields["name"] = f"{first} {last}".strip() or None
    return fields


class CardCache:
    """CRM cards kept a minute per process: opening a contact twice calls the CRM once."""

    def __init__(self) -> None:
        self._cards: dict[tuple[int, str], tuple[float, Card]] = {}

    async def cards(self, ctx: InboxContext, principal: Principal,
                    connectors: Mapping[str, Connector], contact_id: int
                    ) -> list[Card | tuple[str, str]]:
        """Each connected CRM's card of the contact, or (CRM, why there is none)."""
        async with ctx.db.read() as session:
            if not await contact_is_visible(session, principal, contact_id):
                raise NotFound(f"contact {contact_id} not found")
            rows = list(await session.exec(
                select(CrmConnection, CrmLink).join(
                    CrmLink, col(CrmLink.connection_id) == col(CrmConnection.id))
                .where(CrmLink.contact_id == contact_id)))
        found: list[Card | tuple[str, str]] = []
        now = time.monotonic()
        for connection, link in rows:
            connector = connectors.get(connection.kind)
            if connector is None or connection.id is None:
                continue
            key = (connection.id, link.remote_id)
            hit = self._cards.get(key)
            if hit is not None and now - hit[0] < CARD_SECONDS:
                found.append(hit[1])
                continue
            if connection.status != "connected":
                found.append((connector.display_name, "the connection is broken"))
                continue
            try:
                card = await connector.card(
                    Account(connection.id, ctx.secrets.open_settings(connection.settings)),
                    link.remote_id)
            except CrmError as exc:
                log.info("CRM card of contact %s failed: %s", contact_id, exc)
                found.append((connector.display_name, "the CRM did not answer; try again"))
                continue
            self._cards[key] = (now, card)
            found.append(card)
        return found


async def set_status(ctx: InboxContext, connection_id: int, status: str, reason: str) -> None:
    """Mark a connection (for tests and the CLI)."""
    async with ctx.db.write() as session:
        await execute(session, update(table_of(CrmConnection)).where(
            table_of(CrmConnection).c.id == connection_id).values(
            status=status, status_reason=reason, status_changed_at=utcnow()))


__all__ = ["BadWebhook"]
