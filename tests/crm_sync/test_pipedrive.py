"""Pipedrive, both ways, against a local Pipedrive that follows the documented API: a new
contact becomes a person (matched, never twice), a resolve adds one note, an edit there
comes back by its webhook (HTTP Basic checked) with no ping-pong, and the person card."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from tests.fakes.pipedrive_server import COMPANY, HOOK_PASSWORD, HOOK_USER, TOKEN, FakePipedrive
from tests.helpers import Stack, eventually, message


async def _async(value: Any) -> Any:
    return value


async def test_persons_notes_and_changes_back_without_ping_pong(
        crm_stack: Stack, pipedrive: FakePipedrive) -> None:
    admin = await crm_stack.login("admin")
    refused = await admin.http.post("/api/v1/crm/connections", json={
        "kind": "pipedrive", "settings": {"api_token": "wrong", "webhook_user": HOOK_USER,
                                          "webhook_password": HOOK_PASSWORD,
                                          "api_base": pipedrive.url}})
    assert refused.status_code == 422 and "Pipedrive refused" in refused.text
    made = await admin.http.post("/api/v1/crm/connections", json={
        "kind": "pipedrive", "name": "Pipedrive", "settings": {
            "api_token": TOKEN, "webhook_user": HOOK_USER, "webhook_password": HOOK_PASSWORD,
            "api_base": pipedrive.url}})
    assert made.status_code == 201, made.text
    view = made.json()
    assert view["settings"]["company_domain"] == COMPANY
    pipedrive.webhook_url = view["webhook_url"]
    # A person Pipedrive has already is found by email, not made twice.
    pipedrive.persons[3] = {"id": 3, "name": "Ada L.", "email": [
        {"value": "ada@example.com", "primary": True, "label": "work"}], "phone": [],
        "owner_id": {"id": 1, "name": "Sam Seller"},
        "org_id": {"id": 9, "name": "Analytical Engines"}, "open_deals_count": 1}
    pipedrive.deals[3] = [{"id": 77, "title": "Difference engine", "value": 5000,
                           "currency": "EUR", "status": "open"}]
    await crm_stack.inbound("support", [
        message("pd-1", "Is the engine ready?") | {
            "sender": {"email": "ada@example.com", "name": "Ada Lovelace"}},
        message("pd-2", "Hello from Grace") | {
            "sender": {"phone": "+447700900777", "name": "Grace Hopper"}}])

    def synced() -> bool:
        return pipedrive.persons[3]["name"] == "Ada Lovelace" and len(pipedrive.persons) == 2

    await eventually(lambda: _async(synced()))
    grace = next(p for p in pipedrive.persons.values() if p["id"] != 3)
    assert grace["phone"] == [{"value": "+447700900777", "primary": True, "label": "mobile"}]

    alice = await crm_stack.login("alice")
    items = (await alice.http.get("/api/v1/conversations")).json()["items"]
    ada = next(c for c in items if c["contact_name"] == "Ada Lovelace")
    await alice.http.post(f"/api/v1/conversations/{ada['id']}/status",
                          json={"status": "resolved"})
    [note] = await eventually(lambda: _async(list(pipedrive.notes.values())))
    assert note["person_id"] == 3 and "Is the engine ready?" in note["content"]

    before = pipedrive.writes()
    pipedrive.edit(3, name="Augusta Ada King")

    async def renamed() -> bool:
        contact = (await alice.http.get(f"/api/v1/contacts/{ada['contact_id']}")).json()
        return bool(contact["name"] == "Augusta Ada King")

    await eventually(renamed)
    await asyncio.sleep(1.5)
    assert pipedrive.writes() == before  # nothing pushed back
    assert pipedrive.webhook_answers and set(pipedrive.webhook_answers) == {200}

    [card] = (await alice.http.get(f"/api/v1/contacts/{ada['contact_id']}/crm")).json()
    assert card["link"] == f"https://{COMPANY}.pipedrive.com/person/3"
    assert ["Organization", "Analytical Engines"] in card["fields"]
    assert card["deals"] == [["Difference engine", "5000 EUR"]]

    path = f"/crm/pipedrive/{view['id']}/webhooks"
    wrong = base64.b64encode(f"{HOOK_USER}:guess".encode()).decode()
    for headers in ({}, {"authorization": f"Basic {wrong}"}, {"authorization": "Basic !!"}):
        answer = await crm_stack.client().post(path, content=b"{}", headers=headers)
        assert answer.status_code == 401
