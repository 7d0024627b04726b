"""The IMAP poller (aioimaplib): IDLE where the server has it, polling where not, UID cursors.

The cursor is (UIDVALIDITY, last UID) per folder, saved only after every message up to that
UID was emitted (durably on the bus). A crash in between re-fetches, and ingest deduplicates
on the Message-ID; a new UIDVALIDITY starts over from UID 1, deduplicated the same way.
UNSEEN and dates are never used to follow a folder: a cursor cannot miss what it has not
seen. Only the first sync of a folder may be limited (`imap_initial_sync`): everything (the
default), only mail newer than N days, or only mail arriving from now on.

A catch-up fetches in batches bounded by count and by bytes (the sizes are asked first), the
next batch on the wire while the last one is parsed and stored; its progress (fetched of
total, since when) is saved with the cursor, so an admin sees an import advance.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aioimaplib  # type: ignore[import-untyped]

from channels.base import Emit, PollerState
from channels.email.tls import TlsRefused, client_context, tls_mode, untrusted
from hub.types import InboundMessage

log = logging.getLogger("switchboard.email.imap")

FETCH_BATCH = 200  # messages per UID FETCH, at most
FETCH_BATCH_BYTES = 16 * 1024 * 1024  # and at most this much mail (a bigger one goes alone)
SIZES_PER_COMMAND = 400  # UIDs whose sizes one command asks for
IMPORT_AT_LEAST = FETCH_BATCH  # a catch-up of this many messages reports its progress
IDLE_SECONDS = 25 * 60  # RFC 2177: servers may drop an IDLE after 30 minutes
POLL_SECONDS = 60
MAX_BACKOFF_S = 60.0
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]")
_FETCH_UID = re.compile(rb"UID (\d+)")
_FETCH_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Turns raw messages into what to emit, in order (None: quarantined or dropped).
Deliver = Callable[[Sequence[bytes]], Awaitable[Sequence[InboundMessage | None]]]


class ImapError(Exception):
    """The server refused a command (login, select, fetch)."""


class ConnectionLost(Exception):
    """The IMAP connection dropped."""


def _check(response: Any, what: str) -> Any:
    if response.result != "OK":
        lines = b" ".join(bytes(line) for line in response.lines)[:300]
        raise ImapError(f"{what} failed: {response.result} {lines.decode(errors='replace')}")
    return response


def parse_search(lines: list[Any]) -> list[int]:
    """UIDs of a UID SEARCH answer."""
    found: list[int] = []
    for line in lines[:-1]:  # the last line is the tagged completion
        for token in bytes(line).split():
            if token.isdigit():
                found.append(int(token))
    return found


def parse_fetch(lines: list[Any]) -> list[tuple[int, bytes]]:
    """(UID, message bytes) pairs of a UID FETCH (UID BODY.PEEK[]) answer."""
    found: list[tuple[int, bytes]] = []
    uid: int | None = None
    body: bytes | None = None
    for line in lines:
        if isinstance(line, bytearray):
            body = bytes(line)
            continue
        match = _FETCH_UID.search(line)
        if b" FETCH (" in line:
            uid, body = (int(match.group(1)) if match else None), None
        elif match and uid is None:
            uid = int(match.group(1))  # the UID came after the literal
        if uid is not None and body is not None and line.rstrip().endswith(b")"):
            found.append((uid, body))
            uid, body = None, None
    return found


def parse_sizes(lines: list[Any]) -> dict[int, int]:
    """UID -> size of a UID FETCH (UID RFC822.SIZE) answer."""
    sizes: dict[int, int] = {}
    for line in lines[:-1]:
        raw = bytes(line)
        uid, size = _FETCH_UID.search(raw), _FETCH_SIZE.search(raw)
        if uid and size:
            sizes[int(uid.group(1))] = int(size.group(1))
    return sizes


def uid_set(uids: Sequence[int]) -> str:
    """An IMAP sequence set for sorted UIDs, runs folded into ranges: 1:5,9,12:14."""
    parts: list[str] = []
    start = prev = uids[0]
    for uid in [*uids[1:], None]:
        if uid is not None and uid == prev + 1:
            prev = uid
            continue
        parts.append(f"{start}:{prev}" if prev > start else str(start))
        if uid is not None:
            start = prev = uid
    return ",".join(parts)


def plan_batches(
    uids: Sequence[int], sizes: Mapping[int, int], *,
    max_count: int = FETCH_BATCH, max_bytes: int = FETCH_BATCH_BYTES,
) -> list[list[int]]:
    """UIDs in fetch batches of at most max_count messages and max_bytes (one at least)."""
    batches: list[list[int]] = []
    batch: list[int] = []
    weight = 0
    for uid in uids:
        size = sizes.get(uid, 0)
        if batch and (len(batch) >= max_count or weight + size > max_bytes):
            batches.append(batch)
            batch, weight = [], 0
        batch.append(uid)
        weight += size
    if batch:
        batches.append(batch)
    return batches


def initial_sync(settings: Mapping[str, Any]) -> str | int:
    """The first sync of a folder: "all", "new", or a number of days back."""
    value = str(settings.get("imap_initial_sync") or "all").strip().lower()
    if value in ("all", "new"):
        return value
    if value.isdigit() and 0 < int(value) <= 36500:
        return int(value)
    raise ValueError("imap_initial_sync is all, new, or a number of days (1 to 36500)")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def imap_date(moment: datetime) -> str:
    """A date as IMAP SEARCH takes it (RFC 3501 date: 1-Feb-2026)."""
    return f"{moment.day}-{_MONTHS[moment.month - 1]}-{moment.year}"


class _FetchCommand(aioimaplib.FetchCommand):  # type: ignore[misc]
    """A FETCH that knows incrementally when a message's data is complete.

    aioimaplib's FETCH rescans every line of the answer so far at each new line to see
    whether the parentheses of the last message balance: quadratic in the batch, a large
    share of an import's CPU. This keeps the two counts as lines arrive instead, with the
    same rule (from the last "N FETCH (" line on, literal data left out).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._opened = self._closed = 0
        super().__init__(*args, **kwargs)

    def append_to_resp(self, line: bytes, result: str = "Pending") -> None:
        super().append_to_resp(line, result)
        if isinstance(line, bytes):
            if self.FETCH_MESSAGE_DATA_RE.match(line):
                self._opened = self._closed = 0
            self._opened += line.count(b"(")
            self._closed += line.count(b")")

    def wait_data(self) -> bool:
        return self._opened != self._closed


