"""The IMAP poller against a real Dovecot, on both shapes (its state and ingest are real).

What the poller emits is ingested at once, as the worker would after the bus: the tests
count what ends up stored, so "nothing lost, nothing doubled" is checked where it matters.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import select

from channels.email import EmailChannel
from channels.email.imap import initial_sync, plan_batches, uid_set
from config import Settings
from hub.app import build_bus
from hub.types import InboundMessage, StatusUpdate
from inbox.attachments import attachment_store
from inbox.channel_state import InboxChannelState
from inbox.context import InboxContext
from inbox.db import Database
from inbox.inboxes import create_inbox
from inbox.ingest import ingest
from inbox.models import Conversation, Message, QuarantinedMessage
from tests.helpers import eventually
from tests.mail_services import DovecotServer, imap_append, imap_append_many
from tests.services import free_port


class Crash(BaseException):
    """Stands for the process dying: nothing in the poller may catch it."""


@dataclass
class Mailbox:
    """A Dovecot mailbox, an email inbox reading it, and its poller under test."""

    server: DovecotServer
    ctx: InboxContext
    inbox_id: int
    settings: dict[str, Any]
    emitted: list[str] = field(default_factory=list)
    crash_on_save: int | None = None  # crash when the cursor is about to pass this UID
    task: asyncio.Task[None] | None = None

    async def append(self, raw: bytes) -> None:
        await imap_append(self.server, "support", raw)

    def start(self, **overrides: Any) -> None:
        """Run the channel's poller (the same entry the worker uses)."""
        state = InboxChannelState(self.ctx.db, inbox_id=self.inbox_id)
        room = self

        class CrashingState:
            async def load(self, key: str) -> dict[str, Any] | None:
                return await state.load(key)

            async def save(self, key: str, value: dict[str, Any]) -> None:
                limit = room.crash_on_save
                if limit is not None and value.get("last_uid", 0) >= limit:
                    room.crash_on_save = None
                    raise Crash("killed between fetch and commit")
                await state.save(key, value)

            async def quarantine(self, reason: str, raw: bytes) -> None:
                await state.quarantine(reason, raw)

        async def emit(item: InboundMessage | StatusUpdate) -> None:
            assert isinstance(item, InboundMessage)
            self.emitted.append(item.external_id)
            await ingest(self.ctx, item)

        store = attachment_store(self.ctx.db, self.ctx.blobs, inbox_id=self.inbox_id,
                                 max_bytes=1_000_000)
        self.task = asyncio.create_task(EmailChannel().run(
            self.inbox_id, {**self.settings, **overrides}, emit, store, CrashingState()))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Crash):
                await self.task

    async def count(self, model: type, *where: object) -> int:
        async with self.ctx.db.read() as session:
            return int((await session.exec(
                select(func.count()).select_from(model).where(*where))).one())

    async def stored(self, n: int, timeout: float = 15) -> None:
        """Wait until n inbound messages are stored."""
        async def enough() -> bool:
            return await self.count(Message, Message.direction == "in") >= n

        await eventually(enough, timeout=timeout)


@pytest.fixture
async def mailbox(settings: Settings, tmp_path: Path) -> AsyncIterator[Mailbox]:
    async with open_mailbox(settings, DovecotServer.start(tmp_path)) as box:
        yield box


@contextlib.asynccontextmanager
async def open_mailbox(settings: Settings, server: DovecotServer) -> AsyncIterator[Mailbox]:
    """An email inbox reading `server` as "support" (its poller not started yet)."""
    db = Database(settings.sqlalchemy_url)
    bus = build_bus(settings)
    await bus.start()
    inbox_settings = {**server.settings("support"), "smtp_host": "127.0.0.1",
                      "from_address": "support@acme.test", "imap_idle_seconds": 5}
    async with db.write() as session:
        inbox = await create_inbox(session, name="Mail", channel="email", settings=inbox_settings)
        assert inbox.id
        inbox_id = inbox.id
    box = Mailbox(server, InboxContext(settings=settings, db=db, bus=bus), inbox_id,
                  inbox_settings)
    try:
        yield box
    finally:
        await box.stop()
        await bus.close()
        await db.close()
        server.remove()


def mail(n: int, *, sender: str = "ada@example.com", parent: int | None = None) -> bytes:
    """Email number n (a reply to `parent` when given)."""
    thread = f"In-Reply-To: <m{parent}@example.com>\r\nReferences: <m{parent}@example.com>\r\n"
    return (f"From: {sender}\r\nTo: support@acme.test\r\nSubject: Mail {n}\r\n"
            f"Message-ID: <m{n}@example.com>\r\n{thread if parent else ''}\r\n"
            f"body {n}\r\n").encode()


