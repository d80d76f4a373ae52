"""Blob Storage for batch jobs: input and output by URL, and the work area of a Blob output.

URLs: `https://<account>.blob.core.windows.net/<container>/<name>` in Azure, path style
`http://127.0.0.1:<port>/<account>/<container>/<name>` for Azurite. Credentials: the
connection string in $QSCORE_BLOB_CONNECTION when set (Azurite, local runs), otherwise
`DefaultAzureCredential` (workload identity in the cluster; Storage Blob Data roles).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from qscore.batch.store import WORK_SUFFIX
from qscore.blob_clients import blob_service

AZURE_BLOB_HOST = ".blob.core.windows.net"
DOWNLOAD_CONCURRENCY = 4
UPLOAD_BLOCK_BYTES = 8 << 20


class BlobError(ValueError):
    """A Blob URL that cannot be used (one line for a person)."""


@dataclass(frozen=True)
class BlobLocation:
    account_url: str
    container: str
    name: str

    @property
    def url(self) -> str:
        return f"{self.account_url}/{self.container}/{self.name}"


def is_blob_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def parse_blob_url(url: str) -> BlobLocation:
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    base = f"{parts.scheme}://{parts.netloc}"
    if parts.hostname and parts.hostname.endswith(AZURE_BLOB_HOST):
        if len(segments) < 2:
            raise BlobError(f"{url}: a Blob URL names a container and a blob")
        return BlobLocation(base, segments[0], "/".join(segments[1:]))
    if len(segments) < 3:
        raise BlobError(f"{url}: a path-style (Azurite) Blob URL is http://HOST/ACCOUNT/CONTAINER/BLOB")
    return BlobLocation(f"{base}/{segments[0]}", segments[1], "/".join(segments[2:]))


def service_client(account_url: str) -> BlobServiceClient:
    """With the short retry policy every Blob client has (qscore.blob_clients)."""
    client: BlobServiceClient = blob_service(account_url)
    return client


async def download_input(url: str, target: Path) -> str:
    """Stream a blob to a local file (memory stays flat); returns its ETag as the fingerprint."""
    location = parse_blob_url(url)
    async with service_client(location.account_url) as service:
        blob = service.get_blob_client(location.container, location.name)
        try:
            stream = await blob.download_blob(max_concurrency=DOWNLOAD_CONCURRENCY)
        except ResourceNotFoundError:
            raise BlobError(f"{url}: no such blob") from None
        await _stream_to_file(stream, target)
        return f"etag={stream.properties.etag}"


async def _stream_to_file(stream: Any, target: Path) -> None:
    """Write a download to disk piece by piece, the writes off the event loop."""
    handle = await asyncio.to_thread(target.open, "wb")
    try:
        async for piece in stream.chunks():
            await asyncio.to_thread(handle.write, piece)
    finally:
        await asyncio.to_thread(handle.close)


async def _upload_file(blob: Any, local: Path) -> None:
    """Upload a file as staged blocks read off the event loop, then commit them in order."""
    from azure.storage.blob import BlobBlock

    handle = await asyncio.to_thread(local.open, "rb")
    blocks: list[BlobBlock] = []
    try:
        while data := await asyncio.to_thread(handle.read, UPLOAD_BLOCK_BYTES):
            block_id = f"{len(blocks):08d}"
            await blob.stage_block(block_id, data)
            blocks.append(BlobBlock(block_id=block_id))
    finally:
        await asyncio.to_thread(handle.close)
    await blob.commit_block_list(blocks)


class BlobStore:
    """The work area `<output blob>.batch/` in the output's container; finals are uploaded."""

    def __init__(self, output_url: str) -> None:
        self.location = parse_blob_url(output_url)
        self.prefix = self.location.name + WORK_SUFFIX + "/"
        self.description = self.location.url + WORK_SUFFIX
        self._service = service_client(self.location.account_url)
        self._container: ContainerClient = self._service.get_container_client(self.location.container)
        self._scratch = tempfile.TemporaryDirectory(prefix="qscore-blob-")
        self._ready = False

    async def _ensure_container(self) -> None:
        if not self._ready:
            with contextlib.suppress(ResourceExistsError):
                await self._container.create_container()
            self._ready = True

    def _blob(self, name: str) -> Any:
        return self._container.get_blob_client(self.prefix + name)

    async def append_line(self, name: str, line: str) -> None:
        await self._ensure_container()
        blob = self._blob(name)
        data = (line.rstrip("\n") + "\n").encode()
        try:
            await blob.append_block(data)
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                await blob.create_append_blob(if_none_match="*")
            await blob.append_block(data)

    async def read_text(self, name: str) -> str | None:
        try:
            stream = await self._blob(name).download_blob()
        except ResourceNotFoundError:
            return None
        return (await stream.readall()).decode()

    async def put(self, name: str, local: Path) -> None:
        await self._ensure_container()
        data = await asyncio.to_thread(local.read_bytes)  # a part: one chunk's rows, a few MB
        await self._blob(name).upload_blob(data, overwrite=True)
        await asyncio.to_thread(local.unlink, missing_ok=True)

    @contextlib.asynccontextmanager
    async def local_copy(self, name: str) -> AsyncIterator[Path]:
        path = Path(self._scratch.name) / name
        stream = await self._blob(name).download_blob(max_concurrency=DOWNLOAD_CONCURRENCY)
        await _stream_to_file(stream, path)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    async def remove(self, names: list[str]) -> None:
        for name in names:
            with contextlib.suppress(ResourceNotFoundError):
                await self._blob(name).delete_blob()

    async def publish(self, local: Path, final: str) -> None:
        location = parse_blob_url(final)
        await _upload_file(self._service.get_blob_client(location.container, location.name), local)

    async def close(self) -> None:
        await self._service.close()
        self._scratch.cleanup()
