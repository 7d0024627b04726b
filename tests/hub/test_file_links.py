"""Expiring file links: their own key, their expiry, one answer for every bad link."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import parse_qs, urlsplit

from hub.security import file_link, file_link_valid


def _query(link: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}


def test_a_link_is_valid_until_it_expires_and_only_for_its_file() -> None:
    now = time.time()
    q = _query(file_link("https://x.example", "inbox-secret", "att-1", seconds=60, now=now))
    assert file_link_valid("inbox-secret", "att-1", q["expires"], q["signature"], now=now)
    assert not file_link_valid("inbox-secret", "att-2", q["expires"], q["signature"], now=now)
    assert not file_link_valid("other-secret", "att-1", q["expires"], q["signature"], now=now)
    assert not file_link_valid("inbox-secret", "att-1", q["expires"], q["signature"],
                               now=now + 61)
    assert not file_link_valid("inbox-secret", "att-1", "not-a-time", q["signature"], now=now)


def test_the_inbox_secret_itself_does_not_sign_links() -> None:
    """A signature made directly with the inbox secret (as webhooks are signed) over the same
    text is no file link: links have a key of their own, derived from the secret."""
    expires = str(int(time.time()) + 60)
    direct = hmac.new(b"inbox-secret", f"file:att-1:{expires}".encode(),
                      hashlib.sha256).hexdigest()
    assert not file_link_valid("inbox-secret", "att-1", expires, direct)
