"""Email threads like a helpdesk, with a real Dovecot, a real SMTP server, on both shapes.

An email belongs to the conversation its headers name (In-Reply-To, References, our reply
address or subject reference), else it opens a new one, even when its sender has another
conversation open; chat channels keep one running conversation per contact. The people an
email was also sent to are kept on the conversation and copied on the reply.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.twilio_server import FakeTwilio
from tests.helpers import Agent, Socket, Stack, of_type
from tests.mail_services import DovecotServer, SmtpRecorder, imap_append


async def _email_inbox(stack: Stack, dovecot: DovecotServer, smtp: SmtpRecorder) -> int:
    admin = await stack.login("admin")
    settings: dict[str, Any] = {**dovecot.settings("support"), **smtp.settings(),
                                "from_address": "help@acme.test", "reply_domain": "acme.test"}
    created = await admin.http.post("/api/v1/inboxes", json={
        "name": "Help", "channel": "email", "settings": settings})
    assert created.status_code == 201, created.text
    inbox_id = int(created.json()["id"])
    await admin.http.put(f"/api/v1/inboxes/{inbox_id}/members",
                         json={"agent_ids": [stack.ids["alice"]]})
    return inbox_id


def mail(message_id: str, text: str, *, sender: str = "Ada <ada@example.com>",
         subject: str = "Help", in_reply_to: str | None = None,
         references: list[str] | None = None, to: str = "help@acme.test",
         cc: str | None = None) -> bytes:
    headers = [f"From: {sender}", f"To: {to}", f"Subject: {subject}",
               f"Message-ID: <{message_id}>"]
    if cc:
        headers.append(f"Cc: {cc}")
    if in_reply_to:
        headers.append(f"In-Reply-To: <{in_reply_to}>")
    if references:
        headers.append("References: " + " ".join(f"<{r}>" for r in references))
    headers.append("Content-Type: text/plain; charset=utf-8")
    return ("\r\n".join(headers) + f"\r\n\r\n{text}\r\n").encode()


async def _arrives(socket: Socket, dovecot: DovecotServer, raw: bytes, text: str) -> int:
    """Deliver a mail to the mailbox; the conversation it landed in."""
    await imap_append(dovecot, "support", raw)
    event = await socket.wait_event(of_type("message.created", text=text), 20)
    return int(event["event"]["conversation"]["id"])


async def test_email_threads_by_its_headers_only(
    mail_stack: tuple[Stack, DovecotServer, SmtpRecorder],
) -> None:
    stack, dovecot, smtp = mail_stack
    await _email_inbox(stack, dovecot, smtp)
    alice: Agent = await stack.login("alice")
    socket = await alice.ws()

    invoice = await _arrives(socket, dovecot, mail("inv@ada", "Invoice 42 is wrong",
                                                   subject="Invoice"), "Invoice 42 is wrong")
    # The same customer, a new question, while the first is still open: its own ticket.
    login = await _arrives(socket, dovecot, mail("login@ada", "I cannot log in",
                                                 subject="Login"), "I cannot log in")
    assert login != invoice
    # A reply names its parent: it joins it, whoever sends it.
    assert await _arrives(socket, dovecot, mail(
        "inv-2@ada", "Any news on the invoice?", subject="Re: Invoice", in_reply_to="inv@ada",
        references=["inv@ada"]), "Any news on the invoice?") == invoice
    # A References chain whose middle message we never saw still threads.
    assert await _arrives(socket, dovecot, mail(
        "inv-4@bob", "Adding my colleague's view", sender="Bob <bob@example.com>",
        in_reply_to="inv-3@never-seen", references=["inv@ada", "inv-3@never-seen"]),
        "Adding my colleague's view") == invoice

    # An answer to an email we sent finds its conversation by our Message-ID.
    reply = await alice.http.post(f"/api/v1/conversations/{login}/messages",
                                  json={"text": "Try resetting your password."})
    assert reply.status_code == 201, reply.text
    [sent] = await smtp.wait(1)
    ours = sent.message["Message-ID"].strip("<>")
    assert sent.message["Subject"] == f"Re: Login [#{login}]"
    assert await _arrives(socket, dovecot, mail(
        "login-2@ada", "That worked", subject="Re: Login", in_reply_to=ours,
        references=["login@ada", ours]), "That worked") == login

    # A reply that comes before its parent opens the conversation; the parent joins it.
    early = await _arrives(socket, dovecot, mail(
        "late-2@cid", "Re: my order (I wrote yesterday)", sender="cid@example.com",
        in_reply_to="late-1@cid", references=["late-1@cid"]),
        "Re: my order (I wrote yesterday)")
    assert await _arrives(socket, dovecot, mail(
        "late-1@cid", "Where is my order?", sender="cid@example.com"),
        "Where is my order?") == early

    # Our subject reference, without any header: joins, for the same customer only.
    assert await _arrives(socket, dovecot, mail(
        "login-3@ada", "One more thing", subject=f"Re: Login [#{login}]"),
        "One more thing") == login
    stranger = await _arrives(socket, dovecot, mail(
        "x@mallory", "Let me in", sender="mallory@example.org",
        subject=f"Re: Login [#{login}]"), "Let me in")
    assert stranger not in (login, invoice, early)
    await socket.close()


async def test_a_chat_message_from_the_same_person_goes_to_their_running_chat_conversation(
    mail_stack: tuple[Stack, DovecotServer, SmtpRecorder],
) -> None:
    from tests.channels.test_twilio import ADA, post_webhook, twilio_inbox, whatsapp_message

    stack, dovecot, smtp = mail_stack
    await _email_inbox(stack, dovecot, smtp)
    alice = await stack.login("alice")
    admin = await stack.login("admin")
    async with FakeTwilio() as fake:
        whatsapp = await twilio_inbox(stack, fake, "whatsapp")
        socket = await alice.ws()
        first = await _arrives(socket, dovecot, mail("a@ada", "Question one"), "Question one")
        second = await _arrives(socket, dovecot, mail("b@ada", "Question two"), "Question two")
        assert first != second
        contact_id = (await alice.http.get(f"/api/v1/conversations/{first}")).json()[
            "contact_id"]
        # Ada's phone is hers too: WhatsApp messages from it are hers.
        linked = await admin.http.patch(f"/api/v1/contacts/{contact_id}", json={"phone": ADA})
        assert linked.status_code == 200, linked.text
        for text in ("Hi on WhatsApp", "Still me"):
            answer = await post_webhook(stack, "whatsapp", whatsapp, whatsapp_message(text))
            assert answer.status_code == 200, answer.text
        chats = [await socket.wait_event(of_type("message.created", text=text), 20)
                 for text in ("Hi on WhatsApp", "Still me")]
    chat_ids = {c["event"]["conversation"]["id"] for c in chats}
    assert len(chat_ids) == 1 and chat_ids.isdisjoint({first, second})
    assert {c["event"]["message"]["contact_id"] for c in chats} == {contact_id}
    await socket.close()


async def test_people_on_copy_are_kept_and_copied_on_the_reply(
    mail_stack: tuple[Stack, DovecotServer, SmtpRecorder],
) -> None:
    stack, dovecot, smtp = mail_stack
    await _email_inbox(stack, dovecot, smtp)
    alice = await stack.login("alice")
    socket = await alice.ws()
    conversation = await _arrives(socket, dovecot, mail(
        "cc@ada", "Looping in my team", to="help@acme.test, Bea <bea@example.com>",
        cc="carl@example.com, Help Desk <help@acme.test>"), "Looping in my team")
    reply = await alice.http.post(f"/api/v1/conversations/{conversation}/messages",
                                  json={"text": "Hello all"})
    assert reply.status_code == 201, reply.text
    [everyone] = await smtp.wait(1)
    assert sorted(everyone.rcpt_tos) == ["ada@example.com", "bea@example.com",
                                         "carl@example.com"]
    assert "bea@example.com" in everyone.message["Cc"] and "help@acme" not in everyone.message[
        "Cc"]
    # The agent may copy fewer people (or nobody).
    only = await alice.http.post(f"/api/v1/conversations/{conversation}/messages",
                                 json={"text": "Just you", "cc": []})
    assert only.status_code == 201, only.text
    [_, just_ada] = await smtp.wait(2)
    assert just_ada.rcpt_tos == ["ada@example.com"] and just_ada.message["Cc"] is None
    bad = await alice.http.post(f"/api/v1/conversations/{conversation}/messages",
                                json={"text": "x", "cc": ["not an address"]})
    assert bad.status_code == 422
    await socket.close()