async def uid_fetch(client: Any, uids: str, parts: str) -> Any:
    """UID FETCH through the incremental command above."""
    protocol = client.protocol
    return await protocol.execute(_FetchCommand(
        protocol.new_tag(), uids, parts, prefix="UID", loop=protocol.loop,
        timeout=client.timeout))


async def starttls(client: Any, context: ssl.SSLContext, host: str) -> None:
    """Upgrade a fresh connection to TLS (RFC 3501 STARTTLS), before any login.

    aioimaplib knows the command but has no method for it: the command goes through its
    protocol, and asyncio's start_tls wraps the same transport and protocol.
    """
    if not client.has_capability("STARTTLS"):
        raise TlsRefused("the IMAP server does not offer STARTTLS; use imap_tls ssl instead")
    protocol = client.protocol
    command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
    _check(await asyncio.wait_for(protocol.execute(command), client.timeout), "STARTTLS")
    loop = asyncio.get_running_loop()
    protocol.transport = await loop.start_tls(
        protocol.transport, protocol, context, server_hostname=host,
        ssl_handshake_timeout=client.timeout,
    )
    # What the server said before TLS cannot be trusted: ask for its capabilities again.
    protocol.capabilities = set()
    await asyncio.wait_for(protocol.capability(), client.timeout)


async def _unless_lost(lost: asyncio.Event, command: Awaitable[Any]) -> Any:
    """The command's answer; ConnectionLost at once if the connection drops meanwhile.

    aioimaplib leaves a command written to a closed connection waiting for its answer
    (IDLE forever): racing it against the lost-connection signal lets the session end.
    """
    task = asyncio.ensure_future(command)
    gone = asyncio.ensure_future(lost.wait())
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # cancelled: the command goes too
        task.cancel()
        raise
    finally:
        gone.cancel()
    if task.done():
        return task.result()
    task.cancel()
    raise ConnectionLost("the server closed the connection")


