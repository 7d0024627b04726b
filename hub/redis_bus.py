"""The bus on Redis Streams and pub/sub, shared by any number of processes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

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

FIELD = "payload"

# One Lua run trims at most this many entries, so a long backlog never blocks Redis for
# long; `trim` calls the script again while it keeps hitting the cap.
TRIM_CAP = 1000

# Shared by the trim and broadcast scripts. Ids are compared as two numbers because string
# order is wrong ("9-0" > "10-0"); Lua numbers are doubles, exact for every real ms value.
_LUA_TRIM = """
local function split(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local function less(a, b)
  local am, as = split(a)
  local bm, bs = split(b)
  return am < bm or (am == bm and as < bs)
end

local function after(id)
  local ms = string.match(id, '^(%d+)-')
  local _, seq = split(id)
  return ms .. '-' .. string.format('%.0f', seq + 1)
end

-- Trim `key` towards `maxlen` entries (at most `cap` per run), never dropping an entry a
-- group still has pending or has not read yet. Returns the number of entries removed.
local function safe_trim(key, maxlen, cap, groups)
  local len = redis.call('XLEN', key)
  if len <= maxlen then return 0 end
  local drop = len - maxlen
  if drop > cap then drop = cap end
  local head = redis.call('XRANGE', key, '-', '+', 'COUNT', drop + 1)
  local minid
  if #head > drop then minid = head[drop + 1][1] else minid = after(head[#head][1]) end
  for _, g in ipairs(groups) do
    local name, pending, last
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1]
      elseif g[i] == 'pending' then pending = g[i + 1]
      elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
    end
    local unread = after(last)
    if less(unread, minid) then minid = unread end
    if pending > 0 then
      local oldest = redis.call('XPENDING', key, name)[2]
      if less(oldest, minid) then minid = oldest end
    end
  end
  local removed = redis.call('XTRIM', key, 'MINID', minid)
  -- XTRIM leaves max-deleted-entry-id alone (only XDEL sets it), yet replay reads it to
  -- detect gaps: record the newest removed id, which is always among `head`.
  local top
  for i = #head, 1, -1 do
    if less(head[i][1], minid) then top = head[i][1]; break end
  end
  if removed > 0 and top then
    local info = redis.call('XINFO', 'STREAM', key)
    local last, deleted
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then last = info[i + 1]
      elseif info[i] == 'max-deleted-entry-id' then deleted = info[i + 1] end
    end
    if less(deleted, top) then redis.call('XSETID', key, last, 'MAXDELETEDID', top) end
  end
  return removed
end
"""

_TRIM = (
    _LUA_TRIM
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
return safe_trim(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), groups)
"""
)

# XADD, trim and PUBLISH in one script: scripts run one at a time, so the live channel
# carries events in stream id order whatever the number of publishers. The trim is exact
# (not MAXLEN ~): replay must know the newest removed id to tell a gap from no gap.
_BROADCAST = (
    _LUA_TRIM
    + """
local id = redis.call('XADD', KEYS[1], '*', 'payload', ARGV[1])
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
safe_trim(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]), groups)
redis.call('PUBLISH', ARGV[4], id .. ' ' .. ARGV[1])
return id
"""
)

# The outbox relay's batch, atomically: fenced by the relay lease (a relay that lost it
# publishes nothing), each item appended (events also published live, in id order), one
# trim of the events stream, and the batch's marker recorded for the next relay.
# KEYS: events, lease, marker; ARGV: owner, marker, channel, maxlen, cap, then
# (stream key, payload) pairs.
_RELAY = (
    _LUA_TRIM
    + """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return redis.error_reply('LEASELOST') end
local ids = {}
local events = false
for i = 6, #ARGV, 2 do
  local id = redis.call('XADD', ARGV[i], '*', 'payload', ARGV[i + 1])
  if ARGV[i] == KEYS[1] then
    redis.call('PUBLISH', ARGV[3], id .. ' ' .. ARGV[i + 1])
    events = true
  end
  ids[#ids + 1] = id
end
if events then
  safe_trim(KEYS[1], tonumber(ARGV[4]), tonumber(ARGV[5]), redis.call('XINFO', 'GROUPS', KEYS[1]))
end
redis.call('SET', KEYS[3], ARGV[2])
return ids
"""
)

