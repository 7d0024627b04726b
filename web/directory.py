"""The inboxes a web process keeps in memory, so webhooks and the widget need no database.

Every inbox (id, name, channel, settings) is read at once and kept; the copy is read again
when an `inbox.changed` event says so (any process may have changed it), after `ttl`
seconds in any case, and when an unknown inbox is asked for (at most once a second, so
requests for made-up ids cannot hammer the database). While the database cannot be
reached, the last copy keeps serving: a provider's webhook is still accepted and put on the
bus. Only an inbox never seen before cannot be answered then (DirectoryUnavailable: 503).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hub.secrets import SecretsUnreadable
from inbox.inboxes import all_inboxes

if TYPE_CHECKING:  # the types of what hub/app.py hands in
    from hub.secrets import SecretBox
    from inbox.db import Database
    from inbox.models import Inbox


log = logging.getLogger("switchboard.directory")

TTL_S = 60.0
MISS_RELOAD_S = 1.0


class DirectoryUnavailable(Exception):
    """The inbox is not known here and the database cannot be asked right now."""


@dataclass(frozen=True)
class KnownInbox:
    """An inbox as webhooks and the widget need it."""

    id: int
    name: str
    channel: str
    settings: dict[str, Any]
    # A secret of its settings opens with none of the configured keys: it cannot take
    # anything in until an admin restores the key or types the secret again.
    unreadable: bool = False


class InboxDirectory:
    """Every inbox, cached in this process (see the module's rules)."""

    def __init__(self, db: Database, secrets: SecretBox, *, ttl: float = TTL_S) -> None:
        self._db = db
        self._secrets = secrets
        self._ttl = ttl
        self._by_id: dict[int, KnownInbox] = {}
        self._by_widget_token: dict[str, KnownInbox] = {}
        self._loaded_at: float | None = None
        self._stale = True
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """Something changed: read the inboxes again before the next answer."""
        self._stale = True

    async def get(self, inbox_id: int) -> KnownInbox | None:
        """The inbox, or None when there is none with this id."""
        await self._fresh(missing=inbox_id not in self._by_id)
        return self._by_id.get(inbox_id)

    async def of_channel(self, channel: str) -> list[KnownInbox]:
        """Every connected inbox of one channel."""
        await self._fresh(missing=False)
        return [inbox for inbox in self._by_id.values() if inbox.channel == channel]

    async def widget(self, public_token: str) -> KnownInbox | None:
        """The webchat inbox of a widget's public token, or None."""
        await self._fresh(missing=public_token not in self._by_widget_token)
        return self._by_widget_token.get(public_token)

    async def _fresh(self, *, missing: bool) -> None:
        now = time.monotonic()
        age = now - self._loaded_at if self._loaded_at is not None else None
        due = self._stale or age is None or age >= self._ttl or (missing and age >= MISS_RELOAD_S)
        if not due:
            return
        async with self._lock:
            if self._loaded_at is not None and self._loaded_at > now:
                return  # another request reloaded while we waited
            try:
                await self._load()
            except Exception as exc:
                self._stale = True
                if self._loaded_at is None or missing:
                    raise DirectoryUnavailable(str(exc)) from exc
                log.warning("could not refresh the inboxes (serving the last copy): %s", exc)

    def _known(self, row: Inbox) -> KnownInbox:
        assert row.id is not None
        try:
            return KnownInbox(row.id, row.name, row.channel,
                              self._secrets.open_settings(row.settings))
        except SecretsUnreadable as exc:
            # One inbox whose key was lost must not stop every other inbox's webhooks.
            log.error("inbox %s cannot take messages in: %s", row.id, exc)
            return KnownInbox(row.id, row.name, row.channel, {}, unreadable=True)

    async def _load(self) -> None:
        self._stale = False  # a change arriving while we read marks it stale again
        started = time.monotonic()
        async with self._db.read() as session:
            rows = await all_inboxes(session)
        # A deleted inbox takes nothing in: its webhooks and widget answer 404.
        by_id = {row.id: self._known(row) for row in rows
                 if row.id is not None and row.disconnected_at is None}
        self._by_id = by_id
        self._by_widget_token = {
            str(inbox.settings["public_token"]): inbox for inbox in by_id.values()
            if inbox.channel == "webchat" and inbox.settings.get("public_token")
        }
        self._loaded_at = started
