"""The IMAP poller (aioimaplib): IDLE where the server has it, polling where not, UID cursors.

The cursor is (UIDVALIDITY, last UID) per folder, saved only after every message up to that
UID was emitted (durably on the bus). A crash in between re-fetches, and ingest deduplicates
on the Message-ID; a new UIDVALIDITY starts over from UID 1, deduplicated the same way.
UNSEEN, dates and "last N" windows are never used: a cursor cannot miss what it has not seen.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aioimaplib  # type: ignore[import-untyped]

from channels.base import Emit, PollerState
from channels.email.tls import TlsRefused, client_context, tls_mode, untrusted
from hub.types import InboundMessage

log = logging.getLogger("switchboard.email.imap")

FETCH_BATCH = 100
IDLE_SECONDS = 25 * 60  # RFC 2177: servers may drop an IDLE after 30 minutes
POLL_SECONDS = 60
MAX_BACKOFF_S = 60.0
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_FETCH_UID = re.compile(rb"UID (\d+)")

# Turns one raw message into what to emit (None: it was quarantined or dropped).
Deliver = Callable[[bytes], Awaitable[InboundMessage | None]]


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
            validity = next((int(m.group(1)) for line in selected.lines
                             if (m := _UIDVALIDITY.search(bytes(line)))), 0)
            cursor = await self.state.load(self.key) or {}
            if cursor.get("uidvalidity") != validity:
                if cursor:
                    log.warning("UIDVALIDITY of %s changed: full resync", self.key)
                cursor = {"uidvalidity": validity, "last_uid": 0}
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

    async def _catch_up(
        self, client: Any, cursor: dict[str, Any], lost: asyncio.Event
    ) -> dict[str, Any]:
        """Fetch and emit every message after the cursor, oldest first; advance as it goes."""
        last = int(cursor.get("last_uid", 0))
        found = _check(await _unless_lost(
            lost, client.uid_search(f"UID {last + 1}:*", charset=None)), "UID SEARCH")
        # "N:*" always matches the newest message, even when its UID is below N.
        uids = sorted(uid for uid in parse_search(found.lines) if uid > last)
        for start in range(0, len(uids), FETCH_BATCH):
            batch = uids[start:start + FETCH_BATCH]
            fetched = _check(await _unless_lost(
                lost, client.uid("fetch", ",".join(map(str, batch)), "(UID BODY.PEEK[])")),
                "UID FETCH")
            # Delivered together (their files stored in one go), then emitted together, in
            # UID order.
            delivered = await asyncio.gather(
                *(self.deliver(raw) for _uid, raw in sorted(parse_fetch(fetched.lines))))
            await asyncio.gather(*(self.emit(m) for m in delivered if m is not None))
            # Every message up to here is on the bus (or quarantined): move the cursor.
            cursor = {**cursor, "last_uid": batch[-1]}
            await self.state.save(self.key, cursor)
        return cursor
