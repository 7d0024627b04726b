"""Real mail servers for the tests: a private Dovecot (IMAP) and an aiosmtpd SMTP recorder.

Plain helpers (no pytest import), in the style of tests/services.py:

- ``DovecotServer.start(tmp_path)`` runs Debian's dovecot with its own configuration on a
  free loopback port: plaintext login allowed on loopback, users from a passwd file,
  maildirs under tmp_path, every process running as the current user.
- ``SmtpRecorder`` is a real SMTP server (aiosmtpd) on loopback that keeps what it accepts
  and answers with programmed 4xx/5xx replies when told to.
- ``make_tls(tmp_path)`` makes a private CA and a certificate for 127.0.0.1 / localhost
  (openssl); given to either server, it speaks TLS (STARTTLS and implicit) with it.
"""

from __future__ import annotations

import asyncio
import atexit
import grp
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.services import LOOPBACK, free_port

PASSWORD = "imap-test-password"
_live_dovecot: set[DovecotServer] = set()


@dataclass(frozen=True)
class TlsFiles:
    """A private CA and a server certificate signed by it (PEM files)."""

    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        """What a server presents."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client trusting only this CA."""
        return ssl.create_default_context(cafile=str(self.ca))


def make_tls(directory: Path, name: str = "test") -> TlsFiles:
    """A fresh CA and a certificate for 127.0.0.1 and localhost, valid for two days."""
    d = Path(tempfile.mkdtemp(prefix=f"sb-tls-{name}-", dir=directory))
    d.chmod(0o755)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"),
            "-days", "2", "-subj", f"/CN=Switchboard {name} test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-new", *ec, "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"),
            "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n")
    openssl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"),
            "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
            "-out", str(d / "server.pem"), "-extfile", str(d / "ext.cnf"))
    for pem in d.iterdir():
        pem.chmod(0o644)  # dovecot's login processes run as another user
    return TlsFiles(ca=d / "ca.pem", cert=d / "server.pem", key=d / "server.key")


@atexit.register
def _kill_leftover_dovecot() -> None:
    """Kill Dovecot servers a crashed or careless test left running."""
    for server in list(_live_dovecot):
        server.kill()


