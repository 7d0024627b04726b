"""The contact view: identities, conversations on every channel, attributes, notes; merging."""

from __future__ import annotations

from tests.helpers import Stack, of_type
from tests.web.collab import open_conversation


async def test_merge_keeps_everything_and_threads_to_the_survivor(stack: Stack) -> None:
    admin = await stack.login("admin")
    alice = await stack.login("alice")
    bob = await stack.login("bob")
    # The same person wrote to support and to sales from two systems: two contacts.
    support = await open_conversation(stack, admin, sender={"id": "ada", "name": "Ada"})
    sales = await open_conversation(stack, admin, inbox="sales", ext_id="s-1",
                                    sender={"id": "ada-l", "name": "Ada L."}, text="prices?")
    survivor, merged = support["contact_id"], sales["contact_id"]
    assert survivor != merged
    note = await bob.http.post(f"/api/v1/contacts/{merged}/notes", json={"text": "Pays yearly"})
    assert note.status_code == 201, note.text
    assert (await admin.http.patch(f"/api/v1/contacts/{merged}", json={
        "attributes": {"plan": "pro"}})).status_code == 200
    alice_ws = await alice.ws()
    bob_ws = await bob.ws()

    answer = await admin.http.post(f"/api/v1/contacts/{survivor}/merge",
                                   json={"other_contact_id": merged})
    assert answer.status_code == 200, answer.text
    contact = answer.json()
    assert contact["id"] == survivor and contact["name"] == "Ada"
    assert sorted(i["value"] for i in contact["identities"]) == sorted([
        f"{stack.ids['sales']}:ada-l", f"{stack.ids['support']}:ada"])
    assert contact["attributes"] == {"plan": "pro"}
    # Agents of each inbox hear of it, and see their conversation now belongs to the survivor.
    for ws in (alice_ws, bob_ws):
        event = (await ws.wait_event(of_type("contact.merged")))["event"]
        assert event["contact"]["id"] == survivor and event["merged_contact_id"] == merged
    moved = await bob_ws.wait_event(lambda e: e["type"] == "conversation.updated")
    assert moved["event"]["conversation"]["id"] == sales["id"]
    assert moved["event"]["conversation"]["contact_id"] == survivor
    assert moved["event"]["changes"] == ["contact"]

    detail = (await admin.http.get(f"/api/v1/contacts/{survivor}")).json()
    assert {c["id"] for c in detail["conversations"]} == {support["id"], sales["id"]}
    assert [n["text"] for n in detail["notes"]] == ["Pays yearly"]
    assert detail["redirected_from"] is None
    # The merged contact's old link leads to the survivor, and says so.
    old = (await admin.http.get(f"/api/v1/contacts/{merged}")).json()
    assert old["id"] == survivor and old["redirected_from"] == merged
    # Each agent sees the conversations of their own inboxes only.
    assert [c["id"] for c in (await alice.http.get(f"/api/v1/contacts/{survivor}")
                              ).json()["conversations"]] == [support["id"]]
    bobs = (await bob.http.get(f"/api/v1/contacts/{merged}")).json()
    assert [c["id"] for c in bobs["conversations"]] == [sales["id"]]
    assert bobs["id"] == survivor

    # A new message from the merged contact's identity threads to the survivor's conversation.
    await stack.inbound("sales", [{"id": "s-2", "sender": {"id": "ada-l"}, "text": "still?"}])
    arrived = await bob_ws.wait_event(of_type("message.created", direction="in",
                                              text="still?"))
    assert arrived["event"]["conversation"]["id"] == sales["id"]
    assert arrived["event"]["conversation"]["contact_id"] == survivor
    assert arrived["event"]["message"]["contact_id"] == survivor
    old_messages = (await bob.http.get(f"/api/v1/conversations/{sales['id']}/messages")
                    ).json()["items"]
    assert {m["contact_id"] for m in old_messages if m["direction"] == "in"} == {survivor}
    assert (await admin.http.post(f"/api/v1/contacts/{survivor}/merge",
                                  json={"other_contact_id": merged})).status_code == 422
    await alice_ws.close()
    await bob_ws.close()


