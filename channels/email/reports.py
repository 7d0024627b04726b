"""Which mail a machine sent, and what a delivery report says about our own mail.

Kinds, in the order they are recognised:
- "bounce": a delivery-status notification (RFC 3464) with a failed recipient; the only
  kind that may mark one of our messages failed, with the server's reason;
- "delivery-status": a DSN that fails nothing (delayed, relayed, delivered);
- "feedback-report": a complaint report (RFC 5965) about a mail, usually a spam button;
- "read-receipt": a disposition notification (RFC 8098), and any other report type;
- "auto-reply": RFC 3834 Auto-Submitted, X-Autoreply, X-Autorespond,
  X-Auto-Response-Suppress, Precedence: auto_reply; and any other mail with a null
  return path that is not a report;
- "bulk": Precedence: bulk or junk;
- "mail-system": a mail server's notice without a report (from MAILER-DAEMON or
  postmaster, or with X-Failed-Recipients), which names no message reliably enough to
  fail it.
None is a person's mail. Mail distributed by a list (Precedence: list) is a person's:
a support address that is a group forwards every customer's mail that way.
"""

from __future__ import annotations

from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message

from channels.email.headers import first_message_id, header

_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
SYSTEM_SENDERS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"})


@dataclass(frozen=True)
class Verdict:
    """What kind of machine mail this is, and what it reports about which message."""

    kind: str | None
    reports_on: str | None = None  # the Message-ID of the mail a report is about
    failed: str | None = None  # the server's reason, when delivery failed for good



def _report_type(message: Message, reports: list[Message]) -> str | None:
    declared = message.get_param("report-type") if message.get_content_type() == (
        "multipart/report") else None
    if isinstance(declared, str):
        return declared.strip().lower()
    for part in reports:  # reports nested in a forward or sent with a wrong header
        ctype = part.get_content_type()
        if ctype in _DSN_TYPES:
            return "delivery-status"
        if ctype == "message/feedback-report":
            return "feedback-report"
    return "disposition-notification" if message.get_content_type() == (
        "multipart/report") else None


def _blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [b for b in payload if isinstance(b, Message)]
    text = payload if isinstance(payload, str) else ""
    return [message_from_bytes(block.encode("utf-8", "surrogateescape"), policy=policy.default)
            for block in text.replace("\r\n", "\n").split("\n\n") if block.strip()]


def reporting_host(reports: list[Message]) -> str | None:
    """The host named by a DSN's Reporting-MTA field ("dns; mx.example.net"), or None."""
    for part in reports:
        if part.get_content_type() in _DSN_TYPES:
            for block in _blocks(part):
                mta = header(block, "Reporting-MTA")
                if mta:
                    return mta.split(";", 1)[-1].strip() or None
    return None


def _original_id(reports: list[Message]) -> str | None:
    """The Message-ID of the mail a report quotes (whole, or only its headers)."""
    for part in reports:
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                found = first_message_id(header(inner[0], "Message-ID"))
                if found:
                    return found
        elif ctype == "text/rfc822-headers":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                headers = message_from_bytes(payload, policy=policy.default)
                found = first_message_id(header(headers, "Message-ID"))
                if found:
                    return found
    return None


def _delivery(reports: list[Message]) -> tuple[set[str], list[str]]:
    """(the actions of every recipient, the reasons of the failed ones) of a DSN."""
    actions: set[str] = set()
    reasons: list[str] = []
    for part in reports:
        if part.get_content_type() not in _DSN_TYPES:
            continue
        for block in _blocks(part):
            action = header(block, "Action").lower().split(" ")[0]
            if not action:
                continue
            actions.add(action)
            if action != "failed":
                continue
            diagnostic = " ".join(header(block, "Diagnostic-Code").split())
            status = header(block, "Status")
            # "smtp; 550 5.1.1 ..." -> "550 5.1.1 ...": the type is not the reason.
            reasons.append(diagnostic.split(";", 1)[-1].strip() if diagnostic
                           else f"status {status or 'unknown'}")
    return actions, reasons


def _auto_reply(message: Message) -> str | None:
    auto_submitted = header(message, "Auto-Submitted").lower()
    if auto_submitted and not auto_submitted.startswith("no"):
        return "auto-reply"
    if any(h in message for h in ("X-Autoreply", "X-Autorespond", "X-Autorespond-Id",
                                  "X-Auto-Response-Suppress")):
        return "auto-reply"
    precedence = header(message, "Precedence").lower()
    if precedence in ("auto_reply", "auto-reply"):
        return "auto-reply"
    if precedence in ("bulk", "junk"):
        return "bulk"
    return None


def classify(message: Message, reports: list[Message], sender: str,
             fallback_ids: tuple[str, ...]) -> Verdict:
    """The verdict on one mail: its headers, the report parts found in it, its sender.

    `fallback_ids` are the mail's own In-Reply-To and References, nearest last: a DSN
    that does not quote the original still names it there.
    """
    report_type = _report_type(message, reports)
    original = _original_id(reports) or (fallback_ids[-1] if fallback_ids else None)
    if report_type == "delivery-status":
        actions, reasons = _delivery(reports)
        if "failed" in actions:
            reason = "; ".join(dict.fromkeys(reasons))[:1000]
            return Verdict("bounce", original, reason or "the mail could not be delivered")
        return Verdict("delivery-status", original)
    if report_type == "feedback-report":
        return Verdict("feedback-report", original)
    if report_type is not None:
        return Verdict("read-receipt", original)
    auto = _auto_reply(message)
    if auto:
        return Verdict(auto)
    null_return_path = "Return-Path" in message and header(message, "Return-Path") in (
        "<>", "", "< >")
    if sender.split("@")[0] in SYSTEM_SENDERS or "X-Failed-Recipients" in message:
        return Verdict("mail-system", original)
    if null_return_path:
        return Verdict("auto-reply")
    return Verdict(None)
