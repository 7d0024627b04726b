"""Machine mail about an agent's reply, end to end through a real Dovecot.

An out-of-office reply with a null return path, a spam complaint quoting the reply and a
delayed-delivery notice arrive: the reply stays `sent` and they sit in its conversation.
Then a DSN with `Action: failed`: the reply turns `failed` with the server's reason.
"""

from __future__ import annotations

from pathlib import Path

from sqlmodel import select

from inbox.db import Database
from inbox.models import Conversation, Message
from tests.helpers import Stack, count_rows, eventually
from tests.mail_services import DovecotServer, SmtpRecorder, imap_append
from tests.test_email_flow import _customer_conversation

FIXTURES = Path(__file__).parent / "channels" / "fixtures" / "email"
QUOTED_ID = b"reply-7f3a@acme.test"  # the reply the fixtures quote, replaced by ours


async def _status(stack: Stack, external_id: str) -> tuple[str | None, str | None]:
    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with db.read() as session:
            row = (await session.exec(
                select(Message).where(Message.external_id == external_id))).one()
    finally:
        await db.close()
    return row.status, row.status_reason


async def test_only_a_failed_dsn_fails_the_reply_that_machine_mail_quotes(
    mail_stack: tuple[Stack, DovecotServer, SmtpRecorder],
) -> None:
    stack, dovecot, smtp = mail_stack
    alice, socket, conversation_id = await _customer_conversation(
        mail_stack, "inv-1@example.com", "Invoice wrong")
    reply = await alice.http.post(f"/api/v1/conversations/{conversation_id}/messages",
                                  json={"text": "We corrected it."})
    assert reply.status_code == 201, reply.text
    [sent] = await smtp.wait(1)
    ours = sent.message["Message-ID"].strip("<>")
    await eventually(lambda: _sent(stack, ours), timeout=20)

    def quoting_ours(name: str) -> bytes:
        return (FIXTURES / name).read_bytes().replace(QUOTED_ID, ours.encode())

    for name in ("auto_reply_ooo_null_return_path.eml", "auto_spam_complaint_arf.eml",
                 "bounce_dsn_postfix_delayed.eml"):
        await imap_append(dovecot, "support", quoting_ours(name))

    async def machine_mail_in(count: int) -> bool:
        return await count_rows(stack, Message, Message.direction == "in") == 1 + count

    await eventually(lambda: machine_mail_in(3), timeout=30)
    assert await _status(stack, ours) == ("sent", None)
    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with db.read() as session:
            kept = (await session.exec(select(Message).where(
                Message.direction == "in", Message.conversation_id == conversation_id))).all()
    finally:
        await db.close()
    kinds = sorted(str((m.meta or {}).get("automated")) for m in kept)
    assert kinds == ["None", "auto-reply", "delivery-status", "feedback-report"]

    await imap_append(dovecot, "support", quoting_ours("bounce_dsn_exim_failed.eml"))
    failed = await socket.wait_event(lambda e: e["type"] == "message.status_changed"
                                     and e["message"]["status"] == "failed", 30)
    assert failed["event"]["message"]["external_id"] == ours
    assert await _status(stack, ours) == ("failed", (
        "550 5.1.1 <jdoe@closed.example>: Recipient address rejected: User unknown in "
        "virtual mailbox table"))
    assert len(smtp.received) == 1  # nothing of it was answered
    assert await count_rows(stack, Conversation) == 1
    await socket.close()


async def _sent(stack: Stack, external_id: str) -> bool:
    """The reply is recorded as sent under its Message-ID (the SMTP server can have it a
    moment before the sender records the outcome)."""
    return await count_rows(stack, Message, Message.external_id == external_id,
                            Message.status == "sent") == 1
