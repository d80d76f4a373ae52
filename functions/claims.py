"""Claim-check in the Functions app: references resolved in the trigger, before the orchestration.

The trigger fetches each referenced body (checked size and SHA-256) and puts it in the batch,
which the payload store keeps (Blob in Azure) for the orchestration's life; the claim blob is
deleted once the orchestration has started, so nothing piles up. A storage outage raises in the
trigger: Service Bus redelivers the batch (retry, not loss). A bad reference becomes a small
rejection document in place of the body, which validation turns into the same `claim_check_*`
reason the worker gives (the activities never need storage for it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from functions.payloads import InboundMessage
from qscore.claimcheck import CLAIM_CHECK_CONTENT_TYPE, ClaimCheckSettings, ClaimResolver, ClaimStore
from qscore.contracts import ContractViolation, ErrorCode

log = logging.getLogger("qscore.functions")

REJECTED_KEY = "qscore_claim_check_rejected"


def is_reference(body: bytes) -> bool:
    """A claim-check reference body (a request body never has a `claim_check` field)."""
    return body.lstrip().startswith(b"{") and b'"claim_check"' in body[:512]


class FunctionClaims:
    """Resolves the references of one trigger batch; `release` deletes their blobs."""

    def __init__(self, settings: ClaimCheckSettings | None) -> None:
        self.resolver = ClaimResolver(ClaimStore(settings)) if settings is not None else None

    async def resolve(self, messages: Sequence[InboundMessage]) -> list[InboundMessage]:
        """The batch with each reference replaced by its body (or by its rejection)."""
        if self.resolver is None:
            return list(messages)
        resolved = []
        for message in messages:
            body = message.body_bytes()
            if not is_reference(body):
                resolved.append(message)
                continue
            content_type: str | None = None  # a rejection document: judged by its body, not its type
            try:  # ClaimStoreUnavailable propagates: the trigger fails and the batch is redelivered
                found = await self.resolver.resolve(CLAIM_CHECK_CONTENT_TYPE, body, key=message.message_id)
                data, content_type = found.body, found.content_type
            except ContractViolation as violation:
                data = json.dumps(
                    {REJECTED_KEY: {"code": violation.code.value, "description": violation.description}}
                ).encode()
            # From here on the message is what the reference pointed at, with that content type.
            fields = message.model_dump(exclude={"body", "encoding", "content_type"})
            resolved.append(InboundMessage.from_body(data, content_type=content_type, **fields))
        return resolved

    async def release(self, messages: Sequence[InboundMessage]) -> None:
        if self.resolver is not None:
            await self.resolver.release(message.message_id for message in messages)

    async def close(self) -> None:
        if self.resolver is not None:
            await self.resolver.store.close()


def raise_if_rejected(body: bytes) -> None:
    """Validation's side: a body the trigger replaced by a claim-check rejection."""
    if not body.startswith(b'{"' + REJECTED_KEY.encode()):
        return
    rejection = json.loads(body)[REJECTED_KEY]
    raise ContractViolation(ErrorCode(rejection["code"]), rejection["description"])


def claim_body_limit() -> int | None:
    """The decode limit for bodies that came by reference (None: claim-check off, the default)."""
    settings = ClaimCheckSettings.from_env()
    return settings.max_bytes if settings is not None else None
