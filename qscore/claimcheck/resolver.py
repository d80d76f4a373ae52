"""Turn a received claim-check message back into the body it stands for, or say why not.

Shared by the worker and the Functions app. A bad reference is bad input (a ContractViolation
with a `claim_check_*` code, dead-lettered); a storage outage raises ClaimStoreUnavailable
(abandon, retry). Once a request is answered, `release` deletes its blob.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from qscore.claimcheck.reference import (
    CLAIM_CHECK_CONTENT_TYPE,
    ClaimCheck,
    MalformedReference,
    parse_reference,
)
from qscore.claimcheck.store import ClaimMismatch, ClaimMissing, ClaimStore, ClaimTooLarge
from qscore.contracts.errors import ContractViolation, ErrorCode

log = logging.getLogger(__name__)

# The model's largest request body (its config's qscore.max_request_bytes), None if it sets none.
ModelLimit = Callable[[str], Awaitable[int | None]]


@dataclass(frozen=True)
class ResolvedBody:
    """The body to judge, its content type, and (by reference) the claim and the decode limit."""

    body: bytes
    content_type: str | None
    claim: ClaimCheck | None = None
    max_bytes: int | None = None


def is_claim_check(content_type: str | None) -> bool:
    return content_type == CLAIM_CHECK_CONTENT_TYPE


class ClaimResolver:
    """Resolves references into the configured container; remembers them until released."""

    def __init__(self, store: ClaimStore, *, model_limit: ModelLimit | None = None) -> None:
        self.store = store
        self._model_limit = model_limit
        self._pending: dict[str, ClaimCheck] = {}
        self.resolved = 0  # bodies fetched by reference (the demo's summary reports it)

    async def resolve(self, content_type: str | None, body: bytes, *, key: str | None = None) -> ResolvedBody:
        """An inline body as is; a reference fetched, checked and remembered under `key`."""
        if not is_claim_check(content_type):
            return ResolvedBody(body, content_type)
        try:
            reference = parse_reference(body)
        except MalformedReference as exc:
            raise ContractViolation(ErrorCode.CLAIM_CHECK_INVALID, f"claim-check reference: {exc}") from None
        claim = reference.claim_check
        if claim.container != self.store.container:
            raise ContractViolation(
                ErrorCode.CLAIM_CHECK_WRONG_CONTAINER,
                f"reference names container {claim.container!r}; this service reads {self.store.container!r}",
            )
        limit = await self._limit(reference.model)
        if claim.size > limit:
            raise ContractViolation(
                ErrorCode.CLAIM_CHECK_TOO_LARGE,
                f"body is {claim.size} bytes by reference; the limit is {limit}",
            )
        data = await self._fetch(claim, limit)
        if key is not None:
            self._pending[key] = claim
        self.resolved += 1
        return ResolvedBody(data, claim.content_type, claim=claim, max_bytes=limit)

    async def _limit(self, model: str | None) -> int:
        if model and self._model_limit is not None:
            model_limit = await self._model_limit(model)
            if model_limit is not None:
                return model_limit
        return self.store.settings.max_bytes

    async def _fetch(self, claim: ClaimCheck, limit: int) -> bytes:
        try:
            return await self.store.fetch(claim, max_bytes=limit)
        except ClaimMissing as exc:
            raise ContractViolation(
                ErrorCode.CLAIM_CHECK_MISSING, f"{exc} (send the request again)"
            ) from None
        except ClaimMismatch as exc:
            raise ContractViolation(ErrorCode.CLAIM_CHECK_MISMATCH, str(exc)) from None
        except ClaimTooLarge as exc:
            raise ContractViolation(ErrorCode.CLAIM_CHECK_TOO_LARGE, str(exc)) from None

    async def release(self, keys: Iterable[str]) -> None:
        """Delete the blobs of answered requests (a failure is logged; the lifecycle rule is the net)."""
        for key in keys:
            claim = self._pending.pop(key, None)
            if claim is None:
                continue
            try:
                await self.store.delete(claim.blob)
            except Exception as exc:  # storage down after the reply went out: never fail the reply
                log.warning("could not delete claim-check blob %s: %s", claim.blob, exc)

    def forget(self, keys: Iterable[str]) -> None:
        """Drop remembered claims without deleting (the message goes back to the queue)."""
        for key in keys:
            self._pending.pop(key, None)