async def test_contact_edits_keep_identities_consistent(stack: Stack) -> None:
    alice = await stack.login("alice")
    conversation = await open_conversation(stack, alice)
    other = await open_conversation(stack, alice, ext_id="m-2", text="me too",
                                    sender={"email": "grace@example.com", "name": "Grace"})
    url = f"/api/v1/contacts/{conversation['contact_id']}"
    alice_ws = await alice.ws()

    changed = await alice.http.patch(url, json={
        "name": "Ada  King", "email": " ADA@Example.COM ", "phone": "+44 20 7946 0000",
        "attributes": {"plan": "pro", "seats": 3}})
    assert changed.status_code == 200, changed.text
    contact = changed.json()
    assert (contact["name"], contact["email"], contact["phone"]) == (
        "Ada King", "ada@example.com", "+442079460000")
    assert {(i["kind"], i["value"]) for i in contact["identities"]} >= {
        ("email", "ada@example.com"), ("phone", "+442079460000")}
    assert contact["attributes"] == {"plan": "pro", "seats": 3}
    renamed = await alice_ws.wait_event(lambda e: e["type"] == "conversation.updated")
    assert renamed["event"]["conversation"]["contact_name"] == "Ada King"

    # Attributes merge; null removes one. Leaving a field out leaves it alone.
    again = (await alice.http.patch(url, json={"attributes": {"seats": None, "vip": True}})
             ).json()
    assert again["attributes"] == {"plan": "pro", "vip": True}
    assert again["email"] == "ada@example.com" and again["name"] == "Ada King"

    for body, words in (
        ({"email": "not an address"}, "email"),
        ({"phone": "12"}, "phone"),
        ({"email": "grace@example.com"}, f"contact {other['contact_id']}"),
        ({"attributes": {"x": {"nested": 1}}}, "attributes.x"),
    ):
        refused = await alice.http.patch(url, json=body)
        assert refused.status_code == 422, body
        assert words in refused.json()["error"]["message"], refused.json()

    # The address is an identity now: mail from it finds Ada, not a new contact.
    await stack.inbound("support", [{"id": "m-3", "sender": {"email": "ada@example.com"},
                                     "text": "by mail"}])
    arrived = await alice_ws.wait_event(of_type("message.created", text="by mail"))
    assert arrived["event"]["conversation"]["contact_id"] == conversation["contact_id"]

    note = await alice.http.post(url + "/notes", json={"text": "Prefers email"})
    assert note.status_code == 201 and note.json()["agent_id"] == stack.ids["alice"]
    detail = (await alice.http.get(url)).json()
    assert [n["text"] for n in detail["notes"]] == ["Prefers email"]
    assert detail["attributes"] == {"plan": "pro", "vip": True}
    await alice_ws.close()


async def test_contacts_of_other_inboxes_are_not_found(stack: Stack) -> None:
    alice = await stack.login("alice")
    bob = await stack.login("bob")
    admin = await stack.login("admin")
    mine = await open_conversation(stack, alice)
    theirs = await open_conversation(stack, bob, inbox="sales", ext_id="s-1",
                                     sender={"id": "ben"})
    url = f"/api/v1/contacts/{mine['contact_id']}"
    assert (await bob.http.get(url)).status_code == 404
    assert (await bob.http.patch(url, json={"name": "x"})).status_code == 404
    assert (await bob.http.post(url + "/notes", json={"text": "x"})).status_code == 404
    for survivor, other in ((mine, theirs), (theirs, mine)):
        refused = await alice.http.post(f"/api/v1/contacts/{survivor['contact_id']}/merge",
                                        json={"other_contact_id": other["contact_id"]})
        assert refused.status_code == 404
    assert (await alice.http.get("/api/v1/contacts/999999")).status_code == 404
    # An address a contact of another inbox owns is refused without naming that contact.
    assert (await alice.http.patch(url, json={"email": "ada@example.com"})).status_code == 200
    refused = await bob.http.patch(f"/api/v1/contacts/{theirs['contact_id']}",
                                   json={"email": "ada@example.com"})
    assert refused.status_code == 422
    assert refused.json()["error"]["message"] == (
        "email: ada@example.com belongs to another contact; merge the two contacts instead")
    # Once the admin merges them, bob sees the contact, with his inbox's conversation only.
    merged = await admin.http.post(url + "/merge", json={"other_contact_id": theirs["contact_id"]})
    assert merged.status_code == 200
    detail = (await bob.http.get(url)).json()
    assert [c["id"] for c in detail["conversations"]] == [theirs["id"]]