async def _until(check: Callable[[], Awaitable[bool]] | Callable[[], bool]) -> None:
    async def wrapped() -> bool:
        result = check()
        return bool(await result) if asyncio.iscoroutine(result) else bool(result)

    await eventually(wrapped)


async def test_mail_in_the_mailbox_and_new_mail_under_idle_are_ingested(mailbox: Mailbox) -> None:
    await mailbox.append(mail(1))
    mailbox.start()
    await mailbox.stored(1)
    await mailbox.append(mail(2, parent=1))  # arrives while the poller IDLEs
    await mailbox.stored(2)
    assert await mailbox.count(Conversation) == 1
    state = InboxChannelState(mailbox.ctx.db, inbox_id=mailbox.inbox_id)

    async def cursor_moved() -> dict[str, Any] | None:
        cursor = await state.load("imap:INBOX")
        return cursor if cursor and cursor["last_uid"] == 2 else None

    assert (await eventually(cursor_moved))["uidvalidity"] > 0
    # The whole original stays one click away for the agent.
    async with mailbox.ctx.db.read() as session:
        row = (await session.exec(
            select(Message).where(Message.external_id == "m1@example.com"))).one()
    assert [a["filename"] for a in row.attachments] == ["original.eml"]


async def test_polling_without_idle_also_follows_the_mailbox(mailbox: Mailbox) -> None:
    mailbox.start(imap_idle="no", imap_poll_seconds=0.2)
    await mailbox.append(mail(1))
    await mailbox.stored(1)
    await mailbox.append(mail(2))
    await mailbox.stored(2)


async def test_killed_between_fetch_and_commit_nothing_lost_nothing_doubled(
    mailbox: Mailbox,
) -> None:
    for n in range(1, 6):
        await mailbox.append(mail(n))
    mailbox.crash_on_save = 1  # dies after emitting the batch, before the cursor moves
    mailbox.start()
    assert mailbox.task is not None
    with pytest.raises(Crash):
        await asyncio.wait_for(mailbox.task, 15)
    assert len(mailbox.emitted) == 5
    mailbox.start()  # the restarted process fetches the same UIDs again
    await _until(lambda: len(mailbox.emitted) == 10)
    await mailbox.append(mail(6))
    await mailbox.stored(6)
    assert await mailbox.count(Message) == 6
    assert sorted(set(mailbox.emitted)) == sorted(f"m{n}@example.com" for n in range(1, 7))


async def test_a_new_uidvalidity_resyncs_without_doubling(mailbox: Mailbox) -> None:
    for n in range(1, 4):
        await mailbox.append(mail(n))
    mailbox.start()
    await mailbox.stored(3)
    await mailbox.stop()
    mailbox.server.stop()
    mailbox.server.reset_uidvalidity("support")
    mailbox.server.restart()
    await mailbox.append(mail(4))
    mailbox.emitted.clear()
    mailbox.start()
    await _until(lambda: len(mailbox.emitted) == 4)  # everything again, from UID 1
    await mailbox.stored(4)
    assert await mailbox.count(Message) == 4


async def test_a_dropped_connection_reconnects_and_catches_up(mailbox: Mailbox) -> None:
    await mailbox.append(mail(1))
    mailbox.start()
    await mailbox.stored(1)
    mailbox.server.kill()  # the line is cut while the poller IDLEs
    mailbox.server.restart()
    for n in range(2, 5):  # mail that landed during the outage
        await mailbox.append(mail(n, parent=1))
    await mailbox.stored(4, timeout=20)
    assert await mailbox.count(Conversation) == 1


async def test_unparseable_mail_is_quarantined_and_the_rest_goes_on(mailbox: Mailbox) -> None:
    await mailbox.append(mail(1))
    await mailbox.append(b"To: support@acme.test\r\nSubject: no sender\r\n\r\n?\r\n")
    await mailbox.append(mail(3))
    mailbox.start()
    await mailbox.stored(2)
    await _until(lambda: mailbox.count(QuarantinedMessage))
    async with mailbox.ctx.db.read() as session:
        [kept] = (await session.exec(select(QuarantinedMessage))).all()
    assert "sender" in kept.reason and b"no sender" in kept.raw


async def test_an_unreachable_server_is_retried_not_fatal(mailbox: Mailbox) -> None:
    mailbox.start(imap_port=free_port())
    await asyncio.sleep(0.5)
    assert mailbox.task is not None and not mailbox.task.done()


