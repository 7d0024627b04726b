"""Working together in Chromium, one browser context per agent: presence and typing, mentions,
the send-collision warning, canned responses, labels and priority, files, the contact panel."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import Browser, FilePayload, WebSocketRoute, expect

from config import Settings
from tests.browser.test_agent_ui import Inbox, open_inbox
from tests.helpers import Agent, Stack

MAX_UPLOAD = 64 * 1024


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A small attachment limit, so a "too large" file stays small."""
    return settings.model_copy(update={"attachment_max_bytes": MAX_UPLOAD})


async def _support_for_bob(stack: Stack) -> Agent:
    """Bob joins alice in the support inbox (he starts in sales only); returns the admin."""
    admin = await stack.login("admin")
    response = await admin.http.put(f"/api/v1/inboxes/{stack.ids['support']}/members",
                                    json={"agent_ids": [stack.ids["alice"], stack.ids["bob"]]})
    assert response.status_code == 204, response.text
    return admin


async def _customer(stack: Stack, ext: str, text: str, sender: str, name: str) -> None:
    response = await stack.inbound("support", [{"id": ext, "sender": {"id": sender, "name": name},
                                                "text": text}])
    assert response.status_code < 300, response.text


async def _open(agent: Inbox, preview: str) -> int:
    """Open the conversation whose list row shows `preview`; its id."""
    await agent.row(preview).click()
    await expect(agent.page.locator("#message-list .msg.in").first).to_be_visible()
    return int(agent.page.url.rsplit("/", 1)[1])


async def test_presence_and_typing_between_two_agents(stack: Stack, browser: Browser) -> None:
    await _support_for_bob(stack)
    await _customer(stack, "v-1", "Where is my parcel?", "ada", "Ada Lovelace")
    alice = await open_inbox(browser, stack, "alice")
    await _open(alice, "Where is my parcel?")
    await expect(alice.page.locator("#viewers")).to_be_hidden()  # nobody else here yet

    bob = await open_inbox(browser, stack, "bob")
    await _open(bob, "Where is my parcel?")
    await expect(bob.page.locator("#viewers .viewer-name")).to_have_text(["Alice"])
    await expect(bob.page.locator("#viewers")).to_contain_text("is viewing")
    await expect(alice.page.locator("#viewers .viewer-name")).to_have_text(["Bob"])  # live

    reply = alice.page.locator("#reply")
    await alice.page.keyboard.press("n")
    await reply.press_sequentially("Checking with the depot")
    await expect(bob.page.locator("#typing")).to_have_text("Alice is writing a note…")
    await reply.press("Escape")
    await alice.page.keyboard.press("r")
    await reply.press_sequentially(" now")
    await expect(bob.page.locator("#typing")).to_have_text("Alice is replying…")

    # Alice goes back to her list: bob sees her leave at once, not a minute later.
    await alice.page.evaluate("window.location.hash = '#/'")
    await expect(bob.page.locator("#viewers .viewer")).to_have_count(0)
    await expect(bob.page.locator("#viewers")).to_be_hidden()
    await expect(alice.page.locator("#thread-empty")).to_be_visible()

    # She comes back, then leaves the page altogether: the goodbye outlives the page.
    await _open(alice, "Where is my parcel?")
    await expect(bob.page.locator("#viewers .viewer-name")).to_have_text(["Alice"])
    await alice.page.goto("/settings/password")
    await expect(bob.page.locator("#viewers .viewer")).to_have_count(0)
    alice.assert_clean()
    bob.assert_clean()


