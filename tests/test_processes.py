"""Multi-process tests: real `switchboard web`, `worker` and `serve` subprocesses.

Each test starts its own servers (a private Redis and a fresh PostgreSQL database, or a
temp data dir for SQLite), runs `switchboard migrate`, starts the processes, waits on
/readyz, and kills everything in teardown. Process logs are printed at teardown, so a failing
test shows them ("Captured stdout teardown").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.processes import (
    EventCollector,
    Posted,
    ProcessStack,
    all_conversations,
    all_messages,
    bootstrap,
    check_threads,
    post_messages,
    post_signed,
    webhook_body,
)

pytestmark = pytest.mark.slow

SENDERS = 50
PER_SENDER = 20
TOTAL = SENDERS * PER_SENDER
IN_FLIGHT = 20
KILL_AFTER = 300
CLAIM_IDLE_MS = 2000


class Stacks:
    """Makes ProcessStacks under the test's tmp_path and closes them all at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: list[ProcessStack] = []

    async def make(
        self, shape: str, *, log_level: str = "info", claim_idle_ms: int | None = None
    ) -> ProcessStack:
        root = self.root / f"{shape}-{len(self.made)}"
        stack = ProcessStack(root, shape, log_level=log_level, claim_idle_ms=claim_idle_ms)
        self.made.append(stack)
        return await stack.start()

    async def close(self) -> None:
        for stack in self.made:
            if stack.procs:
                print(stack.logs(80))  # pytest shows it only when the test failed
            await stack.close()


@pytest.fixture
async def stacks(tmp_path: Path) -> AsyncIterator[Stacks]:
    """A factory of process stacks, all killed and cleaned up at teardown."""
    made = Stacks(tmp_path)
    try:
        yield made
    finally:
        await made.close()


