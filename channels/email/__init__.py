"""The `email` channel: IMAP in (IDLE, UID cursors), SMTP out, threading by Message-ID chains."""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any, ClassVar

from channels.base import (
    BadPayload,
    Emit,
    Parsed,
    PermanentSendError,
    PollerState,
    SettingSpec,
    VerificationFailed,
    WebhookRequest,
)
from channels.email.html import link_inline_images
from channels.email.imap import ImapPoller, initial_sync
from channels.email.parse import ParsedEmail, UnparseableEmail, parse_email
from channels.email.parse_pool import Outcome, parse_many
from channels.email.smtp import (
    build_message,
    conversation_of_token,
    outgoing_message_id,
    send_mail,
    subject_reference,
)
from channels.email.tls import check_tls_settings
from hub.identity import InvalidIdentity, email_identity
from hub.types import (
    AttachmentRef,
    AttachmentRefused,
    Capabilities,
    Identity,
    InboundMessage,
    LoadAttachment,
    OutboundMessage,
    SendReceipt,
    StoreAttachment,
    utcnow,
)

log = logging.getLogger("switchboard.email")

MAX_REFERENCES = 100
MAX_CC = 20


def _stored_inline_images(
    mail: ParsedEmail, stored: tuple[AttachmentRef, ...]
) -> dict[str, str]:
    """Content id -> stored file id of the mail's inline parts.

    store_files stores the mail's files in order and leaves out only those the store
    refuses (empty, or over the size limit), so each reference belongs to the next file
    of the same size.
    """
    found: dict[str, str] = {}
    refs = iter(stored)
    ref = next(refs, None)
    for file in mail.attachments:
        if ref is None:
            break
        if ref.size != len(file.data):
            continue  # refused: no reference for it
        if file.content_id:
            found[file.content_id] = ref.id
        ref = next(refs, None)
    return found


def to_inbound(
    mail: ParsedEmail,
    *,
    inbox_id: int,
    settings: Mapping[str, Any],
    attachments: tuple[AttachmentRef, ...] = (),
    notes: tuple[str, ...] = (),
) -> InboundMessage:
    """The bus message of a parsed email received by an inbox."""
    own = str(settings.get("from_address") or "").lower()
    # Several In-Reply-To values, References in any order, or a cycle naming itself:
    # keep every other id once, the nearest parent last. A report (bounce, delay, spam
    # complaint) is about one of our messages: that one is its nearest parent.
    chain = [i for i in dict.fromkeys([*mail.references, *mail.in_reply_to[1:],
                                       *mail.in_reply_to[:1], mail.reports_on or ""])
             if i and i != mail.message_id]
    parent = mail.in_reply_to[0] if mail.in_reply_to and mail.in_reply_to[0] in chain else (
        mail.reports_on if mail.reports_on in chain else None)
    thread_hint = None
    secret, domain = settings.get("reply_secret"), str(settings.get("reply_domain") or "")
    for address in mail.recipients:
        local, _, host = address.partition("@")
        if secret and domain and host == domain.lower() and local.startswith("reply+"):
            found = conversation_of_token(str(secret), inbox_id, local[len("reply+"):])
            if found is not None:
                thread_hint = f"conversation:{found}"
                break
    own_addresses = {own, str(settings.get("imap_username") or "").lower()} - {""}
    cc = [address for address in mail.recipients
          if address not in own_addresses and address != mail.sender
          and not (domain and address.endswith("@" + domain.lower()))]
    metadata = {"subject": mail.subject} if mail.subject else {}
    automated = mail.automated or ("own" if own and mail.sender == own else None)
    if automated:
        metadata["automated"] = automated
    if mail.bounce_reason:
        metadata["bounce_reason"] = mail.bounce_reason[:1000]
    if mail.language:
        metadata["language"] = mail.language
    text = mail.text
    before = [f"Delivery failed: {mail.bounce_reason}"] if (
        mail.bounce_of and mail.bounce_reason) else []
    after = [*mail.notes, *notes]
    if before:
        text = f"{before[0]}\n\n{text}".strip()
    if after:
        text = "\n".join([text, *after]).strip()
    html = None
    if mail.html:
        # The thread shows the HTML instead of the text: what was added to it goes in too.
        html = "".join([*(f"<p><b>{escape(line)}</b></p>" for line in before),
                        link_inline_images(mail.html, _stored_inline_images(mail, attachments)),
                        *(f"<p><i>{escape(line)}</i></p>" for line in after)])
    return InboundMessage(
        channel="email",
        inbox_id=inbox_id,
        external_id=mail.message_id[:255],
        sender=email_identity(mail.sender, (mail.sender_name or "")[:200] or None,
                              local_domains=True),
        thread_hint=thread_hint,
        in_reply_to=parent,
        references=tuple(chain[-MAX_REFERENCES:]),
        text=text,
        html=html,
        attachments=attachments,
        provider_ts=mail.date,
        received_at=utcnow(),
        metadata=metadata,
        automated=automated is not None,
        bounce_of=mail.bounce_of[:255] if mail.bounce_of else None,
        # Email threads by its headers only: a new email is a new conversation.
        threading="headers",
        conversation_ref=subject_reference(mail.subject),
        cc=tuple(_cc_identities(cc)),
    )