async def test_a_backlog_is_imported_in_batches_in_order_with_its_progress(
    mailbox: Mailbox,
) -> None:
    await imap_append_many(mailbox.server, "support", [mail(n) for n in range(1, 451)])
    mailbox.start()
    await mailbox.stored(450, timeout=60)
    # Parsed in the pool and fetched ahead, still emitted in the mailbox's order.
    assert mailbox.emitted == [f"m{n}@example.com" for n in range(1, 451)]

    async def saved() -> dict[str, Any] | None:
        # The poller saves its cursor once the batch is on the bus: the worker may have
        # stored the messages a moment before.
        found = await InboxChannelState(mailbox.ctx.db, inbox_id=mailbox.inbox_id).load(
            "imap:INBOX")
        return found if found is not None and found["last_uid"] == 450 else None

    cursor = await eventually(saved)
    progress = cursor["sync"]
    assert (progress["fetched"], progress["total"]) == (450, 450)
    assert progress["started_at"] <= progress["finished_at"]
    await mailbox.append(mail(451))  # a single new mail afterwards leaves the import's record
    await mailbox.stored(451)
    cursor = await InboxChannelState(mailbox.ctx.db, inbox_id=mailbox.inbox_id).load(
        "imap:INBOX")
    assert cursor is not None and cursor["sync"]["total"] == 450


async def test_initial_sync_new_leaves_the_old_mail_and_follows_what_arrives(
    mailbox: Mailbox,
) -> None:
    for n in range(1, 4):
        await mailbox.append(mail(n))
    mailbox.start(imap_initial_sync="new")
    state = InboxChannelState(mailbox.ctx.db, inbox_id=mailbox.inbox_id)
    await eventually(lambda: state.load("imap:INBOX"))  # connected: its cursor is set
    await mailbox.append(mail(4))
    await mailbox.stored(1)
    await mailbox.stop()
    mailbox.start(imap_initial_sync="new")  # a restart keeps the cursor: nothing older
    await mailbox.append(mail(5))
    await mailbox.stored(2)
    # (m4 may be fetched twice when the stop fell before its cursor moved: stored once.)
    assert sorted(set(mailbox.emitted)) == ["m4@example.com", "m5@example.com"]
    assert await mailbox.count(Message) == 2


async def test_initial_sync_of_n_days_imports_only_recent_mail(mailbox: Mailbox) -> None:
    old = datetime.now(UTC) - timedelta(days=40)
    await imap_append(mailbox.server, "support", mail(1), arrived=old)
    await mailbox.append(mail(2))
    await imap_append(mailbox.server, "support", mail(3), arrived=old)
    await mailbox.append(mail(4))
    mailbox.start(imap_initial_sync="30")
    await mailbox.stored(2)
    await mailbox.append(mail(5))
    # Once the first sync is done, whatever lands in the folder is followed, whatever its date.
    await imap_append(mailbox.server, "support", mail(6), arrived=old)
    await mailbox.stored(4)
    assert mailbox.emitted == [f"m{n}@example.com" for n in (2, 4, 5, 6)]


def test_uid_sets_fold_runs_and_batches_are_bounded_by_count_and_bytes() -> None:
    assert uid_set([1, 2, 3, 7, 9, 10]) == "1:3,7,9:10"
    assert uid_set([5]) == "5"
    sizes = {1: 10, 2: 10, 3: 50, 4: 10, 5: 10}
    assert plan_batches([1, 2, 3, 4, 5], sizes, max_count=3, max_bytes=60) == [
        [1, 2], [3, 4], [5]]
    # A mail bigger than the byte bound goes alone, never skipped.
    assert plan_batches([1, 2, 3], {2: 500}, max_count=10, max_bytes=60) == [[1], [2], [3]]
    assert plan_batches([], {}) == []


def test_the_initial_sync_setting_is_validated() -> None:
    assert initial_sync({}) == "all"
    assert initial_sync({"imap_initial_sync": "New"}) == "new"
    assert initial_sync({"imap_initial_sync": "30"}) == 30
    for wrong in ("0", "-3", "yesterday", "99999"):
        with pytest.raises(ValueError, match="imap_initial_sync"):
            initial_sync({"imap_initial_sync": wrong})
    problems = EmailChannel().check_settings({"imap_initial_sync": "lots"})
    assert any("imap_initial_sync" in p for p in problems)
    for key, wrong in (("imap_poll_seconds", "0.001"), ("imap_poll_seconds", "soon"),
                       ("imap_idle_seconds", 86400)):
        problems = EmailChannel().check_settings({key: wrong})
        assert any(key in p for p in problems), (key, wrong)
    assert EmailChannel().check_settings({"imap_poll_seconds": 0.1}) == []
