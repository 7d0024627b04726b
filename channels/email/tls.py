"""TLS of the mail connections: the mode each side uses, whom it trusts, and clear refusals.

Both sides take `ssl` (implicit TLS), `starttls` (plain connection upgraded before login) or
`none` (no encryption: only for a server on this machine, since the password would travel
in clear). Certificates are verified against the system's CAs plus, when the inbox sets
`tls_ca_file`, the CA certificates in that PEM file (a company's private CA).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

MODES = ("ssl", "starttls", "none")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_MODE_WORDS = "ssl (implicit TLS), starttls or none"


class TlsRefused(Exception):
    """A TLS set-up that cannot work: a wrong mode, an untrusted certificate, no STARTTLS."""


def tls_mode(settings: Mapping[str, Any], name: str, default: str) -> str:
    """The inbox's mode for one side (`imap_tls` or `smtp_tls`); TlsRefused when unknown."""
    mode = str(settings.get(name) or default).strip().lower()
    if mode not in MODES:
        raise TlsRefused(f"{name}: must be {_MODE_WORDS}, not {mode!r}")
    return mode


def client_context(settings: Mapping[str, Any]) -> ssl.SSLContext:
    """A context that verifies the server: system CAs, plus those of `tls_ca_file`."""
    context = ssl.create_default_context()
    ca_file = str(settings.get("tls_ca_file") or "")
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise TlsRefused(f"tls_ca_file: cannot read CA certificates from {ca_file}: "
                             f"{exc}") from None
    return context


def untrusted(exc: BaseException, server: str) -> TlsRefused | None:
    """A clear refusal when `exc` (or its cause) is a failed certificate check, else None."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            why = seen.verify_message or str(seen)
            return TlsRefused(
                f"the {server} server's certificate is not trusted ({why}); if a private CA "
                "signed it, give that CA's certificate in tls_ca_file")
        seen = seen.__cause__ or seen.__context__
    return None


def check_tls_settings(settings: Mapping[str, Any]) -> list[str]:
    """Problems with an email inbox's TLS and port settings, one line each."""
    problems: list[str] = []
    for side, default, host_key, login_key in (
        ("imap", "ssl", "imap_host", "imap_username"),
        ("smtp", "starttls", "smtp_host", "smtp_username"),
    ):
        try:
            mode = tls_mode(settings, f"{side}_tls", default)
        except TlsRefused as exc:
            problems.append(str(exc))
            continue
        port = settings.get(f"{side}_port")
        if port not in (None, "") and not (str(port).isdigit() and 0 < int(port) < 65536):
            problems.append(f"{side}_port: must be a port number (1-65535)")
        host = str(settings.get(host_key) or "").strip().lower().strip("[]")
        logs_in = side == "imap" or bool(settings.get(login_key))
        if mode == "none" and logs_in and host and host not in LOOPBACK_HOSTS:
            problems.append(
                f"{side}_tls: none would send the {side.upper()} password unencrypted; it is "
                "allowed only for a server on this machine (127.0.0.1, ::1, localhost)")
    if settings.get("tls_ca_file"):
        try:
            client_context(settings)
        except TlsRefused as exc:
            problems.append(str(exc))
    return problems
