"""Normalising identities so one person on several channels resolves to one contact."""

from __future__ import annotations

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


def normalize_email(raw: str) -> str:
    """Lower-cased address; refuses what is plainly not an address."""
    value = raw.strip().lower()
    local, sep, domain = value.rpartition("@")
    if not sep or not local or "." not in domain or any(c.isspace() for c in value):
        raise InvalidIdentity(f"not an email address: {raw!r}")
    return value


def phone_identity(raw: str, display_name: str | None = None) -> Identity:
    """A phone identity with the number in E.164."""
    return Identity(kind="phone", value=normalize_phone(raw), display_name=display_name)


def email_identity(raw: str, display_name: str | None = None) -> Identity:
    """An email identity with the address lower-cased."""
    return Identity(kind="email", value=normalize_email(raw), display_name=display_name)
