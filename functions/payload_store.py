"""Pass-by-reference for large orchestration payloads.

Two stores, same two methods: a folder (`QSCORE_FUNCTIONS_PAYLOAD_DIR`, local runs and tests) and
Blob Storage (`BlobPayloadStore`, what outlives a pod in Azure), picked by `payload_store_for`:
Blob when `QSCORE_FUNCTIONS_PAYLOAD_CONTAINER` is set, with the account from
`QSCORE_BLOB_CONNECTION` (Azurite) or `QSCORE_BLOB_ACCOUNT_URL` (DefaultAzureCredential).
References are content hashes, so storing the same batch twice (a redelivery) writes one object.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from functions.payloads import Carried


class PayloadStore(Protocol):
    async def put(self, data: bytes) -> str: ...

    async def get(self, ref: str) -> bytes: ...

    async def delete(self, ref: str) -> None:
        """Drop a document; one that is not there (already released) is no error."""
        ...


class PayloadMissing(Exception):
    """A reference that the store does not hold (expired, or another store)."""


class FilePayloadStore:
    """Content-addressed files under `root` (writes are atomic: temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def put(self, data: bytes) -> str:
        return await asyncio.to_thread(self._put_sync, data)

    async def get(self, ref: str) -> bytes:
        return await asyncio.to_thread(self._get_sync, ref)

    async def delete(self, ref: str) -> None:
        await asyncio.to_thread(self._path(ref).unlink, missing_ok=True)

    def _path(self, ref: str) -> Path:
        if not ref.startswith("sha256-") or not ref[7:].isalnum():
            raise PayloadMissing(f"not a payload reference: {ref!r}")
        return self.root / ref

    def _put_sync(self, data: bytes) -> str:
        ref = "sha256-" + hashlib.sha256(data).hexdigest()
        target = self._path(ref)
        if target.exists():
            return ref
        self.root.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temp, target)
        return ref

    def _get_sync(self, ref: str) -> bytes:
        try:
            return self._path(ref).read_bytes()
        except FileNotFoundError:
            raise PayloadMissing(f"payload {ref} is not in {self.root}") from None


PAYLOAD_CONTAINER_ENV = "QSCORE_FUNCTIONS_PAYLOAD_CONTAINER"


def _checked_ref(ref: str) -> str:
    if not ref.startswith("sha256-") or not ref[7:].isalnum():
        raise PayloadMissing(f"not a payload reference: {ref!r}")
    return ref


class BlobPayloadStore:
    """Content-addressed blobs `payloads/<ref>` in one container (a lifecycle rule expires them)."""

    def __init__(self, container: str, *, connection: str | None, account_url: str | None) -> None:
        from qscore.claimcheck import ClaimCheckSettings
        from qscore.claimcheck.store import service_client

        self.container = container
        settings = ClaimCheckSettings(connection=connection, account_url=account_url, container=container)
        self._service = service_client(settings)
        self._container = self._service.get_container_client(container)
        self._ready = False

    async def put(self, data: bytes) -> str:
        ref = "sha256-" + await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        if not self._ready:
            with contextlib.suppress(ResourceExistsError):
                await self._container.create_container()
            self._ready = True
        with contextlib.suppress(ResourceExistsError):  # the same batch stored twice: one blob
            await self._container.get_blob_client(f"payloads/{ref}").upload_blob(data, overwrite=False)
        return ref

    async def get(self, ref: str) -> bytes:
        blob = self._container.get_blob_client(f"payloads/{_checked_ref(ref)}")
        try:
            return bytes(await (await blob.download_blob()).readall())
        except ResourceNotFoundError:
            raise PayloadMissing(f"payload {ref} is not in container {self.container}") from None

    async def delete(self, ref: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            await self._container.get_blob_client(f"payloads/{_checked_ref(ref)}").delete_blob()

    async def close(self) -> None:
        await self._service.close()


def payload_store_for(payload_dir: Path, environ: dict[str, str] | None = None) -> PayloadStore:
    """The one place that picks the store: Blob when a payload container is configured."""
    env = dict(os.environ) if environ is None else environ
    container = env.get(PAYLOAD_CONTAINER_ENV)
    if container:
        return BlobPayloadStore(
            container,
            connection=env.get("QSCORE_BLOB_CONNECTION") or None,
            account_url=env.get("QSCORE_BLOB_ACCOUNT_URL") or None,
        )
    return FilePayloadStore(payload_dir)


async def carry(document: str, store: PayloadStore, *, inline_limit_bytes: int) -> Carried:
    """By value when small enough for the Durable history, by reference otherwise."""
    data = document.encode("utf-8")
    if len(data) <= inline_limit_bytes:
        return Carried(inline=document, size_bytes=len(data))
    return Carried(ref=await store.put(data), size_bytes=len(data))


async def unpack(carried: Carried, store: PayloadStore) -> str:
    if carried.inline is not None:
        return carried.inline
    if carried.ref is None:
        raise PayloadMissing("a carried payload has neither a value nor a reference")
    return (await store.get(carried.ref)).decode("utf-8")
