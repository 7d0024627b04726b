"""Raw RFC 5322 bytes to a parsed email: pure, with the standard `email` package (modern policy).

Covers text and HTML bodies in any charset, encoded headers, inline images and attachments,
the visible part of a reply, Message-ID chains, and the signs of machine-sent mail
(auto-replies, bounces with the message they report on).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from html.parser import HTMLParser

from channels.base import language_tag
from channels.email.quotes import split_reply
from hub.identity import InvalidIdentity, normalize_email

_MSG_ID = re.compile(r"<([^<>\s]{1,250})>")
_BARE_ID = re.compile(r"^[^<>\s@]{1,200}@[^<>\s@]{1,200}$")
MAX_IDS = 50


class UnparseableEmail(ValueError):
    """A message the parser cannot make sense of: quarantined with this reason."""


@dataclass(frozen=True)
class ParsedAttachment:
    """A file carried by the email (attachment or inline image)."""

    filename: str
    content_type: str
    data: bytes
    inline: bool = False


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
    html: str | None
    attachments: tuple[ParsedAttachment, ...]
    automated: str | None  # why it counts as machine-sent ("auto-reply", "bounce", "bulk")
    bounce_of: str | None
    bounce_reason: str | None
    language: str | None = None  # from Content-Language: a hint for routing rules


def message_ids(value: str | None) -> list[str]:
    """The Message-IDs named in a header value, in order, without angle brackets."""
    if not value:
        return []
    found = _MSG_ID.findall(value)
    if not found and _BARE_ID.match(value.strip()):
        found = [value.strip()]  # some clients forget the brackets
    return found[:MAX_IDS]


def raw_id(raw: bytes) -> str:
    """A stable id for a message without Message-ID, so re-fetches deduplicate."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _header(message: Message, name: str) -> str:
    """A header's decoded value ('' when missing or broken beyond repair)."""
    try:
        value = message.get(name)
    except (ValueError, IndexError, TypeError, AttributeError):
        return ""
    return str(value).strip() if value is not None else ""


def _addresses(message: Message, *names: str) -> list[tuple[str, str]]:
    values = [_header(message, name) for name in names]
    return [(n, a) for n, a in getaddresses([v for v in values if v]) if a]


def _text_of(part: Message) -> str:
    """The decoded text of a part, surviving unknown or lying charsets."""
    if isinstance(part, EmailMessage):
        try:
            content = part.get_content()
            if isinstance(content, str):
                return content
        except (LookupError, UnicodeError, KeyError, ValueError, AssertionError):
            pass
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    for charset in (part.get_content_charset(), "utf-8", "windows-1252"):
        if charset:
            try:
                return payload.decode(charset)
            except (LookupError, UnicodeDecodeError):
                continue
    return payload.decode("utf-8", errors="replace")


