"""GET /api/v1/inboxes/{id}/sync: an admin watches a mailbox import advance."""

from __future__ import annotations

from datetime import timedelta

from hub.types import utcnow
from inbox.channel_state import InboxChannelState
from inbox.db import Database
from tests.helpers import Stack


async def test_an_admin_sees_the_import_progress_and_its_eta(stack: Stack) -> None:
    started = utcnow() - timedelta(seconds=10)
    db = Database(stack.settings.sqlalchemy_url)
    try:
        await InboxChannelState(db, inbox_id=stack.ids["support"]).save("imap:INBOX", {
            "uidvalidity": 7, "last_uid": 500,
            "sync": {"fetched": 500, "total": 2000, "started_at": started.isoformat(),
                     "finished_at": None}})
    finally:
        await db.close()
    admin = await stack.login("admin")
    response = await admin.http.get(f"/api/v1/inboxes/{stack.ids['support']}/sync")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["inbox_id"] == stack.ids["support"] and body["channel"] == "api"
    [folder] = body["folders"]
    assert (folder["key"], folder["last_uid"], folder["fetched"], folder["total"]) == (
        "imap:INBOX", 500, 500, 2000)
    # 500 in 10 s so far: the 1,500 left take about 30 s more.
    assert 25 <= folder["eta_seconds"] <= 40
    # An inbox that pulls nothing has no folders.
    response = await admin.http.get(f"/api/v1/inboxes/{stack.ids['sales']}/sync")
    assert response.json()["folders"] == []


async def test_only_admins_see_it_and_unknown_or_huge_ids_are_404(stack: Stack) -> None:
    alice = await stack.login("alice")
    response = await alice.http.get(f"/api/v1/inboxes/{stack.ids['support']}/sync")
    assert response.status_code == 403
    assert (await stack.client().get(
        f"/api/v1/inboxes/{stack.ids['support']}/sync")).status_code == 401
    admin = await stack.login("admin")
    for wrong in ("999999", "9223372036854775808", "99999999999999999999999"):
        response = await admin.http.get(f"/api/v1/inboxes/{wrong}/sync")
        assert response.status_code == 404, (wrong, response.text)
