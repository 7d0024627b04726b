"""The bus contract: durable streams with consumer groups, and realtime broadcast.

Two implementations keep the same contract: `hub.redis_bus.RedisBus` (Redis Streams and
pub/sub, for any number of processes) and `hub.embedded_bus.EmbeddedBus` (a SQLite file,
for the one-process embedded shape). An entry returned by `add` is durable: it survives
`kill -9` of the process that added it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

INBOUND = "inbound"
OUTBOUND = "outbound"
EVENTS = "events"


def dead_letter_stream(stream: str) -> str:
    """Name of the stream where entries of `stream` go after too many failed deliveries."""
    return f"{stream}:dead"


class BusUnavailable(Exception):
    """The bus cannot be reached right now (Redis down, the file unwritable): retry later."""


class LeaseLost(Exception):
    """An action fenced by a lease was refused: another process holds the lease now."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An entry that failed too often, kept with why, for an admin to inspect or replay."""

    id: str
    payload: bytes
    original_id: str
    reason: str
    group: str
    deliveries: int


@dataclass(frozen=True, slots=True)
class ConsumerInfo:
    """A consumer of a group: how many entries it holds and how long it has been idle."""

    name: str
    pending: int
    idle_ms: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry as delivered to a consumer."""

    id: str
    payload: bytes
    deliveries: int


# First item of every subscription: the subscription is live, later broadcasts will arrive.
LIVE: tuple[str, bytes] = ("", b"")


def parse_id(entry_id: str) -> tuple[int, int]:
    """Split a stream id 'ms-seq' into comparable integers."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class Bus(Protocol):
    """Durable streams with consumer groups, plus ordered realtime broadcast of events."""

    async def start(self) -> None:
        """Open connections; idempotent."""

    async def close(self) -> None:
        """Release connections and stop subscriptions."""

    async def ping(self) -> bool:
        """True when the bus answers."""

    async def add(self, stream: str, payload: bytes) -> str:
        """Append durably; return the entry id (ids grow within a stream)."""

    async def add_many(self, stream: str, payloads: Sequence[bytes]) -> list[str]:
        """Append several durably, in order, in one round trip; their entry ids."""

    async def ensure_group(self, stream: str, group: str, *, from_start: bool = True) -> None:
        """Create the consumer group if it is missing: reading from the stream's start, or
        only what is added from now on (`from_start=False`)."""

    async def read_group(
        self, stream: str, group: str, consumer: str, count: int, block_ms: int
    ) -> list[Entry]:
        """Entries never delivered to the group, now owned by `consumer` (waits up to block_ms)."""

    async def read_pending(
        self, stream: str, group: str, consumer: str, count: int
    ) -> list[Entry]:
        """Entries delivered to `consumer` and not acknowledged (after a restart), oldest first."""

    async def ack(self, stream: str, group: str, ids: Sequence[str]) -> None:
        """Acknowledge handled entries."""

    async def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[Entry]:
        """Take over entries left unacknowledged by any consumer for at least min_idle_ms."""

    async def touch(self, stream: str, group: str, consumer: str, ids: Sequence[str]) -> None:
        """Reset the idle time of entries `consumer` holds (not counted as a delivery), so
        no other consumer claims them while it keeps retrying them."""

    async def consumers(self, stream: str, group: str) -> list[ConsumerInfo]:
        """The group's consumers."""

    async def delete_consumer(self, stream: str, group: str, consumer: str) -> bool:
        """Forget a consumer that holds no entries; False when it holds some (kept)."""

    async def dead_letter(self, stream: str, group: str, entry: Entry, reason: str) -> None:
        """Move an entry to the stream's dead letters and acknowledge it, atomically."""

    async def dead_letters(self, stream: str, after: str, limit: int) -> list[DeadLetter]:
        """The stream's dead letters after id `after` ("0-0": from the oldest), oldest first."""

    async def replay_dead_letter(self, stream: str, dead_id: str) -> str | None:
        """Put a dead letter back on its stream (as a new entry) and remove it from the dead
        letters, atomically; the new entry's id, or None when there is no such dead letter."""

    async def discard_dead_letter(self, stream: str, dead_id: str) -> bool:
        """Delete a dead letter for good; False when there is none with that id."""

    async def trim(self, stream: str, maxlen: int) -> int:
        """Trim towards maxlen without dropping entries any group has pending or not yet read."""

    async def length(self, stream: str) -> int:
        """Number of entries retained in the stream."""

    async def pending_count(self, stream: str, group: str) -> int:
        """Entries delivered to the group and not acknowledged."""

    async def broadcast(self, payload: bytes, maxlen: int) -> str:
        """Append an event to EVENTS and publish it live, atomically and in id order."""

    async def broadcast_many(self, payloads: Sequence[bytes], maxlen: int) -> list[str]:
        """broadcast() for several events at once (one round trip), in order."""

    async def relay(
        self, items: Sequence[tuple[str, bytes]], *, marker: str, lease: str, owner: str,
        maxlen: int,
    ) -> list[str]:
        """Publish outbox items in order, atomically, while `owner` holds `lease`.

        Items for EVENTS are broadcast (appended and published live, as `broadcast`); others
        are appended to their stream. `marker` is recorded as the last relayed batch in the
        same atomic step (`last_relayed`). Raises LeaseLost when `owner` does not hold `lease`.
        """

    async def last_relayed(self) -> str:
        """The marker of the last batch `relay` published ('' when none)."""

    def subscribe(self) -> AsyncIterator[tuple[str, bytes]]:
        """LIVE once subscribed, then live events as (event id, payload) in broadcast order."""

    async def replay(self, after_id: str, limit: int) -> list[tuple[str, bytes]] | None:
        """Events after `after_id` (oldest first, at most limit); None when some were trimmed."""

    async def last_event_id(self) -> str:
        """Id of the newest event broadcast, or '0-0'."""

    async def acquire_lease(self, name: str, owner: str, ttl_ms: int) -> bool:
        """Hold `name` for ttl_ms unless another owner holds it; True when `owner` holds it."""

    async def renew_lease(self, name: str, owner: str, ttl_ms: int) -> bool:
        """Extend `owner`'s hold on `name`; False when it was lost (expired, taken over)."""

    async def release_lease(self, name: str, owner: str) -> None:
        """Let go of `name` if `owner` still holds it."""
