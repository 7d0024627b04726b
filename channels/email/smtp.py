"""Outgoing email over SMTP (aiosmtplib): threading headers, alternatives, failure classes."""

from __future__ import annotations

import hashlib
import hmac
import html
import re
import ssl
from collections.abc import Mapping, Sequence
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any

import aiosmtplib

from channels.base import PermanentSendError, TransientSendError
from channels.email.tls import TlsRefused, client_context, tls_mode, untrusted
from hub.types import AttachmentRef, OutboundMessage, utcnow

_SAFE_KEY = re.compile(r"^[A-Za-z0-9._+-]{1,100}$")
_REFERENCE = re.compile(r"\s*\[#(\d{1,15})\]")
_RE_PREFIX = re.compile(r"^\s*((re|aw|sv|antw|fwd?|wg)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
MAX_REFERENCES = 20
TIMEOUT_S = 30.0


def domain_of(address: str) -> str:
    """The domain of an address ('localhost' when it has none)."""
    return address.rpartition("@")[2].strip().lower() or "localhost"


def outgoing_message_id(idempotency_key: str, from_address: str) -> str:
    """Our Message-ID for a send request: deterministic, so a retried send keeps it."""
    local = idempotency_key if _SAFE_KEY.match(idempotency_key) else hashlib.sha256(
        idempotency_key.encode()).hexdigest()[:40]
    return f"{local}@{domain_of(from_address)}"


def reply_token(secret: str, inbox_id: int, conversation_id: int) -> str:
    """The token of a reply address: the conversation id, signed so it cannot be guessed."""
    digest = hmac.new(secret.encode(), f"{inbox_id}:{conversation_id}".encode(), hashlib.sha256)
    return f"{conversation_id}.{digest.hexdigest()[:20]}"


def conversation_of_token(secret: str, inbox_id: int, token: str) -> int | None:
    """The conversation id a reply token names, if its signature is right."""
    number, _, _ = token.partition(".")
    if not number.isdigit():
        return None
    expected = reply_token(secret, inbox_id, int(number))
    return int(number) if hmac.compare_digest(expected, token.lower()) else None


def reply_subject(subject: str | None, conversation_id: int | None = None) -> str:
    """The customer's subject with one 'Re: ' in front and the conversation's reference
    ("[#123]") at the end, once: a reply whose client dropped the threading headers still
    finds its conversation (for the same customer only)."""
    base = _REFERENCE.sub("", _RE_PREFIX.sub("", subject or "")).strip()
    base = base or "your message"
    return f"Re: {base} [#{conversation_id}]" if conversation_id else f"Re: {base}"


def subject_reference(subject: str | None) -> int | None:
    """The conversation a subject names with our "[#123]" reference, if any."""
    found = _REFERENCE.search(subject or "")
    return int(found.group(1)) if found else None


def _html_of(text: str) -> str:
    body = "<br>\n".join(html.escape(line) for line in text.splitlines())
    return f'<!doctype html><html><body><div dir="auto">{body}</div></body></html>'


def build_message(
    message: OutboundMessage,
    settings: Mapping[str, Any],
    files: Sequence[tuple[AttachmentRef, bytes]] = (),
) -> EmailMessage:
    """The MIME message of a send request, with our Message-ID and threading headers.

    Text and HTML alternatives; with `files`, multipart/mixed with each file after them,
    named by its filename (RFC 2231 encoded when it is not ASCII).
    """
    from_address = str(settings.get("from_address") or "")
    mail = EmailMessage(policy=policy.SMTP)
    mail["From"] = formataddr((str(settings.get("from_name") or ""), from_address))
    mail["To"] = formataddr((message.recipient.display_name or "", message.recipient.value))
    if message.cc:
        mail["Cc"] = ", ".join(formataddr((p.display_name or "", p.value)) for p in message.cc)
    mail["Subject"] = reply_subject(message.subject, message.conversation_id)
    mail["Date"] = format_datetime(utcnow())
    mail["Message-ID"] = f"<{outgoing_message_id(message.idempotency_key, from_address)}>"
    if message.in_reply_to:
        chain = [r for r in message.references if r != message.in_reply_to]
        chain = [*chain, message.in_reply_to][-MAX_REFERENCES:]
        mail["In-Reply-To"] = f"<{message.in_reply_to}>"
        mail["References"] = " ".join(f"<{ref}>" for ref in chain)
    domain, secret = settings.get("reply_domain"), settings.get("reply_secret")
    if domain and secret:
        token = reply_token(str(secret), message.inbox_id, message.conversation_id)
        mail["Reply-To"] = formataddr((str(settings.get("from_name") or ""),
                                       f"reply+{token}@{domain}"))
    if message.automated:
        mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: never answered automatically
    mail["X-Auto-Response-Suppress"] = "OOF, AutoReply" if message.automated else "OOF"
    mail.set_content(message.text)
    mail.add_alternative(message.html or _html_of(message.text), subtype="html")
    for ref, data in files:
        maintype, _, subtype = ref.content_type.partition("/")
        if not subtype or maintype in ("multipart", "message"):
            # A stored .eml or a multipart type would need parsing to be nested; as bytes
            # the customer still gets the file intact.
            maintype, subtype = "application", "octet-stream"
        mail.add_attachment(data, maintype=maintype, subtype=subtype, filename=ref.filename)
    return mail


async def _login(client: aiosmtplib.SMTP, username: str, password: str) -> None:
    try:
        await client.login(username, password)
    except aiosmtplib.SMTPAuthenticationError as exc:
        said = f"{exc.code} {exc.message}".strip()
        if 400 <= exc.code < 500:
            raise TransientSendError(f"the mail server could not check the login: {said}") from exc
        raise PermanentSendError(f"the mail server refused the login: {said}") from exc
    except aiosmtplib.SMTPResponseException:
        raise
    except aiosmtplib.SMTPException as exc:  # e.g. no AUTH offered (never sent in clear)
        raise PermanentSendError(f"the mail server offers no login we can use: {exc}") from exc


async def send_mail(
    mail: EmailMessage, settings: Mapping[str, Any], *, tls_context: ssl.SSLContext | None = None
) -> None:
    """Hand a message to the configured SMTP server; classify failures for the worker.

    smtp_tls `starttls` requires the upgrade (a server without it is refused, never used in
    clear), `ssl` is implicit TLS; the certificate is verified either way, and the login
    (smtp_username) only ever happens after that.
    """
    try:
        mode = tls_mode(settings, "smtp_tls", "starttls")
        context = (tls_context or client_context(settings)) if mode != "none" else None
    except TlsRefused as exc:
        raise PermanentSendError(str(exc)) from None
    port = int(settings.get("smtp_port") or (465 if mode == "ssl" else 587))
    client = aiosmtplib.SMTP(
        hostname=str(settings.get("smtp_host") or ""), port=port, use_tls=mode == "ssl",
        start_tls=mode == "starttls", timeout=TIMEOUT_S, tls_context=context,
    )
    try:
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            refused = untrusted(exc, "SMTP")
            if refused is not None:
                raise PermanentSendError(str(refused)) from exc
            if mode == "starttls" and "STARTTLS" in str(exc):
                raise PermanentSendError(
                    f"the mail server does not offer STARTTLS ({exc}); use smtp_tls ssl") from exc
            raise
        username = settings.get("smtp_username")
        if username:
            await _login(client, str(username), str(settings.get("smtp_password") or ""))
        await client.send_message(mail)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        detail = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
        if all(400 <= code < 500 for code in codes):
            raise TransientSendError(f"the mail server deferred the recipient: {detail}") from exc
        raise PermanentSendError(f"the mail server refused the recipient: {detail}") from exc
    except aiosmtplib.SMTPResponseException as exc:
        answer = f"{exc.code} {exc.message}".strip()
        if 400 <= exc.code < 500:
            raise TransientSendError(f"the mail server answered {answer}") from exc
        raise PermanentSendError(f"the mail server refused the message: {answer}") from exc
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise TransientSendError(f"could not reach the mail server: {exc}") from exc
    finally:
        # After DATA was accepted nothing may fail the send: a lost QUIT is no error.
        try:
            if client.is_connected:
                await client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()
