"""Attachments: files stored in the database, bounded in size, served back to agents safely."""

from __future__ import annotations

import hashlib
import re
import secrets

from sqlmodel.ext.asyncio.session import AsyncSession

from hub.types import AttachmentRef, AttachmentRefused, StoreAttachment
from inbox.agents import Principal
from inbox.db import Database
from inbox.models import Attachment

_UNSAFE_FILENAME = re.compile(r"[^\w.\- ()\[\]+@,]")


def clean_filename(name: str) -> str:
    """A filename safe for a Content-Disposition header and a download dialog."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip().strip(".")
    base = _UNSAFE_FILENAME.sub("_", base)[:200]
    return base or "attachment"


def clean_content_type(value: str) -> str:
    """The media type without parameters, lower-cased; octet-stream when it is not one."""
    media = value.split(";", 1)[0].strip().lower()
    valid = re.fullmatch(r"[a-z0-9.+-]+/[a-z0-9.+-]+", media)
    return media if valid else "application/octet-stream"


def attachment_store(db: Database, *, inbox_id: int, max_bytes: int) -> StoreAttachment:
    """A store that channels call to keep a file for one inbox."""

    async def store(filename: str, content_type: str, data: bytes) -> AttachmentRef:
        if not data:
            raise AttachmentRefused("the file is empty")
        if len(data) > max_bytes:
            raise AttachmentRefused(
                f"the file is {len(data)} bytes; the limit is {max_bytes} bytes"
            )
        row = Attachment(
            id=secrets.token_hex(16),
            inbox_id=inbox_id,
            filename=clean_filename(filename),
            content_type=clean_content_type(content_type),
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            data=data,
        )
        async with db.write() as session:
            session.add(row)
        return AttachmentRef(id=row.id, filename=row.filename, content_type=row.content_type,
                             size=row.size)

    return store


async def load_attachment(
    session: AsyncSession, principal: Principal, attachment_id: str
) -> Attachment | None:
    """The attachment if it exists in an inbox the principal may see."""
    if not re.fullmatch(r"[0-9a-f]{32}", attachment_id):
        return None
    row = await session.get(Attachment, attachment_id)
    if row is None or row.inbox_id not in principal.inbox_ids:
        return None
    return row