async def _cancel(*tasks: asyncio.Task[object]) -> None:
    """Cancel tasks still running (a failed test must not leave them behind)."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _summary(posted: list[Posted]) -> str:
    failed = [p for p in posted if not p.accepted]
    retried = sum(1 for p in posted if p.attempts > 1)
    sample = [(p.external_id, p.errors[-3:]) for p in failed[:3]]
    return (
        f"{len(posted)} posted, {len(posted) - len(failed)} accepted, {retried} retried; "
        f"failed e.g. {sample}"
    )


async def _expect_exactly_once(stack: ProcessStack, inbox_id: int, admin: httpx.AsyncClient,
                               posted: list[Posted], *, timeout: float) -> None:
    """All TOTAL messages accepted, stored once each, one conversation per sender, in order."""
    assert len(posted) == TOTAL and all(p.accepted for p in posted), _summary(posted)
    stored, distinct = await stack.wait_stored(inbox_id, TOTAL, timeout=timeout)
    assert (stored, distinct) == (TOTAL, TOTAL)
    problems = await check_threads(admin, senders=SENDERS, per_sender=PER_SENDER)
    assert not problems, problems[:10]
    # Nothing left that could still add a message later.
    assert await stack.inbound_backlog() == (0, 0)
    assert await stack.inbound_counts(inbox_id) == (TOTAL, TOTAL)


async def test_event_posted_to_one_web_reaches_websocket_on_another(stacks: Stacks) -> None:
    """(a) Redis pub/sub fans realtime events out to every web process."""
    stack = await stacks.make("production")
    web_a, web_b = stack.web("web-a"), stack.web("web-b")
    stack.worker("worker-1")
    await stack.wait_ready()
    setup = await bootstrap(stack, web_a.base_url)
    async with setup:
        socket = await EventCollector.open(web_b.ws_url, setup.session_cookie)
        try:
            body = webhook_body("cross-1", "crosser", "hello from A", name="Cross Er")
            async with httpx.AsyncClient(timeout=10) as client:
                response = await post_signed(
                    client, f"{web_a.base_url}/webhooks/api/{setup.inbox_id}", setup.secret, body
                )
            assert response.status_code == 202, response.text
            assert response.json() == {"accepted": 1}
            await socket.wait_created(["cross-1"], timeout=15)
            (event,) = [e for e in socket.events if e["type"] == "message.created"]
            assert event["inbox_id"] == setup.inbox_id
            assert event["message"]["text"] == "hello from A"
            assert event["message"]["direction"] == "in"
            assert event["conversation"]["contact_name"] == "Cross Er"
            assert event["conversation"]["id"] == event["message"]["conversation_id"]
        finally:
            await socket.close()


async def test_worker_killed_mid_stream_loses_and_duplicates_nothing(stacks: Stacks) -> None:
    """(b) Production: kill -9 the worker mid-stream; a new worker claims its entries."""
    stack = await stacks.make("production", claim_idle_ms=CLAIM_IDLE_MS, log_level="warning")
    web = stack.web("web-1")
    first = stack.worker("worker-1")
    await stack.wait_ready()
    setup = await bootstrap(stack, web.base_url)
    async with setup:
        async def kill_when_stored() -> tuple[int, int]:
            # Kill while the worker holds entries it has read and not acknowledged, so the
            # next worker has to claim them.
            while True:
                stored, _ = await stack.inbound_counts(setup.inbox_id)
                if stored >= TOTAL:
                    return stored, 0  # too late: fails below
                if stored >= KILL_AFTER:
                    _, pending = await stack.inbound_backlog()
                    if pending:
                        first.kill()
                        return stored, pending
                first.check_alive()
                await asyncio.sleep(0.01)

        killer = asyncio.create_task(kill_when_stored())
        posting = asyncio.create_task(post_messages(
            [web.base_url], setup.inbox_id, setup.secret,
            senders=SENDERS, per_sender=PER_SENDER, concurrency=IN_FLIGHT,
        ))
        try:
            stored_at_kill, pending_at_kill = await asyncio.wait_for(killer, timeout=60)
            assert KILL_AFTER <= stored_at_kill < TOTAL, "the worker finished before the kill"
            print(f"killed worker-1 with {stored_at_kill} stored, {pending_at_kill} pending")
            second = stack.worker("worker-2")  # another consumer name: it must claim
            await second.wait_ready()
            posted = await asyncio.wait_for(posting, timeout=90)
        finally:
            await _cancel(killer, posting)
        await _expect_exactly_once(stack, setup.inbox_id, setup.admin, posted, timeout=60)
        second.check_alive()


async def test_serve_killed_mid_flight_keeps_every_accepted_message(stacks: Stacks) -> None:
    """(c) Embedded: kill -9 `serve` mid-flight; every 202 survives; retries land once."""
    stack = await stacks.make("embedded", claim_idle_ms=CLAIM_IDLE_MS, log_level="warning")
    serve = stack.serve("serve")
    await stack.wait_ready()
    setup = await bootstrap(stack, serve.base_url)
    accepted_before_kill: set[str] = set()
    crashed = asyncio.Event()

    def on_accepted(posted: Posted) -> None:
        if not crashed.is_set():
            accepted_before_kill.add(posted.external_id)
            if len(accepted_before_kill) >= KILL_AFTER:
                serve.kill()  # synchronous: no other 202 can be counted before it is dead
                crashed.set()

    async with setup:
        posting = asyncio.create_task(post_messages(
            [serve.base_url], setup.inbox_id, setup.secret,
            senders=SENDERS, per_sender=PER_SENDER, concurrency=IN_FLIGHT,
            retry_for=60, on_accepted=on_accepted,
        ))
        try:
            await asyncio.wait_for(crashed.wait(), timeout=60)
            down_since = time.monotonic()
            # While it is dead (providers keep retrying meanwhile): everything it acknowledged
            # is on disk, stored or still on the bus.
            durable = await stack.durable_external_ids(setup.inbox_id)
            lost = accepted_before_kill - durable
            assert not lost, f"{len(lost)} acknowledged messages lost: {sorted(lost)[:10]}"
            print(f"killed serve after {len(accepted_before_kill)} accepted; "
                  f"{len(durable)} on disk (stored or on the bus)")
            await asyncio.sleep(max(0.0, 0.5 - (time.monotonic() - down_since)))
            serve.start()
            await serve.wait_ready()
            posted = await asyncio.wait_for(posting, timeout=120)
        finally:
            await _cancel(posting)
        retried = [p for p in posted if p.errors]
        assert retried, "no POST failed: the kill did not happen mid-flight"
        await _expect_exactly_once(stack, setup.inbox_id, setup.admin, posted, timeout=60)
        stored_ids = {p.external_id for p in posted}
        assert accepted_before_kill <= stored_ids


async def test_same_external_id_posted_concurrently_is_stored_once(stacks: Stacks) -> None:
    """(d) Production: 20 identical POSTs at once over two webs and two workers: one message."""
    stack = await stacks.make("production", log_level="warning")
    webs = [stack.web("web-a"), stack.web("web-b")]
    stack.worker("worker-1")
    stack.worker("worker-2")
    await stack.wait_ready()
    setup = await bootstrap(stack, webs[0].base_url)
    ids = [f"dup-{n}" for n in range(5)]
    async with setup, httpx.AsyncClient(
        timeout=15, limits=httpx.Limits(max_connections=100)
    ) as client:
        socket = await EventCollector.open(webs[1].ws_url, setup.session_cookie)
        try:
            for n, external_id in enumerate(ids):
                # A new sender each round: the contact and conversation are created in a race too.
                body = webhook_body(external_id, f"twin-{n}", f"same message {n}")
                answers = await asyncio.gather(*(
                    post_signed(client, f"{webs[i % 2].base_url}/webhooks/api/{setup.inbox_id}",
                                setup.secret, body)
                    for i in range(20)
                ))
                assert [a.status_code for a in answers] == [202] * 20
            stored = await stack.wait_stored(setup.inbox_id, len(ids), timeout=30)
            await socket.wait_created(ids, timeout=15)
            await asyncio.sleep(1.0)  # let any late duplicate show itself
        finally:
            await socket.close()
        assert stored == (len(ids), len(ids))
        assert await stack.inbound_counts(setup.inbox_id) == (len(ids), len(ids))
        assert socket.created_counts == dict.fromkeys(ids, 1)
        conversations = await check_threads_simple(setup.admin)
        assert sorted(conversations) == sorted(f"same message {n}" for n in range(len(ids)))


async def check_threads_simple(admin: httpx.AsyncClient) -> list[str]:
    """The texts of every conversation's messages (one conversation per twin sender)."""
    texts: list[str] = []
    for conversation in await all_conversations(admin):
        messages = await all_messages(admin, conversation["id"])
        assert len(messages) == 1, messages
        texts.append(messages[0]["text"])
    return texts