async def test_a_mention_picked_from_the_list_notifies_the_agent(
    stack: Stack, browser: Browser
) -> None:
    await _support_for_bob(stack)
    await _customer(stack, "m-1", "The invoice is wrong", "grace", "Grace Hopper")
    alice = await open_inbox(browser, stack, "alice")
    bob = await open_inbox(browser, stack, "bob")
    conversation_id = await _open(alice, "The invoice is wrong")
    page = alice.page
    reply = page.locator("#reply")
    suggestions = page.locator("#suggestions .suggestion")

    # In a reply, @ is just a character: mentions are for notes.
    await page.keyboard.press("r")
    await reply.press_sequentially("@")
    await expect(page.locator("#suggestions")).to_be_hidden()
    await reply.fill("")
    await reply.press("Escape")

    await page.keyboard.press("n")
    await reply.press_sequentially("Hey @")
    # Everyone who may see the support inbox, but not alice herself.
    await expect(suggestions).to_have_text(["Admin", "Bob"])
    await reply.press("ArrowDown")
    await expect(suggestions.nth(1)).to_have_attribute("aria-selected", "true")
    await reply.press("ArrowUp")
    await reply.press_sequentially("b")
    await expect(suggestions).to_have_text(["Bob"])
    await reply.press("Enter")  # picks bob; it does not save the note
    await expect(reply).to_have_value("Hey @Bob ")
    await expect(page.locator("#suggestions")).to_be_hidden()
    await reply.press_sequentially("can you check the March invoice?")
    await reply.press("Enter")
    note = page.locator("#message-list .msg.note .text")
    await expect(note).to_have_text("Hey @Bob can you check the March invoice?")

    await expect(bob.page.locator("#bell-count")).to_have_text("1")  # live, over his websocket
    bob_api = await stack.login("bob")
    found = (await bob_api.http.get("/api/v1/notifications?kind=mention")).json()
    assert [(n["kind"], n["conversation_id"], n["by_agent_id"]) for n in found["items"]] == [
        ("mention", conversation_id, stack.ids["alice"])]
    admin_api = await stack.login("admin")
    assert (await admin_api.http.get("/api/v1/notifications?kind=mention")).json()["items"] == []
    alice.assert_clean()
    bob.assert_clean()


