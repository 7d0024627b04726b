"""The activity report through the running stack, on both shapes: a conversation answered
and resolved shows up in the report (kept by the `reports` consumer of the events stream),
as JSON and as CSV; bad parameters get clear errors; agents may not read reports."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.helpers import Agent, Stack, eventually, message, of_type


async def _report(agent: Agent, query: str) -> dict[str, Any]:
    found = await agent.http.get(f"/api/v1/reports/activity?{query}")
    assert found.status_code == 200, found.text
    report: dict[str, Any] = found.json()
    return report


async def test_an_answered_and_resolved_conversation_is_in_the_report(stack: Stack) -> None:
    admin, alice = await stack.login("admin"), await stack.login("alice")
    socket = await alice.ws()
    assert (await stack.inbound("support", [message("r-1", "Where is my order?")])
            ).status_code == 202
    created = await socket.wait_event(of_type("message.created"), 20)
    cid = created["event"]["conversation"]["id"]
    assert (await alice.http.post(f"/api/v1/conversations/{cid}/messages",
                                  json={"text": "On its way."})).status_code == 201
    assert (await alice.http.post(f"/api/v1/conversations/{cid}/status",
                                  json={"status": "resolved"})).status_code == 200

    today = datetime.now(UTC).date()
    query = f"start={today - timedelta(days=6)}&end={today}&group=agent"

    async def counted() -> dict[str, Any] | None:
        report = await _report(admin, query)
        return report if report["total"]["resolved"] == 1 else None

    report = await eventually(counted, timeout=20)
    total = report["total"]
    assert (total["created"], total["resolved"], total["replies"]) == (1, 1, 1)
    assert total["first_responses"] == 1
    assert total["first_response_median"] is not None and total["first_response_median"] < 60
    assert total["replies_per_conversation"] == 1.0
    assert report["time_zone"] == "UTC" and report["group"] == "agent"
    assert len(report["days"]) == 7 and report["days"][-1]["resolved"] == 1
    [row] = [r for r in report["rows"] if r["name"] == "Alice"]
    assert (row["created"], row["resolved"], row["first_responses"]) == (1, 1, 1)

    by_inbox = await _report(admin, query.replace("group=agent", "group=inbox"))
    assert [(r["name"], r["created"]) for r in by_inbox["rows"]] == [("Support", 1)]
    # The default range is the last 30 days, grouped by agent.
    default = await _report(admin, "")
    assert (len(default["days"]), default["group"]) == (30, "agent")
    assert default["total"]["resolved"] == 1

    exported = await admin.http.get(f"/api/v1/reports/activity.csv?{query}")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(exported.text)))
    assert table[0][:3] == ["Group", "Created", "Resolved"]
    assert ["Alice", "1", "1"] == table[1][:3] and table[-1][:3] == ["Total", "1", "1"]
    days = await admin.http.get(f"/api/v1/reports/activity.csv?{query}&table=days")
    assert list(csv.reader(io.StringIO(days.text)))[-1][:3] == [today.isoformat(), "1", "1"]


async def test_bad_parameters_get_clear_errors_and_agents_are_refused(stack: Stack) -> None:
    admin, alice = await stack.login("admin"), await stack.login("alice")
    for query, words in (("start=2026-13-01", "start must be a day written YYYY-MM-DD"),
                         ("group=planet", "group must be one of agent, team, inbox"),
                         ("start=2026-03-10&end=2026-03-01", "ends before it starts"),
                         ("start=2020-01-01&end=2026-01-01", "at most 1100 days")):
        refused = await admin.http.get(f"/api/v1/reports/activity?{query}")
        assert refused.status_code in (400, 422), (query, refused.text)
        assert words in refused.text, refused.text
    wrong_table = await admin.http.get("/api/v1/reports/activity.csv?table=everything")
    assert wrong_table.status_code == 400
    assert (await alice.http.get("/api/v1/reports/activity")).status_code == 403
    assert (await alice.http.get("/api/v1/reports/activity.csv")).status_code == 403
    page = await alice.http.get("/reports")
    assert page.status_code == 403 and "for team leads and admins" in page.text
    assert (await stack.client().get("/reports", follow_redirects=False)).status_code == 303
    shown = await admin.http.get("/reports")
    assert shown.status_code == 200 and 'id="chart-days"' in shown.text
