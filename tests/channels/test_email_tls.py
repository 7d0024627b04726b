"""TLS of the email channel against real servers with a private CA made for the test.

Dovecot offers STARTTLS and implicit TLS (and logs whether a login was over TLS); aiosmtpd
requires STARTTLS (or speaks implicit TLS) and a login. The poller and the sender must verify
the server against the inbox's `tls_ca_file`, and refuse a server signed by another CA clearly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from channels.base import PermanentSendError
from channels.email import EmailChannel
from channels.email.imap import ImapPoller
from config import Settings
from hub.types import Identity, InboundMessage, OutboundMessage, StatusUpdate
from inbox.channel_state import InboxChannelState
from inbox.models import Message
from tests.channels.test_email_imap import Mailbox, mail, mailbox, open_mailbox
from tests.helpers import eventually
from tests.mail_services import DovecotServer, SmtpRecorder, TlsFiles, make_tls

__all__ = ["mailbox"]  # the plain-server fixture, used here too


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """The servers' CA and certificate."""
    return make_tls(tmp_path_factory.mktemp("tls"), "servers")


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA that signed nothing the servers present."""
    return make_tls(tmp_path_factory.mktemp("other"), "other")


@pytest.fixture
async def tls_mailbox(settings: Settings, tmp_path: Path, tls: TlsFiles) -> AsyncIterator[Mailbox]:
    async with open_mailbox(settings, DovecotServer.start(tmp_path, tls=tls)) as box:
        yield box


@contextlib.asynccontextmanager
async def poller(box: Mailbox, **overrides: Any) -> AsyncIterator[ImapPoller]:
    """An IMAP poller of the mailbox with these settings, running until the block ends."""
    async def emit(item: InboundMessage | StatusUpdate) -> None:
        raise AssertionError(f"nothing should arrive here, got {item}")

    async def deliver(raws: Sequence[bytes]) -> list[InboundMessage | None]:
        raise AssertionError("nothing should be fetched")

    running = ImapPoller({**box.settings, **overrides}, emit=emit, deliver=deliver,
                         state=InboxChannelState(box.ctx.db, inbox_id=box.inbox_id))
    task = asyncio.create_task(running.run())
    try:
        yield running
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _error(running: ImapPoller) -> str:
    """The poller's last error, once it has one."""
    async def seen() -> str | None:
        return running.last_error

    return str(await eventually(seen))


async def test_poller_reads_over_starttls_and_over_implicit_tls(
    tls_mailbox: Mailbox, tls: TlsFiles
) -> None:
    box = tls_mailbox
    server = box.server
    await box.append(mail(1))
    box.start(imap_tls="starttls", imap_port=server.port, tls_ca_file=str(tls.ca))
    await box.stored(1)
    await box.stop()
    await box.append(mail(2, parent=1))
    box.start(imap_tls="ssl", imap_port=server.imaps_port, tls_ca_file=str(tls.ca))
    await box.stored(2)
    assert await box.count(Message, Message.direction == "in") == 2
    # Every login (the two appends', the two pollers') was made over TLS.
    logins = server.logins()
    assert len(logins) >= 4 and all(", TLS," in line for line in logins), logins


async def test_a_server_signed_by_another_ca_is_refused_clearly(
    tls_mailbox: Mailbox, other_ca: TlsFiles
) -> None:
    box, server = tls_mailbox, tls_mailbox.server
    await box.append(mail(1))
    for mode, port in (("starttls", server.port), ("ssl", server.imaps_port)):
        async with poller(box, imap_tls=mode, imap_port=port,
                          tls_ca_file=str(other_ca.ca)) as refused:
            error = await _error(refused)
            assert "IMAP server's certificate is not trusted" in error, error
            assert "tls_ca_file" in error
            assert refused.sessions == 0
    assert await box.count(Message) == 0


async def test_starttls_is_required_once_asked_for(mailbox: Mailbox) -> None:
    """A server without STARTTLS is never used in clear when the inbox says starttls."""
    async with poller(mailbox, imap_tls="starttls") as refused:
        assert "does not offer STARTTLS" in await _error(refused)
        assert refused.sessions == 0