async def test_send_collision_warns_and_send_anyway_sends(stack: Stack, browser: Browser) -> None:
    await _support_for_bob(stack)
    await _customer(stack, "c-1", "Can I change my delivery date?", "alan", "Alan Turing")
    # Alice's websocket frames can be held back: a colleague's reply she has not seen yet.
    held: dict[str, Any] = {"on": False, "frames": [], "page": None}

    async def sockets(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def from_server(frame: str | bytes) -> None:
            if held["on"]:
                held["frames"].append(frame)
            else:
                ws.send(frame)

        server.on_message(from_server)
        held["page"] = ws

    alice = await open_inbox(browser, stack, "alice", sockets=sockets)
    conversation_id = await _open(alice, "Can I change my delivery date?")
    page = alice.page

    held["on"] = True
    bob = await stack.login("bob")
    answer = await bob.http.post(f"/api/v1/conversations/{conversation_id}/messages",
                                 json={"text": "Yes, I moved it to Friday.", "kind": "message"})
    assert answer.status_code == 201, answer.text
    await stack.receiver.wait(1)

    reply = page.locator("#reply")
    await page.keyboard.press("r")
    await reply.press_sequentially("Sure, which day suits you?")
    await reply.press("Enter")
    conflict = page.locator("#conflict")
    await expect(conflict).to_be_visible()
    await expect(page.locator("#conflict-text")).to_have_text("Bob just replied — send anyway?")
    await expect(reply).to_have_value("Sure, which day suits you?")  # nothing lost
    # Bob's reply is loaded into the thread so alice can read it before deciding.
    await expect(page.locator("#message-list .msg.out .text")).to_have_text(
        ["Yes, I moved it to Friday."])
    assert len(stack.receiver.received) == 1

    await page.click("#conflict-cancel")
    await expect(conflict).to_be_hidden()
    await expect(reply).to_have_value("Sure, which day suits you?")
    # Bob answers once more, still unseen: the warning comes back, and this time she sends.
    await bob.http.post(f"/api/v1/conversations/{conversation_id}/messages",
                        json={"text": "Friday between 9 and 12.", "kind": "message"})
    await stack.receiver.wait(2)
    await reply.press("Enter")
    await expect(conflict).to_be_visible()
    await page.click("#conflict-send")
    await expect(conflict).to_be_hidden()
    await expect(reply).to_have_value("")
    await stack.receiver.wait(3)
    assert [m["text"] for m in stack.receiver.received] == [
        "Yes, I moved it to Friday.", "Friday between 9 and 12.", "Sure, which day suits you?"]

    held["on"] = False
    for frame in held["frames"]:
        held["page"].send(frame)
    await expect(page.locator("#message-list .msg.out .text")).to_have_text(
        ["Yes, I moved it to Friday.", "Friday between 9 and 12.", "Sure, which day suits you?"])
    # The two 409 answers were the warnings; nothing else went wrong on the page.
    assert all("409" in error for error in alice.errors)
    assert sum(error.startswith("409 ") for error in alice.errors) == 2


async def test_a_canned_response_is_inserted_with_the_contacts_name(
    stack: Stack, browser: Browser
) -> None:
    alice_api = await stack.login("alice")
    for shortcut, title, text in [
        ("thanks", "Thank you",
         "Thanks {{contact.first_name}}, glad I could help! — {{agent.name}}"),
        ("shipping", "Shipping times", "Orders ship within 2 days, {{contact.name}}."),
    ]:
        created = await alice_api.http.post("/api/v1/canned-responses",
                                            json={"shortcut": shortcut, "title": title,
                                                  "text": text})
        assert created.status_code == 201, created.text
    await _customer(stack, "t-1", "That worked, thanks!", "ada", "Ada Lovelace")
    alice = await open_inbox(browser, stack, "alice")
    await _open(alice, "That worked, thanks!")
    page = alice.page
    reply = page.locator("#reply")

    await page.keyboard.press("r")
    await reply.press_sequentially("/tha")
    suggestion = page.locator("#suggestions .suggestion")
    await expect(suggestion).to_have_count(1)
    await expect(suggestion.locator(".suggestion-shortcut")).to_have_text("/thanks")
    await expect(suggestion.locator(".suggestion-name")).to_have_text("Thank you")
    await reply.press("Enter")
    await expect(reply).to_have_value("Thanks Ada, glad I could help! — Alice")
    await reply.press("Enter")
    await expect(reply).to_have_value("")
    await stack.receiver.wait(1)
    assert stack.receiver.received[0]["text"] == "Thanks Ada, glad I could help! — Alice"

    # Enter typed before the list shows up still inserts: a bare "/shipping" is never sent.
    await reply.press_sequentially("/shipping")
    await reply.press("Enter")
    await expect(reply).to_have_value("Orders ship within 2 days, Ada Lovelace.")
    assert len(stack.receiver.received) == 1
    await reply.press("Escape")
    alice.assert_clean()


async def test_labels_and_priority_show_up_live_for_the_other_agent(
    stack: Stack, browser: Browser
) -> None:
    admin = await _support_for_bob(stack)
    for name, color in [("vip", "#e03131"), ("billing", "#1c7ed6")]:
        created = await admin.http.post("/api/v1/labels", json={"name": name, "color": color})
        assert created.status_code == 201, created.text
    await _customer(stack, "l-1", "Please upgrade us to the team plan", "ben", "Ben Bitdiddle")
    alice = await open_inbox(browser, stack, "alice")
    bob = await open_inbox(browser, stack, "bob")
    await _open(alice, "upgrade us")
    await _open(bob, "upgrade us")
    bob_chips = bob.page.locator("#labels .label-chip .label-name")
    alice_chips = alice.page.locator("#labels .label-chip .label-name")
    await expect(bob.page.locator("#priority")).to_have_value("none")

    await alice.page.select_option("#priority", "urgent")
    await alice.page.select_option("#label-add", "vip")
    await expect(alice_chips).to_have_text(["vip"])
    await alice.page.select_option("#label-add", "billing")
    await expect(bob.page.locator("#priority")).to_have_value("urgent")  # live
    await expect(bob_chips).to_have_text(["billing", "vip"])
    await expect(bob.page.locator("#labels .label-chip").last).to_have_css(
        "border-color", "rgb(224, 49, 49)")  # the label's own color

    await bob.page.click("#labels [aria-label='Remove label vip']")
    await bob.page.select_option("#priority", "low")
    await expect(alice_chips).to_have_text(["billing"])
    await expect(alice.page.locator("#priority")).to_have_value("low")
    alice.assert_clean()
    bob.assert_clean()


async def test_files_attached_by_button_paste_and_drop(stack: Stack, browser: Browser) -> None:
    await _customer(stack, "f-1", "Here is the broken part", "ada", "Ada Lovelace")
    alice = await open_inbox(browser, stack, "alice")
    await _open(alice, "broken part")
    page = alice.page
    chips = page.locator("#attachments .attachment-chip")

    await page.set_input_files("#attach-input", files=[
        FilePayload(name="label.pdf", mimeType="application/pdf", buffer=b"%PDF-1.4 tiny"),
        FilePayload(name="huge.bin", mimeType="application/octet-stream",
                    buffer=b"x" * (MAX_UPLOAD + 1)),
    ])
    await expect(chips).to_have_count(2)
    await expect(chips.nth(0)).to_have_attribute("data-status", "ready")
    await expect(chips.nth(1)).to_have_attribute("data-status", "failed")
    await expect(chips.nth(1)).to_contain_text("too large (the limit is 64 KB)")
    await expect(page.locator("#composer-error")).to_contain_text("huge.bin: too large")
    await page.click("#attachments [aria-label='Remove huge.bin']")
    await expect(chips).to_have_count(1)

    # A pasted file and a dropped one join it.
    await page.evaluate("""() => {
      const paste = new DataTransfer();
      paste.items.add(new File(["pasted text"], "pasted.txt", { type: "text/plain" }));
      document.querySelector("#reply").dispatchEvent(
        new ClipboardEvent("paste", { clipboardData: paste, bubbles: true, cancelable: true }));
      const drop = new DataTransfer();
      drop.items.add(new File(["dropped"], "dropped.txt", { type: "text/plain" }));
      document.querySelector("#messages").dispatchEvent(
        new DragEvent("drop", { dataTransfer: drop, bubbles: true, cancelable: true }));
    }""")
    await expect(chips).to_have_count(3)
    await expect(page.locator("#attachments [data-status=ready] .attachment-name")).to_have_text(
        ["label.pdf", "pasted.txt", "dropped.txt"])

    reply = page.locator("#reply")
    await reply.click()
    await reply.press_sequentially("The return label and notes")
    await reply.press("Enter")
    await expect(reply).to_have_value("")
    await expect(chips).to_have_count(0)
    await stack.receiver.wait(1)
    sent = stack.receiver.received[0]
    assert sent["text"] == "The return label and notes"
    assert [a["filename"] for a in sent["attachments"]] == [
        "label.pdf", "pasted.txt", "dropped.txt"]
    await expect(page.locator("#message-list .msg.out .files a")).to_have_text(
        ["label.pdf", "pasted.txt", "dropped.txt"])
    alice.assert_clean()


async def test_contact_panel_edits_notes_and_merge_live(stack: Stack, browser: Browser) -> None:
    await _support_for_bob(stack)
    await _customer(stack, "p-1", "My order has not arrived", "ada", "Ada Lovelace")
    await _customer(stack, "p-2", "Asking again from my other account", "ada-work", "A. Lovelace")
    alice = await open_inbox(browser, stack, "alice")
    bob = await open_inbox(browser, stack, "bob")
    await _open(alice, "has not arrived")
    await _open(bob, "other account")
    page = alice.page
    contact = page.locator("#contact")
    await expect(contact.locator(".contact-name")).to_have_text("Ada Lovelace")

    await page.click("#contact-edit")
    await page.fill("#contact-edit-name", "Ada King")
    await page.fill("#contact-edit-email", "ada@example.com")
    await page.click(".contact-edit button[type=submit]")
    await expect(contact.locator(".contact-name")).to_have_text("Ada King")
    await expect(contact.locator(".facts dd")).to_have_text(["ada@example.com"])
    await expect(page.locator("#thread-title")).to_have_text("Ada King")
    await expect(alice.row("has not arrived").locator(".name")).to_have_text("Ada King")

    await page.fill("#attribute-key", "plan")
    await page.fill("#attribute-value", "enterprise")
    await page.press("#attribute-value", "Enter")
    await expect(page.locator("#contact-attributes dt")).to_have_text(["plan"])
    await expect(page.locator("#contact-attributes .attribute-value")).to_have_text(["enterprise"])
    await page.fill("#contact-note-text", "Prefers email over phone.")
    await page.click("#contact-note-add")
    await expect(page.locator("#contact-notes .text")).to_have_text(["Prefers email over phone."])
    await expect(page.locator("#contact-notes .meta")).to_contain_text("Alice")

    await page.click("#contact-merge")
    await page.fill("#merge-search", "Lovelace")
    candidate = page.locator("#merge-results .merge-candidate", has_text="A. Lovelace")
    await candidate.click()
    summary = page.locator("#merge-summary")
    await expect(summary).to_contain_text("“A. Lovelace” will be merged into “Ada King”")
    await expect(summary).to_contain_text("1 identity, 1 conversation and notes")
    await expect(summary).to_contain_text("This cannot be undone")
    await page.click("#merge-confirm")
    await expect(page.locator("#merge-dialog")).to_be_hidden()
    await expect(contact.locator(".identity-value")).to_have_text(  # the email became one too
        [f"{stack.ids['support']}:ada", f"{stack.ids['support']}:ada-work", "ada@example.com"])
    await expect(page.locator("#other-conversations a")).to_contain_text("other account")

    # Bob had the other contact's conversation open: his panel follows the merge live.
    await expect(bob.page.locator("#contact .contact-name")).to_have_text("Ada King")
    await expect(bob.page.locator("#contact .identity-value")).to_have_count(3)
    await expect(bob.page.locator("#contact-notes .text")).to_have_text(
        ["Prefers email over phone."])
    await expect(bob.page.locator("#thread-title")).to_have_text("Ada King")
    alice.assert_clean()
    bob.assert_clean()


async def test_the_assign_picker_is_for_leads_and_changes_show_live(
    stack: Stack, browser: Browser
) -> None:
    admin_api = await _support_for_bob(stack)
    team = await admin_api.http.post("/api/v1/teams", json={
        "name": "Billing", "member_ids": [stack.ids["bob"]], "inbox_ids": [stack.ids["support"]]})
    assert team.status_code == 201, team.text
    await _customer(stack, "a-1", "Please send me a copy of the invoice", "ada", "Ada Lovelace")
    admin = await open_inbox(browser, stack, "admin")
    alice = await open_inbox(browser, stack, "alice")
    await _open(admin, "copy of the invoice")
    await _open(alice, "copy of the invoice")

    # An agent takes or drops a conversation herself; only leads and admins pick someone.
    await expect(alice.page.locator("#assign-to")).to_be_hidden()
    picker = admin.page.locator("#assign-to")
    await expect(picker).to_be_visible()
    await expect(picker.locator("optgroup[label=Agents] option")).to_have_text(
        [re.compile("^Admin \\(me\\)"), re.compile("^Alice"), re.compile("^Bob")])
    await expect(picker.locator("optgroup[label=Teams] option")).to_have_text(["Billing"])

    await admin.page.select_option("#assign-to", label="Bob")
    await expect(admin.page.locator("#thread-assignee")).to_have_text("Assigned to Bob")
    await expect(alice.page.locator("#thread-assignee")).to_have_text("Assigned to Bob")  # live
    await expect(alice.page.locator("#act-assign")).to_be_disabled()  # a colleague's now

    # To the team: its policy picks an online member; bob is not online, so it waits.
    await admin.page.select_option("#assign-to", label="Billing")
    await expect(alice.page.locator("#thread-team")).to_have_text(" · Team Billing")
    await expect(alice.page.locator("#thread-assignee")).to_have_text("Unassigned")
    await expect(alice.page.locator("#act-assign")).to_be_enabled()
    await alice.page.click("#act-assign")
    await expect(admin.page.locator("#thread-assignee")).to_have_text("Assigned to Alice")
    await admin.page.select_option("#assign-to", label="Unassign")
    await expect(alice.page.locator("#thread-assignee")).to_have_text("Unassigned")
    admin.assert_clean()
    alice.assert_clean()
