"""Satisfaction surveys on both shapes: sent once when a conversation is resolved, on the
customer's channel; answered by email (one-click signed links, then a comment; a forged or
used link refused), by a digit on WhatsApp (which never reopens the conversation) and on
the API channel; a low score starts an automation rule; who may switch the survey on."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from inbox.models import CsatSurvey
from tests.channels.test_twilio import post_webhook, twilio_inbox, whatsapp_message
from tests.fakes.twilio_server import FakeTwilio
from tests.helpers import Agent, Stack, count_rows, eventually, message, of_type
from tests.mail_services import DovecotServer, SmtpRecorder, imap_append
from tests.test_email_flow import _customer_mail, _email_inbox


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as running:
        yield running


async def survey_on(stack: Stack, inbox_id: int) -> None:
    admin = await stack.login("admin")
    switched = await admin.http.put(f"/api/v1/inboxes/{inbox_id}/csat", json={"enabled": True})
    assert switched.status_code == 200, switched.text
    assert switched.json() == {"enabled": True}


async def resolve(agent: Agent, conversation_id: int) -> None:
    done = await agent.http.post(f"/api/v1/conversations/{conversation_id}/status",
                                 json={"status": "resolved"})
    assert done.status_code == 200, done.text


async def view(agent: Agent, conversation_id: int) -> dict[str, Any]:
    found: dict[str, Any] = (await agent.http.get(
        f"/api/v1/conversations/{conversation_id}")).json()
    return found


async def thread(agent: Agent, conversation_id: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await agent.http.get(
        f"/api/v1/conversations/{conversation_id}/messages")).json()["items"]
    return found


async def rated(agent: Agent, conversation_id: int, score: int) -> dict[str, Any]:
    async def answered() -> dict[str, Any] | None:
        got = await view(agent, conversation_id)
        return got if got["csat_score"] == score else None
    found: dict[str, Any] = await eventually(answered, timeout=20)
    return found


async def activity(agent: Agent, conversation_id: int) -> list[str]:
    return [m["text"] for m in await thread(agent, conversation_id)
            if m["kind"] == "activity" and "rated" in m["text"]]


async def test_email_links_record_once_then_take_a_comment(
        mail_stack: tuple[Stack, DovecotServer, SmtpRecorder]) -> None:
    stack, dovecot, smtp = mail_stack
    admin, alice = await stack.login("admin"), await stack.login("alice")
    inbox_id = await _email_inbox(stack, admin, dovecot, smtp)
    await survey_on(stack, inbox_id)
    socket = await alice.ws()
    await imap_append(dovecot, "support", _customer_mail("csat-1@example.com", "It smokes."))
    created = await socket.wait_event(of_type("message.created", text="It smokes."), 20)
    cid = created["event"]["conversation"]["id"]
    assert (await alice.http.post(f"/api/v1/conversations/{cid}/messages",
                                  json={"text": "Unplug it."})).status_code == 201
    await resolve(alice, cid)

    [_, survey] = await smtp.wait(2)
    assert survey.rcpt_tos == ["ada@example.com"]
    assert survey.message["Auto-Submitted"] == "auto-generated"  # no out-of-office back
    body = survey.message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "How would you rate our help" in text
    links = dict((int(n), path) for path, n in re.findall(
        r"https?://[^/\s]+(/csat/[A-Za-z0-9_.-]+\?score=([1-5]))", text))
    assert sorted(links) == [1, 2, 3, 4, 5]
    customer = stack.client()  # no session: the link is the credential

    # A forged link (the signature changed) is refused and records nothing.
    token = links[4].split("/")[2].split("?")[0]
    forged = token[:-1] + ("0" if token[-1] != "0" else "1")
    refused = await customer.get(f"/csat/{forged}?score=1")
    assert refused.status_code == 400
    assert "not valid" in refused.text
    assert (await view(alice, cid))["csat_score"] is None

    clicked = await customer.get(links[4])
    assert clicked.status_code == 200, clicked.text
    assert "You rated our help 4 out of 5" in clicked.text
    got = await rated(alice, cid, 4)
    assert got["status"] == "resolved"
    assert await activity(alice, cid) == ["The customer rated this conversation 4/5"]
    # The link worked once: again, or another score of the same mail, is refused.
    for again in (links[4], links[1]):
        used = await customer.get(again)
        assert used.status_code == 410
        assert "used already" in used.text
    assert (await view(alice, cid))["csat_score"] == 4

    # The comment page may change the score too.
    action = html.unescape(re.search(r'action="(/csat/[^"]+/comment)"', clicked.text)[1])
    commented = await customer.post(action, data={"score": "5", "comment": "Quick and kind"})
    assert commented.status_code == 200, commented.text
    assert "your comment reached the team" in commented.text
    await rated(alice, cid, 5)
    assert (await activity(alice, cid))[-1] == (
        "The customer rated this conversation 5/5: “Quick and kind”")
    bad = await customer.post(action.replace("/comment", "x/comment"), data={"score": "1"})
    assert bad.status_code == 400
    assert await count_rows(stack, CsatSurvey) == 1


async def test_a_digit_on_whatsapp_answers_without_reopening_and_a_low_score_acts(
        stack: Stack, twilio: FakeTwilio) -> None:
    admin, alice = await stack.login("admin"), await stack.login("alice")
    inbox_id = await twilio_inbox(stack, twilio, "whatsapp")
    await survey_on(stack, inbox_id)
    assert (await admin.http.post("/api/v1/labels", json={"name": "unhappy"})).status_code == 201
    made = await admin.http.post("/api/v1/automation-rules", json={
        "name": "Unhappy", "inbox_id": inbox_id, "trigger": "csat_received",
        "conditions": [{"field": "csat_score", "op": "at_most", "value": 2}],
        "actions": [{"type": "add_label", "label": "unhappy"}]})
    assert made.status_code == 201, made.text
    socket = await alice.ws()
    assert (await post_webhook(stack, "whatsapp", inbox_id, whatsapp_message())).status_code == 200
    created = await socket.wait_event(of_type("conversation.created"))
    cid = created["event"]["conversation"]["id"]
    assert (await alice.http.post(f"/api/v1/conversations/{cid}/messages",
                                  json={"text": "On its way!"})).status_code == 201
    await resolve(alice, cid)
    sent = await twilio.wait_created(2)
    assert sent[1]["Body"] == ["How would you rate our help with this conversation? Reply "
                               "with a number from 1 (poor) to 5 (great)."]

    before = await view(alice, cid)
    assert (await post_webhook(stack, "whatsapp", inbox_id,
                               whatsapp_message(body="5"))).status_code == 200
    got = await rated(alice, cid, 5)
    assert got["status"] == "resolved" and got["labels"] == []
    # Nobody is given it, nothing waits in the queue, nothing is unread.
    assert (got["assignee_id"], got["waiting_since"], got["unread_count"]) == (
        before["assignee_id"], before["waiting_since"], before["unread_count"])
    assert [m["text"] for m in await thread(alice, cid) if m["direction"] == "in"] == [
        "Hi! Where is my order #4411?", "5"]
    # A second resolve sends nothing more; a later answer replaces the first.
    assert (await post_webhook(stack, "whatsapp", inbox_id,
                               whatsapp_message(body="2 stars"))).status_code == 200
    got = await rated(alice, cid, 2)

    async def labelled() -> bool:
        return "unhappy" in (await view(alice, cid))["labels"]

    await eventually(labelled)
    assert (await view(alice, cid))["status"] == "resolved"
    assert await activity(alice, cid) == ["The customer rated this conversation 5/5",
                                          "The customer rated this conversation 2/5"]
    # Words are a new question: the conversation opens again, and asks nothing new.
    assert (await post_webhook(stack, "whatsapp", inbox_id, whatsapp_message(
        body="One more thing: can I change the address?"))).status_code == 200

    async def reopened() -> bool:
        return (await view(alice, cid))["status"] == "open"

    await eventually(reopened)
    await resolve(alice, cid)
    await asyncio.sleep(1.5)
    assert len(twilio.created) == 2
    assert await count_rows(stack, CsatSurvey) == 1


async def test_no_survey_where_it_is_off_and_who_may_switch_it(stack: Stack) -> None:
    admin, alice, bob = (await stack.login("admin"), await stack.login("alice"),
                         await stack.login("bob"))
    support = stack.ids["support"]
    await stack.inbound("support", [message("c-1", "hello", "cust-off")])

    async def first() -> int | None:
        items = (await alice.http.get("/api/v1/conversations")).json()["items"]
        return items[0]["id"] if items else None

    cid = await eventually(first)
    await resolve(alice, cid)
    await asyncio.sleep(1.5)
    assert stack.receiver.received == []  # the survey is off by default
    assert await count_rows(stack, CsatSurvey) == 0

    url = f"/api/v1/inboxes/{support}/csat"
    assert (await alice.http.put(url, json={"enabled": True})).status_code == 403
    assert (await bob.http.put(url, json={"enabled": True})).status_code == 404
    assert (await admin.http.put(url, json={"enabled": "yes"})).status_code == 422
    await survey_on(stack, support)

    await stack.inbound("support", [message("c-2", "hello again", "cust-on")])

    async def second() -> int | None:
        items = (await alice.http.get("/api/v1/conversations")).json()["items"]
        return next((c["id"] for c in items if c["contact_name"] == "Cust-On"), None)

    other = await eventually(second)
    await resolve(alice, other)
    await stack.receiver.wait(1)
    assert stack.receiver.received[0]["text"].endswith("Reply with a number from 1 (poor) "
                                                       "to 5 (great).")
    await stack.inbound("support", [message("c-3", "4", "cust-on")])
    got = await rated(alice, other, 4)
    assert got["status"] == "resolved"
