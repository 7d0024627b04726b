"""Real-world email shapes through the parser, the reply splitter and the bus message."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from channels.email import to_inbound
from channels.email.parse import UnparseableEmail, message_ids, parse_email
from channels.email.quotes import split_reply
from channels.email.smtp import (
    build_message,
    conversation_of_token,
    outgoing_message_id,
    reply_subject,
    reply_token,
    subject_reference,
)
from hub.types import Identity, OutboundMessage, decode, encode

FIXTURES = Path(__file__).with_name("fixtures") / "email"
SETTINGS = {"from_address": "support@acme.test", "reply_domain": "reply.acme.test",
            "reply_secret": "s3cret"}


def _parse(name: str):  # type: ignore[no-untyped-def]
    return parse_email((FIXTURES / name).read_bytes())


def test_gmail_reply_keeps_what_ada_wrote_and_her_chain() -> None:
    mail = _parse("gmail_reply.eml")
    assert mail.message_id == "CAJx9=gmail-reply-0001@mail.gmail.example"
    assert mail.sender == "ada.lovelace@gmail.example" and mail.sender_name == "Ada Lovelace"
    assert mail.text == ("Thanks, that works — one more question: can you also change the "
                         "VAT number?\n\nAda")
    assert mail.quoted.startswith("On Mon, 2 Mar 2026 at 17:40, Acme Support")
    assert mail.in_reply_to == ("idem-agent-1@support.acme.test",)
    assert mail.references == ("first-question@mail.gmail.example",
                               "idem-agent-1@support.acme.test")
    assert mail.html is not None and "<blockquote>Hello Ada" in mail.html
    assert mail.date == datetime(2026, 3, 3, 9, 15, 2, tzinfo=UTC)


def test_outlook_reply_in_windows_1252_with_its_header_block() -> None:
    mail = _parse("outlook_reply.eml")
    assert mail.sender_name == "Björn Müller"
    dash = "\N{EN DASH}"
    assert mail.subject == f"RE: Lieferung {dash} Bestellnummer 4711"
    assert mail.text.startswith(f"Hallo, die Lieferung ist angekommen, aber ein Teil fehlt {dash} ")
    assert mail.text.endswith("Grüße\nBjörn")
    assert "Ihre Bestellung 4711 wurde versandt." in mail.quoted


def test_apple_mail_reply_drops_the_signature_and_quote() -> None:
    mail = _parse("apple_mail_reply.eml")
    assert mail.text == "Yes, please go ahead."
    assert mail.quoted.startswith("Sent from my iPhone")


@pytest.mark.parametrize(("name", "sender_name", "subject", "text"), [
    ("latin1_encoded_headers.eml", "François Lévêque", "Problème de facturation",
     "Bonjour, la facture de février est erronée. Merci de vérifier."),
    ("iso_2022_jp.eml", "山田太郎", "注文について",
     "お問い合わせありがとうございます。注文番号は1234です。"),
])
def test_non_utf8_bodies_and_encoded_headers(
    name: str, sender_name: str, subject: str, text: str
) -> None:
    mail = _parse(name)
    assert (mail.sender_name, mail.subject, mail.text) == (sender_name, subject, text)


def test_forwarded_mail_is_kept_whole() -> None:
    mail = _parse("forwarded.eml")
    assert mail.text.startswith("---------- Forwarded message ---------")
    assert "The EU region is down since 07:05 UTC." in mail.text


def test_attachment_only_and_inline_images_become_files() -> None:
    scan = _parse("attachment_only.eml")
    assert scan.text == ""
    [pdf] = scan.attachments
    assert (pdf.filename, pdf.content_type, pdf.inline) == ("scan.pdf", "application/pdf", False)
    assert pdf.data.startswith(b"%PDF-1.4")
    shot = _parse("inline_image.eml")
    assert shot.text == "See the screenshot below."
    [image] = shot.attachments
    assert image.content_type == "image/png" and image.inline
    assert image.data.startswith(b"\x89PNG")


def test_missing_message_id_gets_a_stable_hash_and_missing_date_is_none() -> None:
    first, again = _parse("no_message_id.eml"), _parse("no_message_id.eml")
    assert first.message_id.startswith("sha256:") and first.message_id == again.message_id
    assert not first.has_message_id
    undated = _parse("no_date.eml")
    assert undated.date is None and undated.text == "No Date header and no MIME headers at all."


def test_several_in_reply_to_and_reference_cycles_become_a_clean_chain() -> None:
    multi = to_inbound(_parse("several_in_reply_to.eml"), inbox_id=7, settings=SETTINGS)
    assert multi.in_reply_to == "parent-a@acme.test"
    assert set(multi.references) == {"parent-a@acme.test", "parent-b@lists.example"}
    cycle = to_inbound(_parse("references_cycle.eml"), inbox_id=7, settings=SETTINGS)
    assert cycle.external_id == "self-1@cycle.example"
    assert cycle.references == ("root-1@cycle.example",)
    assert cycle.in_reply_to is None  # it named only itself


def test_auto_replies_and_bounces_are_flagged_with_what_bounced() -> None:
    auto = to_inbound(_parse("auto_reply.eml"), inbox_id=7, settings=SETTINGS)
    assert auto.automated and auto.bounce_of is None
    assert auto.metadata["automated"] == "auto-reply"
    bounce = to_inbound(_parse("bounce_dsn.eml"), inbox_id=7, settings=SETTINGS)
    assert bounce.automated
    assert bounce.bounce_of == "idem-bounced-1@acme.test"
    assert "550 5.1.1" in bounce.metadata["bounce_reason"]
    assert bounce.text.startswith("Delivery failed: 550 5.1.1")


@pytest.mark.parametrize("headers", [
    "Auto-Submitted: auto-generated", "Precedence: bulk", "Precedence: junk",
    "Precedence: auto_reply", "X-Autoreply: yes", "X-Autorespond: Re: hi",
    "X-Auto-Response-Suppress: All", "Return-Path: <>",
])
def test_each_sign_of_machine_mail_is_recognised(headers: str) -> None:
    raw = (f"From: a@example.com\r\nTo: s@acme.test\r\nMessage-ID: <m@example.com>\r\n{headers}"
           "\r\n\r\nhello\r\n").encode()
    assert parse_email(raw).automated is not None
    human = b"From: a@example.com\r\nAuto-Submitted: no\r\nMessage-ID: <h@x.com>\r\n\r\nhi\r\n"
    assert parse_email(human).automated is None
    # A support address that is a group hands every customer's mail on as list mail.
    listed = human.replace(b"Auto-Submitted: no", b"Precedence: list")
    assert parse_email(listed).automated is None


def test_our_own_mail_counts_as_automated() -> None:
    raw = b"From: Support <support@acme.test>\r\nMessage-ID: <o@acme.test>\r\n\r\nhi\r\n"
    assert to_inbound(parse_email(raw), inbox_id=7, settings=SETTINGS).automated


def test_unparseable_mail_gets_a_reason() -> None:
    with pytest.raises(UnparseableEmail, match="sender"):
        _parse("invalid_no_sender.eml")
    with pytest.raises(UnparseableEmail, match="empty"):
        parse_email(b"\r\n")


def test_message_ids_tolerate_missing_brackets_and_noise() -> None:
    assert message_ids("<a@x> (comment) <b@y>") == ["a@x", "b@y"]
    assert message_ids("bare@host.example") == ["bare@host.example"]
    assert message_ids("not an id") == []


def test_reply_token_routes_only_when_signed() -> None:
    token = reply_token("s3cret", 7, 42)
    assert conversation_of_token("s3cret", 7, token) == 42
    assert conversation_of_token("s3cret", 8, token) is None  # another inbox
    assert conversation_of_token("s3cret", 7, "42.0000000000") is None
    raw = (f"From: c@example.com\r\nTo: reply+{token}@reply.acme.test\r\n"
           "Message-ID: <t@example.com>\r\n\r\nhi\r\n").encode()
    assert to_inbound(parse_email(raw), inbox_id=7, settings=SETTINGS).thread_hint == (
        "conversation:42")
    forged = raw.replace(token.encode(), b"42.abcdefabcdefabcdefab")
    assert to_inbound(parse_email(forged), inbox_id=7, settings=SETTINGS).thread_hint is None


def test_split_reply_on_wrapped_attribution_and_plain_mail() -> None:
    text = "Fine.\n\nOn Tue, 3 Mar 2026 at 10:00, Someone <\ns@example.com> wrote:\n> old"
    assert split_reply(text) == ("Fine.", "On Tue, 3 Mar 2026 at 10:00, Someone <\n"
                                          "s@example.com> wrote:\n> old")
    assert split_reply("Just text.\n") == ("Just text.", "")
    assert split_reply("> only a quote") == ("> only a quote", "")


def test_reply_headers_thread_in_the_customers_client() -> None:
    outbound = OutboundMessage(
        message_id=1, conversation_id=42, inbox_id=7, channel="email",
        recipient=Identity(kind="email", value="ada@example.com", display_name="Ada"),
        text="Done.\nBest, Acme", idempotency_key="k-1", in_reply_to="their-2@example.com",
        subject="Re: RE: Invoice", references=("first@example.com", "their-2@example.com"),
    )
    mail = build_message(outbound, SETTINGS)
    assert mail["Message-ID"] == f"<{outgoing_message_id('k-1', 'x@acme.test')}>"
    assert mail["Message-ID"] == "<k-1@acme.test>"
    assert mail["In-Reply-To"] == "<their-2@example.com>"
    assert mail["References"] == "<first@example.com> <their-2@example.com>"
    assert mail["Subject"] == "Re: Invoice [#42]"  # our reference: see subject_reference
    assert mail["Reply-To"] == f"reply+{reply_token('s3cret', 7, 42)}@reply.acme.test"
    assert mail["Auto-Submitted"] is None
    assert mail.get_body(("plain",)).get_content().strip() == "Done.\nBest, Acme"  # type: ignore[union-attr]
    assert "Done.<br>" in mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    automatic = build_message(outbound.model_copy(update={"automated": True}), SETTINGS)
    assert automatic["Auto-Submitted"] == "auto-generated"
    parsed = message_from_bytes(bytes(mail), policy=policy.default)
    assert parsed["Message-ID"] == "<k-1@acme.test>"


def test_reply_subject_keeps_one_re() -> None:
    assert reply_subject("Invoice") == "Re: Invoice"
    assert reply_subject("AW: Re: Fwd: Invoice") == "Re: Invoice"
    # The conversation's reference goes at the end, once, however often the thread went
    # back and forth; it is what subject_reference reads back.
    assert reply_subject("Re: Invoice [#42]", 42) == "Re: Invoice [#42]"
    assert reply_subject("AW: Invoice [#7]", 42) == "Re: Invoice [#42]"
    assert subject_reference("Re: Invoice [#42]") == 42
    assert subject_reference("Invoice #42") is None
    assert reply_subject(None) == "Re: your message"


def test_version_one_bus_payloads_still_decode() -> None:
    old = (b'{"type":"inbound_message","v":1,"channel":"api","inbox_id":1,"external_id":"x",'
           b'"sender":{"kind":"api","value":"1:a"}}')
    message = decode(old)
    assert message.v == 1 and message.references == ()  # type: ignore[union-attr]
    assert decode(encode(message)) == message


@pytest.mark.parametrize(("header", "language"), [
    ("de-DE", "de-DE"), ("fr, en", "fr"), ("<script>", None), (None, None)])
def test_content_language_goes_to_the_metadata_for_routing(
    header: str | None, language: str | None
) -> None:
    lines = [b"From: Ada <ada@example.com>", b"To: help@example.com",
             b"Message-ID: <lang-1@example.com>", b"Subject: Paket"]
    if header is not None:
        lines.append(b"Content-Language: " + header.encode())
    mail = parse_email(b"\r\n".join([*lines, b"", b"Wo ist mein Paket?"]))
    assert mail.language == language
    inbound = to_inbound(mail, inbox_id=1, settings={})
    assert inbound.metadata.get("language") == language


def test_address_lists_mixing_bare_and_named_addresses_keep_every_address() -> None:
    from channels.email.parse import mailboxes

    assert mailboxes("help@acme.test, Bea <bea@example.com>") == [
        ("", "help@acme.test"), ("Bea", "bea@example.com")]
    assert mailboxes("carl@example.com, Help Desk <help@acme.test>") == [
        ("", "carl@example.com"), ("Help Desk", "help@acme.test")]
    # A comma inside an unquoted name is part of the name, not a separator.
    assert mailboxes("Smith, John <j@x.example>, b@y.example") == [
        ("Smith, John", "j@x.example"), ("", "b@y.example")]
    assert mailboxes('"Doe, Jane" <jane@x.example>; k@y.example') == [
        ("Doe, Jane", "jane@x.example"), ("", "k@y.example")]
