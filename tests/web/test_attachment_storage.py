"""Attachment bytes in a directory or an S3-compatible bucket (SWITCHBOARD_ATTACHMENT_STORAGE):
stored there and not in the database, served back, older files readable where they are, and
an unreachable store answered with 503 and nothing half-stored.

The bucket is a local S3-compatible server (moto's), reached by the real aiobotocore client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from moto.server import ThreadedMotoServer  # type: ignore[import-untyped]
from pydantic import SecretStr
from sqlmodel import select

from config import Settings
from inbox.attachments import attachment_store
from inbox.blobs import Blobs, blob_key
from inbox.db import Database
from inbox.models import Attachment
from tests.helpers import Stack, running_stack
from tests.services import free_port
from tests.web.test_agent_attachments import _conversation, _upload

BUCKET = "switchboard-files"


@pytest.fixture
def s3_server() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="k",
                 aws_secret_access_key="s").create_bucket(Bucket=BUCKET)
    try:
        yield url
    finally:
        server.stop()


def _s3(url: str) -> Any:
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="k", aws_secret_access_key="s")


@pytest.fixture(params=["directory", "s3"])
async def stored(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
                 ) -> AsyncIterator[tuple[Stack, str]]:
    """A stack writing attachments to a directory or a bucket, and where (path or URL)."""
    if request.param == "directory":
        where = str(tmp_path / "files")
        update: dict[str, Any] = {"attachment_storage": "directory",
                                  "attachment_dir": Path(where)}
    else:
        where = request.getfixturevalue("s3_server")
        update = {"attachment_storage": "s3", "s3_bucket": BUCKET, "s3_endpoint_url": where,
                  "s3_access_key_id": "k", "s3_secret_access_key": SecretStr("s"),
                  "s3_prefix": "sb/"}
    async with running_stack(settings.model_copy(update=update)) as stack:
        yield stack, where


async def _row(stack: Stack, attachment_id: str) -> Attachment:
    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with db.read() as session:
            return (await session.exec(
                select(Attachment).where(Attachment.id == attachment_id))).one()
    finally:
        await db.close()


async def test_files_go_to_the_store_and_come_back(stored: tuple[Stack, str]) -> None:
    stack, where = stored
    kind = stack.settings.attachment_storage
    # A file stored in the database before the setting changed.
    db = Database(stack.settings.sqlalchemy_url)
    try:
        before = await attachment_store(
            db, Blobs(stack.settings.model_copy(update={"attachment_storage": "database"})),
            inbox_id=stack.ids["support"], max_bytes=10_000)("old.txt", "text/plain", b"old")
    finally:
        await db.close()

    conversation_id = await _conversation(stack)
    alice = await stack.login("alice")
    pdf = b"%PDF-1.4 " + bytes(range(256)) * 20
    uploaded = await _upload(alice, conversation_id, pdf, name="report.pdf")
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]

    row = await _row(stack, file_id)
    assert row.storage == kind and row.data == b"" and row.size == len(pdf)
    if kind == "directory":
        assert (Path(where) / blob_key(file_id)).read_bytes() == pdf
    else:
        body = _s3(where).get_object(Bucket=BUCKET, Key="sb/" + blob_key(file_id))["Body"]
        assert body.read() == pdf

    downloaded = await alice.http.get(f"/api/v1/attachments/{file_id}")
    assert downloaded.status_code == 200 and downloaded.content == pdf
    old = await alice.http.get(f"/api/v1/attachments/{before.id}")
    assert old.status_code == 200 and old.content == b"old"
    assert (await _row(stack, before.id)).storage == "database"

    # A store that lost the file: a clear 503, not a broken download.
    if kind == "directory":
        (Path(where) / blob_key(file_id)).unlink()
    else:
        _s3(where).delete_object(Bucket=BUCKET, Key="sb/" + blob_key(file_id))
    missing = await alice.http.get(f"/api/v1/attachments/{file_id}")
    assert missing.status_code == 503
    assert missing.json()["error"]["code"] == "file_unavailable"


async def test_an_unreachable_bucket_refuses_the_upload_and_stores_nothing(
    settings: Settings
) -> None:
    port = free_port()  # nothing listens there
    settings = settings.model_copy(update={
        "attachment_storage": "s3", "s3_bucket": BUCKET, "s3_access_key_id": "k",
        "s3_secret_access_key": SecretStr("s"), "s3_endpoint_url": f"http://127.0.0.1:{port}"})
    async with running_stack(settings) as stack:
        conversation_id = await _conversation(stack)
        alice = await stack.login("alice")
        refused = await _upload(alice, conversation_id, b"%PDF-1.4 x", name="a.pdf")
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "storage_unavailable"
        db = Database(stack.settings.sqlalchemy_url)
        try:
            async with db.read() as session:
                assert (await session.exec(select(Attachment))).all() == []
        finally:
            await db.close()