def _cc_identities(addresses: list[str]) -> list[Identity]:
    found: list[Identity] = []
    for address in addresses[:MAX_CC]:
        try:
            found.append(email_identity(address))
        except InvalidIdentity:
            continue  # an odd address on the Cc line is no reason to lose the mail
    return found


async def store_files(
    raw: bytes, mail: ParsedEmail, store: StoreAttachment, *, keep_original: bool
) -> tuple[tuple[AttachmentRef, ...], tuple[str, ...]]:
    """Store the mail's files (and the original message) before the message is emitted."""
    refs: list[AttachmentRef] = []
    notes: list[str] = []
    files = [(a.filename, a.content_type, a.data) for a in mail.attachments]
    if keep_original:
        # The whole original (quoted history, headers, HTML) stays one click away.
        files.append(("original.eml", "message/rfc822", raw))
    for filename, content_type, data in files:
        try:
            refs.append(await store(filename, content_type, data))
        except AttachmentRefused as exc:
            notes.append(f"[attachment {filename} not kept: {exc}]")
    return tuple(refs), tuple(notes)


class EmailChannel:
    """Email inboxes: a mailbox read over IMAP, replies sent over SMTP."""

    kind: ClassVar[str] = "email"
    display_name: ClassVar[str] = "Email"
    settings: ClassVar[tuple[SettingSpec, ...]] = (
        SettingSpec("imap_host", "IMAP server host name"),
        SettingSpec("imap_port", "IMAP port (993 with ssl, 143 with starttls or none)",
                    required=False),
        SettingSpec("imap_tls", "ssl (implicit TLS, the default), starttls, or none (a server "
                    "on this machine only)", required=False),
        SettingSpec("imap_username", "IMAP login"),
        SettingSpec("imap_password", "IMAP password", secret=True),
        SettingSpec("imap_folder", "folder to follow (default INBOX)", required=False),
        SettingSpec("imap_idle", "use IDLE when the server has it: yes (default) or no",
                    required=False),
        SettingSpec("imap_idle_seconds", "re-issue IDLE after this long (default 1500)",
                    required=False),
        SettingSpec("imap_initial_sync", "what the first sync of the folder imports: all "
                    "(default), new (only mail arriving from now on), or a number of days",
                    required=False),
        SettingSpec("imap_poll_seconds", "poll interval without IDLE (default 60)",
                    required=False),
        SettingSpec("smtp_host", "SMTP server host name"),
        SettingSpec("smtp_port", "SMTP port (587 with starttls, 465 with ssl)", required=False),
        SettingSpec("smtp_tls", "starttls (default, required once set), ssl (implicit TLS) "
                    "or none (no login unless the server is on this machine)", required=False),
        SettingSpec("tls_ca_file", "PEM file of CA certificates trusted for IMAP and SMTP "
                    "besides the system's (a private CA)", required=False),
        SettingSpec("smtp_username", "SMTP login (empty: no authentication)", required=False),
        SettingSpec("smtp_password", "SMTP password", secret=True, required=False),
        SettingSpec("from_address", "the address replies come from"),
        SettingSpec("from_name", "the name replies come from", required=False),
        SettingSpec("reply_domain", "domain of reply+TOKEN@ addresses routed to this mailbox",
                    required=False),
        SettingSpec("reply_secret", "key that signs reply+TOKEN addresses", secret=True,
                    required=False),
        SettingSpec("keep_original", "store each original message as original.eml: yes or no",
                    required=False),
    )
    capabilities: ClassVar[Capabilities] = Capabilities(attachments=True, max_text=200_000)

    def __init__(self, *, tls_context: ssl.SSLContext | None = None) -> None:
        self._tls_context = tls_context

    def default_settings(self) -> dict[str, Any]:
        """A fresh secret for signing the inbox's reply+TOKEN addresses."""
        return {"reply_secret": secrets.token_urlsafe(32)}

    def check_settings(self, settings: Mapping[str, Any]) -> list[str]:
        """TLS modes, ports and the CA file; no password in clear beyond this machine; the
        initial sync."""
        problems = check_tls_settings(settings)
        try:
            initial_sync(settings)
        except ValueError as exc:
            problems.append(str(exc))
        for key, low, high in (("imap_poll_seconds", 0.05, 3600.0),
                               ("imap_idle_seconds", 1.0, 1740.0)):
            value = settings.get(key)
            try:
                ok = value is None or value == "" or low <= float(value) <= high
            except (TypeError, ValueError):
                ok = False
            if not ok:
                problems.append(f"{key} is a number of seconds from {low:g} to {high:g}")
        return problems

    def verify(self, request: WebhookRequest) -> None:
        """Email arrives over IMAP, never by webhook: every webhook is refused."""
        raise VerificationFailed("the email channel receives no webhooks", status=403)

    def parse(self, request: WebhookRequest) -> Parsed:
        """One raw RFC 5322 message (the body) as a bus message, without its files."""
        try:
            mail = parse_email(request.body)
        except UnparseableEmail as exc:
            raise BadPayload(str(exc)) from None
        return [to_inbound(mail, inbox_id=request.inbox_id, settings=request.inbox_settings)]

    async def send(
        self, message: OutboundMessage, inbox_settings: Mapping[str, Any]
    ) -> SendReceipt:
        """Send a reply by SMTP; the receipt's id is our Message-ID, so answers thread."""
        return await self.send_files(message, inbox_settings, _no_files)

    async def send_files(
        self,
        message: OutboundMessage,
        inbox_settings: Mapping[str, Any],
        load: LoadAttachment,
    ) -> SendReceipt:
        """Send a reply by SMTP with its attached files read through `load`."""
        if message.recipient.kind != "email":
            raise PermanentSendError("an email inbox can only answer an email address")
        if not inbox_settings.get("from_address") or not inbox_settings.get("smtp_host"):
            raise PermanentSendError("this email inbox has no from_address or smtp_host")
        files: list[tuple[AttachmentRef, bytes]] = []
        for ref in message.attachments:
            try:
                files.append((ref, await load(ref.id)))
            except LookupError:
                raise PermanentSendError(
                    f"the attachment {ref.filename} is no longer stored") from None
        mail = build_message(message, inbox_settings, files)
        await send_mail(mail, inbox_settings, tls_context=self._tls_context)
        from_address = str(inbox_settings["from_address"])
        return SendReceipt(
            external_id=outgoing_message_id(message.idempotency_key, from_address),
            status="sent",
        )

    async def run(
        self,
        inbox_id: int,
        inbox_settings: Mapping[str, Any],
        emit: Emit,
        store: StoreAttachment,
        state: PollerState,
    ) -> None:
        """Follow the inbox's IMAP folder until cancelled."""
        keep_original = str(inbox_settings.get("keep_original", "yes")).lower() not in (
            "no", "false", "0")

        async def keep(raw: bytes, parsed: Outcome) -> InboundMessage | None:
            try:
                if isinstance(parsed, UnparseableEmail):
                    raise parsed
                refs, notes = await store_files(raw, parsed, store, keep_original=keep_original)
                return to_inbound(parsed, inbox_id=inbox_id, settings=inbox_settings,
                                  attachments=refs, notes=notes)
            except (UnparseableEmail, ValueError) as exc:
                log.warning("quarantining a message of inbox %s: %s", inbox_id, exc)
                await state.quarantine(str(exc), raw)
                return None

        async def deliver(raws: Sequence[bytes]) -> list[InboundMessage | None]:
            # Parsed together (in the parse pool when there are many), then their files
            # stored together.
            parsed = await parse_many(raws)
            kept = (keep(raw, mail) for raw, mail in zip(raws, parsed, strict=True))
            return list(await asyncio.gather(*kept))

        poller = ImapPoller(inbox_settings, emit=emit, deliver=deliver, state=state,
                            tls_context=self._tls_context)
        await poller.run()


async def _no_files(attachment_id: str) -> bytes:
    raise LookupError(attachment_id)  # send() is given no file store: only send_files is


__all__ = ["EmailChannel", "parse_email", "to_inbound"]
