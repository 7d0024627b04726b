"""Normalising identities so one person on several channels resolves to one contact."""

from __future__ import annotations

import re

import phonenumbers

from hub.types import Identity


class InvalidIdentity(ValueError):
    """A phone number or email address that cannot be normalised."""


def normalize_phone(raw: str, default_region: str | None = None) -> str:
    """E.164 form of a phone number ('whatsapp:+44 20…' and '+442…' give the same)."""
    value = raw.strip()
    if ":" in value:  # channel prefixes such as whatsapp: or sms:
        value = value.split(":", 1)[1]
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentity(f"not a phone number: {raw!r}") from exc
    if not phonenumbers.is_possible_number(number):
        raise InvalidIdentity(f"not a possible phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# RFC 5322 atext, plus any non-ASCII character (RFC 6532) and dots anywhere: some mobile
# carriers handed out addresses such as "taro..yamada.@" that mail servers accept.
_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.\u0080-\U0010ffff]+")
_QUOTED = re.compile(r'"(?:[^"\\\x00-\x1f\x7f]|\\[^\x00-\x1f\x7f])*"')
_LABEL = re.compile(r"(?!-)[\w-]{1,63}(?<!-)")
_LITERAL = re.compile(r"\[(?:\d{1,3}(?:\.\d{1,3}){3}|ipv6:[0-9a-f:.]{2,45})\]")
MAX_EMAIL = 254  # RFC 5321's limit on a path


def normalize_email(raw: str, *, local_domains: bool = False) -> str:
    """Lower-cased address; refuses what is plainly not an address.

    Quoted local parts ("Lottery transfer"@example.com) and address literals are valid
    everywhere. A domain without a dot (an intranet host, localhost) only with
    `local_domains`: a mail server delivered it, whereas a person typing "ada@gmail" made
    a typo.
    """
    value = raw.strip().lower()
    local, sep, domain = value.rpartition("@")
    domain = domain.removesuffix(".")
    labels = domain.split(".")
    valid = (
        bool(sep) and 0 < len(value) <= MAX_EMAIL and 0 < len(local) <= 64
        and (_ATEXT.fullmatch(local) is not None or _QUOTED.fullmatch(local) is not None)
        and (
            _LITERAL.fullmatch(domain) is not None
            or (all(_LABEL.fullmatch(label) for label in labels)
                and (len(labels) > 1 or local_domains) and not domain.isdigit())
        )
    )
    if not valid:
        raise InvalidIdentity(f"not an email address: {raw!r}")
    return f"{local}@{domain}"


def phone_identity(raw: str, display_name: str | None = None) -> Identity:
    """A phone identity with the number in E.164."""
    return Identity(kind="phone", value=normalize_phone(raw), display_name=display_name)


def email_identity(
    raw: str, display_name: str | None = None, *, local_domains: bool = False
) -> Identity:
    """An email identity with the address lower-cased (see normalize_email)."""
    return Identity(kind="email", value=normalize_email(raw, local_domains=local_domains),
                    display_name=display_name)
