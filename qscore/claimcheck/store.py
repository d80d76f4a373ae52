"""The claim-check container: put a body, fetch it back checked, delete it (async Blob client).

Storage failures other than "no such blob" raise `ClaimStoreUnavailable`: transient, the caller
abandons and retries as for Triton being down. A blob that is absent, the wrong size or the
wrong hash raises `ClaimMismatch`/`ClaimMissing`: the reference is bad input.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError

from qscore.blob_clients import blob_service
from qscore.claimcheck.reference import ClaimCheck, sha256_hex
from qscore.claimcheck.settings import ClaimCheckSettings

if TYPE_CHECKING:  # the blob SDK (~0.2 s to import) loads only when a store is made: cold start
    from azure.storage.blob.aio import BlobServiceClient


class ClaimStoreUnavailable(Exception):
    """Blob Storage could not be reached or refused service: transient."""


class ClaimMissing(Exception):
    """The referenced blob does not exist."""


class ClaimMismatch(Exception):
    """The blob's size or SHA-256 is not the reference's."""


class ClaimTooLarge(Exception):
    """The blob is larger than the reader accepts."""


def service_client(settings: ClaimCheckSettings) -> BlobServiceClient:
    # Short retries (qscore.blob_clients), then the message is abandoned: the SDK's default would
    # hold its lock for a minute.
    client: BlobServiceClient = blob_service(
        settings.account_url,
        connection=settings.connection or None,
        retry_total=settings.retry_total,
        timeout_s=settings.timeout_s,
        connection_from_env=False,
    )
    return client


class ClaimStore:
    """One container of claim-checked bodies; open once per process, `close()` at the end."""

    def __init__(self, settings: ClaimCheckSettings) -> None:
        self.settings = settings
        self.container = settings.container
        self._service = service_client(settings)
        self._container = self._service.get_container_client(settings.container)
        self._container_ready = False

    async def put(self, name: str, data: bytes, content_type: str) -> ClaimCheck:
        """Upload `data` as blob `name` (overwriting: a resent request reuses its name)."""
        digest = await asyncio.to_thread(sha256_hex, data)
        try:
            await self._ensure_container()
            await self._container.get_blob_client(name).upload_blob(
                data, overwrite=True, content_settings=_content_settings(content_type)
            )
        except AzureError as exc:
            raise ClaimStoreUnavailable(f"uploading {self.container}/{name}: {_first_line(exc)}") from exc
        return ClaimCheck(
            container=self.container, blob=name, size=len(data), sha256=digest, content_type=content_type
        )

    async def fetch(self, claim: ClaimCheck, *, max_bytes: int) -> bytes:
        """The body, after checking its size (before reading) and SHA-256 (after)."""
        blob = self._container.get_blob_client(claim.blob)
        try:
            stream = await blob.download_blob()
            if stream.size > max_bytes:
                raise ClaimTooLarge(
                    f"blob {claim.container}/{claim.blob} is {stream.size} bytes; the limit is {max_bytes}"
                )
            data = await stream.readall()
        except ResourceNotFoundError:
            raise ClaimMissing(f"no blob {claim.container}/{claim.blob}") from None
        except AzureError as exc:
            raise ClaimStoreUnavailable(
                f"downloading {claim.container}/{claim.blob}: {_first_line(exc)}"
            ) from exc
        if len(data) != claim.size:
            raise ClaimMismatch(
                f"blob {claim.container}/{claim.blob} is {len(data)} bytes; the reference says {claim.size}"
            )
        digest = await asyncio.to_thread(sha256_hex, data)
        if digest != claim.sha256:
            raise ClaimMismatch(
                f"blob {claim.container}/{claim.blob} has SHA-256 {digest}; the reference says {claim.sha256}"
            )
        return data

    async def delete(self, name: str) -> None:
        """Delete a blob; already gone is fine, and a failure is left to the lifecycle rule."""
        with contextlib.suppress(ResourceNotFoundError):
            await self._container.get_blob_client(name).delete_blob()

    async def names(self, prefix: str | None = None) -> list[str]:
        """Blob names in the container (tests and the demo check nothing is left)."""
        try:
            return [blob.name async for blob in self._container.list_blobs(name_starts_with=prefix)]
        except ResourceNotFoundError:
            return []

    async def _ensure_container(self) -> None:
        if not self._container_ready:
            with contextlib.suppress(ResourceExistsError):
                await self._container.create_container()
            self._container_ready = True

    async def close(self) -> None:
        await self._service.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _content_settings(content_type: str) -> Any:
    from azure.storage.blob import ContentSettings

    return ContentSettings(content_type=content_type)
