"""Channel secrets are sealed at rest, never returned, still used; a key rotates."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from channels.api import sign
from hub.secrets import SecretBox, SecretsUnreadable, is_sealed, new_key
from inbox.db import Database
from tests.helpers import Stack, eventually, message

SHOP_SECRET = "shop-secret-which-must-never-show-9f3a"


async def _stored_settings(stack: Stack, inbox_id: int) -> dict[str, object]:
    """The settings column as the database holds it (no Switchboard code in between)."""
    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with db.read() as session:
            raw = (await session.exec(text("SELECT settings FROM inboxes WHERE id = :id"),
                                      params={"id": inbox_id})).one()[0]
    finally:
        await db.close()
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


async def _cli(stack: Stack, *args: str, key: str = "") -> subprocess.CompletedProcess[str]:
    """Run the command in a thread: the stack serves from this test's event loop, and a
    blocked loop could hold a write transaction the command then waits 30 s for."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(SWITCHBOARD_DATA_DIR=str(stack.settings.data_dir),
               SWITCHBOARD_DATABASE_URL=stack.settings.database_url,
               SWITCHBOARD_SECRET_KEY=key)
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "hub.cli", *args], capture_output=True,
        text=True, timeout=60, env=env, cwd=Path(__file__).resolve().parents[2])


async def test_a_secret_is_sealed_at_rest_never_returned_and_still_signs(stack: Stack) -> None:
    admin = await stack.login("admin")
    made = await admin.http.post("/api/v1/inboxes", json={
        "name": "Shop", "channel": "api",
        "settings": {"secret": SHOP_SECRET, "outbound_url": stack.receiver.url}})
    assert made.status_code == 201, made.text
    inbox_id = made.json()["id"]
    assert SHOP_SECRET not in made.text

    stored = await _stored_settings(stack, inbox_id)
    assert is_sealed(stored["secret"]) and SHOP_SECRET not in json.dumps(stored)
    assert stored["outbound_url"] == stack.receiver.url  # what is not secret stays readable
    detail = await admin.http.get(f"/api/v1/inboxes/{inbox_id}")
    assert SHOP_SECRET not in detail.text and "$sealed" not in detail.text

    # The webhook checks signatures with it, the sender signs replies with it.
    stack.ids["shop"] = inbox_id
    await admin.http.put(f"/api/v1/inboxes/{inbox_id}/members",
                         json={"agent_ids": [stack.ids["admin"]]})
    accepted = await stack.inbound("shop", [message("s-1", "Hello shop")], secret=SHOP_SECRET)
    assert accepted.status_code == 202, accepted.text
    wrong = await stack.inbound("shop", [message("s-2", "forged")], secret="guess")
    assert wrong.status_code == 403
    admin = await stack.login("admin")  # a session that knows the new membership

    async def listed() -> list[dict[str, object]]:
        return list((await admin.http.get(f"/api/v1/conversations?inbox_id={inbox_id}")
                     ).json()["items"])

    [conversation] = await eventually(listed)
    assert conversation["last_message_preview"] == "Hello shop"
    reply = await admin.http.post(f"/api/v1/conversations/{conversation['id']}/messages",
                                  json={"text": "On its way"})
    assert reply.status_code == 201, reply.text
    await stack.receiver.wait(1)
    headers = stack.receiver.headers[0]
    assert stack.receiver.received[0]["text"] == "On its way"
    assert headers["x-switchboard-signature"] == sign(
        SHOP_SECRET, int(headers["x-switchboard-timestamp"]), stack.receiver.bodies[0])
    # A changed secret is sealed again; one shaped like a sealed value is refused.
    forged = await admin.http.patch(f"/api/v1/inboxes/{inbox_id}",
                                    json={"settings": {"secret": {"$sealed": "x"}}})
    assert forged.status_code == 422 and "settings.secret: must be text" in forged.text
    changed = await admin.http.patch(f"/api/v1/inboxes/{inbox_id}",
                                     json={"settings": {"secret": "second-secret-77"}})
    assert changed.status_code == 200, changed.text
    again = await _stored_settings(stack, inbox_id)
    assert is_sealed(again["secret"]) and again["secret"] != stored["secret"]
    assert "second-secret-77" not in json.dumps(again)


async def test_a_key_rotates_with_reseal(stack: Stack) -> None:
    admin = await stack.login("admin")
    made = await admin.http.post("/api/v1/inboxes", json={
        "name": "Shop", "channel": "api", "settings": {"secret": SHOP_SECRET}})
    inbox_id = made.json()["id"]
    old = (stack.settings.data_dir / "secret.key").read_text().strip()
    new = new_key()
    # The two seeded inboxes were stored in clear (as an older Switchboard did): sealed too.
    resealed = await _cli(stack, "reseal", key=f"{new},{old}")
    assert resealed.returncode == 0, resealed.stderr
    assert "sealed the secrets of 3 inbox(es)" in resealed.stdout
    stored = await _stored_settings(stack, inbox_id)
    assert SecretBox([new]).open_settings(stored)["secret"] == SHOP_SECRET
    with pytest.raises(SecretsUnreadable):
        SecretBox([old]).open_settings(stored)
    support = await _stored_settings(stack, stack.ids["support"])
    assert is_sealed(support["secret"])
    assert SHOP_SECRET not in resealed.stdout + resealed.stderr

    # Without the key that sealed them, nothing is changed and the error says why.
    lost = await _cli(stack, "reseal", key=new_key())
    assert lost.returncode == 2 and "nothing was changed" in lost.stderr
    assert "Traceback" not in lost.stderr
    assert await _stored_settings(stack, inbox_id) == stored


async def test_an_inbox_whose_key_was_lost_waits_and_the_others_go_on(stack: Stack) -> None:
    admin = await stack.login("admin")
    made = await admin.http.post("/api/v1/inboxes", json={
        "name": "Shop", "channel": "api", "settings": {"secret": SHOP_SECRET}})
    inbox_id = made.json()["id"]
    stack.ids["shop"] = inbox_id
    stranger = SecretBox([new_key()]).seal_settings({"secret": SHOP_SECRET}, {"secret"})
    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with db.write() as session:
            await session.exec(text("UPDATE inboxes SET settings = :s WHERE id = :id"),
                               params={"s": json.dumps(stranger), "id": inbox_id})
    finally:
        await db.close()
    # Any inbox change makes every process read the inboxes again.
    renamed = await admin.http.patch(f"/api/v1/inboxes/{stack.ids['sales']}",
                                     json={"name": "Sales team"})
    assert renamed.status_code == 200

    async def waiting() -> bool:
        answer = await stack.inbound("shop", [message("s-1", "hello")], secret=SHOP_SECRET)
        return answer.status_code == 503  # the provider retries; nothing is lost

    await eventually(waiting)
    other = await stack.inbound("support", [message("o-1", "still fine")])
    assert other.status_code == 202