class ImapPoller:
    """One inbox's mailbox folder, followed until cancelled."""

    def __init__(
        self,
        settings: Mapping[str, Any],
        *,
        emit: Emit,
        deliver: Deliver,
        state: PollerState,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.emit = emit
        self.deliver = deliver
        self.state = state
        self.tls_context = tls_context
        self.folder = str(settings.get("imap_folder") or "INBOX")
        self.key = f"imap:{self.folder}"
        self.idle_seconds = float(settings.get("imap_idle_seconds") or IDLE_SECONDS)
        self.poll_seconds = float(settings.get("imap_poll_seconds") or POLL_SECONDS)
        self.use_idle = str(settings.get("imap_idle", "yes")).lower() not in ("no", "false", "0")
        self.connected = asyncio.Event()  # set while a session is up (tests wait on it)
        self.sessions = 0
        self.last_error: str | None = None  # why the last session failed, until one works

    async def run(self) -> None:
        """Follow the folder forever: reconnect with backoff (and jitter) after any drop."""
        delay = 1.0
        while True:
            started = self.sessions
            try:
                await self._session()
            except (ImapError, ConnectionLost, TlsRefused, OSError, TimeoutError,
                    aioimaplib.AioImapException) as exc:
                refused = untrusted(exc, "IMAP")
                self.last_error = str(refused or exc) or type(exc).__name__
                log.warning("IMAP session for %s ended: %s", self.key, self.last_error)
            finally:
                self.connected.clear()
            if self.sessions > started:
                delay = 1.0  # it had worked: the next try comes quickly
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, MAX_BACKOFF_S)

    async def _connect(self, lost: asyncio.Event) -> Any:
        mode = tls_mode(self.settings, "imap_tls", "ssl")
        host = str(self.settings.get("imap_host") or "")
        port = int(self.settings.get("imap_port") or (993 if mode == "ssl" else 143))
        context = (self.tls_context or client_context(self.settings)) if mode != "none" else None
        client = aioimaplib.IMAP4(
            host=host, port=port, timeout=30, conn_lost_cb=lambda _exc: lost.set(),
            ssl_context=context if mode == "ssl" else None,
        )
        await client.wait_hello_from_server()
        if context is not None and mode == "starttls":
            await starttls(client, context, host)
        _check(await client.login(str(self.settings.get("imap_username") or ""),
                                  str(self.settings.get("imap_password") or "")), "LOGIN")
        return client

    async def _session(self) -> None:
        lost = asyncio.Event()
        client = await self._connect(lost)
        try:
            selected = _check(await _unless_lost(lost, client.select(self.folder)),
                              f"SELECT {self.folder}")
            validity, uidnext = (
                next((int(m.group(1)) for line in selected.lines
                      if (m := pattern.search(bytes(line)))), 0)
                for pattern in (_UIDVALIDITY, _UIDNEXT))
            cursor = await self.state.load(self.key) or {}
            if cursor.get("uidvalidity") != validity:
                if cursor:
                    log.warning("UIDVALIDITY of %s changed: full resync", self.key)
                cursor = await self._first_cursor(client, lost, validity, uidnext)
                await self.state.save(self.key, cursor)
            self.sessions += 1
            self.last_error = None
            self.connected.set()
            idle = self.use_idle and client.has_capability("IDLE")
            while True:
                cursor = await self._catch_up(client, cursor, lost)
                if idle:
                    await self._idle(client, lost)
                else:
                    await self._wait(lost, self.poll_seconds)
                    _check(await _unless_lost(lost, client.noop()), "NOOP")
                if lost.is_set():
                    raise ConnectionLost("the server closed the connection")
        finally:
            # No LOGOUT: the session may be mid-IDLE or cancelled; closing the socket is
            # enough for the server, and never blocks a shutdown.
            transport = client.protocol.transport
            if transport is not None:
                transport.close()

    async def _first_cursor(
        self, client: Any, lost: asyncio.Event, validity: int, uidnext: int
    ) -> dict[str, Any]:
        """The cursor a folder starts from, by the inbox's initial-sync setting."""
        policy = initial_sync(self.settings)
        cursor: dict[str, Any] = {"uidvalidity": validity, "last_uid": 0}
        if policy == "new":
            if not uidnext:  # the server did not say: the highest UID there is
                found = _check(await _unless_lost(
                    lost, client.uid_search("UID *", charset=None)), "UID SEARCH")
                uidnext = max(parse_search(found.lines), default=0) + 1
            cursor["last_uid"] = max(uidnext - 1, 0)
        elif isinstance(policy, int):
            since = datetime.now(UTC) - timedelta(days=policy)
            cursor["since"] = imap_date(since)  # until the first catch-up is done
            cursor["floor"] = max(uidnext - 1, 0)  # what it must move the cursor past
        return cursor

    async def _catch_up(
        self, client: Any, cursor: dict[str, Any], lost: asyncio.Event
    ) -> dict[str, Any]:
        """Fetch and emit every message after the cursor, oldest first; advance as it goes."""
        last = int(cursor.get("last_uid", 0))
        query = f"UID {last + 1}:*"
        if cursor.get("since"):
            query += f" SINCE {cursor['since']}"
        found = _check(await _unless_lost(lost, client.uid_search(query, charset=None)),
                       "UID SEARCH")
        # "N:*" always matches the newest message, even when its UID is below N.
        uids = sorted(uid for uid in parse_search(found.lines) if uid > last)
        sizes: dict[int, int] = {}
        # Asked in slices: aioimaplib reads the lines of one network read recursively, and
        # overflows the stack on about a thousand short ones.
        for start in range(0, len(uids) if len(uids) > 1 else 0, SIZES_PER_COMMAND):
            sizes |= parse_sizes(_check(await _unless_lost(lost, uid_fetch(
                client, uid_set(uids[start:start + SIZES_PER_COMMAND]), "(UID RFC822.SIZE)")),
                "UID FETCH").lines)
        batches = plan_batches(uids, sizes)
        importing = len(uids) >= IMPORT_AT_LEAST
        if importing:
            cursor = {**cursor, "sync": {
                "fetched": 0, "total": len(uids), "started_at": _now(), "finished_at": None}}
        fetching = self._fetch(client, lost, batches[0]) if batches else None
        try:
            for number, batch in enumerate(batches):
                assert fetching is not None
                raws = await fetching
                # The next batch comes over the wire while this one is parsed and stored.
                fetching = (self._fetch(client, lost, batches[number + 1])
                            if number + 1 < len(batches) else None)
                delivered = await self.deliver(raws)
                await asyncio.gather(*(self.emit(m) for m in delivered if m is not None))
                # Every message up to here is on the bus (or quarantined): move the cursor.
                cursor = {**cursor, "last_uid": batch[-1]}
                if importing:
                    progress = cursor["sync"]
                    done = progress["fetched"] + len(batch)
                    cursor["sync"] = {**progress, "fetched": done,
                                      "finished_at": _now() if done >= len(uids) else None}
                await self.state.save(self.key, cursor)
        finally:
            if fetching is not None:
                fetching.cancel()
        if cursor.get("since"):  # the first, limited sync is done: follow from here on
            floor = int(cursor.get("floor", 0))
            cursor = {key: value for key, value in cursor.items()
                      if key not in ("since", "floor")}
            cursor["last_uid"] = max(int(cursor["last_uid"]), floor)
            await self.state.save(self.key, cursor)
        return cursor

    def _fetch(
        self, client: Any, lost: asyncio.Event, batch: list[int]
    ) -> asyncio.Task[list[bytes]]:
        """The batch's messages (in UID order), fetched in a task of their own."""
        async def fetch() -> list[bytes]:
            fetched = _check(await _unless_lost(
                lost, uid_fetch(client, uid_set(batch), "(UID BODY.PEEK[])")), "UID FETCH")
            return [raw for _uid, raw in sorted(parse_fetch(fetched.lines))]
        return asyncio.ensure_future(fetch())

    async def _wait(self, lost: asyncio.Event, seconds: float) -> None:
        try:
            await asyncio.wait_for(lost.wait(), seconds)
        except TimeoutError:
            return
        raise ConnectionLost("the server closed the connection")

    async def _idle(self, client: Any, lost: asyncio.Event) -> None:
        """IDLE until the server reports a change, re-issued before the server's timeout."""
        idle = await _unless_lost(lost, client.idle_start(timeout=self.idle_seconds))
        push = asyncio.ensure_future(client.wait_server_push(timeout=self.idle_seconds + 30))
        gone = asyncio.ensure_future(lost.wait())
        try:
            await asyncio.wait({push, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (push, gone):
                task.cancel()
        if lost.is_set():
            idle.cancel()
            raise ConnectionLost("the server closed the connection during IDLE")
        client.idle_done()
        _check(await asyncio.wait_for(idle, 30), "IDLE")
