# ruff: noqa: RUF001  (the look-alike characters are the text these mails really carry)
"""The parser over the fixture corpus: one row of expectations per real-world mail shape.

Each fixture reproduces a class of fault seen on real helpdesk mail, bounces and
auto-replies (machine mail taken for bounces, senders refused, charsets garbled, HTML
dropped, structure lost, unbounded work); each row says what must come out of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from channels.email import to_inbound
from channels.email.body import MAX_TEXT_BYTES
from channels.email.parse import ParsedEmail, parse_email
from channels.email.structure import MAX_DEPTH
from hub.types import AttachmentRef

FIXTURES = Path(__file__).with_name("fixtures") / "email"
SETTINGS = {"from_address": "support@acme.test"}


@dataclass(frozen=True)
class Expect:
    """What one fixture must parse into."""

    sender: str
    subject: str
    text: str  # the visible text starts with this
    kind: str | None = None  # ParsedEmail.automated
    name: str | None = None
    html: str | None = None  # a fragment of the sanitised HTML; None: the mail has none
    files: tuple[tuple[str, str], ...] = ()  # (filename, content type), in order
    bounce_of: str | None = None
    reports_on: str | None = None
    notes: tuple[str, ...] = ()


OOO = "I am out of office until Monday 16 March"
REPLY = "reply-7f3a@acme.test"
ORIGINAL = ("Re Invoice 2291 is wrong.eml", "message/rfc822")
HEADERS = ("undelivered-headers-1.txt", "text/rfc822-headers")

CORPUS: dict[str, Expect] = {
    # 1. Machine mail: only a failed DSN fails a message.
    "auto_reply_ooo_null_return_path.eml": Expect(
        "megan.bowen@contoso.example", "Automatic reply: Re: Invoice 2291 is wrong", OOO,
        kind="auto-reply", name="Megan Bowen", html="<div style="),
    "auto_reply_vacation_responder.eml": Expect(
        "ada.lovelace@gmail.example", "Re: Invoice address", "Thanks for your mail.",
        kind="auto-reply", name="Ada Lovelace", html='<div dir="ltr">Thanks'),
    "auto_reply_x_autorespond.eml": Expect(
        "sales@bakery-brandt.example", "Re: Invoice 2291 is wrong", "Thank you for your message.",
        kind="auto-reply", name="Sales at Bakery Brandt"),
    "auto_spam_complaint_arf.eml": Expect(
        "staff@fbl.mail.example.net", "complaint about message from 192.0.2.10",
        "This is an email abuse report", kind="feedback-report",
        name="Mail Example Feedback Loop", files=(ORIGINAL,), reports_on=REPLY),
    "bounce_dsn_exim_failed.eml": Expect(
        "mailer-daemon@mx.acme.test", "Mail delivery failed: returning message to sender",
        "This message was created automatically", kind="bounce", name="Mail Delivery System",
        files=(ORIGINAL,), bounce_of=REPLY, reports_on=REPLY),
    "bounce_dsn_exchange_ndr.eml": Expect(
        "postmaster@contoso.example", "Undeliverable: Re: Invoice 2291 is wrong",
        "Your message to old.account@contoso.example couldn't be delivered.", kind="bounce",
        name="Mail Delivery Service", html="couldn't be delivered.</b>", files=(ORIGINAL,),
        bounce_of=REPLY, reports_on=REPLY),
    "bounce_dsn_gmail_failed.eml": Expect(
        "mailer-daemon@googlemail.example", "Delivery Status Notification (Failure)",
        "** Address not found **", kind="bounce", name="Mail Delivery Subsystem",
        html='src="cid:icon.png"', files=(("icon.png", "image/png"),
                                          ("Re Your refund.eml", "message/rfc822")),
        bounce_of="reply-9c2e@acme.test", reports_on="reply-9c2e@acme.test"),
    "bounce_dsn_postfix_delayed.eml": Expect(
        "mailer-daemon@mx.acme.test", "Delayed Mail (still being retried)",
        "This is the mail system at host mx.acme.test.", kind="delivery-status",
        name="Mail Delivery System", files=(HEADERS,), reports_on=REPLY),
    "bounce_dsn_mailer_daemon_bare.eml": Expect(
        "mailer-daemon@mail.legacy.example", "Returned mail: see transcript for details",
        "The original message was received", kind="bounce", files=(HEADERS,),
        bounce_of=REPLY, reports_on=REPLY),
    "bounce_null_from_text_only.eml": Expect(
        "mailer-daemon@mx.old.example", "failure notice", "Hi. This is the qmail-send program",
        kind="mail-system"),
    "bounce_dsn.eml": Expect(
        "mailer-daemon@mx.acme.test", "Undelivered Mail Returned to Sender",
        "This is the mail system at host mx.acme.test.", kind="bounce",
        name="Mail Delivery System", files=(HEADERS,), bounce_of="idem-bounced-1@acme.test",
        reports_on="idem-bounced-1@acme.test"),
    "auto_reply.eml": Expect(
        "ada.lovelace@gmail.example", "Automatic reply: Re: Invoice address",
        "I am out of office until Monday.", kind="auto-reply", name="Ada Lovelace"),
    "mailing_list_footer.eml": Expect(  # a customer's mail handed on by a list
        "olu.adeyemi@example.ng", "[Support] Cannot log in after password reset",
        "Hello, since I reset my password", name="Olu Adeyemi"),
    # 2. Senders the header parser refused, or lost.
    "sender_quoted_local_part.eml": Expect(
        '"lottery transfer"@winners.example', "Your payment reference", "Dear customer,"),
    "sender_intranet_host.eml": Expect(
        "scan@printhub", "Scanned document from 3rd floor", "Scanned by: 3rd floor",
        name="Scanner 3rd floor", files=(("SCAN_20260313_080210.pdf", "application/pdf"),)),
    "sender_unquoted_comma_name.eml": Expect(
        "john.smith@contoso.example", "Contract renewal", "Hello, our contract ends",
        name="Smith, John"),
    "sender_brackets_and_at_in_name.eml": Expect(
        "anna@partners.example", "Reseller price list", "Hi, could you send us",
        name="Anna @ Partners [Sales]"),
    "sender_reply_to_only.eml": Expect(
        "carla.diaz@example.org", "Contact form: delivery question", "Name: Carla Diaz",
        name="Carla Diaz"),
    "sender_sender_only.eml": Expect(
        "notifications@forms.example", 'New answer to "How did we do?"', "Rating: 2 of 5",
        name="Survey Notifications"),
    "sender_return_path_only.eml": Expect(
        "deploy@build01.example", "Nightly export failed", "export-orders: connection"),
    "sender_bare_local_part.eml": Expect(
        "root@build01.example", "Cron <root@build01> /usr/local/bin/sync-stock",
        "sync-stock: 3 items", name="Cron Daemon"),
    # 3. Charsets: declared, mislabelled, missing, and raw 8-bit headers.
    "charset_missing_utf8.eml": Expect(
        "zoe.martin@mobile.example", "Storno",
        "Hallo, ich habe die Bestellung storniert – bitte erstatten Sie 49,90 €.\nGrüße, Zoë",
        name="Zoe Martin"),
    "charset_gb2312_label_gbk_text.eml": Expect(
        "wangzhe@mail.example.cn", "关于订单 7731 的问题（堃）",
        "您好：\n\n我的订单 7731 还没有收到", name="王喆", html="收件人：王喆"),
    "charset_iso2022jp_windows.eml": Expect(
        "i.takahashi@takahashi-shoji.example.jp", "【至急】㈱アクメ 請求書①の件",
        "アクメ サポート ご担当者様\n\nいつもお世話になっております。㈱髙橋商事の髙橋です。\n"
        "請求書①と②の金額が異なっております。～3月20日までにご確認ください。", name="髙橋 一郎"),
    "charset_subject_raw_shift_jis.eml": Expect(
        "hanako.yamada@docomo.example.ne.jp", "注文の件①～確認",
        "サポートご担当者様\n\n注文番号①８８２１の商品がまだ届きません。", name="山田 花子"),
    "charset_subject_raw_gb2312.eml": Expect(
        "li.ming@mail.example.cn", "发票抬头有误", "你好，发票抬头应该是“上海某某贸易有限公司”"),
    "charset_latin1_label_cp1252.eml": Expect(
        "renee.dupre@fabrikam.example", "Facture « mars » – montant erroné",
        "Bonjour, la facture “mars” indique 120 € au lieu de 102 € – merci de corriger.",
        name="Renée Dupré"),
    "charset_utf8_labelled_latin1.eml": Expect(
        "juergen.weiss@example.de", "Rückfrage zur Lieferung",
        "Guten Tag, die Lieferung für Bestellung 7801 ist unvollständig – es fehlen",
        name="Jürgen Weiß"),
    "iso_2022_jp.eml": Expect(
        "taro@example.jp", "注文について", "お問い合わせありがとうございます。", name="山田太郎"),
    "latin1_encoded_headers.eml": Expect(
        "francois@exemple.example", "Problème de facturation", "Bonjour, la facture de février",
        name="François Lévêque"),
    # 4. HTML: carried sanitised, inline images kept, a blank text part gives way.
    "html_only_outlook.eml": Expect(
        "nancy.davolio@northwind.example", "Damaged items in delivery 5521",
        "Hello Acme team,\n\nThree items in delivery 5521 arrived broken:", name="Nancy Davolio",
        html='<table border="1" cellspacing="0" cellpadding="0" style="border-collapse:collapse'),
    "html_gmail_inline_cid.eml": Expect(
        "ada.lovelace@gmail.example", "Error on the checkout page",
        "The checkout page shows this error:", name="Ada Lovelace",
        html='<img src="cid:ii_m7x2k3p40" alt="screenshot.png"',
        files=(("screenshot.png", "image/png"),)),
    "html_whitespace_text_part.eml": Expect(
        "lena.vogel@partner-shop.example", "Wholesale order 2026-04",
        "Hello,\nwe would like to order 40 units of item 1182 for April.", name="Lena Vogel",
        html="<strong>40 units</strong>"),
    "html_apple_mail_fragments.eml": Expect(
        "tom.becker@icloud.example", "Broken hinge (photo)",
        "The hinge broke after a week, see the photo:", name="Tom Becker",
        html="<div>and the serial number is <b>AC-4471</b>.</div>",
        files=(("hinge.jpg", "image/jpeg"),)),
    "html_hostile.eml": Expect(
        "security-alert@acme-support.example", "Action required: verify your account",
        "Your account is locked", name="Acme Security", html="<p>Thanks, the Security Team</p>"),
    "gmail_reply.eml": Expect(
        "ada.lovelace@gmail.example", "Re: Invoice address", "Thanks, that works",
        name="Ada Lovelace", html="<blockquote>Hello Ada"),
    "inline_image.eml": Expect(
        "dee@studio.example", "Logo looks off", "See the screenshot below.", name="Designer",
        html='<img src="cid:shot1@studio.example">', files=(("shot1-1.png", "image/png"),)),
    # 5. Structure.
    "structure_header_continuation.eml": Expect(
        "forms@shop.example",
        "Order 4711 - the parcel arrived damaged and the box was open when it was delivered",
        "Customer: Peter Kaya", name="Shop Contact Form"),
    "structure_leading_escaped_from.eml": Expect(
        "peter.kaya@example.net", "Photos of the damaged parcel", "Hello, the photos",
        name="Peter Kaya"),
    "structure_leading_blank_lines.eml": Expect(
        "m.rossi@example.it", "Richiesta fattura", "Buongiorno", name="Marco Rossi"),
    "structure_uuencoded.eml": Expect(
        "hans.berg@oldmail.example", "Invoice 7802 as requested",
        "Hello, here is the invoice you asked for.\n\nRegards, Hans", name="Hans Berg",
        files=(("invoice 7802.pdf", "application/pdf"),)),
    "structure_extra_html_part.eml": Expect(
        "notifications@tickets.partner.example", "[PT-5521] Escalated: replacement shipment",
        "Ticket PT-5521 was escalated", name="Partner Ticket Desk",
        files=(("part-1.html", "text/html"),)),
    "structure_empty_attached_message.eml": Expect(
        "ines.garcia@example.es", "Fwd: the mail I got from you", "I attached the mail",
        name="Inés García"),
    "structure_wrong_boundary.eml": Expect(
        "orders@bistro-nord.example", "Delivery note 2026-0315",
        "Please find our signed delivery note attached.", name="Bistro Nord",
        files=(("delivery-note-0315.pdf", "application/pdf"),)),
    "structure_multipart_no_boundary.eml": Expect(
        "alerts@monitor.example", "Checkout API is down",
        "The checkout API at https://acme.example/api/checkout has been down",
        name="Uptime Monitor"),
    # 6. Parts kept as files, with what the agent should know about them.
    "tnef_winmail.eml": Expect(
        "megan.bowen@contoso.example", "Signed contract", "Please find the signed contract",
        name="Megan Bowen", files=(("winmail.dat", "application/ms-tnef"),)),
    "calendar_invite.eml": Expect(
        "megan.bowen@contoso.example", "Quarterly review", "Let us go through the open tickets",
        name="Megan Bowen", html="<div>Let us go through", files=(("invite.ics", "text/calendar"),),
        notes=("[Invitation: Quarterly review · Tue 17 Mar 2026 14:00 W. Europe Standard Time"
               " · Room 4.12]",)),
    "forwarded_as_attachment.eml": Expect(
        "ines.garcia@example.es", "Fwd: Payment failed", "I got this mail from your billing",
        name="Inés García", files=(("Payment failed.eml", "message/rfc822"),),
        notes=("[Attached message: “Payment failed” from Acme Billing <billing@acme.test>]",)),
    "forwarded.eml": Expect(
        "ana@partner.example", "Fwd: Outage notice", "---------- Forwarded message",
        name="Ana Ops"),
}


def _parse(name: str) -> ParsedEmail:
    return parse_email((FIXTURES / name).read_bytes())


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_fixture_parses_as_expected(name: str) -> None:
    expected, mail = CORPUS[name], _parse(name)
    assert (mail.sender, mail.sender_name, mail.subject) == (
        expected.sender, expected.name, expected.subject)
    assert mail.text.startswith(expected.text), mail.text
    assert "\ufffd" not in mail.text + mail.subject + (mail.sender_name or "")
    assert mail.automated == expected.kind
    assert (mail.bounce_of, mail.reports_on) == (expected.bounce_of, expected.reports_on)
    assert [(f.filename, f.content_type) for f in mail.attachments] == list(expected.files)
    assert all(f.data for f in mail.attachments)
    assert mail.notes == expected.notes
    if expected.html is None:
        assert mail.html is None
    else:
        assert mail.html is not None and expected.html in mail.html, mail.html


def test_every_fixture_has_a_row() -> None:
    names = {p.name for p in FIXTURES.glob("*.eml") if not p.name.startswith("invalid")}
    many = {"several_in_reply_to.eml", "references_cycle.eml", "no_date.eml",
            "no_message_id.eml", "outlook_reply.eml", "apple_mail_reply.eml",
            "attachment_only.eml"}  # checked one by one in test_email_parse.py
    assert names - many == set(CORPUS)


def test_only_a_failed_dsn_fails_our_message_and_every_report_threads() -> None:
    for name, expected in CORPUS.items():
        inbound = to_inbound(_parse(name), inbox_id=7, settings=SETTINGS)
        assert inbound.automated == (expected.kind is not None), name
        assert inbound.bounce_of == expected.bounce_of, name
        if expected.reports_on:  # kept in the conversation of the message it reports on
            assert inbound.in_reply_to == expected.reports_on
    failed = to_inbound(_parse("bounce_dsn_exchange_ndr.eml"), inbox_id=7, settings=SETTINGS)
    assert failed.metadata["bounce_reason"] == (
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup")
    gmail = _parse("bounce_dsn_gmail_failed.eml").bounce_reason or ""
    assert gmail.startswith("550-5.1.1 The email account that you tried to reach does not exist.")
    ooo = to_inbound(_parse("auto_reply_ooo_null_return_path.eml"), inbox_id=7, settings=SETTINGS)
    assert ooo.metadata["automated"] == "auto-reply" and "bounce_reason" not in ooo.metadata


def test_inline_images_point_at_their_stored_file_and_others_are_dropped() -> None:
    mail = _parse("html_gmail_inline_cid.eml")
    [shot] = mail.attachments
    assert shot.inline and shot.content_id == "ii_m7x2k3p40"
    ref = AttachmentRef(id="a" * 32, filename="screenshot.png", content_type="image/png",
                        size=len(shot.data))
    original = AttachmentRef(id="b" * 32, filename="original.eml",
                             content_type="message/rfc822", size=999)
    inbound = to_inbound(mail, inbox_id=7, settings=SETTINGS, attachments=(ref, original))
    assert inbound.html is not None
    assert f'<img src="/api/v1/attachments/{"a" * 32}" alt="screenshot.png"' in inbound.html
    # Refused by the store (too large): the image is dropped, never left pointing anywhere.
    refused = to_inbound(mail, inbox_id=7, settings=SETTINGS, attachments=(original,))
    assert refused.html is not None and "<img" in refused.html and "src=" not in refused.html


def _nested(depth: int) -> bytes:
    opening = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
                       for i in range(depth))
    closing = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(depth)))
    return (b"From: Deep <deep@example.com>\r\nMessage-ID: <deep@example.com>\r\n"
            b"Subject: nested\r\nMIME-Version: 1.0\r\n" + opening
            + b"Content-Type: text/plain\r\n\r\nat the bottom" + closing)


@pytest.mark.parametrize("depth", [MAX_DEPTH - 2, 1_000, 5_000])
def test_deep_nesting_is_bounded_and_the_mail_kept(depth: int) -> None:
    """No recursion error, the mail kept, the parts below the bound left out with a note
    (how fast: bench/, never a clock in a test - a busy machine made this one flaky)."""
    mail = parse_email(_nested(depth))
    assert (mail.sender, mail.subject) == ("deep@example.com", "nested")
    if depth < MAX_DEPTH:
        assert mail.text == "at the bottom" and mail.notes == ()
    else:
        assert mail.notes == (f"[Parts nested deeper than {MAX_DEPTH} levels are not shown.]",)


def test_a_huge_html_mail_is_cut_with_a_note() -> None:
    """Its cost is bounded by the cut (bench/ measures how fast: no timing in tests)."""
    row = "<div><p style='color:#333'>Line of a very long report <b>in bold</b></p></div>\n"
    html = row * (9 * 1024 * 1024 // len(row))
    raw = (b"From: Reports <reports@example.com>\r\nMessage-ID: <huge@example.com>\r\n"
           b"Subject: report\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8"
           b"\r\n\r\n" + html.encode())
    mail = parse_email(raw)
    assert mail.text.startswith("Line of a very long report in bold")
    assert mail.html is not None and len(mail.html) < MAX_TEXT_BYTES + 100  # tags closed
    [note] = mail.notes
    assert note.startswith("[This mail's text is longer than 1024 KiB")
    inbound = to_inbound(mail, inbox_id=7, settings=SETTINGS)
    assert inbound.text.endswith(note)  # the agent sees that the rest was cut
