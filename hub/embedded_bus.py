"""The bus for the one-process embedded shape: streams in a SQLite file, live events in memory."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

from hub.bus import (
    EVENTS,
    LIVE,
    BusUnavailable,
    ConsumerInfo,
    DeadLetter,
    Entry,
    LeaseLost,
    dead_letter_stream,
    parse_id,
)

# A subscriber this far behind is cut off (like Redis drops a slow pub/sub client); it
# resubscribes and catches up with replay.
SUBSCRIBER_BACKLOG = 10_000

# Blocked readers also wake this often, in case another process wrote to the file.
WAKE_FALLBACK_S = 1.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    name TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL DEFAULT 0,
    length INTEGER NOT NULL DEFAULT 0,
    max_deleted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS entries (
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL,
    meta TEXT,
    PRIMARY KEY (stream, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS groups (
    stream TEXT NOT NULL,
    name TEXT NOT NULL,
    last_delivered INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (stream, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (
    stream TEXT NOT NULL,
    grp TEXT NOT NULL,
    seq INTEGER NOT NULL,
    consumer TEXT NOT NULL,
    delivered_at REAL NOT NULL,
    deliveries INTEGER NOT NULL,
    PRIMARY KEY (stream, grp, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_by_consumer ON pending (stream, grp, consumer, seq);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_ms REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
RELAY_MARKER = "outbox:relayed"


def _id(seq: int) -> str:
    return f"{seq}-0"


def _seq(entry_id: str) -> int:
    return parse_id(entry_id)[0]


def _now_ms() -> float:
    # Wall clock, not monotonic: delivery times must stay meaningful across restarts.
    return time.time() * 1000


class _Subscriber:
    """One live subscription: a queue the broadcaster fills without awaiting."""

    def __init__(self) -> None:
        self.queue: deque[tuple[str, bytes]] = deque()
        self.wake = asyncio.Event()
        self.closed = False
        self.lagged = False

    def push(self, item: tuple[str, bytes]) -> None:
        if len(self.queue) >= SUBSCRIBER_BACKLOG:
            self.lagged = True
        else:
            self.queue.append(item)
        self.wake.set()

    def end(self) -> None:
        self.closed = True
        self.wake.set()


class EmbeddedBus:
    """`hub.bus.Bus` on one SQLite file (WAL) for a single process."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: sqlite3.Connection | None = None
        # Calls are short and run on the event loop; the lock only guards against a
        # caller that reaches the bus from a worker thread.
        self._lock = threading.Lock()
        self._signals: dict[str, asyncio.Event] = {}
        self._subscribers: set[_Subscriber] = set()
        self._closed = False

    async def start(self) -> None:
        """Open the file and create the tables; idempotent."""
        if self._db is not None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        # WAL + NORMAL: a committed transaction survives the process being killed (not
        # necessarily a power cut), without an fsync per add.
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        self._db = db
        self._closed = False

    async def close(self) -> None:
        """Wake blocked readers, end subscriptions, close the file."""
        self._closed = True
        for event in self._signals.values():
            event.set()
        self._signals.clear()
        for subscriber in self._subscribers:
            subscriber.end()
        self._subscribers.clear()
        if self._db is not None:
            db, self._db = self._db, None
            with self._lock:
                db.close()

    @contextlib.contextmanager
    def _tx(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction; a writing one takes the file's write lock up front."""
        if self._db is None:
            raise RuntimeError("EmbeddedBus is not started")
        db = self._db
        with self._lock:
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _notify(self, stream: str) -> None:
        event = self._signals.pop(stream, None)
        if event is not None:
            event.set()

    async def ping(self) -> bool:
        """True when the file answers a query."""
        try:
            with self._tx(write=False) as db:
                db.execute("SELECT 1").fetchone()
        except (sqlite3.Error, RuntimeError):
            return False
        return True

    def _append(
        self, db: sqlite3.Connection, stream: str, payload: bytes, meta: str | None = None
    ) -> int:
        (seq,) = db.execute(
            "INSERT INTO streams (name, last_seq, length) VALUES (?, 1, 1) ON CONFLICT (name) "
            "DO UPDATE SET last_seq = last_seq + 1, length = length + 1 RETURNING last_seq",
            (stream,),
        ).fetchone()
        db.execute(
            "INSERT INTO entries (stream, seq, payload, created, meta) VALUES (?, ?, ?, ?, ?)",
            (stream, seq, payload, _now_ms(), meta),
        )
        return int(seq)

    async def add(self, stream: str, payload: bytes) -> str:
        """Append in its own committed transaction (BusUnavailable when the file refuses)."""
        return (await self.add_many(stream, [payload]))[0]

    async def add_many(self, stream: str, payloads: Sequence[bytes]) -> list[str]:
        """Append several in one committed transaction, in order."""
        if not payloads:
            return []
        try:
            with self._tx() as db:
                seqs = [self._append(db, stream, payload) for payload in payloads]
        except sqlite3.OperationalError as exc:  # disk full, I/O error, locked too long
            raise BusUnavailable(f"bus file: {exc}") from exc
        self._notify(stream)
        return [_id(seq) for seq in seqs]

    async def ensure_group(self, stream: str, group: str, *, from_start: bool = True) -> None:
        """Create the group at the stream's start (or its end) if missing."""
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO streams (name) VALUES (?)", (stream,))
            db.execute(
                "INSERT OR IGNORE INTO groups (stream, name, last_delivered) VALUES (?, ?, "
                "(SELECT CASE WHEN ? THEN 0 ELSE last_seq END FROM streams WHERE name = ?))",
                (stream, group, from_start, stream),
            )

    def _read_new(self, stream: str, group: str, consumer: str, count: int) -> list[Entry]:
        with self._tx() as db:
            row = db.execute(
                "SELECT last_delivered FROM groups WHERE stream = ? AND name = ?",
                (stream, group),
            ).fetchone()
            if row is None:
                raise LookupError(f"no group {group!r} on stream {stream!r}")
            rows = db.execute(
                "SELECT seq, payload FROM entries WHERE stream = ? AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (stream, row[0], count),
            ).fetchall()
            if not rows:
                return []
            now = _now_ms()
            db.executemany(
                "INSERT OR REPLACE INTO pending "
                "(stream, grp, seq, consumer, delivered_at, deliveries) VALUES (?, ?, ?, ?, ?, 1)",
                [(stream, group, seq, consumer, now) for seq, _ in rows],
            )
            db.execute(
                "UPDATE groups SET last_delivered = ? WHERE stream = ? AND name = ?",
                (rows[-1][0], stream, group),
            )
        return [Entry(_id(seq), bytes(payload), 1) for seq, payload in rows]

    async def read_group(
        self, stream: str, group: str, consumer: str, count: int, block_ms: int
    ) -> list[Entry]:
        """New entries for the group; waits for an add up to block_ms (<= 0: no wait)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_ms / 1000
        while True:
            entries = self._read_new(stream, group, consumer, count)
            remaining = deadline - loop.time()
            if entries or remaining <= 0:
                return entries
            event = self._signals.setdefault(stream, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, WAKE_FALLBACK_S))
            if self._closed:
                return []

    def _redeliver(
        self, db: sqlite3.Connection, stream: str, group: str, consumer: str, seqs: list[int]
    ) -> list[Entry]:
        """Hand pending `seqs` to `consumer`, counting a delivery; drop ones no longer stored."""
        now = _now_ms()
        entries: list[Entry] = []
        for seq in seqs:
            row = db.execute(
                "SELECT payload FROM entries WHERE stream = ? AND seq = ?", (stream, seq)
            ).fetchone()
            if row is None:
                db.execute(
                    "DELETE FROM pending WHERE stream = ? AND grp = ? AND seq = ?",
                    (stream, group, seq),
                )
                continue
            (deliveries,) = db.execute(
                "UPDATE pending SET consumer = ?, delivered_at = ?, deliveries = deliveries + 1 "
                "WHERE stream = ? AND grp = ? AND seq = ? RETURNING deliveries",
                (consumer, now, stream, group, seq),
            ).fetchone()
            entries.append(Entry(_id(seq), bytes(row[0]), int(deliveries)))
        return entries

    async def read_pending(self, stream: str, group: str, consumer: str, count: int) -> list[Entry]:
        """This consumer's unacknowledged entries, oldest first; each read counts a delivery."""
        with self._tx() as db:
            seqs = [
                seq
                for (seq,) in db.execute(
                    "SELECT seq FROM pending WHERE stream = ? AND grp = ? AND consumer = ? "
                    "ORDER BY seq LIMIT ?",
                    (stream, group, consumer, count),
                )
            ]
            return self._redeliver(db, stream, group, consumer, seqs)

    async def ack(self, stream: str, group: str, ids: Sequence[str]) -> None:
        """Forget the entries from the group's pending list."""
        if not ids:
            return
        with self._tx() as db:
            db.executemany(
                "DELETE FROM pending WHERE stream = ? AND grp = ? AND seq = ?",
                [(stream, group, _seq(i)) for i in ids],
            )

    async def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[Entry]:
        """Take entries any consumer left unacknowledged for min_idle_ms."""
        with self._tx() as db:
            seqs = [
                seq
                for (seq,) in db.execute(
                    "SELECT seq FROM pending WHERE stream = ? AND grp = ? AND delivered_at <= ? "
                    "ORDER BY seq LIMIT ?",
                    (stream, group, _now_ms() - min_idle_ms, count),
                )
            ]
            return self._redeliver(db, stream, group, consumer, seqs)

    async def touch(self, stream: str, group: str, consumer: str, ids: Sequence[str]) -> None:
        """Reset the entries' delivery time without counting a delivery."""
        if not ids:
            return
        now = _now_ms()
        with self._tx() as db:
            db.executemany(
                "UPDATE pending SET consumer = ?, delivered_at = ? "
                "WHERE stream = ? AND grp = ? AND seq = ?",
                [(consumer, now, stream, group, _seq(i)) for i in ids],
            )

    async def consumers(self, stream: str, group: str) -> list[ConsumerInfo]:
        """Consumers holding entries (this bus keeps no record of idle ones)."""
        now = _now_ms()
        with self._tx(write=False) as db:
            rows = db.execute(
                "SELECT consumer, COUNT(*), MAX(delivered_at) FROM pending "
                "WHERE stream = ? AND grp = ? GROUP BY consumer", (stream, group)).fetchall()
        return [ConsumerInfo(name, int(n), int(now - last)) for name, n, last in rows]

    async def delete_consumer(self, stream: str, group: str, consumer: str) -> bool:
        """Nothing to delete unless it holds entries, which keeps it."""
        with self._tx(write=False) as db:
            (held,) = db.execute(
                "SELECT COUNT(*) FROM pending WHERE stream = ? AND grp = ? AND consumer = ?",
                (stream, group, consumer)).fetchone()
        return int(held) == 0

    async def dead_letters(self, stream: str, after: str, limit: int) -> list[DeadLetter]:
        """Entries of `<stream>:dead` after `after`, with what was recorded about them."""
        with self._tx(write=False) as db:
            rows = db.execute(
                "SELECT seq, payload, meta FROM entries WHERE stream = ? AND seq > ? "
                "ORDER BY seq LIMIT ?", (dead_letter_stream(stream), _seq(after), limit),
            ).fetchall()
        found: list[DeadLetter] = []
        for seq, payload, meta in rows:
            info = json.loads(meta or "{}")
            found.append(DeadLetter(
                id=_id(seq), payload=bytes(payload), original_id=str(info.get("id", "")),
                reason=str(info.get("reason", "")), group=str(info.get("group", "")),
                deliveries=int(info.get("deliveries", 0)),
            ))
        return found

    async def replay_dead_letter(self, stream: str, dead_id: str) -> str | None:
        """Append the payload to the stream again and delete the dead letter, in one step."""
        dead = dead_letter_stream(stream)
        with self._tx() as db:
            row = db.execute("SELECT payload FROM entries WHERE stream = ? AND seq = ?",
                             (dead, _seq(dead_id))).fetchone()
            if row is None:
                return None
            self._remove(db, dead, _seq(dead_id))
            seq = self._append(db, stream, bytes(row[0]))
        self._notify(stream)
        return _id(seq)

    async def discard_dead_letter(self, stream: str, dead_id: str) -> bool:
        """Delete a dead letter."""
        with self._tx() as db:
            return self._remove(db, dead_letter_stream(stream), _seq(dead_id))

    def _remove(self, db: sqlite3.Connection, stream: str, seq: int) -> bool:
        removed = db.execute("DELETE FROM entries WHERE stream = ? AND seq = ?",
                             (stream, seq)).rowcount
        if removed:
            db.execute("UPDATE streams SET length = length - 1 WHERE name = ?", (stream,))
        return bool(removed)

    async def relay(
        self, items: Sequence[tuple[str, bytes]], *, marker: str, lease: str, owner: str,
        maxlen: int,
    ) -> list[str]:
        """One transaction: the lease checked, every item appended, events trimmed, the
        marker recorded; then the events pushed to subscribers, in order."""
        seqs: list[int] = []
        with self._tx() as db:
            held = db.execute("SELECT 1 FROM leases WHERE name = ? AND owner = ? "
                              "AND expires_ms > ?", (lease, owner, _now_ms())).fetchone()
            if held is None:
                raise LeaseLost(lease)
            seqs = [self._append(db, stream, payload) for stream, payload in items]
            if any(stream == EVENTS for stream, _ in items):
                self._trim(db, EVENTS, maxlen)
            db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)",
                       (RELAY_MARKER, marker))
        for stream in {stream for stream, _ in items}:
            self._notify(stream)
        ids = [_id(seq) for seq in seqs]
        for entry_id, (stream, payload) in zip(ids, items, strict=True):
            if stream == EVENTS:
                for subscriber in self._subscribers:
                    subscriber.push((entry_id, payload))
        return ids

    async def last_relayed(self) -> str:
        """The marker of the last relayed batch."""
        with self._tx(write=False) as db:
            row = db.execute("SELECT value FROM kv WHERE key = ?", (RELAY_MARKER,)).fetchone()
        return str(row[0]) if row else ""

    async def dead_letter(self, stream: str, group: str, entry: Entry, reason: str) -> None:
        """Ack and copy to the dead letters in one transaction (once, even if called twice)."""
        dead = dead_letter_stream(stream)
        meta = json.dumps(
            {"id": entry.id, "reason": reason, "group": group, "deliveries": entry.deliveries}
        )
        with self._tx() as db:
            acked = db.execute(
                "DELETE FROM pending WHERE stream = ? AND grp = ? AND seq = ?",
                (stream, group, _seq(entry.id)),
            ).rowcount
            if acked:
                self._append(db, dead, entry.payload, meta)
        if acked:
            self._notify(dead)

    def _trim(self, db: sqlite3.Connection, stream: str, maxlen: int) -> int:
        """Same rule as RedisBus: drop the oldest, but never past what a group still needs."""
        # A kept count, not COUNT(*): broadcast trims on every event.
        row = db.execute(
            "SELECT length, last_seq FROM streams WHERE name = ?", (stream,)
        ).fetchone()
        if row is None or row[0] <= maxlen:
            return 0
        length, newest = row
        # Keeping the newest maxlen means cutting below the (length - maxlen + 1)-th oldest.
        row = db.execute(
            "SELECT seq FROM entries WHERE stream = ? ORDER BY seq LIMIT 1 OFFSET ?",
            (stream, length - maxlen),
        ).fetchone()
        cut = row[0] if row else newest + 1
        (needed,) = db.execute(
            "SELECT MIN(s) FROM ("
            " SELECT MIN(seq) AS s FROM pending WHERE stream = ?"
            " UNION ALL SELECT MIN(last_delivered) + 1 FROM groups WHERE stream = ?)",
            (stream, stream),
        ).fetchone()
        if needed is not None:
            cut = min(cut, needed)
        (top,) = db.execute(
            "SELECT MAX(seq) FROM entries WHERE stream = ? AND seq < ?", (stream, cut)
        ).fetchone()
        if top is None:
            return 0
        removed = db.execute(
            "DELETE FROM entries WHERE stream = ? AND seq < ?", (stream, cut)
        ).rowcount
        db.execute(
            "UPDATE streams SET max_deleted = MAX(max_deleted, ?), length = length - ? "
            "WHERE name = ?",
            (top, removed, stream),
        )
        return int(removed)

    async def trim(self, stream: str, maxlen: int) -> int:
        """Trim towards maxlen; never drop an entry a group has pending or has not read."""
        with self._tx() as db:
            return self._trim(db, stream, maxlen)

    async def length(self, stream: str) -> int:
        """Entries retained in the stream."""
        with self._tx(write=False) as db:
            row = db.execute("SELECT length FROM streams WHERE name = ?", (stream,)).fetchone()
        return int(row[0]) if row else 0

    async def pending_count(self, stream: str, group: str) -> int:
        """Entries delivered to the group and not acknowledged."""
        with self._tx(write=False) as db:
            (n,) = db.execute(
                "SELECT COUNT(*) FROM pending WHERE stream = ? AND grp = ?", (stream, group)
            ).fetchone()
        return int(n)

    async def broadcast(self, payload: bytes, maxlen: int) -> str:
        """Append to EVENTS, trim, and push to subscribers before any other broadcast can."""
        return (await self.broadcast_many([payload], maxlen))[0]

    async def broadcast_many(self, payloads: Sequence[bytes], maxlen: int) -> list[str]:
        """Several events in one transaction, in order."""
        if not payloads:
            return []
        with self._tx() as db:
            seqs = [self._append(db, EVENTS, payload) for payload in payloads]
            self._trim(db, EVENTS, maxlen)
        self._notify(EVENTS)
        # No await between the commit and the pushes: subscribers see id order.
        ids = [_id(seq) for seq in seqs]
        for entry_id, payload in zip(ids, payloads, strict=True):
            for subscriber in self._subscribers:
                subscriber.push((entry_id, payload))
        return ids

    def subscribe(self) -> AsyncIterator[tuple[str, bytes]]:
        """Live events of this process; live once first awaited, ends when the bus closes."""
        return self._listen()

    async def _listen(self) -> AsyncIterator[tuple[str, bytes]]:
        subscriber = _Subscriber()
        if not self._closed:
            self._subscribers.add(subscriber)
        else:
            subscriber.end()
        try:
            yield LIVE
            while True:
                if subscriber.lagged:
                    raise ConnectionError("subscriber fell behind: resubscribe and replay")
                if subscriber.queue:
                    yield subscriber.queue.popleft()
                    continue
                if subscriber.closed:
                    return
                subscriber.wake.clear()
                await subscriber.wake.wait()
        finally:
            self._subscribers.discard(subscriber)

    async def replay(self, after_id: str, limit: int) -> list[tuple[str, bytes]] | None:
        """Events after `after_id`; None when one of them was trimmed away."""
        after = _seq(after_id)
        with self._tx(write=False) as db:
            row = db.execute("SELECT max_deleted FROM streams WHERE name = ?", (EVENTS,)).fetchone()
            if row is not None and after < row[0]:
                return None
            rows = db.execute(
                "SELECT seq, payload FROM entries WHERE stream = ? AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (EVENTS, after, limit),
            ).fetchall()
        return [(_id(seq), bytes(payload)) for seq, payload in rows]

    async def last_event_id(self) -> str:
        """Id of the newest event, or '0-0'."""
        with self._tx(write=False) as db:
            row = db.execute("SELECT last_seq FROM streams WHERE name = ?", (EVENTS,)).fetchone()
        return _id(row[0]) if row and row[0] else "0-0"

    async def acquire_lease(self, name: str, owner: str, ttl_ms: int) -> bool:
        """Take the lease when free, expired or already ours (wall clock: shared by processes)."""
        now = time.time() * 1000
        with self._tx() as db:
            row = db.execute(
                "INSERT INTO leases (name, owner, expires_ms) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
                "expires_ms = excluded.expires_ms WHERE leases.owner = excluded.owner "
                "OR leases.expires_ms <= ? RETURNING owner",
                (name, owner, now + ttl_ms, now),
            ).fetchone()
        return row is not None

    async def renew_lease(self, name: str, owner: str, ttl_ms: int) -> bool:
        """Extend the lease if `owner` still holds it."""
        now = time.time() * 1000
        with self._tx() as db:
            changed = db.execute(
                "UPDATE leases SET expires_ms = ? WHERE name = ? AND owner = ? AND expires_ms > ?",
                (now + ttl_ms, name, owner, now),
            ).rowcount
        return changed > 0

    async def release_lease(self, name: str, owner: str) -> None:
        """Drop the lease if `owner` holds it."""
        with self._tx() as db:
            db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))
