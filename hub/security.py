"""Security primitives shared by channels and web."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

# Expiring file links: a provider (Twilio fetching a MediaUrl, the api channel's receiver)
# downloads an agent's attachment without a session, only with the link's signature.
FILE_LINK_PATH = "/api/v1/files"
FILE_LINK_SECONDS = 24 * 3600


def constant_time_equal(a: str | bytes, b: str | bytes) -> bool:
    """Compare secrets without leaking where they differ."""
    a_bytes = a.encode() if isinstance(a, str) else a
    b_bytes = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a_bytes, b_bytes)


def _file_signature(key: str, attachment_id: str, expires: int) -> str:
    # Links are signed with a key of their own, derived from the inbox secret: a signature
    # the inbox secret makes for anything else (a webhook, a provider's request) can never
    # pass for a file link, nor the other way round.
    link_key = hmac.new(key.encode(), b"switchboard file links v1", hashlib.sha256).digest()
    payload = f"file:{attachment_id}:{expires}".encode()
    return hmac.new(link_key, payload, hashlib.sha256).hexdigest()


def file_link(
    base_url: str,
    key: str,
    attachment_id: str,
    *,
    seconds: int = FILE_LINK_SECONDS,
    now: float | None = None,
) -> str:
    """A public download link of an attachment, signed with an inbox secret, expiring."""
    expires = int((time.time() if now is None else now) + seconds)
    query = urlencode({"expires": expires,
                       "signature": _file_signature(key, attachment_id, expires)})
    return f"{base_url.rstrip('/')}{FILE_LINK_PATH}/{attachment_id}?{query}"


def file_link_valid(
    key: str, attachment_id: str, expires: str, signature: str, *, now: float | None = None
) -> bool:
    """Whether a download link's signature is right and it has not expired yet."""
    if not key or not expires.isdigit():
        return False
    expected = _file_signature(key, attachment_id, int(expires))
    fresh = int(expires) >= (time.time() if now is None else now)
    return constant_time_equal(signature.lower(), expected) and fresh
