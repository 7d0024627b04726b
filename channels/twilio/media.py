"""Downloading the files a Twilio message points at, bounded in size and type.

Twilio's webhook carries only MediaUrlN / MediaContentTypeN; the files are fetched with the
account's credentials (Twilio answers with a redirect to its media store, which httpx follows
without the credentials once the origin changes). A file refused or lost becomes a line of
the message's text, never a lost message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from hub.fetch import TargetRefused, TooLarge, bounded_body
from hub.types import AttachmentRef, AttachmentRefused, InboundMessage, StoreAttachment

log = logging.getLogger("switchboard.channels.twilio")

DEFAULT_API_BASE = "https://api.twilio.com"
MEDIA_MAX_BYTES = 16 * 1024 * 1024  # WhatsApp's own ceiling for media
DOWNLOAD_ATTEMPTS = 3

# What customers send on WhatsApp and MMS; anything else (HTML, SVG, executables) is refused.
ALLOWED_TYPES: dict[str, str] = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
    "audio/ogg": "ogg",
    "audio/mpeg": "mp3",
    "audio/mp4": "m4a",
    "audio/aac": "aac",
    "audio/amr": "amr",
    "video/mp4": "mp4",
    "video/3gpp": "3gp",
    "application/pdf": "pdf",
    "text/vcard": "vcf",
    "text/x-vcard": "vcf",
    "text/csv": "csv",
    "text/plain": "txt",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
}
VCARD_TYPES = frozenset({"text/vcard", "text/x-vcard"})


class _Refused(Exception):
    """One file not taken, with the reason shown to the agent."""


class _Retry(Exception):
    """A download failure worth another try (a 5xx, a rate limit, a dropped connection)."""


def media_type(value: str) -> str:
    """A Content-Type without parameters, lower-cased."""
    return value.split(";", 1)[0].strip().lower()


def api_base(inbox_settings: Mapping[str, Any]) -> str:
    """The Twilio API base URL of an inbox (the real one unless the admin set another)."""
    return str(inbox_settings.get("api_base_url") or DEFAULT_API_BASE).rstrip("/")


async def fetch_media(
    message: InboundMessage,
    inbox_settings: Mapping[str, Any],
    store: StoreAttachment,
    *,
    http: httpx.AsyncClient,
    max_bytes: int,
) -> InboundMessage:
    """The message with its media stored as attachments and the media metadata removed."""
    meta = message.metadata
    try:
        count = int(meta.get("media_count", "0"))
    except ValueError:
        count = 0
    if count <= 0:
        return message
    refs: list[AttachmentRef] = []
    notes: list[str] = []
    for index in range(count):
        url = meta.get(f"media_{index}_url", "")
        declared = media_type(meta.get(f"media_{index}_type", ""))
        try:
            data = await _download(url, declared, inbox_settings, http=http, max_bytes=max_bytes)
            ref = await store(_filename(url, index, declared), declared, data)
        except (_Refused, AttachmentRefused) as exc:
            notes.append(f"[attachment refused: {exc}]")
            continue
        refs.append(ref)
        if declared in VCARD_TYPES:
            notes.append(_contact_line(data))
    text = "\n".join(part for part in (message.text, *notes) if part)
    return message.model_copy(update={
        "text": text,
        "attachments": (*message.attachments, *refs),
        "metadata": {k: v for k, v in meta.items() if not k.startswith("media_")},
    })


async def _download(
    url: str,
    declared: str,
    inbox_settings: Mapping[str, Any],
    *,
    http: httpx.AsyncClient,
    max_bytes: int,
) -> bytes:
    if declared not in ALLOWED_TYPES:
        raise _Refused(f"{declared or 'files of unknown type'} files are not accepted")
    base = urlsplit(api_base(inbox_settings))
    target = urlsplit(url)
    # The account's credentials go to the Twilio API only, whatever a payload names.
    if (target.scheme, target.netloc) != (base.scheme, base.netloc):
        raise _Refused(f"the file is not on the Twilio API ({target.netloc or 'no host'})")
    auth = httpx.BasicAuth(str(inbox_settings.get("account_sid") or ""),
                           str(inbox_settings.get("auth_token") or ""))
    for attempt in range(DOWNLOAD_ATTEMPTS):
        try:
            return await _get(url, declared, auth, http=http, max_bytes=max_bytes)
        except TargetRefused as exc:  # a redirect to an address the policy refuses
            raise _Refused(f"the file may not be fetched from there: {exc}") from None
        except (_Retry, httpx.HTTPError) as exc:
            log.warning("media download failed (attempt %d): %s", attempt + 1, exc)
            if attempt + 1 < DOWNLOAD_ATTEMPTS:
                await asyncio.sleep(0.2 * 2**attempt)
    raise _Refused("Twilio did not hand the file over; it may still be in the Twilio console")


async def _get(
    url: str, declared: str, auth: httpx.BasicAuth, *, http: httpx.AsyncClient, max_bytes: int
) -> bytes:
    # Redirects are followed (Twilio serves files from its CDN), each hop checked again by the
    # outbound policy (hub/fetch.py) and bounded by the client's max_redirects.
    async with http.stream("GET", url, auth=auth, follow_redirects=True,
                           timeout=httpx.Timeout(30.0, connect=5.0)) as response:
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retry(f"Twilio answered {response.status_code}")
        if response.status_code != 200:
            raise _Refused(f"Twilio answered {response.status_code} for the file")
        served = media_type(response.headers.get("content-type", ""))
        if served and served not in (declared, "application/octet-stream") \
                and served not in ALLOWED_TYPES:
            raise _Refused(f"the file was served as {served}, which is not accepted")
        try:
            return await bounded_body(response, max_bytes)
        except TooLarge as exc:
            raise _Refused(str(exc)) from None


def _filename(url: str, index: int, content_type: str) -> str:
    name = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] or f"media-{index}"
    return f"{name[:100]}.{ALLOWED_TYPES.get(content_type, 'bin')}"


def _contact_line(data: bytes) -> str:
    """A shared contact card in words: its name and numbers."""
    name = ""
    phones: list[str] = []
    for raw in data.decode("utf-8", errors="replace").splitlines():
        key, sep, value = raw.partition(":")
        field = key.split(";", 1)[0].strip().upper()
        if not sep or not value.strip():
            continue
        if field == "FN" and not name:
            name = value.strip()[:200]
        elif field == "TEL" and len(phones) < 5:
            phones.append(value.strip()[:40])
    details = ", ".join(phones)
    return f"👤 Contact: {name or 'no name'}" + (f" ({details})" if details else "")
