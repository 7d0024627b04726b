"""Attachments: bounded when stored, downloadable only from visible inboxes, never rendered."""

from __future__ import annotations

import pytest

from hub.types import AttachmentRefused
from inbox.attachments import attachment_store, clean_filename
from inbox.blobs import Blobs
from inbox.db import Database
from tests.helpers import Stack


async def test_store_bounds_and_safe_download(stack: Stack) -> None:
    db = Database(stack.settings.sqlalchemy_url)
    try:
        store = attachment_store(db, Blobs(stack.settings), inbox_id=stack.ids["support"],
                                 max_bytes=1024)
        image = await store("../../etc/photo.png", "image/PNG; name=x", b"\x89PNG" + b"0" * 100)
        page = await store("invoice.html", "text/html", b"<script>alert(1)</script>")
        with pytest.raises(AttachmentRefused, match="limit is 1024"):
            await store("big.bin", "application/octet-stream", b"x" * 1025)
        with pytest.raises(AttachmentRefused, match="empty"):
            await store("empty.txt", "text/plain", b"")
    finally:
        await db.close()
    assert image.filename == "photo.png" and image.content_type == "image/png"

    alice = await stack.login("alice")
    bob = await stack.login("bob")
    shown = await alice.http.get(f"/api/v1/attachments/{image.id}")
    assert shown.status_code == 200 and shown.content.startswith(b"\x89PNG")
    assert shown.headers["content-type"] == "image/png"
    assert shown.headers["content-disposition"].startswith("inline;")
    assert shown.headers["x-content-type-options"] == "nosniff"
    downloaded = await alice.http.get(f"/api/v1/attachments/{page.id}")
    assert downloaded.headers["content-type"] == "application/octet-stream"
    assert downloaded.headers["content-disposition"] == (
        "attachment; filename*=UTF-8''invoice.html")
    assert "sandbox" in downloaded.headers["content-security-policy"]
    assert (await bob.http.get(f"/api/v1/attachments/{image.id}")).status_code == 404
    assert (await alice.http.get("/api/v1/attachments/../../etc")).status_code == 404
    assert (await stack.client().get(f"/api/v1/attachments/{image.id}")).status_code == 401


def test_clean_filename() -> None:
    assert clean_filename("C:\\Users\\me\\report final.pdf") == "report final.pdf"
    assert clean_filename('a"b;c\r\n.txt') == "a_b_c__.txt"
    assert clean_filename("...") == "attachment"
