"""Files agents attach to replies: the upload under /api/v1, and the expiring public links.

An agent uploads a file to a conversation (raw body, its type in Content-Type, its name in
`?filename=`); the answer's id goes into a reply's `attachment_ids`. Providers that fetch
files by link (Twilio's MediaUrl, the api channel's receiver) get
`/api/v1/files/{id}?expires=…&signature=…`, signed with a secret of the attachment's inbox
and checked here in constant time before the file is served.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import quote

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from channels.base import LinksFiles
from hub.security import FILE_LINK_PATH, file_link_valid
from hub.types import AttachmentRefused
from inbox.agents import Principal
from inbox.attachments import (
    attachment_by_id,
    attachment_bytes,
    attachment_store,
    clean_content_type,
    load_attachment,
    upload_filename,
)
from inbox.blobs import BlobError
from inbox.inboxes import inbox_settings
from inbox.queries import visible_conversation
from web.context import web_context
from web.http import HTTPProblem, Operation, authenticated, json_response, not_found, read_body
from web.openapi import Doc

if TYPE_CHECKING:  # row types of what inbox/ returns; web/ never queries
    from inbox.models import Attachment


log = logging.getLogger(__name__)

# Only plain images are shown inline; everything else downloads and never renders here.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


class UploadedFile(BaseModel):
    id: str
    filename: str
    content_type: str
    size: int


async def attachment_response(
    request: Request, row: Attachment, *, cache: str = "private, max-age=3600"
) -> Response:
    """A stored file as a download with safe headers (plain images inline); 503 when the
    store its bytes are in (a directory, an S3 bucket) does not give them."""
    try:
        data = await attachment_bytes(web_context(request).inbox.blobs, row)
    except BlobError as exc:
        log.warning("attachment %s could not be read: %s", row.id, exc)
        raise HTTPProblem(503, "file_unavailable",
                          "the file's storage did not answer; try again shortly") from None
    inline = row.content_type in INLINE_TYPES
    disposition = "inline" if inline else "attachment"
    return Response(
        data,
        media_type=row.content_type if inline else "application/octet-stream",
        headers={
            "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(row.filename)}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": cache,
        },
    )


CONV = "/api/v1/conversations/{conversation_id:id}"


async def upload(request: Request, principal: Principal) -> Response:
    """Upload a file (the raw body) to attach to a reply in this conversation."""
    ctx = web_context(request)
    db = ctx.inbox.db
    max_bytes = ctx.settings.attachment_max_bytes
    conversation_id = int(request.path_params["conversation_id"])
    async with db.read() as session:
        found = await visible_conversation(session, principal, conversation_id)
    if found is None:
        raise HTTPProblem(404, "not_found", "conversation not found")
    try:
        filename = upload_filename(request.query_params.get("filename"))
    except AttachmentRefused as exc:
        raise HTTPProblem(422, "invalid_field", str(exc)) from None
    data = await read_body(request, max_bytes)  # 413 before reading past the limit
    content_type = clean_content_type(request.headers.get("content-type", ""))
    store = attachment_store(db, ctx.inbox.blobs, inbox_id=found.inbox_id, max_bytes=max_bytes)
    try:
        ref = await store(filename, content_type, data)
    except AttachmentRefused as exc:
        raise HTTPProblem(422, "invalid_file", str(exc)) from None
    except BlobError as exc:
        log.warning("an upload could not be stored: %s", exc)
        raise HTTPProblem(503, "storage_unavailable",
                          "the file could not be stored; try again shortly") from None
    return json_response(UploadedFile(**ref.model_dump()), status=201)


async def linked(request: Request) -> Response:
    """A file by its expiring signed link (what providers fetch); 404 when not valid."""
    ctx = web_context(request)
    db = ctx.inbox.db
    attachment_id = request.path_params["attachment_id"]
    q = request.query_params
    async with db.read() as session:
        row = await attachment_by_id(session, attachment_id)
        found = (await inbox_settings(session, row.inbox_id, ctx.inbox.secrets)
                 if row is not None else None)
    adapter = ctx.channels.get(found[0]) if found is not None else None
    key = adapter.file_link_key(found[1]) if isinstance(adapter, LinksFiles) and found else None
    # One answer for unknown, expired and forged links: a link reveals nothing.
    if row is None or not key or not file_link_valid(
        key, attachment_id, q.get("expires", ""), q.get("signature", "")
    ):
        raise HTTPProblem(404, "not_found", "no file at this link (it may have expired)")
    return await attachment_response(request, row, cache="private, no-store")


async def get_attachment(request: Request, principal: Principal) -> Response:
    """Download an attachment of an inbox you may see."""
    ctx = web_context(request)
    db = ctx.inbox.db
    async with db.read() as session:
        row = await load_attachment(session, principal, request.path_params["attachment_id"])
    if row is None:
        raise not_found("attachment")
    return await attachment_response(request, row)


OPERATIONS: list[Operation] = [
    (Doc("GET", "/api/v1/attachments/{attachment_id:str}", "Download an attachment"),
     authenticated(get_attachment)),
    (Doc("POST", CONV + "/attachments",
         "Upload a file to attach to a reply: the raw file as the body, its type as "
         "Content-Type", response=UploadedFile, status=201,
         query=(("filename", "the file's name (required)"),),
         extra_responses={413: "Larger than the attachment limit",
                      422: "Missing or unsafe filename, or an empty file"}),
     authenticated(upload)),
    (Doc("GET", FILE_LINK_PATH + "/{attachment_id:str}",
         "Download a file by an expiring signed link given to a provider", auth=False,
         query=(("expires", "unix time the link stops working"),
            ("signature", "HMAC-SHA256 of the link by a key derived from the inbox's "
                          "secret")),
         extra_responses={404: "No such file, or the link expired or is forged"}),
     linked),
    ]