class _HtmlText(HTMLParser):
    """HTML to readable text (for HTML-only mail); scripts and styles dropped."""

    _BREAKS = frozenset({"br", "p", "div", "tr", "li", "h1", "h2", "h3", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head"):
            self._skip += 1
        elif tag in self._BREAKS:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head"):
            self._skip = max(0, self._skip - 1)
        elif tag in self._BREAKS:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.out.append(data)


def html_to_text(html: str) -> str:
    """Readable text of an HTML body."""
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    text = re.sub(r"[ \t\r\f\v]+", " ", "".join(parser.out))
    return re.sub(r"\n\s*\n\s*(\n\s*)+", "\n\n", text).strip()


def _filename(part: Message, index: int) -> str:
    name = part.get_filename()
    if name:
        return str(name)
    content_id = _header(part, "Content-ID").strip("<>")
    subtype = part.get_content_subtype() or "bin"
    if part.get_content_type() == "message/rfc822":
        return f"message-{index}.eml"
    if part.get_content_type() == "text/rfc822-headers":
        return f"undelivered-headers-{index}.txt"
    return f"{content_id.split('@')[0] or 'part'}-{index}.{subtype}"[:200]


def _part_bytes(part: Message) -> bytes:
    if part.is_multipart() or part.get_content_maintype() == "message":
        # An attached message (forward, bounce original) is kept whole, as it came.
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            return inner[0].as_bytes(policy=policy.SMTP) if len(inner) == 1 else part.as_bytes()
        return part.as_bytes()
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _walk(message: Message) -> tuple[str, str | None, list[ParsedAttachment], list[Message]]:
    """(plain body, html body, files, report parts) of a message."""
    plain: list[str] = []
    html: list[str] = []
    files: list[ParsedAttachment] = []
    report: list[Message] = []

    def visit(part: Message, in_alternative: bool) -> None:
        ctype = part.get_content_type()
        disposition = (part.get_content_disposition() or "").lower()
        if ctype in ("message/delivery-status", "text/rfc822-headers") or (
            ctype == "message/rfc822" and message.get_content_subtype() == "report"
        ):
            report.append(part)
        if ctype == "message/delivery-status":
            return
        if part.is_multipart() and ctype != "message/rfc822":
            alternative = ctype == "multipart/alternative"
            for sub in part.get_payload():
                if isinstance(sub, Message):
                    visit(sub, alternative)
            return
        is_body_text = ctype in ("text/plain", "text/html") and disposition != "attachment" and (
            not part.get_filename()
        )
        if is_body_text:
            target = plain if ctype == "text/plain" else html
            if not (in_alternative and target):
                target.append(_text_of(part))
            return
        data = _part_bytes(part)
        if data:
            files.append(ParsedAttachment(
                filename=_filename(part, len(files) + 1),
                content_type=ctype,
                data=data,
                inline=disposition == "inline" or bool(_header(part, "Content-ID")),
            ))

    visit(message, False)
    html_body = "\n".join(html) if html else None
    text = "\n\n".join(p.strip("\n") for p in plain) if plain else (
        html_to_text(html_body) if html_body else ""
    )
    return text, html_body, files, report


def _automated(message: Message, sender: str) -> str | None:
    """Why a message counts as machine-sent (RFC 3834 and common practice), or None."""
    auto_submitted = _header(message, "Auto-Submitted").lower()
    if message.get_content_type() == "multipart/report" or (
        sender.split("@")[0] in ("mailer-daemon", "postmaster")
    ):
        return "bounce"
    if "Return-Path" in message and _header(message, "Return-Path") in ("<>", ""):
        return "bounce"
    if auto_submitted and auto_submitted != "no":
        return "auto-reply"
    if any(h in message for h in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress")):
        return "auto-reply"
    if _header(message, "Precedence").lower() in ("bulk", "list", "junk"):
        return "bulk"
    return None


def _first_id(message: Message) -> str | None:
    found = message_ids(_header(message, "Message-ID"))
    return found[0] if found else None


def _delivery_failure(report: list[Message], text: str) -> tuple[str | None, str | None]:
    """(Message-ID of the mail that bounced, the server's reason) from a DSN's parts.

    (None, None) when the report only says delivery is delayed: that is no failure yet.
    """
    original: str | None = None
    reasons: list[str] = []
    actions: set[str] = set()
    for part in report:
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            blocks = part.get_payload()
            for block in blocks if isinstance(blocks, list) else []:
                if not isinstance(block, Message):
                    continue
                action = _header(block, "Action").lower()
                if action:
                    actions.add(action)
                diagnostic = _header(block, "Diagnostic-Code")
                status = _header(block, "Status")
                if action in ("failed", "") and (diagnostic or status):
                    reasons.append(diagnostic.split(";", 1)[-1].strip() if diagnostic
                                   else f"status {status}")
        elif ctype == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                original = _first_id(inner[0])
        elif ctype == "text/rfc822-headers":
            original = _first_id(message_from_bytes(_part_bytes(part), policy=policy.default))
    if actions and "failed" not in actions:
        return None, None
    if not reasons:
        # A bounce without a machine-readable report: its text is the reason.
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        reasons.append(first[:300] or "the mail could not be delivered")
    return original, "; ".join(dict.fromkeys(reasons))


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
    message = message_from_bytes(raw, policy=policy.default)
    if not message.keys():
        raise UnparseableEmail("no headers")
    senders = _addresses(message, "From") or _addresses(message, "Sender") or [
        ("", parseaddr(_header(message, "Return-Path"))[1])
    ]
    name, address = senders[0]
    try:
        sender = normalize_email(address)
    except InvalidIdentity as exc:
        raise UnparseableEmail(f"no usable sender address: {exc}") from None
    recipients = tuple(dict.fromkeys(
        a.lower() for _, a in _addresses(message, "To", "Cc", "Delivered-To", "X-Original-To")
    ))
    ids = message_ids(_header(message, "Message-ID"))
    date: datetime | None = None
    try:
        date_header = _header(message, "Date")
        date = parsedate_to_datetime(date_header) if date_header else None
        if date is not None and date.tzinfo is None:
            date = date.replace(tzinfo=UTC)
    except (TypeError, ValueError, IndexError):
        date = None
    full_text, html, files, report = _walk(message)
    visible, quoted = split_reply(full_text)
    automated = _automated(message, sender)
    in_reply_to = tuple(message_ids(_header(message, "In-Reply-To")))
    references = tuple(message_ids(_header(message, "References")))
    bounce_of = reason = None
    if automated == "bounce":
        bounce_of, reason = _delivery_failure(report, visible)
        if bounce_of is None and reason is not None:
            bounce_of = (in_reply_to or references or (None,))[-1]
    return ParsedEmail(
        message_id=ids[0] if ids else raw_id(raw),
        has_message_id=bool(ids),
        sender=sender,
        sender_name=(name.strip() or None) if name else None,
        recipients=recipients,
        subject=_header(message, "Subject")[:998],
        date=date,
        in_reply_to=in_reply_to,
        references=references,
        text=visible,
        quoted=quoted,
        html=html,
        attachments=tuple(files),
        automated=automated,
        bounce_of=bounce_of,
        bounce_reason=reason,
        language=language_tag(_header(message, "Content-Language")),
    )
