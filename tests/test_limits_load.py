"""The anonymous limits under load, on a real `switchboard serve` process: one address
asking for 1,000 widget sessions and 2,000 widget websockets, and 10,000 webhooks to made-up
channel names. The process stays within a memory bound, adds no /metrics series, and keeps
answering agents."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from tests.processes import ProcessStack, bootstrap

pytestmark = pytest.mark.slow

SESSIONS, SOCKETS, WEBHOOKS = 1_000, 2_000, 10_000
PER_MINUTE, PER_ADDRESS = 30, 20
# What the process may grow by over the whole run (it holds PER_ADDRESS sockets at the end;
# the rest must have left nothing behind).
MEMORY_BOUND_MB = 60


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _series(metrics: str) -> set[str]:
    """The metric series (name and labels) of a /metrics answer."""
    return {line.rsplit(" ", 1)[0] for line in metrics.splitlines()
            if line and not line.startswith("#")}


async def _gather_limited(jobs: list, limit: int) -> list:  # type: ignore[type-arg]
    gate = asyncio.Semaphore(limit)

    async def one(job):  # type: ignore[no-untyped-def]
        async with gate:
            return await job

    return await asyncio.gather(*(one(j) for j in jobs))


async def test_one_address_and_made_up_channels_cannot_exhaust_the_server(
    tmp_path: Path,
) -> None:
    async with ProcessStack(tmp_path, "embedded") as stack:
        proc = stack.serve(SWITCHBOARD_WIDGET_SESSIONS_PER_MINUTE=str(PER_MINUTE),
                           SWITCHBOARD_WIDGET_SOCKETS_PER_ADDRESS=str(PER_ADDRESS))
        await stack.wait_ready()
        base = proc.base_url
        async with await bootstrap(stack, base) as setup, \
                httpx.AsyncClient(base_url=base, timeout=30,
                                  limits=httpx.Limits(max_connections=100)) as client:
            made = await setup.admin.post("/api/v1/inboxes", json={
                "name": "Website", "channel": "webchat", "settings": {}})
            assert made.status_code == 201, made.text
            token = (await setup.admin.get(f"/api/v1/inboxes/{made.json()['id']}")).json()
            public = next(s["value"] for s in token["settings"] if s["name"] == "public_token")
            # Every kind of answer once, so each series exists before the count is taken.
            await client.post(f"/webhooks/made-up/{setup.inbox_id}", content=b"{}")
            first = await client.post(f"/widget/api/{public}/session", json={})
            assert first.status_code == 200
            assert proc.pid is not None
            before_mb = _rss_mb(proc.pid)
            before = _series((await client.get("/metrics")).text)

            started = time.monotonic()
            sessions = await _gather_limited([
                client.post(f"/widget/api/{public}/session", json={})
                for _ in range(SESSIONS)], 50)
            elapsed = time.monotonic() - started
            codes = [r.status_code for r in sessions]
            assert set(codes) == {200, 429}
            # One address: the burst (a minute's allowance, less the warm-up session) and
            # what refilled while the requests were answered, nothing more.
            assert codes.count(200) <= PER_MINUTE + int(elapsed * PER_MINUTE / 60) + 1
            assert all(r.headers.get("retry-after") for r in sessions if r.status_code == 429)

            visitor = first.json()["token"]
            url = base.replace("http", "ws", 1) + f"/widget/ws/{public}"
            held: list[ClientConnection] = []

            async def attempt() -> bool:
                try:
                    conn = await connect(url, open_timeout=20)
                except (InvalidStatus, WebSocketException, OSError):
                    return False
                await conn.send(f'{{"type": "hello", "token": "{visitor}"}}')
                try:
                    await asyncio.wait_for(conn.recv(), 10)  # "ready", or a close
                except (WebSocketException, TimeoutError):
                    return False
                held.append(conn)
                return True

            opened = await _gather_limited([attempt() for _ in range(SOCKETS)], 100)
            assert sum(opened) == PER_ADDRESS, sum(opened)

            webhooks = await _gather_limited([
                client.post(f"/webhooks/{secrets.token_hex(6)}/{setup.inbox_id}", content=b"{}")
                for _ in range(WEBHOOKS)], 100)
            assert {r.status_code for r in webhooks} == {404}

            # Agents are answered normally, with the sockets still held.
            listing = await setup.admin.get("/api/v1/conversations")
            assert listing.status_code == 200
            after = _series((await client.get("/metrics")).text)
            assert after == before, sorted(after ^ before)[:10]
            grown = _rss_mb(proc.pid) - before_mb
            print(f"rss grew {grown:.1f} MB over {SESSIONS} sessions, {SOCKETS} sockets, "
                  f"{WEBHOOKS} webhooks")
            assert grown < MEMORY_BOUND_MB
            for conn in held:
                await conn.close()
