"""Attachments: files stored in the database, bounded in size, served back to agents safely."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.batching import Coalescer
from hub.types import (
    AttachmentRef,
    AttachmentRefused,
    LoadAttachment,
    StoreAttachment,
    utcnow,
)
from inbox.agents import Principal
from inbox.blobs import DATABASE, Blobs, blob_key
from inbox.db import Database, execute
from inbox.models import Attachment, table_of

_INSERT = insert(table_of(Attachment))
_UNSAFE_FILENAME = re.compile(r"[^\w.\- ()\[\]+@,]")
_ATTACHMENT_ID = re.compile(r"[0-9a-f]{32}")
# Path separators and control characters: an uploaded name with them is refused, not fixed.
_REFUSED_IN_UPLOAD = re.compile(r"[/\\\x00-\x1f\x7f]")


def clean_filename(name: str) -> str:
    """A filename safe for a Content-Disposition header and a download dialog."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip().strip(".")
    base = _UNSAFE_FILENAME.sub("_", base)[:200]
    return base or "attachment"


def upload_filename(name: str | None) -> str:
    """The stored name of a file an agent uploads; AttachmentRefused when missing or unsafe."""
    given = (name or "").strip()
    if not given:
        raise AttachmentRefused("filename: required (?filename=report.pdf)")
    if len(given) > 255 or _REFUSED_IN_UPLOAD.search(given) or given.strip(".") == "":
        raise AttachmentRefused(
            "filename: must be a plain file name (no path, no control characters, "
            "at most 255 characters)")
    return clean_filename(given)


def clean_content_type(value: str) -> str:
    """The media type without parameters, lower-cased; octet-stream when it is not one."""
    media = value.split(";", 1)[0].strip().lower()
    valid = re.fullmatch(r"[a-z0-9.+-]+/[a-z0-9.+-]+", media)
    return media if valid else "application/octet-stream"


def attachment_store(
    db: Database, blobs: Blobs, *, inbox_id: int, max_bytes: int
) -> StoreAttachment:
    """A store that channels call to keep a file for one inbox.

    Outside the database (SWITCHBOARD_ATTACHMENT_STORAGE), the bytes are written first and
    the row after, so a row always has its bytes; BlobError when the store refuses them.
    """

    async def store(filename: str, content_type: str, data: bytes) -> AttachmentRef:
        if not data:
            raise AttachmentRefused("the file is empty")
        if len(data) > max_bytes:
            raise AttachmentRefused(
                f"the file is {len(data)} bytes; the limit is {max_bytes} bytes"
            )
        attachment_id = secrets.token_hex(16)
        row: dict[str, Any] = {
            "id": attachment_id,
            "inbox_id": inbox_id,
            "filename": clean_filename(filename),
            "content_type": clean_content_type(content_type),
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "storage": blobs.writes_to,
            "data": data,
            "created_at": utcnow(),
        }
        if blobs.writes_to != DATABASE:
            await blobs.store(blobs.writes_to).put(blob_key(attachment_id), data)
            row["data"] = b""
        return await writer.submit(row)

    async def write(rows: Sequence[dict[str, Any]]) -> list[AttachmentRef]:
        # One prebuilt INSERT for the whole batch: no ORM objects for files that are only
        # written here.
        async with db.write() as session:
            await execute(session, _INSERT, list(rows))
        return [AttachmentRef(id=r["id"], filename=r["filename"],
                              content_type=r["content_type"], size=r["size"]) for r in rows]

    # Files stored at once (a fetched batch of mail) share one transaction.
    writer: Coalescer[dict[str, Any], AttachmentRef] = Coalescer(write, max_batch=200)
    return store


def attachment_loader(db: Database, blobs: Blobs) -> LoadAttachment:
    """What channels that carry files themselves call to read a stored file's bytes."""

    async def load(attachment_id: str) -> bytes:
        async with db.read() as session:
            found = (await session.exec(
                select(Attachment.storage, Attachment.data)
                .where(Attachment.id == attachment_id))).first()
        if found is None:
            raise LookupError(f"attachment {attachment_id} is not stored")
        return await _bytes(blobs, attachment_id, found[0], found[1])

    return load


async def attachment_bytes(blobs: Blobs, row: Attachment) -> bytes:
    """A stored file's bytes, wherever they are; BlobError when its store fails."""
    return await _bytes(blobs, row.id, row.storage, row.data)


async def _bytes(blobs: Blobs, attachment_id: str, storage: str, data: bytes) -> bytes:
    if storage == DATABASE:
        return bytes(data)
    return await blobs.store(storage).get(blob_key(attachment_id))


async def inbox_attachments(
    session: AsyncSession, *, inbox_id: int, ids: list[str]
) -> tuple[list[AttachmentRef], list[str]]:
    """References of the files of one inbox among `ids` (in order), and the ids that are not."""
    wanted = list(dict.fromkeys(ids))
    valid = [i for i in wanted if _ATTACHMENT_ID.fullmatch(i)]
    rows = (await session.exec(
        select(Attachment.id, Attachment.filename, Attachment.content_type, Attachment.size)
        .where(col(Attachment.id).in_(valid), Attachment.inbox_id == inbox_id)
    )).all() if valid else []
    found = {row[0]: AttachmentRef(id=row[0], filename=row[1], content_type=row[2], size=row[3])
             for row in rows}
    return [found[i] for i in wanted if i in found], [i for i in wanted if i not in found]


async def load_attachment(
    session: AsyncSession, principal: Principal, attachment_id: str
) -> Attachment | None:
    """The attachment if it exists in an inbox the principal may see."""
    row = await attachment_by_id(session, attachment_id)
    if row is None or row.inbox_id not in principal.inbox_ids:
        return None
    return row


async def attachment_by_id(session: AsyncSession, attachment_id: str) -> Attachment | None:
    """The stored file with this id, whoever asks: callers check who may have it."""
    if not _ATTACHMENT_ID.fullmatch(attachment_id):
        return None
    return await session.get(Attachment, attachment_id)
