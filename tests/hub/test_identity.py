"""Identity normalisation: every valid address shape accepted, garbage still refused."""

from __future__ import annotations

import pytest

from hub.identity import InvalidIdentity, email_identity, normalize_email


@pytest.mark.parametrize(("raw", "normalised"), [
    ("Ada@Example.COM", "ada@example.com"),
    ('"Lottery transfer"@example.com', '"lottery transfer"@example.com'),
    ('"a\\"b"@example.com', '"a\\"b"@example.com'),
    ("taro..yamada.@docomo.example.ne.jp", "taro..yamada.@docomo.example.ne.jp"),
    ("user@[192.0.2.1]", "user@[192.0.2.1]"),
    ("user@[IPv6:2001:db8::1]", "user@[ipv6:2001:db8::1]"),
    ("jörg@müller.example", "jörg@müller.example"),
    ("x+tag@example.com.", "x+tag@example.com"),
    ("  padded@example.com ", "padded@example.com"),
])
def test_valid_addresses_are_accepted_everywhere(raw: str, normalised: str) -> None:
    assert normalize_email(raw) == normalised
    assert email_identity(raw, "Ada").value == normalised


def test_a_domain_without_a_dot_only_where_a_mail_server_delivered_it() -> None:
    assert normalize_email("scan@printhub", local_domains=True) == "scan@printhub"
    assert normalize_email("Root@LocalHost", local_domains=True) == "root@localhost"
    assert email_identity("scan@printhub", local_domains=True).value == "scan@printhub"
    with pytest.raises(InvalidIdentity):
        normalize_email("ada@gmail")  # typed by a person: a typo, not an intranet host


@pytest.mark.parametrize("raw", [
    "", "plain", "@example.com", "a@", "a b@example.com", "a@exa mple.com", "a@-x.example",
    "a@x..example", "<a@example.com>", "a@b@example.com", 'a"b@example.com',
    '"open@example.com', "a@example.com\r\nBcc: b@example.com", '"a\nb"@example.com',
    "a@123", "x" * 65 + "@example.com", "a@" + "b" * 64 + ".example", '"x" y@example.com',
    "a,b@example.com", "a@example.com\x00", "a@[999.1]", "MAILER-DAEMON",
])
def test_garbage_is_still_refused(raw: str) -> None:
    with pytest.raises(InvalidIdentity):
        normalize_email(raw, local_domains=True)
