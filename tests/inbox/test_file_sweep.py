"""The attachment store's sweep: files no attachment row points at (a process stopped between
writing a file and committing its row) are found, and removed only when asked; files with
a row, files too young to judge and files Switchboard did not write are never touched.

The bucket is a local S3-compatible server (moto's), reached by the real aiobotocore client.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from config import Settings
from hub.types import utcnow
from inbox import blobs as blobs_module
from inbox.blobs import Blobs, BlobStore, blob_key
from inbox.db import Database
from inbox.housekeeping import sweep_files
from inbox.models import Attachment, Inbox
from tests.web.test_attachment_storage import BUCKET, _s3, s3_server  # noqa: F401 (fixture)

DAY = timedelta(days=1)
KEPT, LOST, YOUNG = "a1" * 16, "b2" * 16, "c3" * 16


@pytest.fixture(params=["directory", "s3"])
async def store(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
                ) -> AsyncIterator[tuple[Settings, BlobStore]]:
    if request.param == "directory":
        settings = settings.model_copy(update={"attachment_storage": "directory",
                                               "attachment_dir": tmp_path / "files"})
    else:
        url = request.getfixturevalue("s3_server")
        settings = settings.model_copy(update={
            "attachment_storage": "s3", "s3_bucket": BUCKET, "s3_endpoint_url": url,
            "s3_access_key_id": "k", "s3_secret_access_key": SecretStr("s"),
            "s3_prefix": "sb/"})
    blobs = Blobs(settings)
    try:
        yield settings, blobs.store(settings.attachment_storage)
    finally:
        await blobs.close()


async def _attachment_row(db: Database, attachment_id: str) -> None:
    async with db.write() as session:
        inbox = Inbox(name="Mail", channel="email")
        session.add(inbox)
        await session.flush()
        assert inbox.id
        session.add(Attachment(id=attachment_id, inbox_id=inbox.id, filename="a.pdf",
                               content_type="application/pdf", size=5, sha256="0" * 64,
                               storage="directory", data=b""))


async def _keys(store: BlobStore, settings: Settings) -> set[str]:
    if store.kind == "directory":
        root = settings.attachment_dir
        assert root
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    listed = _s3(str(settings.s3_endpoint_url)).list_objects_v2(Bucket=BUCKET)
    return {item["Key"] for item in listed.get("Contents", [])}


async def _put_foreign(store: BlobStore, settings: Settings, key: str) -> None:
    """A file someone else keeps beside Switchboard's (same directory, same bucket)."""
    if store.kind == "directory":
        assert settings.attachment_dir
        path = settings.attachment_dir / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not ours")
    else:
        _s3(str(settings.s3_endpoint_url)).put_object(Bucket=BUCKET, Key=key, Body=b"not ours")


def _age(store: BlobStore, settings: Settings, keys: list[str]) -> None:
    """Make files two days old (a directory's mtime; a bucket's dates cannot be changed,
    so its test sweeps with a cut-off in the future instead)."""
    if store.kind == "directory":
        assert settings.attachment_dir
        old = time.time() - 2 * 86400
        for key in keys:
            os.utime(settings.attachment_dir / key, (old, old))