def find_dovecot() -> str:
    """Return the path of the dovecot binary or raise RuntimeError."""
    for candidate in (shutil.which("dovecot"), "/usr/sbin/dovecot"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("dovecot not found (install it: apt-get install dovecot-imapd)")


class DovecotServer:
    """A private dovecot on a loopback port; users share one password, mail lives in tmp."""

    def __init__(self, tmpdir: Path, port: int, users: tuple[str, ...],
                 tls: TlsFiles | None = None) -> None:
        """Describe a server; start() writes its configuration and runs it.

        With `tls`, it offers STARTTLS on `port` and implicit TLS on `imaps_port` (a login
        before TLS is refused, except from this machine, which Dovecot deems secure).
        """
        # Dovecot's unprivileged processes must reach the sockets and maildirs, and pytest's
        # tmp_path sits in a root-only directory: use a world-traversable directory of our own.
        self.tmpdir = Path(tempfile.mkdtemp(prefix="sb-dovecot-", dir=tmpdir.parent
                                            if os.getuid() != 0 else None))
        self.tmpdir.chmod(0o755)
        self.port = port
        self.users = users
        self.tls = tls
        self.imaps_port = free_port() if tls is not None else 0
        self.binary = find_dovecot()
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, tmpdir: Path, users: tuple[str, ...] = ("support", "sales"),
              tls: TlsFiles | None = None) -> DovecotServer:
        """Configure and launch dovecot on a free port; wait until it greets."""
        last: Exception | None = None
        for _attempt in range(3):  # the probed port can be taken before dovecot binds it
            server = cls(tmpdir, free_port(), users, tls)
            try:
                server._launch()
            except RuntimeError as exc:
                last = exc
                continue
            return server
        raise RuntimeError(f"could not start dovecot: {last}")

    @property
    def config_path(self) -> Path:
        """The dovecot.conf of this server."""
        return self.tmpdir / "dovecot.conf"

    def maildir(self, user: str) -> Path:
        """The Maildir of a user (INBOX at its top)."""
        return self.tmpdir / "home" / user / "Maildir"

    def settings(self, user: str, **extra: Any) -> dict[str, Any]:
        """Email inbox settings (IMAP part) that reach this server as `user`."""
        return {"imap_host": LOOPBACK, "imap_port": self.port, "imap_tls": "none",
                "imap_username": user, "imap_password": PASSWORD, **extra}

    def _write_config(self) -> None:
        if os.getuid() == 0:
            # Dovecot refuses to run its login and mail processes as root.
            me, login, group = "dovecot", "dovenull", "dovecot"
        else:
            me = login = pwd.getpwuid(os.getuid()).pw_name
            group = grp.getgrgid(os.getgid()).gr_name
        uid, gid = pwd.getpwnam(me).pw_uid, grp.getgrnam(group).gr_gid
        for sub in ("run", "state", "home"):
            (self.tmpdir / sub).mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:
            os.chown(self.tmpdir / "home", uid, gid)
        (self.tmpdir / "passwd").write_text(
            "".join(f"{user}:{{PLAIN}}{PASSWORD}::::::\n" for user in self.users)
        )
        tls = "ssl = no\ndisable_plaintext_auth = no" if self.tls is None else (
            f"ssl = required\nssl_cert = <{self.tls.cert}\nssl_key = <{self.tls.key}\n"
            "disable_plaintext_auth = yes")
        self.config_path.write_text(f"""
protocols = imap
listen = {LOOPBACK}
base_dir = {self.tmpdir}/run
state_dir = {self.tmpdir}/state
log_path = {self.tmpdir}/dovecot.log
{tls}
auth_mechanisms = plain login
default_internal_user = {me}
default_internal_group = {group}
default_login_user = {login}
first_valid_uid = 0
mail_location = maildir:~/Maildir
mail_uid = {uid}
mail_gid = {gid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {self.tmpdir}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.tmpdir}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = {LOOPBACK}
    port = {self.port}
  }}
  inet_listener imaps {{
    address = {LOOPBACK}
    port = {self.imaps_port}
  }}
  user = {login}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
protocol imap {{
  imap_idle_notify_interval = 1 secs
}}
""")

    def _launch(self, timeout: float = 15.0) -> None:
        self._write_config()
        self.proc = subprocess.Popen(
            [self.binary, "-F", "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _live_dovecot.add(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._reap()
                raise RuntimeError(f"dovecot exited: {self._log_tail()}")
            if self.greets():
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"dovecot did not greet: {self._log_tail()}")

    def greets(self) -> bool:
        """True when the IMAP port answers with a greeting."""
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=0.5) as sock:
                return sock.recv(64).startswith(b"* OK")
        except OSError:
            return False

    def kill(self) -> None:
        """Kill dovecot and its children with SIGKILL, as a crash or a cut line would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        """Stop dovecot (master and its children)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._reap()

    def restart(self, timeout: float = 15.0) -> None:
        """Start again on the same port after kill() or stop()."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._launch(max(1.0, deadline - time.monotonic()))
                return
            except RuntimeError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)

    def reset_uidvalidity(self, user: str) -> None:
        """Make the server give INBOX a new UIDVALIDITY and renumber its mail from 1."""
        for name in ("dovecot-uidlist", "dovecot.index", "dovecot.index.cache",
                     "dovecot.index.log", "dovecot.index.log.2"):
            (self.maildir(user) / name).unlink(missing_ok=True)
        # UIDVALIDITY is a timestamp: make sure the new one differs from the old.
        time.sleep(1.1)

    def _reap(self) -> None:
        if self.proc is not None:
            self.proc.wait()
        self.proc = None
        _live_dovecot.discard(self)

    def remove(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def logins(self) -> list[str]:
        """Dovecot's log lines of successful logins ("TLS" in those made over TLS)."""
        text = (self.tmpdir / "dovecot.log").read_text(errors="replace")
        return [line for line in text.splitlines() if "imap-login: Info: Login:" in line]

    def _log_tail(self, lines: int = 8) -> str:
        try:
            text = (self.tmpdir / "dovecot.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])


async def imap_append(
    server: DovecotServer, user: str, raw: bytes, folder: str = "INBOX",
    *, arrived: datetime | None = None,
) -> None:
    """Deliver one message into a user's folder over IMAP APPEND, as an MTA would file it
    (`arrived`: its internal date, when not now)."""
    import aioimaplib

    if server.tls is not None:  # it takes no login before TLS
        client = aioimaplib.IMAP4_SSL(host=LOOPBACK, port=server.imaps_port, timeout=10,
                                      ssl_context=server.tls.client_context())
    else:
        client = aioimaplib.IMAP4(host=LOOPBACK, port=server.port, timeout=10)
    await client.wait_hello_from_server()
    await client.login(user, PASSWORD)
    answer = await client.append(raw, mailbox=folder, date=arrived)
    assert answer.result == "OK", answer
    await client.logout()


async def imap_append_many(
    server: DovecotServer, user: str, raws: list[bytes], folder: str = "INBOX"
) -> None:
    """Deliver many messages over one IMAP connection, in order."""
    import aioimaplib

    client = aioimaplib.IMAP4(host=LOOPBACK, port=server.port, timeout=30)
    await client.wait_hello_from_server()
    await client.login(user, PASSWORD)
    for raw in raws:
        answer = await client.append(raw, mailbox=folder)
        assert answer.result == "OK", answer
    await client.logout()


@dataclass
class Received:
    """One message the SMTP recorder accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        """The parsed message."""
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class SmtpRecorder:
    """An aiosmtpd server on loopback that records mail and can be told to refuse it."""

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)  # queued replies to DATA, e.g. "451 ..."
    # With tls: STARTTLS required (or implicit TLS); with users: a login (kept in logins).
    tls: TlsFiles | None = None
    implicit_tls: bool = False
    users: dict[str, str] = field(default_factory=dict)
    logins: list[str] = field(default_factory=list)
    _controller: Controller | None = None

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, data: Any) -> AuthResult:
        """Check a login against `users`; remember who logged in."""
        ok = (isinstance(data, LoginPassword)
              and self.users.get(data.login.decode()) == data.password.decode())
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok, handled=False)

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        """Record the message, or answer with the next programmed reply."""
        if self.answers:
            return self.answers.pop(0)
        content = envelope.content
        data = content if isinstance(content, bytes) else (content or "").encode()
        self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), data))
        return "250 OK queued"

    def start(self) -> None:
        """Serve in aiosmtpd's own thread."""
        options: dict[str, Any] = {}
        if self.tls is not None:
            context = self.tls.server_context()
            if self.implicit_tls:
                options["ssl_context"] = context
            else:
                options |= {"tls_context": context, "require_starttls": True}
        if self.users:
            # aiosmtpd only knows STARTTLS as TLS: over implicit TLS it cannot require the
            # login (it would warn), so there `logins` tells whether one happened.
            options |= {"authenticator": self._authenticate,
                        "auth_required": not self.implicit_tls,
                        "auth_require_tls": not self.implicit_tls}
        self._controller = Controller(self, hostname=LOOPBACK, port=self.port, **options)
        self._controller.start()

    def stop(self) -> None:
        """Stop serving."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def settings(self, **extra: Any) -> dict[str, Any]:
        """Email inbox settings (SMTP part) that reach this server."""
        return {"smtp_host": LOOPBACK, "smtp_port": self.port, "smtp_tls": "none", **extra}

    async def wait(self, count: int, timeout: float = 15) -> list[Received]:
        """Wait until `count` messages arrived."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} mails, got {len(self.received)}")
            await asyncio.sleep(0.02)
        return self.received
