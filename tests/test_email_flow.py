"""Email end to end on both shapes: a real Dovecot, a real SMTP server, a running Switchboard.

Mail appended to the mailbox shows up live as a conversation; the agent's reply reaches
the SMTP server with threading headers; the customer's answer lands in the same
conversation; machine mail answering it never makes Switchboard send anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmodel import select

from inbox.db import Database
from inbox.models import Conversation, Message
from tests.helpers import Agent, Stack, count_rows, eventually, of_type
from tests.mail_services import DovecotServer, SmtpRecorder, imap_append

FIXTURES = Path(__file__).parent / "channels" / "fixtures" / "email"


async def _email_inbox(stack: Stack, admin: Agent, dovecot: DovecotServer,
                       smtp: SmtpRecorder) -> int:
    settings: dict[str, Any] = {**dovecot.settings("support"), **smtp.settings(),
                                "from_address": "help@acme.test", "from_name": "Acme Help",
                                "reply_domain": "acme.test"}
    created = await admin.http.post("/api/v1/inboxes", json={
        "name": "Help", "channel": "email", "settings": settings})
    assert created.status_code == 201, created.text
    inbox_id = int(created.json()["id"])
    members = await admin.http.put(f"/api/v1/inboxes/{inbox_id}/members",
                                   json={"agent_ids": [stack.ids["alice"]]})
    assert members.status_code == 204, members.text
    return inbox_id




async def _customer_conversation(
    mail_stack: tuple[Stack, DovecotServer, SmtpRecorder], message_id: str, text: str
) -> tuple[Agent, Any, int]:
    """Alice (with her websocket) and the conversation a customer's mail opened in a new
    email inbox."""
    stack, dovecot, smtp = mail_stack
    admin, alice = await stack.login("admin"), await stack.login("alice")
    await _email_inbox(stack, admin, dovecot, smtp)
    socket = await alice.ws()
    await imap_append(dovecot, "support", _customer_mail(message_id, text))
    created = await socket.wait_event(of_type("message.created", text=text), 20)
    return alice, socket, created["event"]["conversation"]["id"]


def _customer_mail(message_id: str, text: str, *, sender: str = "Ada <ada@example.com>",
                   in_reply_to: str | None = None, subject: str = "Printer on fire") -> bytes:
    thread = (f"In-Reply-To: <{in_reply_to}>\r\nReferences: <first@example.com> "
              f"<{in_reply_to}>\r\n") if in_reply_to else ""
    return (f"From: {sender}\r\nTo: help@acme.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{message_id}>\r\n{thread}Content-Type: text/plain; charset=utf-8"
            f"\r\n\r\n{text}\r\n").encode()


async def test_mail_to_conversation_reply_and_answer_in_the_same_thread(
    mail_stack: tuple[Stack, DovecotServer, SmtpRecorder],
) -> None:
    stack, dovecot, smtp = mail_stack
    admin, alice = await stack.login("admin"), await stack.login("alice")
    inbox_id = await _email_inbox(stack, admin, dovecot, smtp)
    socket = await alice.ws()
    await imap_append(dovecot, "support", _customer_mail("first@example.com", "It smokes."))
    created = await socket.wait_event(of_type("message.created", text="It smokes."), 20)
    conversation_id = created["event"]["conversation"]["id"]
    assert created["event"]["conversation"]["inbox_id"] == inbox_id

    reply = await alice.http.post(f"/api/v1/conversations/{conversation_id}/messages",
                                  json={"text": "Unplug it, please."})
    assert reply.status_code == 201, reply.text
    [sent] = await smtp.wait(1)
    out = sent.message
    assert sent.rcpt_tos == ["ada@example.com"]
    assert out["In-Reply-To"] == "<first@example.com>"
    assert out["References"] == "<first@example.com>"
    assert out["Subject"] == f"Re: Printer on fire [#{conversation_id}]"
    assert out["Reply-To"].addresses[0].username.startswith("reply+")
    assert out["Auto-Submitted"] is None
    our_id = out["Message-ID"].strip("<>")
    await socket.wait_event(lambda e: e["type"] == "message.status_changed"
                            and e["message"]["status"] == "sent")

    # The customer answers from another address of theirs, with a new subject line.
    await imap_append(dovecot, "support", _customer_mail(
        "second@example.com", "Unplugged, thanks!\n\nOn Mon, Acme wrote:\n> Unplug it, please.",
        sender="Ada <ada.private@example.net>", in_reply_to=our_id, subject="Re: fire (solved)"))
    answer = await socket.wait_event(of_type("message.created", text="Unplugged, thanks!"), 20)
    assert answer["event"]["conversation"]["id"] == conversation_id
    await socket.close()


async def test_auto_responders_and_bounces_never_make_us_send(
    mail_stack: tuple[Stack, DovecotServer, SmtpRecorder],
) -> None:
    """A minute of an auto-responder loop, compressed: a real loop answers each mail we send
    (about one a second for a minute); 40 rounds of out-of-office replies and bounces to our
    reply are delivered at once, and we check that not one mail more left than the agent's.
    """
    stack, dovecot, smtp = mail_stack
    admin, alice = await stack.login("admin"), await stack.login("alice")
    await _email_inbox(stack, admin, dovecot, smtp)
    await imap_append(dovecot, "support", _customer_mail("q@example.com", "Hello?"))

    async def first_conversation() -> int | None:
        page = (await alice.http.get("/api/v1/conversations")).json()["items"]
        return page[0]["id"] if page else None

    conversation_id = await eventually(first_conversation, timeout=20)
    await alice.http.post(f"/api/v1/conversations/{conversation_id}/messages",
                          json={"text": "Hi Ada"})
    [sent] = await smtp.wait(1)
    ours = sent.message["Message-ID"].strip("<>")
    auto = (FIXTURES / "auto_reply.eml").read_bytes().replace(
        b"idem-agent-2@support.acme.test", ours.encode())
    bounce = (FIXTURES / "bounce_dsn.eml").read_bytes().replace(
        b"idem-bounced-1@acme.test", ours.encode())
    rounds = 40
    for n in range(rounds):
        kind, raw = ("ooo", auto) if n % 2 else ("dsn", bounce)
        old = b"ooo-0001" if kind == "ooo" else b"dsn-0001"
        await imap_append(dovecot, "support", raw.replace(old, f"{kind}-{n}".encode()))

    async def all_in() -> bool:
        return await count_rows(stack, Message, Message.direction == "in") == 1 + rounds

    await eventually(all_in, timeout=30)
    assert len(smtp.received) == 1
    assert await count_rows(stack, Conversation) == 1
    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with db.read() as session:
            ours_row = (await session.exec(
                select(Message).where(Message.external_id == ours))).one()
            conversation = await session.get_one(Conversation, conversation_id)
    finally:
        await db.close()
    assert ours_row.status == "failed" and "550 5.1.1" in (ours_row.status_reason or "")
    assert conversation.unread_count == 0  # the agent's reply read it; machines add nothing


async def test_quarantined_mail_is_listed_and_downloadable_by_admins_only(stack: Stack) -> None:
    from inbox.channel_state import InboxChannelState

    db = Database(stack.settings.sqlalchemy_url)
    try:
        await InboxChannelState(db, inbox_id=stack.ids["support"]).quarantine(
            "no usable sender address", b"Subject: ?\r\n\r\n<script>x</script>")
    finally:
        await db.close()
    admin, alice = await stack.login("admin"), await stack.login("alice")
    assert (await alice.http.get("/api/v1/quarantine")).status_code == 403
    [item] = (await admin.http.get("/api/v1/quarantine")).json()
    assert item["reason"] == "no usable sender address"
    assert item["inbox_id"] == stack.ids["support"]
    raw = await admin.http.get(f"/api/v1/quarantine/{item['id']}/raw")
    assert raw.content.endswith(b"<script>x</script>")
    assert raw.headers["content-type"] == "application/octet-stream"
    assert raw.headers["content-disposition"].startswith("attachment")
    assert (await alice.http.get(f"/api/v1/quarantine/{item['id']}/raw")).status_code == 403


async def test_reply_with_attachments_reaches_the_smtp_server_intact(
    mail_stack: tuple[Stack, DovecotServer, SmtpRecorder],
) -> None:
    smtp = mail_stack[2]
    alice, socket, conversation_id = await _customer_conversation(
        mail_stack, "inv@example.com", "Send the invoice")
    files = {"Facture été 2026.pdf": ("application/pdf", b"%PDF-1.7\n" + bytes(range(256)) * 8),
             "notes.txt": ("text/plain", b"line one\r\nline two\n\x00 not text at all")}
    ids = []
    for name, (content_type, data) in files.items():
        uploaded = await alice.http.post(
            f"/api/v1/conversations/{conversation_id}/attachments", params={"filename": name},
            content=data, headers={"Content-Type": content_type})
        assert uploaded.status_code == 201, uploaded.text
        ids.append(uploaded.json()["id"])
    reply = await alice.http.post(f"/api/v1/conversations/{conversation_id}/messages",
                                  json={"text": "Here you are.", "attachment_ids": ids})
    assert reply.status_code == 201, reply.text

    [sent] = await smtp.wait(1)
    out = sent.message
    assert out.get_content_type() == "multipart/mixed"
    assert out["In-Reply-To"] == "<inv@example.com>"
    body = out.get_body(("plain",))
    assert body is not None and body.get_content().strip() == "Here you are."
    html = out.get_body(("html",))
    assert html is not None and "Here you are." in html.get_content()
    got = {part.get_filename(): (part.get_content_type(), part.get_payload(decode=True))
           for part in out.iter_attachments()}
    assert got == files
    # The non-ASCII name travels RFC 2231-encoded, never as raw 8-bit header bytes.
    assert b"filename*" in sent.data and "été".encode() not in sent.data
    await socket.wait_event(lambda e: e["type"] == "message.status_changed"
                            and e["message"]["status"] == "sent")
    await socket.close()