# Back on its stream and out of the dead letters in one step. KEYS: dead, stream.
_REPLAY_DEAD = """
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return false end
local fields = found[1][2]
local payload
for i = 1, #fields, 2 do
  if fields[i] == 'payload' then payload = fields[i + 1] end
end
if not payload then return false end
local id = redis.call('XADD', KEYS[2], '*', 'payload', payload)
redis.call('XDEL', KEYS[1], ARGV[1])
return id
"""

# Forget a consumer only while it holds nothing: XGROUP DELCONSUMER drops its pending
# entries with it.
_DELETE_CONSUMER = """
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1] elseif c[i] == 'pending' then pending = c[i + 1] end
  end
  if name == ARGV[2] then
    if pending > 0 then return 0 end
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
    return 1
  end
end
return 0
"""

# Ack first: an entry already acknowledged (handled or dead-lettered elsewhere) must not
# land in the dead letters a second time.
_DEAD_LETTER = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return false end
return redis.call('XADD', KEYS[2], '*', 'payload', ARGV[3], 'id', ARGV[2],
  'reason', ARGV[4], 'group', ARGV[1], 'deliveries', ARGV[5])
"""


# Commands give up after about a second: a caller (a webhook) answers 503 rather than hang.
POOL_SIZE = 64
POOL_WAIT_S = 10.0
CONNECT_TIMEOUT_S = 2.0
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entries(raw: Any) -> list[tuple[str, bytes | None]]:
    """(id, payload) of raw stream entries; payload None when deleted from the stream."""
    parsed: list[tuple[str, bytes | None]] = []
    for entry_id, fields in raw or []:
        payload = fields.get(FIELD.encode()) if fields else None
        parsed.append((_text(entry_id), payload))
    return parsed


def _read_reply(reply: Any) -> list[tuple[str, bytes | None]]:
    """Entries of an XREADGROUP reply on a single stream."""
    return [item for _, raw in reply or [] for item in _entries(raw)]


# Leases: one key per name holding its owner. Acquire and renew only act for the holder
# (or on a free key), so an owner whose lease expired can never extend someone else's.
_LEASE_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
_LEASE_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
_LEASE_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisBus:
    """`hub.bus.Bus` on Redis Streams (work) and pub/sub (live events); keys carry a prefix."""

    def __init__(self, url: str, prefix: str) -> None:
        self._url = url
        self._prefix = prefix
        self._channel = f"{prefix}events:live"
        self._redis: aioredis.Redis | None = None
        self._closed = False
        self._scripts: dict[str, AsyncScript] = {}
        self._marker = f"{prefix}outbox:relayed"

    def _key(self, stream: str) -> str:
        return f"{self._prefix}{stream}"

    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("RedisBus is not started")
        return self._redis

    def _script(self, name: str) -> AsyncScript:
        self._client()
        return self._scripts[name]

    async def start(self) -> None:
        """Create the connection pool; idempotent."""
        if self._redis is None:
            # A burst of callers waits for a pooled connection (up to POOL_WAIT_S) instead of
            # failing. After a Redis restart every pooled connection is dead: idle ones are
            # checked before use and a dropped command is retried briefly.
            pool = aioredis.BlockingConnectionPool.from_url(
                self._url,
                max_connections=POOL_SIZE,
                timeout=POOL_WAIT_S,
                health_check_interval=5,
                socket_keepalive=True,
                socket_connect_timeout=CONNECT_TIMEOUT_S,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
                retry_on_error=[RedisConnectionError, RedisTimeoutError],
            )
            self._redis = aioredis.Redis.from_pool(pool)  # closes the pool with it
            self._closed = False
            # register_script only hashes the text; EVALSHA falls back to EVAL on a miss.
            self._scripts = {
                "trim": self._redis.register_script(_TRIM),
                "broadcast": self._redis.register_script(_BROADCAST),
                "dead_letter": self._redis.register_script(_DEAD_LETTER),
                "lease_acquire": self._redis.register_script(_LEASE_ACQUIRE),
                "lease_renew": self._redis.register_script(_LEASE_RENEW),
                "lease_release": self._redis.register_script(_LEASE_RELEASE),
                "relay": self._redis.register_script(_RELAY),
                "replay_dead": self._redis.register_script(_REPLAY_DEAD),
                "delete_consumer": self._redis.register_script(_DELETE_CONSUMER),
            }

    async def close(self) -> None:
        """Close every connection; live subscriptions end."""
        self._closed = True
        if self._redis is not None:
            client, self._redis = self._redis, None
            await client.aclose()

    async def ping(self) -> bool:
        """True when Redis answers PING."""
        try:
            return bool(await self._client().ping())  # type: ignore[misc,unused-ignore]
        except (RedisError, OSError, RuntimeError):
            return False

    async def add(self, stream: str, payload: bytes) -> str:
        """XADD; durable as far as Redis persistence is configured. BusUnavailable when
        Redis cannot be reached."""
        try:
            entry_id = await self._client().xadd(self._key(stream), {FIELD: payload})
        except UNAVAILABLE as exc:
            raise BusUnavailable(f"redis: {exc}") from exc
        return _text(entry_id)

    async def add_many(self, stream: str, payloads: Sequence[bytes]) -> list[str]:
        """XADD each, pipelined in one round trip, in order (BusUnavailable as `add`)."""
        if not payloads:
            return []
        if len(payloads) == 1:  # a webhook's usual case: a plain command costs less
            return [await self.add(stream, payloads[0])]
        pipe = self._client().pipeline(transaction=False)
        for payload in payloads:
            pipe.xadd(self._key(stream), {FIELD: payload})
        try:
            return [_text(entry_id) for entry_id in await pipe.execute()]
        except UNAVAILABLE as exc:
            raise BusUnavailable(f"redis: {exc}") from exc

    async def ensure_group(self, stream: str, group: str, *, from_start: bool = True) -> None:
        """XGROUP CREATE from id 0 (or $), creating the stream; an existing group is kept."""
        try:
            await self._client().xgroup_create(self._key(stream), group,
                                               id="0" if from_start else "$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_group(
        self, stream: str, group: str, consumer: str, count: int, block_ms: int
    ) -> list[Entry]:
        """XREADGROUP '>'; block_ms <= 0 returns at once (BLOCK 0 would wait forever)."""
        reply = await self._client().xreadgroup(
            group,
            consumer,
            {self._key(stream): ">"},
            count=count,
            block=block_ms if block_ms > 0 else None,
        )
        return [Entry(i, payload, 1) for i, payload in _read_reply(reply) if payload is not None]

    async def read_pending(self, stream: str, group: str, consumer: str, count: int) -> list[Entry]:
        """XREADGROUP '0' for this consumer, with delivery counts read in the same MULTI."""
        key = self._key(stream)
        async with self._client().pipeline(transaction=True) as pipe:
            pipe.xreadgroup(group, consumer, {key: "0"}, count=count)
            pipe.xpending_range(key, group, "-", "+", count, consumername=consumer)
            reply, pending = await pipe.execute()
        pending = pending or []
        deliveries = {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
        entries: list[Entry] = []
        gone: list[str] = []
        for entry_id, payload in _read_reply(reply):
            if payload is None:
                gone.append(entry_id)
            else:
                entries.append(Entry(entry_id, payload, deliveries.get(entry_id, 1)))
        if gone:
            # Deleted from the stream while pending: nothing left to handle.
            await self.ack(stream, group, gone)
        return entries

    async def ack(self, stream: str, group: str, ids: Sequence[str]) -> None:
        """XACK."""
        if ids:
            await self._client().xack(self._key(stream), group, *ids)

    async def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[Entry]:
        """XAUTOCLAIM over the whole PEL until `count` entries are taken."""
        client, key = self._client(), self._key(stream)
        claimed: list[tuple[str, bytes]] = []
        cursor: bytes | str = "0-0"
        while len(claimed) < count:
            reply: list[Any] = await client.xautoclaim(
                key, group, consumer, min_idle_ms, start_id=cursor, count=count - len(claimed)
            )
            cursor = reply[0]
            claimed.extend((i, payload) for i, payload in _entries(reply[1]) if payload is not None)
            # Redis 7 already drops deleted entries from the PEL; ack in case it did not.
            deleted = [_text(i) for i in (reply[2] if len(reply) > 2 else [])]
            await self.ack(stream, group, deleted)
            if _text(cursor) == "0-0":
                break
        if not claimed:
            return []
        # XAUTOCLAIM bumped the delivery counts; read them back. An id missing from the
        # PEL was acknowledged by its previous owner meanwhile and needs no handling.
        async with client.pipeline(transaction=False) as pipe:
            for entry_id, _ in claimed:
                pipe.xpending_range(key, group, entry_id, entry_id, 1, consumername=consumer)
            counts = await pipe.execute()
        return [
            Entry(entry_id, payload, int(found[0]["times_delivered"]))
            for (entry_id, payload), found in zip(claimed, counts, strict=True)
            if found
        ]

    async def touch(self, stream: str, group: str, consumer: str, ids: Sequence[str]) -> None:
        """XCLAIM ... JUSTID to ourselves: resets the idle time without counting a delivery."""
        if ids:
            await self._client().xclaim(self._key(stream), group, consumer, 0, list(ids),
                                        justid=True)

    async def consumers(self, stream: str, group: str) -> list[ConsumerInfo]:
        """XINFO CONSUMERS; empty when the stream or group is missing."""
        try:
            rows = await self._client().xinfo_consumers(self._key(stream), group)
        except ResponseError:
            return []
        return [ConsumerInfo(_text(r["name"]), int(r["pending"]), int(r["idle"])) for r in rows]

    async def delete_consumer(self, stream: str, group: str, consumer: str) -> bool:
        """XGROUP DELCONSUMER, only when it holds no pending entries (checked atomically)."""
        done = await self._script("delete_consumer")(keys=[self._key(stream)],
                                                    args=[group, consumer])
        return bool(done)

    async def dead_letters(self, stream: str, after: str, limit: int) -> list[DeadLetter]:
        """XRANGE over `<stream>:dead` after `after`."""
        raw = await self._client().xrange(self._key(dead_letter_stream(stream)),
                                          f"({after}" if after != "0-0" else "-", "+",
                                          count=limit)
        found: list[DeadLetter] = []
        for entry_id, fields in raw or []:
            values: dict[str, bytes] = {
                _text(k): v if isinstance(v, bytes) else str(v).encode()
                for k, v in (fields or {}).items()}
            text = {k: v.decode(errors="replace") for k, v in values.items() if k != FIELD}
            found.append(DeadLetter(
                id=_text(entry_id or b""),
                payload=values.get(FIELD, b""),
                original_id=text.get("id", ""), reason=text.get("reason", ""),
                group=text.get("group", ""), deliveries=int(text.get("deliveries") or 0),
            ))
        return found

    async def replay_dead_letter(self, stream: str, dead_id: str) -> str | None:
        """XADD the payload back to the stream and XDEL the dead letter, in one script."""
        parse_id(dead_id)
        new_id = await self._script("replay_dead")(
            keys=[self._key(dead_letter_stream(stream)), self._key(stream)], args=[dead_id])
        return _text(new_id) if new_id else None

    async def discard_dead_letter(self, stream: str, dead_id: str) -> bool:
        """XDEL from the dead letters."""
        parse_id(dead_id)
        return bool(await self._client().xdel(self._key(dead_letter_stream(stream)), dead_id))

    async def relay(
        self, items: Sequence[tuple[str, bytes]], *, marker: str, lease: str, owner: str,
        maxlen: int,
    ) -> list[str]:
        """The relay script: fenced by the lease, all items, one trim, the marker."""
        args: list[str | bytes | int] = [owner, marker, self._channel, maxlen, TRIM_CAP]
        for stream, payload in items:
            args += [self._key(stream), payload]
        try:
            ids = await self._script("relay")(
                keys=[self._key(EVENTS), self._key(f"lease:{lease}"), self._marker], args=args)
        except ResponseError as exc:
            if "LEASELOST" in str(exc):
                raise LeaseLost(lease) from None
            raise
        return [_text(i) for i in ids]

    async def last_relayed(self) -> str:
        """GET the relay marker."""
        value = await self._client().get(self._marker)
        return _text(value) if value else ""

    async def dead_letter(self, stream: str, group: str, entry: Entry, reason: str) -> None:
        """Copy to `<stream>:dead` with the reason and acknowledge, in one script."""
        await self._script("dead_letter")(
            keys=[self._key(stream), self._key(dead_letter_stream(stream))],
            args=[group, entry.id, entry.payload, reason, entry.deliveries],
        )

    async def trim(self, stream: str, maxlen: int) -> int:
        """Trim with XTRIM MINID at the oldest id no group still needs; return entries removed."""
        removed = 0
        while True:
            script = self._script("trim")
            step = int(await script(keys=[self._key(stream)], args=[maxlen, TRIM_CAP]))
            removed += step
            if step < TRIM_CAP:
                return removed

    async def length(self, stream: str) -> int:
        """XLEN."""
        return int(await self._client().xlen(self._key(stream)))

    async def pending_count(self, stream: str, group: str) -> int:
        """XPENDING summary count; 0 when the stream or group is missing."""
        try:
            summary = await self._client().xpending(self._key(stream), group)
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                return 0
            raise
        return int(summary["pending"])

    async def broadcast(self, payload: bytes, maxlen: int) -> str:
        """XADD to events, trim, and PUBLISH b'<id> <payload>' in one script."""
        entry_id = await self._script("broadcast")(
            keys=[self._key(EVENTS)], args=[payload, maxlen, TRIM_CAP, self._channel]
        )
        return _text(entry_id)

    async def broadcast_many(self, payloads: Sequence[bytes], maxlen: int) -> list[str]:
        """Several broadcasts in one round trip; each script is atomic and they run in order."""
        if not payloads:
            return []
        script = self._script("broadcast")
        pipe = self._client().pipeline(transaction=False)
        for payload in payloads:
            await script(keys=[self._key(EVENTS)],
                          args=[payload, maxlen, TRIM_CAP, self._channel], client=pipe)
        return [_text(entry_id) for entry_id in await pipe.execute()]

    def subscribe(self) -> AsyncIterator[tuple[str, bytes]]:
        """Live events on a pub/sub connection of its own; live once first awaited."""
        return self._listen()

    async def _listen(self) -> AsyncIterator[tuple[str, bytes]]:
        pubsub: PubSub = self._client().pubsub()
        try:
            await pubsub.subscribe(self._channel)
            # Live only once Redis confirms the subscription: say so with the LIVE marker.
            while not self._closed:
                confirm = await pubsub.get_message(ignore_subscribe_messages=False, timeout=1.0)
                if confirm is not None and confirm["type"] == "subscribe":
                    yield LIVE
                    break
            while not self._closed:
                try:
                    # A timeout so a closed bus is noticed even on a silent channel.
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                except (RedisError, OSError, RuntimeError):
                    if self._closed:
                        return
                    raise
                if message is None or message["type"] != "message":
                    continue
                raw_id, _, payload = bytes(message["data"]).partition(b" ")
                yield raw_id.decode(), payload
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    async def replay(self, after_id: str, limit: int) -> list[tuple[str, bytes]] | None:
        """XRANGE after `after_id`; None when XINFO shows an entry after it was trimmed."""
        client, key = self._client(), self._key(EVENTS)
        # Range first, then the deletion mark: a trim in between can only make the
        # answer more cautious (None), never hide a gap.
        raw = await client.xrange(key, f"({after_id}", "+", count=limit)
        info = await self._info(key)
        if info is not None:
            max_deleted = _text(info.get("max-deleted-entry-id") or "0-0")
            if parse_id(after_id) < parse_id(max_deleted):
                return None
        return [(i, payload) for i, payload in _entries(raw) if payload is not None]

    async def last_event_id(self) -> str:
        """XINFO STREAM last-generated-id of events, or '0-0'."""
        info = await self._info(self._key(EVENTS))
        if info is None:
            return "0-0"
        return _text(info["last-generated-id"])

    async def acquire_lease(self, name: str, owner: str, ttl_ms: int) -> bool:
        """SET NX PX, or extend when `owner` already holds it."""
        key = self._key(f"lease:{name}")
        return bool(await self._script("lease_acquire")(keys=[key], args=[owner, ttl_ms]))

    async def renew_lease(self, name: str, owner: str, ttl_ms: int) -> bool:
        """Compare-and-extend."""
        key = self._key(f"lease:{name}")
        return bool(await self._script("lease_renew")(keys=[key], args=[owner, ttl_ms]))

    async def release_lease(self, name: str, owner: str) -> None:
        """Compare-and-delete."""
        await self._script("lease_release")(keys=[self._key(f"lease:{name}")], args=[owner])

    async def _info(self, key: str) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = await self._client().xinfo_stream(key)
        except ResponseError as exc:
            if "no such key" in str(exc):
                return None
            raise
        return info
