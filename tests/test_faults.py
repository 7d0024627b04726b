"""Faults with real processes on the production shape: nothing acknowledged is ever lost.

One stack for the whole module (the scenarios are long; they share their servers): a
private PostgreSQL server (so it can be stopped) and a private Redis that persists every
write (appendonly, as production must run it), `switchboard web` and `worker` processes.
Each scenario uses an inbox of its own.

- a worker killed (kill -9, at an injection point) between a commit and the publishing of
  its events: after the restart, every event is published exactly once;
- a reply whose relay died right after the reply's commit: it is still sent, once;
- PostgreSQL stopped for 100 s during a 3,000-message load: 3,000 stored, no dead letters,
  webhooks kept answering 202;
- Redis stopped: webhooks answer 503 with Retry-After; what was acknowledged is stored;
- 300 webhooks at once: no 5xx;
- a worker killed under a 10,000-entry backlog: what it held is taken over and stored within
  twice the claim-idle time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from hub.types import Identity, InboundMessage, encode
from tests.helpers import Receiver
from tests.processes import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    EventCollector,
    Proc,
    ProcessStack,
    bootstrap,
    check_threads,
    login,
    post_messages,
    post_signed,
    webhook_body,
)
from tests.services import PostgresServer

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

CLAIM_IDLE_MS = 3000


@dataclass
class Faults:
    root: Path
    postgres: PostgresServer
    stack: ProcessStack
    webs: list[Proc]
    admin: httpx.AsyncClient
    admin_id: int
    cookie: str
    inboxes: int = 0

    @property
    def bases(self) -> list[str]:
        return [web.base_url for web in self.webs]

    async def inbox(self, **settings: str) -> tuple[int, str]:
        """A new API inbox (admin is a member) and its secret."""
        self.inboxes += 1
        secret = f"fault-secret-{self.inboxes}-0123456789"
        response = await self.admin.post("/api/v1/inboxes", json={
            "name": f"Faults {self.inboxes}", "channel": "api",
            "settings": {"secret": secret, **settings}})
        assert response.status_code == 201, response.text
        inbox_id = int(response.json()["id"])
        response = await self.admin.put(f"/api/v1/inboxes/{inbox_id}/members",
                                        json={"agent_ids": [self.admin_id]})
        assert response.status_code == 204, response.text
        return inbox_id, secret

    async def collector(self) -> EventCollector:
        return await EventCollector.open(self.webs[-1].ws_url, self.cookie)

    def worker(self, name: str, **env: str) -> Proc:
        return self.stack.worker(name, **env)

    async def dead_letters(self) -> int:
        assert self.stack.redis is not None
        client = aioredis.Redis.from_url(self.stack.redis.url)
        try:
            return int(await client.xlen("sb:inbound:dead"))
        finally:
            await client.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def faults(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Faults]:
    root = tmp_path_factory.mktemp("faults")
    postgres = await asyncio.to_thread(PostgresServer.create)
    stack = ProcessStack(root / "stack", "production", claim_idle_ms=CLAIM_IDLE_MS,
                         pg_admin_url=postgres.admin_url, redis_appendonly=True,
                         log_level="warning")
    admin = None
    try:
        await stack.start()
        webs = [stack.web("web-a"), stack.web("web-b")]
        await stack.wait_ready(*webs)
        setup = await bootstrap(stack, webs[0].base_url)
        await setup.admin.aclose()
        admin = await login(webs[0].base_url, ADMIN_EMAIL, ADMIN_PASSWORD)
        cookie = admin.cookies.get("switchboard_session")
        assert cookie
        yield Faults(root, postgres, stack, webs, admin, setup.admin_id, cookie)
    finally:
        if admin is not None:
            await admin.aclose()
        print(stack.logs(60))  # shown when a test failed
        await stack.close()
        await asyncio.to_thread(postgres.destroy)


async def _stop(*procs: Proc) -> None:
    for proc in procs:
        proc.stop()


async def _until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout:.0f}s")
        await asyncio.sleep(0.1)


async def _crash_and_recover(faults: Faults, point: str) -> None:
    """A worker that kills itself at `point` the first time; restarted without it."""
    inbox_id, secret = await faults.inbox()
    events = await faults.collector()
    worker = faults.worker(f"crash-{point}", SWITCHBOARD_CRASH_POINT=point)
    try:
        posted = await post_messages(faults.bases, inbox_id, secret, senders=10, per_sender=10,
                                     prefix=point)
        assert all(p.accepted for p in posted)

        async def died() -> bool:
            return not worker.alive

        await _until(died, 60, f"the worker reaching {point}")
        worker.env.pop("SWITCHBOARD_CRASH_POINT")
        await worker.restart()
        await faults.stack.wait_stored(inbox_id, 100, timeout=60)
        await events.wait_created([p.external_id for p in posted], timeout=60)
        await asyncio.sleep(1.0)  # anything published twice would arrive by now
        twice = {k: n for k, n in events.created_counts.items() if n != 1}
        assert twice == {}, f"published more than once after {point}: {twice}"
        assert worker.starts == 2
    finally:
        await events.close()
        worker.stop()


async def test_a_worker_killed_between_commit_and_publish_publishes_each_event_once(
    faults: Faults,
) -> None:
    for point in ("ingest-after-commit", "relay-before-publish", "relay-after-publish"):
        await _crash_and_recover(faults, point)


async def test_a_reply_whose_relay_died_after_its_commit_is_still_sent_once(
    faults: Faults,
) -> None:
    receiver = Receiver()
    await receiver.start()
    worker = faults.worker("reply-relay", SWITCHBOARD_CRASH_POINT="relay-before-publish")
    try:
        inbox_id, secret = await faults.inbox(outbound_url=receiver.url)
        response = await post_signed(faults.admin, f"{faults.bases[0]}/webhooks/api/{inbox_id}",
                                     secret, webhook_body("r-1", "customer", "hello?"))
        assert response.status_code == 202

        async def died() -> bool:
            return not worker.alive

        # The worker stores the message, then dies as its relay is about to publish.
        await _until(died, 60, "the relay reaching its crash point")
        worker.env.pop("SWITCHBOARD_CRASH_POINT")
        await worker.restart()
        await faults.stack.wait_stored(inbox_id, 1, timeout=60)
        conversations = (await faults.admin.get(
            "/api/v1/conversations", params={"inbox_id": inbox_id})).json()["items"]
        (conversation,) = conversations
        worker.kill()  # the reply is committed while no relay runs at all
        answer = await faults.admin.post(
            f"/api/v1/conversations/{conversation['id']}/messages",
            json={"text": "We are on it", "idempotency_key": "reply-once-0001"})
        assert answer.status_code == 201, answer.text
        await asyncio.sleep(0.5)
        assert receiver.received == []
        worker.env["SWITCHBOARD_CRASH_POINT"] = "relay-after-publish"
        await worker.restart()  # publishes the send request, then dies before deleting it

        async def died_again() -> bool:
            return not worker.alive

        await _until(died_again, 60, "the relay publishing the reply")
        worker.env.pop("SWITCHBOARD_CRASH_POINT")
        await worker.restart()
        await receiver.wait(1, timeout=30)
        await asyncio.sleep(2.0)  # a second send would arrive by now
        assert [r["text"] for r in receiver.received] == ["We are on it"]
        assert receiver.headers[0]["idempotency-key"] == "reply-once-0001"
    finally:
        worker.stop()
        await receiver.stop()


async def test_postgres_down_for_100_seconds_loses_nothing_and_dead_letters_nothing(
    faults: Faults,
) -> None:
    inbox_id, secret = await faults.inbox()
    workers = [faults.worker("pg-1"), faults.worker("pg-2")]
    senders, per_sender, rate = 100, 30, 50.0
    try:
        await faults.stack.wait_stored(inbox_id, 0, timeout=5)
        http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=2.0))
        posted: list[tuple[str, int]] = []
        started = time.monotonic()

        async def load() -> None:
            # Paced like real traffic (50/s for a minute): each sender's messages in order.
            tasks = []
            for n in range(senders * per_sender):
                sender, seq = n % senders, n // senders
                due = started + n / rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                tasks.append(asyncio.create_task(_post_until_accepted(
                    http, faults.bases[n % 2], inbox_id, secret, sender, seq, posted)))
            await asyncio.gather(*tasks)

        loading = asyncio.create_task(load())
        await asyncio.sleep(10)
        await asyncio.to_thread(faults.postgres.stop)  # as a crash: connections cut
        down_at = time.monotonic()
        await asyncio.sleep(100)
        await asyncio.to_thread(faults.postgres.start)
        await loading
        await http.aclose()
        # Webhooks never needed the database: everything was accepted, at once.
        assert len(posted) == senders * per_sender
        accepted_while_down = [s for s, at in posted if down_at < at < down_at + 100]
        assert len(accepted_while_down) > 2000
        await faults.stack.wait_stored(inbox_id, senders * per_sender, timeout=240)
        assert await faults.stack.inbound_counts(inbox_id) == (3000, 3000)
        assert await faults.dead_letters() == 0
        problems = await _threads(faults, inbox_id, senders, per_sender)
        assert problems == [], problems[:10]
    finally:
        await _stop(*workers)


async def _post_until_accepted(
    http: httpx.AsyncClient, base: str, inbox_id: int, secret: str, sender: int, seq: int,
    posted: list[tuple[str, int]],
) -> None:
    body = json.dumps({"messages": [{
        "id": f"pg-{sender:03d}-{seq}", "sender": {"id": f"sender-{sender:03d}"},
        "text": f"sender-{sender:03d} #{seq}",
        # The provider's own time: messages are ordered by it, whenever they arrive.
        "timestamp": f"2026-01-01T00:{seq // 60:02d}:{seq % 60:02d}Z",
    }]}).encode()
    for _ in range(300):
        try:
            response = await post_signed(http, f"{base}/webhooks/api/{inbox_id}", secret, body)
            if response.status_code == 202:
                posted.append((f"pg-{sender:03d}-{seq}", time.monotonic()))
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.5)
    raise AssertionError(f"message {sender}/{seq} never accepted")


async def _threads(faults: Faults, inbox_id: int, senders: int, per_sender: int) -> list[str]:
    client = await login(faults.bases[0], ADMIN_EMAIL, ADMIN_PASSWORD)
    try:
        return await check_threads(_Scoped(client, inbox_id), senders=senders,
                                   per_sender=per_sender)
    finally:
        await client.aclose()


class _Scoped:
    """An agent client whose conversation list is limited to one inbox."""

    def __init__(self, client: httpx.AsyncClient, inbox_id: int) -> None:
        self.client = client
        self.inbox_id = inbox_id

    async def get(self, url: str, params: dict[str, object] | None = None) -> httpx.Response:
        params = dict(params or {})
        if url == "/api/v1/conversations":
            params["inbox_id"] = self.inbox_id  # every status
        return await self.client.get(url, params=params)  # type: ignore[arg-type]


async def test_while_redis_is_down_webhooks_answer_503_and_nothing_accepted_is_lost(
    faults: Faults,
) -> None:
    inbox_id, secret = await faults.inbox()
    assert faults.stack.redis is not None
    posted = await post_messages(faults.bases, inbox_id, secret, senders=20, per_sender=10,
                                 prefix="redis")
    assert all(p.accepted for p in posted)
    # No worker runs: what was acknowledged lives only on Redis (and its append-only file).
    await asyncio.to_thread(faults.stack.redis.stop)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            url = f"{faults.bases[0]}/webhooks/api/{inbox_id}"
            answer = await post_signed(http, url, secret, webhook_body("during", "c", "x"))
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"].isdigit()
            assert answer.json()["error"]["code"] == "unavailable"
    finally:
        await asyncio.to_thread(faults.stack.redis.restart)
    for web in faults.webs:
        await web.wait_ready()
    worker = faults.worker("after-redis")
    try:
        await faults.stack.wait_stored(inbox_id, 200, timeout=120)
        assert await faults.stack.inbound_counts(inbox_id) == (200, 200)
    finally:
        worker.stop()


async def test_300_concurrent_webhooks_get_no_5xx(faults: Faults) -> None:
    inbox_id, secret = await faults.inbox()
    limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        bodies = [webhook_body(f"burst-{n}", f"c{n % 30}", f"burst {n}") for n in range(300)]
        answers = await asyncio.gather(*(
            post_signed(http, f"{faults.bases[n % 2]}/webhooks/api/{inbox_id}", secret, body)
            for n, body in enumerate(bodies)))
    assert sorted({a.status_code for a in answers}) == [202]
    worker = faults.worker("after-burst")
    try:
        await faults.stack.wait_stored(inbox_id, 300, timeout=120)
    finally:
        worker.stop()


async def test_a_worker_killed_under_a_backlog_has_its_entries_taken_over_ahead_of_the_backlog(
    faults: Faults,
) -> None:
    inbox_id, _ = await faults.inbox()
    assert faults.stack.redis is not None
    client = aioredis.Redis.from_url(faults.stack.redis.url)
    try:
        with contextlib.suppress(aioredis.ResponseError):  # BUSYGROUP: a worker made it
            await client.xgroup_create("sb:inbound", "inbox", id="0", mkstream=True)
        pipe = client.pipeline(transaction=False)
        for n in range(10_000):
            pipe.xadd("sb:inbound", {"payload": encode(InboundMessage(
                channel="api", inbox_id=inbox_id, external_id=f"backlog-{n}",
                sender=Identity(kind="api", value=f"customer-{n % 500}"), text=f"#{n}"))})
        await pipe.execute()
        doomed = faults.worker("doomed")

        async def holding() -> bool:
            pending = await client.xpending_range("sb:inbound", "inbox", "-", "+", 1000,
                                                  consumername="doomed")
            return len(pending) >= 100

        await _until(holding, 60, "the worker taking entries")
        doomed.kill()
        held = [entry["message_id"] for entry in await client.xpending_range(
            "sb:inbound", "inbox", "-", "+", 10_000, consumername="doomed")]
        reading = client.pipeline(transaction=False)
        for entry_id in held:
            reading.xrange("sb:inbound", entry_id, entry_id)
        payloads = await reading.execute()
        external = {json.loads(found[0][1][b"payload"])["external_id"]
                    for found in payloads if found}
        heir = faults.worker("heir")
        try:
            async def taken_over() -> bool:
                return await _stored(faults, inbox_id, external)

            # The held entries are claimed once idle, not after the heir has worked
            # through the backlog behind them: when they are all stored, most of the
            # backlog is still unread. (How soon, in seconds, is a machine's speed, so
            # it is not asserted here: the heir's start-up alone varies by seconds.)
            await _until(taken_over, 60, "the held entries being stored")
            backlog = await client.xinfo_groups("sb:inbound")
            lag = max(int(g.get("lag") or 0) for g in backlog)
            assert lag > 1000, "the held entries waited for the backlog to drain"
            await faults.stack.wait_stored(inbox_id, 10_000, timeout=300)
            assert await faults.stack.inbound_counts(inbox_id) == (10_000, 10_000)
        finally:
            heir.stop()
    finally:
        await client.aclose()


async def _stored(faults: Faults, inbox_id: int, external_ids: set[str]) -> bool:
    import asyncpg  # type: ignore[import-untyped]

    assert faults.stack.database is not None
    conn = await asyncpg.connect(faults.stack.database.url)
    try:
        found = await conn.fetchval(
            "SELECT count(*) FROM messages WHERE inbox_id = $1 AND external_id = ANY($2)",
            inbox_id, sorted(external_ids))
    finally:
        await conn.close()
    return int(found) == len(external_ids)


async def test_a_worker_killed_mid_sync_loses_nothing_and_makes_nothing_twice(
    faults: Faults,
) -> None:
    import asyncpg  # type: ignore[import-untyped]

    from tests.fakes.hubspot_server import CLIENT_SECRET, FakeHubSpot

    hubspot = FakeHubSpot(delay=0.7)
    await hubspot.start()
    assert faults.stack.database is not None
    conn = await asyncpg.connect(faults.stack.database.url)
    try:
        await conn.executemany(
            "INSERT INTO contacts (name, email, phone, attributes, created_at) "
            "VALUES ($1, $2, $3, '{}', now())",
            [(f"Synced {n}", f"synced{n}@example.com", None) for n in range(500)]
            + [(f"Caller {n}", None, f"+44207946{n:04d}") for n in range(100)])
    finally:
        await conn.close()
    doomed = faults.worker("crm-doomed", SWITCHBOARD_CRM_CLAIM_SECONDS="3")
    heir = None
    made = None
    try:
        made = await faults.admin.post("/api/v1/crm/connections", json={
            "kind": "hubspot", "settings": {"access_token": "pat-na1-good-token",
                                            "client_secret": CLIENT_SECRET,
                                            "api_base": hubspot.url}})
        assert made.status_code == 201, made.text

        async def midway() -> bool:
            return len(hubspot.contacts) >= 100

        await _until(midway, 60, "the sync under way")
        doomed.kill()
        assert len(hubspot.contacts) < 600, "the sync ended before the kill: nothing proven"
        heir = faults.worker("crm-heir", SWITCHBOARD_CRM_CLAIM_SECONDS="3")

        async def complete() -> bool:
            return len(hubspot.contacts) >= 600

        await _until(complete, 120, "every contact in HubSpot")
        await asyncio.sleep(2.0)  # anything pushed twice would be there by now
        emails = [c["properties"].get("email") for c in hubspot.contacts.values()]
        phones = [c["properties"].get("phone") for c in hubspot.contacts.values()
                  if not c["properties"].get("email")]
        assert len(hubspot.contacts) == 600
        assert len({e for e in emails if e}) == 500 and len(set(phones)) == 100
        state = (await faults.admin.get(
            f"/api/v1/crm/connections/{made.json()['id']}")).json()
        assert state["pending"] == 0 and state["linked"] == 600
    finally:
        doomed.stop()
        if heir is not None:
            heir.stop()
        if made is not None and made.status_code == 201:
            await faults.admin.delete(f"/api/v1/crm/connections/{made.json()['id']}")
        await hubspot.stop()
