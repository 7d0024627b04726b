"""Where attachment bytes live: in the database (the default), a directory, or an
S3-compatible object store (AWS S3, MinIO, Ceph, Cloudflare R2...), chosen by
SWITCHBOARD_ATTACHMENT_STORAGE.

Each attachment row records where its bytes went (`attachments.storage`), so changing the
setting applies to new files and every older one stays readable where it is. A file is
written to its store before its row is committed: a row never points at nothing (a crash in
between leaves an unreferenced file, never a broken attachment).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from config.settings import Settings

DATABASE, DIRECTORY, S3 = "database", "directory", "s3"


class BlobError(Exception):
    """A file could not be written to or read from its store."""


@dataclass(frozen=True)
class Listed:
    """A key found in a store, with its size in bytes."""

    key: str
    size: int


# What Switchboard itself writes: attachment keys (blob_key), and a directory's temporary
# files (DirectoryStore.put). Anything else in a store is someone else's and never listed.
_OURS = re.compile(r"[0-9a-f]{2}/(?:[0-9a-f]{32}|\.part-[^/]+)")
LIST_PAGE = 1000


class BlobStore(Protocol):
    """Bytes by key, outside the database."""

    kind: str

    async def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key` (a new key each time: never overwritten)."""

    async def get(self, key: str) -> bytes:
        """The bytes under `key`; BlobError when they are not there."""

    def listing(self, before: datetime) -> AsyncIterator[list[Listed]]:
        """Pages of the keys Switchboard wrote that were last changed before `before`
        (timezone-aware)."""

    async def delete(self, keys: list[str]) -> None:
        """Remove these keys (those already gone are no error)."""

    async def close(self) -> None:
        """Let go of connections."""


def blob_key(attachment_id: str) -> str:
    """Where an attachment's bytes go: spread over 256 folders by the id's first byte."""
    return f"{attachment_id[:2]}/{attachment_id}"


class DirectoryStore:
    """Files under a directory (a local disk or a mounted network volume)."""

    kind = DIRECTORY

    def __init__(self, root: Path) -> None:
        self.root = root

    async def put(self, key: str, data: bytes) -> None:
        """Write to a temporary file, flush it to disk, then rename: whole or absent."""
        await asyncio.to_thread(self._put, key, data)

    def _put(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    async def get(self, key: str) -> bytes:
        """The file's bytes."""
        try:
            return await asyncio.to_thread((self.root / key).read_bytes)
        except FileNotFoundError:
            raise BlobError(f"{key} is not in {self.root}") from None

    async def listing(self, before: datetime) -> AsyncIterator[list[Listed]]:
        """The files under the root's 256 folders, a folder at a time, in pages."""
        if not self.root.is_dir():
            return
        cutoff = before.timestamp()
        for folder in sorted(await asyncio.to_thread(os.listdir, self.root)):
            found = await asyncio.to_thread(self._list, folder, cutoff)
            for start in range(0, len(found), LIST_PAGE):
                yield found[start:start + LIST_PAGE]

    def _list(self, folder: str, cutoff: float) -> list[Listed]:
        found = []
        with contextlib.suppress(NotADirectoryError, FileNotFoundError), \
                os.scandir(self.root / folder) as entries:
            for entry in entries:
                key = f"{folder}/{entry.name}"
                if _OURS.fullmatch(key) and entry.is_file(follow_symlinks=False):
                    stat = entry.stat(follow_symlinks=False)
                    if stat.st_mtime < cutoff:
                        found.append(Listed(key, stat.st_size))
        return found

    async def delete(self, keys: list[str]) -> None:
        """Unlink the files."""
        def unlink() -> None:
            for key in keys:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.root / key)

        await asyncio.to_thread(unlink)

    async def close(self) -> None:
        """Nothing to let go of."""


