"""Raw RFC 5322 bytes to a parsed email: pure, no I/O.

The standard `email` package reads the structure (channels/email/structure.py mends what
broken mailers write first); headers and bodies are decoded here, strictly and with the
charsets clients really use (charsets.py); the parts are sorted into body, files and
reports (body.py); machine mail is told apart (reports.py); the HTML is sanitised
(html.py). Nothing a customer wrote is refused for looking odd: a sender address that
the header parser cannot read is recovered from the raw header, or from Reply-To,
Sender or Return-Path, and only a mail without any usable sender is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from channels.base import language_tag
from channels.email.body import MAX_TEXT_BYTES, ParsedAttachment, read_body
from channels.email.charsets import decode_header_value, first_label
from channels.email.headers import first_message_id, header, message_ids, raw_id
from channels.email.html import html_to_text, sanitize_html
from channels.email.quotes import split_reply
from channels.email.reports import classify, reporting_host
from channels.email.structure import parse_tree, repair_headers
from hub.identity import InvalidIdentity, normalize_email

__all__ = ["ParsedAttachment", "ParsedEmail", "UnparseableEmail", "message_ids",
           "parse_email", "raw_id"]

_BRACKETED = re.compile(r"<([^<>]*)>")
_LOCAL_ONLY = re.compile(r"[A-Za-z0-9._+-]{1,64}")
_HOST = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
_ADDRESS_TOKEN = re.compile(r"[^\s<>(),;:\"]+@[^\s<>(),;:\"]+")


class UnparseableEmail(ValueError):
    """A message the parser cannot make sense of: quarantined with this reason."""


@dataclass(frozen=True)
class ParsedEmail:
    """What Switchboard needs of one email."""

    message_id: str  # without angle brackets; "sha256:<hex>" of the bytes when missing
    has_message_id: bool
    sender: str  # lower-cased address
    sender_name: str | None
    recipients: tuple[str, ...]  # lower-cased To, Cc, Delivered-To, X-Original-To
    subject: str
    date: datetime | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    text: str  # what the sender wrote
    quoted: str  # quoted history and signature below it
    html: str | None  # sanitised (html.py); inline images still as cid: URLs
    attachments: tuple[ParsedAttachment, ...]
    automated: str | None  # the kind of machine mail (reports.py), None for a person's
    bounce_of: str | None  # our message whose delivery failed (only a failed DSN)
    bounce_reason: str | None
    language: str | None = None  # from Content-Language: a hint for routing rules
    reports_on: str | None = None  # the message any report (DSN, complaint) is about
    notes: tuple[str, ...] = ()  # what the agent should know beside the text


def _raw_header(message: Message, name: str) -> str:
    """A header as it came (8-bit bytes as surrogates), '' when missing."""
    lowered = name.lower()
    return next((str(v) for k, v in message.raw_items() if k.lower() == lowered), "")



def _display_name(raw: str, hint: str | None) -> str:
    name = raw.strip().strip(",;").strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return " ".join(decode_header_value(name, hint).split())


def mailboxes(raw: str, hint: str | None = None) -> list[tuple[str, str]]:
    """(display name, address) pairs of an address header, read from its raw value.

    The header parser drops the address of "Smith, John <j@x>", "John [Acme] <j@x>" or
    "Anna @ Acme <a@x>": the list is cut at commas outside quotes and brackets, a piece
    without any address is the start of the next one's name, and in each piece angle
    brackets are trusted first, then RFC 5322 parsing, then a bare address.
    """
    value = re.sub(r"\r?\n[ \t]*", " ", raw)
    found: list[tuple[str, str]] = []
    for item in _items(value):
        bracketed = _BRACKETED.search(item)
        if bracketed:
            found.append((_display_name(item[:bracketed.start()], hint),
                          bracketed.group(1).strip()))
        elif '"' in item or "(" in item:
            found += [(_display_name(n, hint), a) for n, a in getaddresses([item]) if a]
        elif tokens := _ADDRESS_TOKEN.findall(item):
            # "John Smith john@example.com": the words are the name
            name = _ADDRESS_TOKEN.sub("", item)
            found += [(_display_name(name, hint), token) for token in tokens]
        elif bare := item.strip().strip(",;").strip():
            found.append(("", bare))
    return found


def _items(value: str) -> list[str]:
    """The pieces of an address list, cut at commas outside quotes, brackets and comments;
    a piece with no address in it ("Smith" of "Smith, John <j@x>") joins the next."""
    pieces: list[str] = []
    current: list[str] = []
    quoted, depth, bracket = False, 0, False
    for char in value:
        if char == '"' and not bracket:
            quoted = not quoted
        elif not quoted:
            if char == "<":
                bracket = True
            elif char == ">":
                bracket = False
            elif char == "(":
                depth += 1
            elif char == ")":
                depth = max(0, depth - 1)
            elif char in ",;" and not bracket and not depth:
                pieces.append("".join(current))
                current = []
                continue
        current.append(char)
    pieces.append("".join(current))
    merged: list[str] = []
    carry = ""
    for piece in pieces:
        piece = f"{carry},{piece}" if carry else piece
        if "@" in piece or "<" in piece:
            merged.append(piece)
            carry = ""
        elif piece.strip():
            carry = piece
    if carry.strip():
        merged.append(carry)
    return merged


def _host_of(message: Message, reports: list[Message]) -> str | None:
    """The mail server a machine mail came from: its DSN's Reporting-MTA or the host in
    its Message-ID."""
    candidates = [reporting_host(reports) or "",
                  (first_message_id(header(message, "Message-ID")) or "").rpartition("@")[2]]
    return next((c.lower().rstrip(".") for c in candidates if _HOST.fullmatch(c.lower())), None)


def _sender(
    message: Message, reports: list[Message], hint: str | None
) -> tuple[str, str | None]:
    """(address, display name) of the sender: From, then Reply-To, Sender, Return-Path."""
    names: list[str] = []
    local_parts: list[str] = []
    for field in ("From", "Reply-To", "Sender", "Return-Path"):
        for name, address in mailboxes(_raw_header(message, field), hint):
            if name:
                names.append(name)
            try:
                return normalize_email(address, local_domains=True), (
                    name or (names[0] if names else None))
            except InvalidIdentity:
                if _LOCAL_ONLY.fullmatch(address):
                    local_parts.append(address)
    # "From: MAILER-DAEMON", "From: <>": a mail server's notice, on the host that wrote it.
    null_sender = _raw_header(message, "Return-Path").strip() in ("<>", "")
    local = local_parts[0] if local_parts else ("mailer-daemon" if null_sender and (
        "Return-Path" in message) else None)
    host = _host_of(message, reports) if local else None
    if local and host:
        try:
            return normalize_email(f"{local}@{host}"), (names[0] if names else None)
        except InvalidIdentity:
            pass
    raise UnparseableEmail("no usable sender address in From, Reply-To, Sender or Return-Path")


def _recipients(message: Message) -> tuple[str, ...]:
    found: list[str] = []
    for field in ("To", "Cc", "Delivered-To", "X-Original-To"):
        for _name, address in mailboxes(_raw_header(message, field)):
            if "@" in address:
                found.append(address.strip().lower())
    return tuple(dict.fromkeys(found))


def _date(message: Message) -> datetime | None:
    try:
        value = header(message, "Date")
        date = parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError, IndexError):
        return None
    return date.replace(tzinfo=UTC) if date is not None and date.tzinfo is None else date


def parse_email(raw: bytes) -> ParsedEmail:
    """Parse one email; raise UnparseableEmail with a reason when it cannot be used."""
    try:
        return _parse(raw)
    except UnparseableEmail:
        raise
    except Exception as exc:  # a parser bug on hostile input must not stop the mailbox
        raise UnparseableEmail(f"{type(exc).__name__}: {exc}"[:500]) from exc


def _parse(raw: bytes) -> ParsedEmail:
    if not raw.strip():
        raise UnparseableEmail("empty message")
    message, cut = parse_tree(repair_headers(raw))
    if not message.keys():
        raise UnparseableEmail("no headers")
    content = read_body(message, cut=cut)
    hint = first_label([message.get_content_charset(), *content.charsets])
    sender, name = _sender(message, content.reports, hint)
    ids = message_ids(header(message, "Message-ID"))
    html = sanitize_html("\n".join(content.html)) if content.html else None
    written = "\n\n".join(p.strip("\r\n") for p in content.plain if p.strip())
    if not written.strip():
        written = html_to_text(html) if html else ""
    visible, quoted = split_reply(written[:MAX_TEXT_BYTES])
    in_reply_to = tuple(message_ids(header(message, "In-Reply-To")))
    references = tuple(message_ids(header(message, "References")))
    verdict = classify(message, content.reports, sender, (*references, *in_reply_to))
    return ParsedEmail(
        message_id=ids[0] if ids else raw_id(raw),
        has_message_id=bool(ids),
        sender=sender,
        sender_name=name[:200] if name else None,
        recipients=_recipients(message),
        subject=decode_header_value(_raw_header(message, "Subject"), hint)[:998],
        date=_date(message),
        in_reply_to=in_reply_to,
        references=references,
        text=visible,
        quoted=quoted,
        html=html or None,
        attachments=tuple(content.files),
        automated=verdict.kind,
        bounce_of=verdict.reports_on if verdict.failed else None,
        bounce_reason=verdict.failed,
        language=language_tag(header(message, "Content-Language")),
        reports_on=verdict.reports_on,
        notes=tuple(content.notes),
    )

