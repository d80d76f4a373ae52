"""The producer's side of claim-check: large request bodies out by reference, large replies back in.

A request body over `ClaimCheckSettings.threshold_bytes` is uploaded as `requests/<request id>`
and the message carries a reference instead (qscore.claimcheck.reference). A reply that came by
reference is downloaded, checked and its blob deleted once read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from qscore.claimcheck import (
    CLAIM_CHECK_CONTENT_TYPE,
    ClaimCheckSettings,
    ClaimReference,
    ClaimStore,
    parse_reference,
)
from qscore.producer.requests import OutgoingRequest

UPLOAD_CONCURRENCY = 4
# A reply by reference is at most this large (a reply is the model's outputs for one request).
MAX_REPLY_BYTES = 256 << 20


class ProducerClaims:
    """Uploads bodies over the threshold; `references[request_id]` is what their messages carry."""

    def __init__(self, settings: ClaimCheckSettings | None) -> None:
        self.settings = settings
        self.store = ClaimStore(settings) if settings is not None else None
        self.sent_by_reference = 0
        self.bytes_by_reference = 0
        self.replies_by_reference = 0

    async def check_in(self, requests: Sequence[OutgoingRequest]) -> dict[str, bytes]:
        """Reference bodies (by request id) for the requests whose body is over the threshold."""
        if self.store is None or self.settings is None:
            return {}
        threshold = self.settings.threshold_bytes
        large = [(request, body) for request in requests if len(body := request.body()) > threshold]
        if not large:
            return {}
        gate = asyncio.Semaphore(UPLOAD_CONCURRENCY)

        async def upload(request: OutgoingRequest, body: bytes) -> tuple[str, bytes]:
            assert self.store is not None
            async with gate:
                claim = await self.store.put(f"requests/{request.request_id}", body, request.content_type)
            self.sent_by_reference += 1
            self.bytes_by_reference += len(body)
            return request.request_id, ClaimReference(claim_check=claim, model=request.request.model).body()

        return dict(await asyncio.gather(*(upload(request, body) for request, body in large)))

    async def check_out_reply(self, content_type: str | None, body: bytes) -> bytes:
        """A reply's body: inline as is; by reference downloaded, checked and its blob deleted."""
        if content_type != CLAIM_CHECK_CONTENT_TYPE:
            return body
        if self.store is None:
            raise ValueError("a reply came by reference but this producer has no claim-check storage")
        claim = parse_reference(body).claim_check
        data = await self.store.fetch(claim, max_bytes=MAX_REPLY_BYTES)
        await self.store.delete(claim.blob)
        self.replies_by_reference += 1
        return data

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()