class S3Store:
    """Objects in a bucket of an S3-compatible store, through aiobotocore (the asyncio
    flavour of botocore, AWS's own client: signatures, retries, every provider's quirks)."""

    kind = S3

    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix
        self._settings = settings
        self._client: Any = None
        self._context: Any = None
        self._lock = asyncio.Lock()

    async def _s3(self) -> Any:
        async with self._lock:
            if self._client is None:
                from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
                from aiobotocore.session import get_session  # type: ignore[import-untyped]

                s = self._settings
                self._context = get_session().create_client(
                    "s3", region_name=s.s3_region, endpoint_url=s.s3_endpoint_url or None,
                    aws_access_key_id=s.s3_access_key_id or None,
                    aws_secret_access_key=s.s3_secret_access_key.get_secret_value() or None,
                    config=AioConfig(retries={"max_attempts": 4, "mode": "standard"},
                                     connect_timeout=10, read_timeout=60,
                                     s3={"addressing_style": "path"}))
                self._client = await self._context.__aenter__()
            return self._client

    async def put(self, key: str, data: bytes) -> None:
        """PUT the object (its MD5 checked by the store, as botocore sends it)."""
        s3 = await self._s3()
        try:
            await s3.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)
        except Exception as exc:
            raise BlobError(f"storing {key} in bucket {self.bucket} failed: {exc}") from exc

    async def get(self, key: str) -> bytes:
        """GET the object's bytes."""
        s3 = await self._s3()
        try:
            found = await s3.get_object(Bucket=self.bucket, Key=self.prefix + key)
            async with found["Body"] as body:
                data: bytes = await body.read()
                return data
        except Exception as exc:
            raise BlobError(f"reading {key} from bucket {self.bucket} failed: {exc}") from exc

    async def listing(self, before: datetime) -> AsyncIterator[list[Listed]]:
        """The objects under the prefix, a page of the bucket's listing at a time."""
        s3 = await self._s3()
        try:
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix, PaginationConfig={"PageSize": LIST_PAGE})
            async for page in pages:
                found = []
                for item in page.get("Contents", []):
                    key = item["Key"][len(self.prefix):]
                    if _OURS.fullmatch(key) and item["LastModified"] < before:
                        found.append(Listed(key, int(item["Size"])))
                if found:
                    yield found
        except Exception as exc:
            raise BlobError(f"listing bucket {self.bucket} failed: {exc}") from exc

    async def delete(self, keys: list[str]) -> None:
        """DELETE the objects, up to 1,000 a request (the most S3 takes)."""
        s3 = await self._s3()
        for start in range(0, len(keys), LIST_PAGE):
            objects = [{"Key": self.prefix + key} for key in keys[start:start + LIST_PAGE]]
            try:
                answer = await s3.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
            except Exception as exc:
                raise BlobError(f"deleting from bucket {self.bucket} failed: {exc}") from exc
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise BlobError(f"deleting {first.get('Key')} from bucket {self.bucket} "
                                f"failed: {first.get('Message')}")

    async def close(self) -> None:
        """Close the client's connection pool."""
        if self._context is not None:
            await self._context.__aexit__(None, None, None)
            self._client = self._context = None


class Blobs:
    """The store new files go to, and the stores older files are read from."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.writes_to = settings.attachment_storage
        self._stores: dict[str, BlobStore] = {}

    def store(self, kind: str) -> BlobStore:
        """The store of this kind ("directory" or "s3"), made on first use."""
        if kind not in self._stores:
            if kind == DIRECTORY:
                root = self.settings.attachment_dir or self.settings.data_dir / "attachments"
                self._stores[kind] = DirectoryStore(root)
            elif kind == S3:
                if not self.settings.s3_bucket:
                    raise BlobError("this file is in an S3 bucket, and SWITCHBOARD_S3_BUCKET "
                                    "is not set")
                self._stores[kind] = S3Store(self.settings)
            else:
                raise BlobError(f"unknown attachment storage {kind!r}")
        return self._stores[kind]

    async def close(self) -> None:
        """Close every store opened."""
        for store in self._stores.values():
            await store.close()
        self._stores.clear()