# --------------------------------------------------------------------------- SMTP


@pytest.fixture
def smtp_servers(tls: TlsFiles) -> Iterator[dict[str, SmtpRecorder]]:
    """SMTP with required STARTTLS and login, with implicit TLS and login, and a plain one."""
    users = {"help@acme.test": "smtp-secret"}
    servers = {"starttls": SmtpRecorder(tls=tls, users=users),
               "ssl": SmtpRecorder(tls=tls, implicit_tls=True, users=users),
               "plain": SmtpRecorder()}
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.stop()


def _reply(n: int) -> OutboundMessage:
    return OutboundMessage(message_id=n, conversation_id=2, inbox_id=7, channel="email",
                           recipient=Identity(kind="email", value="ada@example.com"),
                           text=f"Reply {n}", idempotency_key=f"tls-{n}")


async def test_smtp_starttls_implicit_tls_and_login_as_configured(
    smtp_servers: dict[str, SmtpRecorder], tls: TlsFiles, other_ca: TlsFiles
) -> None:
    channel = EmailChannel()
    login = {"from_address": "help@acme.test", "smtp_username": "help@acme.test",
             "smtp_password": "smtp-secret", "tls_ca_file": str(tls.ca)}
    for n, mode in enumerate(("starttls", "ssl")):
        server = smtp_servers[mode]
        settings = {**server.settings(smtp_tls=mode), **login}
        receipt = await channel.send(_reply(n), settings)
        [got] = await server.wait(1)
        assert got.message["Message-ID"] == f"<{receipt.external_id}>"
        assert server.logins == ["help@acme.test"]

    refusals = [
        ({**smtp_servers["starttls"].settings(smtp_tls="starttls"), **login,
          "tls_ca_file": str(other_ca.ca)}, "SMTP server's certificate is not trusted"),
        ({**smtp_servers["ssl"].settings(smtp_tls="ssl"), **login,
          "tls_ca_file": str(other_ca.ca)}, "SMTP server's certificate is not trusted"),
        ({**smtp_servers["plain"].settings(smtp_tls="starttls"), **login},
         "does not offer STARTTLS"),
        ({**smtp_servers["starttls"].settings(smtp_tls="starttls"), **login,
          "smtp_password": "wrong"}, "refused the login: 535"),
        # No TLS, no login offered: the password is never sent in clear.
        ({**smtp_servers["starttls"].settings(smtp_tls="none"), **login},
         "offers no login we can use"),
    ]
    for settings, reason in refusals:
        with pytest.raises(PermanentSendError, match=reason):
            await channel.send(_reply(9), settings)
    assert [len(s.received) for s in smtp_servers.values()] == [1, 1, 0]


def test_tls_settings_are_validated_with_clear_messages(tmp_path: Path, tls: TlsFiles) -> None:
    channel = EmailChannel()
    base = {"imap_host": "imap.acme.test", "smtp_host": "smtp.acme.test"}
    assert channel.check_settings({**base, "imap_tls": "starttls", "smtp_tls": "ssl",
                                   "tls_ca_file": str(tls.ca)}) == []
    assert channel.check_settings({**base, "imap_host": "127.0.0.1", "imap_tls": "none",
                                   "smtp_tls": "none"}) == []  # no SMTP login: no password
    (tmp_path / "junk.pem").write_text("not a certificate")
    problems = channel.check_settings({
        **base, "imap_tls": "tls", "smtp_tls": "none", "smtp_username": "me",
        "smtp_port": "25x", "tls_ca_file": str(tmp_path / "junk.pem")})
    assert problems[0] == "imap_tls: must be ssl (implicit TLS), starttls or none, not 'tls'"
    assert problems[1] == "smtp_port: must be a port number (1-65535)"
    assert problems[2].startswith("smtp_tls: none would send the SMTP password unencrypted")
    assert problems[3].startswith("tls_ca_file: cannot read CA certificates from")
    assert channel.check_settings({**base, "imap_tls": "none"})[0].startswith(
        "imap_tls: none would send the IMAP password unencrypted")
