"""What a CRM connector is: the contract every module under crm_sync/ implements.

A connector pushes contacts (matched by email, then phone, never duplicated) and
transcripts (a note on the person), reads the CRM's card of a person for the contact
panel, and reads the CRM's webhooks (verified first) into changes of contacts. The syncer
(crm_sync/sync.py) does the rest the same way for every CRM: order per contact, retries,
rate limits, broken connections, the log.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable


class CrmError(Exception):
    """A CRM call that did not work."""


class Revoked(CrmError):
    """The CRM refused the credentials (401, a refused refresh): the connection is broken
    until an admin reconnects it; nothing is lost meanwhile."""


class Transient(CrmError):
    """Try again later (5xx, 429, the network): `retry_after` seconds when the CRM said."""

    def __init__(self, message: str, retry_after: float | None = None, *,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        # The HTTP status (None: no answer). Only a 429 says the CRM did nothing for sure.
        self.status = status


class Permanent(CrmError):
    """The CRM refused this item for good (a 4xx about the data): logged, not retried."""


class BadWebhook(CrmError):
    """A webhook that is not the CRM's (bad signature, too old, unreadable): 401."""


@dataclass(frozen=True)
class Spec:
    """One setting of a connection, as the connect form asks for it."""

    name: str
    label: str
    secret: bool = False
    required: bool = True
    default: str = ""
    help: str = ""


@dataclass(frozen=True)
class ContactData:
    """What Switchboard pushes of a contact."""

    id: int
    name: str | None
    email: str | None
    phone: str | None
    # Every other way to reach them ("telegram:12345", "whatsapp:+44..."), one per line.
    identities: tuple[str, ...] = ()
    remote_id: str | None = None  # the CRM's id when linked already


@dataclass(frozen=True)
class Pushed:
    """The CRM's record of a pushed contact (or why there is none)."""

    contact_id: int
    remote_id: str | None
    created: bool = False
    error: str | None = None


@dataclass(frozen=True)
class TranscriptLine:
    at: datetime
    who: str
    text: str


@dataclass(frozen=True)
class Transcript:
    """A conversation as a note on the person."""

    conversation_id: int
    subject: str | None
    channel: str
    inbox: str
    agent: str | None
    opened_at: datetime
    resolved_at: datetime
    link: str
    lines: tuple[TranscriptLine, ...]
    # Unique per resolve: found in the CRM's note to recognise one made before a crash.
    reference: str


@dataclass(frozen=True)
class Card:
    """The CRM's view of a person, for the contact panel."""

    crm: str
    remote_id: str
    link: str
    fields: list[tuple[str, str]] = field(default_factory=list)  # (label, value)
    deals: list[tuple[str, str]] = field(default_factory=list)  # (name, stage/amount)


@dataclass(frozen=True)
class RemoteChange:
    """A person changed in the CRM: the fields Switchboard keeps, and when."""

    remote_id: str
    # name, or firstname / lastname (the halves of it), email, phone
    fields: dict[str, str | None]
    occurred_at: datetime
    event_id: str


@dataclass
class Account:
    """What the syncer hands a connector: the connection's id and opened settings, and the
    settings the connector changed (a refreshed token), which the syncer stores sealed."""

    id: int
    settings: Mapping[str, Any]
    updates: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = "") -> Any:
        """A setting, as changed during this call if it was."""
        if name in self.updates:
            return self.updates[name]
        value = self.settings.get(name)
        return default if value is None else value


class Connector(Protocol):
    """One CRM."""

    kind: str
    display_name: str
    specs: Sequence[Spec]
    # The documented request budget: at most `rate` requests per `per_seconds`.
    rate: int
    per_seconds: float
    # Contacts per batch call.
    batch: int

    async def check(self, account: Account) -> dict[str, Any]:
        """Verify the credentials (Revoked/Permanent otherwise); settings to store (such as
        the account id that deep links need)."""
        ...

    async def push_contacts(self, account: Account,
                            contacts: Sequence[ContactData]) -> list[Pushed]:
        """Create or update each contact's record, matched by link, email, then phone."""
        ...

    async def push_note(self, account: Account, remote_id: str, transcript: Transcript,
                        *, retrying: bool) -> str:
        """Add the transcript as a note on the person; its id. `retrying`: look first for the
        note a previous try may have made (its reference), so none is made twice."""
        ...

    async def card(self, account: Account, remote_id: str) -> Card:
        """The person's card: owner, stage, company, open deals, a deep link."""
        ...

    def read_webhook(self, account: Account, method: str, url: str,
                     headers: Mapping[str, str], body: bytes) -> list[RemoteChange]:
        """Verify (BadWebhook otherwise, in constant time) and read a webhook of the CRM."""
        ...


@runtime_checkable
class AuthorisesWithOAuth(Protocol):
    """A connector whose CRM offers OAuth 2.0's authorization code flow."""

    def authorize_url(self, settings: Mapping[str, Any], redirect_uri: str, state: str) -> str:
        """Where the admin's browser goes to let Switchboard in."""
        ...

    async def exchange_code(self, account: Account, code: str, redirect_uri: str) -> None:
        """Trade the code the CRM sent back for tokens (into `account.updates`); Revoked or
        Permanent when the CRM refuses."""
        ...


def status_error(status: int, headers: Mapping[str, str], body: bytes, what: str) -> CrmError:
    """The error an unsuccessful answer means: 401 Revoked, 429/5xx Transient, else Permanent."""
    detail = f"{what}: HTTP {status} {body[:200].decode('utf-8', 'replace')}"
    if status == 401:
        return Revoked(detail)
    if status == 429 or status >= 500:
        after = headers.get("retry-after", "")
        return Transient(detail, float(after) if after.replace(".", "", 1).isdigit() else None,
                         status=status)
    return Permanent(detail)


def note_html(transcript: Transcript) -> str:
    """The note's body: what the conversation was, who answered, every line, a link back."""
    e = html.escape
    head = (f"<p><strong>{e(transcript.subject or 'Conversation')}</strong> · "
            f"{e(transcript.channel)} · {e(transcript.inbox)}"
            + (f" · answered by {e(transcript.agent)}" if transcript.agent else "")
            + f"<br>{transcript.opened_at:%Y-%m-%d %H:%M} to "
              f"{transcript.resolved_at:%Y-%m-%d %H:%M} UTC · "
              f"<a href=\"{e(transcript.link)}\">open in Switchboard</a></p>")
    lines = "".join(f"<p><em>{line.at:%H:%M}</em> <strong>{e(line.who)}</strong>: "
                    f"{e(line.text)}</p>" for line in transcript.lines)
    return head + lines + f"<p>Switchboard ref {e(transcript.reference)}</p>"