async def test_only_old_files_without_a_row_are_swept(
    store: tuple[Settings, BlobStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, files = store
    monkeypatch.setattr(blobs_module, "LIST_PAGE", 2)  # several pages, and S3 deletes
    db = Database(settings.sqlalchemy_url)
    try:
        await _attachment_row(db, KEPT)
        for attachment_id in (KEPT, LOST):
            await files.put(blob_key(attachment_id), b"bytes")
        more_lost = [f"{n:02x}" + f"{n:02x}" * 15 for n in range(3)]
        for attachment_id in more_lost:
            await files.put(blob_key(attachment_id), b"12345678")
        temporary = "b2/.part-x1y2z3"
        stray = ["notes/readme.txt", "b2/" + LOST + ".bak"]
        if files.kind == "directory":
            await _put_foreign(files, settings, temporary)  # what a killed put leaves
        for key in stray:
            await _put_foreign(files, settings, key if files.kind == "directory" else "sb/" + key)
        if files.kind == "directory":
            await _put_foreign(files, settings, blob_key(YOUNG))  # written a moment ago
            _age(files, settings, [blob_key(KEPT), blob_key(LOST), temporary, *stray,
                                   *(blob_key(i) for i in more_lost)])
            older_than = DAY
        else:  # moto dates objects when they are put; the sweep cut-off goes past them
            await asyncio.sleep(1.1)
            before = utcnow()
            await asyncio.sleep(1.1)
            await _put_foreign(files, settings, "sb/" + blob_key(YOUNG))  # after the cut-off
            older_than = timedelta(hours=1)
            monkeypatch.setattr("inbox.housekeeping.utcnow",
                                lambda: before + older_than)
        everything = await _keys(files, settings)

        found = await sweep_files(db, files, older_than=older_than, delete=False)
        lost = 1 + len(more_lost) + (files.kind == "directory")  # the temporary file too
        assert (found.unreferenced, found.deleted) == (lost, 0)
        assert found.looked_at == lost + 1  # and the one kept
        assert found.unreferenced_bytes == 5 + 8 * len(more_lost) + 8 * (
            files.kind == "directory")
        assert await _keys(files, settings) == everything  # a report changes nothing

        found = await sweep_files(db, files, older_than=older_than, delete=True)
        assert found.deleted == lost
        prefix = "" if files.kind == "directory" else "sb/"
        gone = {prefix + blob_key(LOST), *(prefix + blob_key(i) for i in more_lost)}
        if files.kind == "directory":
            gone.add(temporary)
        assert await _keys(files, settings) == everything - gone
        assert await files.get(blob_key(KEPT)) == b"bytes"  # its row still reads it

        again = await sweep_files(db, files, older_than=older_than, delete=True)
        assert (again.unreferenced, again.deleted) == (0, 0)
        with pytest.raises(ValueError, match="at least"):
            await sweep_files(db, files, older_than=timedelta(minutes=5), delete=True)
    finally:
        await db.close()


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub.cli", "attachments", "sweep", *args],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env}, cwd=Path(__file__).resolve().parents[2])


def test_the_command_reports_then_deletes(tmp_path: Path) -> None:
    files = tmp_path / "files"
    env = {"SWITCHBOARD_DATA_DIR": str(tmp_path / "var"), "SWITCHBOARD_DATABASE_URL": "",
           "SWITCHBOARD_ATTACHMENT_STORAGE": "directory",
           "SWITCHBOARD_ATTACHMENT_DIR": str(files)}
    assert subprocess.run([sys.executable, "-m", "hub.cli", "migrate"], env={**os.environ, **env},
                          capture_output=True, timeout=60).returncode == 0
    lost = files / blob_key(LOST)
    lost.parent.mkdir(parents=True)
    lost.write_bytes(b"bytes")
    old = time.time() - 2 * 86400
    os.utime(lost, (old, old))

    reported = _cli(env=env)
    assert reported.returncode == 0, reported.stderr
    assert "1 unreferenced (5 bytes)" in reported.stdout and "--delete" in reported.stdout
    assert lost.exists()
    kept = _cli("--older-than-hours", "72", env=env)  # not old enough to judge
    assert "0 unreferenced" in kept.stdout and lost.exists()
    deleted = _cli("--delete", env=env)
    assert deleted.returncode == 0 and "deleted 1 file(s)" in deleted.stdout
    assert not lost.exists()

    refused = _cli("--older-than-hours", "0.5", env=env)
    assert refused.returncode == 2 and "at least" in refused.stderr
    in_database = _cli(env={**env, "SWITCHBOARD_ATTACHMENT_STORAGE": "database"})
    assert in_database.returncode == 2 and "--store" in in_database.stderr
    no_bucket = _cli("--store", "s3", env=env)
    assert no_bucket.returncode == 2 and "SWITCHBOARD_S3_BUCKET" in no_bucket.stderr
