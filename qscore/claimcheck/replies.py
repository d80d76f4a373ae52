"""Replies too large for the reply queue go by reference too: the sender's side of it.

`ReplyClaims.offload` uploads a reply body over the threshold as `replies/<request id>` and
returns the reference document to send instead; the producer library fetches, checks and deletes
it on receipt (qscore/producer/claims.py). A storage failure raises ClaimStoreUnavailable: the
reply send is then a transient failure (the request is abandoned and redelivered).
"""

from __future__ import annotations

from qscore.claimcheck.reference import ClaimReference
from qscore.claimcheck.settings import ClaimCheckSettings
from qscore.claimcheck.store import ClaimStore
from qscore.contracts.messages import REPLY_CONTENT_TYPE


class ReplyClaims:
    def __init__(self, settings: ClaimCheckSettings) -> None:
        self.threshold_bytes = settings.threshold_bytes
        self.store = ClaimStore(settings)
        self.offloaded = 0

    async def offload(self, request_id: str, body: bytes) -> bytes | None:
        """The reference to send for `body`, or None when it is small enough to go inline."""
        if len(body) <= self.threshold_bytes:
            return None
        claim = await self.store.put(f"replies/{request_id}", body, REPLY_CONTENT_TYPE)
        self.offloaded += 1
        return ClaimReference(claim_check=claim).body()

    async def close(self) -> None:
        await self.store.close()
