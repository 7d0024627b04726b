"""Health, readiness and metrics, including readiness when Redis goes away and comes back."""

from __future__ import annotations

import secrets
from pathlib import Path

from config import Settings, load_settings
from tests.helpers import Stack, eventually, message, running_stack
from tests.services import PostgresDatabase, RedisServer, free_port


async def test_health_ready_and_metrics(stack: Stack) -> None:
    client = stack.client()
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "database": True, "bus": True}
    await stack.inbound("support", [message("m-1", "hi", "ada")])
    await stack.inbound("support", [message("m-2", "hi", "ada")], secret="wrong")
    metrics = (await client.get("/metrics")).text
    assert 'switchboard_webhooks_total{channel="api",outcome="accepted"}' in metrics
    assert 'switchboard_webhooks_total{channel="api",outcome="unverified"}' in metrics


async def test_readyz_reports_a_lost_bus_and_recovers(tmp_path: Path, pg_template: str) -> None:
    redis = RedisServer.start(tmp_path)
    db = PostgresDatabase.create_from_template(pg_template)
    settings = load_settings(
        data_dir=tmp_path / "var", port=free_port(), log_level="error",
        database_url=db.url, redis_url=redis.url, redis_prefix=f"h{secrets.token_hex(3)}:",
    )
    try:
        async with running_stack(settings) as stack:
            client = stack.client()
            assert (await client.get("/readyz")).status_code == 200
            redis.kill()
            down = await client.get("/readyz")
            assert down.status_code == 503
            assert down.json() == {"status": "unavailable", "database": True, "bus": False}
            redis.restart()

            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            assert await eventually(ready, timeout=30)
            # And the path works again end to end after the outage.
            alice = await stack.login("alice")
            ws = await alice.ws()
            response = await stack.inbound("support", [message("after", "back up", "ada")])
            assert response.status_code == 202
            frame = await ws.wait_event(lambda e: e["type"] == "message.created", timeout=30)
            assert frame["event"]["message"]["text"] == "back up"
            await ws.close()
    finally:
        redis.stop()
        db.drop()


async def test_metrics_keep_their_series_and_their_readers(settings: Settings) -> None:
    def webhook_series(text: str) -> list[str]:
        return [line.split(" ")[0] for line in text.splitlines()
                if line.startswith("switchboard_webhooks_total{")]

    async with running_stack(settings.model_copy(update={"metrics_token": "scrape-me"})
                             ) as stack:
        client = stack.client()
        before = webhook_series((await client.get("/metrics")).text)
        # Made-up channel names in webhook URLs are counted under one label, not one each.
        for n in range(30):
            answer = await client.post(f"/webhooks/made-up-{n}/1", content=b"{}")
            assert answer.status_code == 404
        after = webhook_series((await client.get("/metrics")).text)
        assert not [s for s in after if "made-up" in s]
        assert 'switchboard_webhooks_total{channel="unknown",outcome="unknown_inbox"}' in after
        assert len(after) <= len(before) + 1
        # Another host (here through a trusted proxy's X-Forwarded-For) needs the token.
        remote = {"X-Forwarded-For": "203.0.113.7"}
        refused = await client.get("/metrics", headers=remote)
        assert refused.status_code == 403
        wrong = await client.get("/metrics", headers={**remote, "Authorization": "Bearer nope"})
        assert wrong.status_code == 403
        allowed = await client.get("/metrics",
                                   headers={**remote, "Authorization": "Bearer scrape-me"})
        assert allowed.status_code == 200 and "switchboard_webhooks_total" in allowed.text
