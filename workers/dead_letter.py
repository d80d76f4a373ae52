"""Dead-lettering: a request that can never be scored goes to the dead-letter sub-queue with a
reason (a stable ErrorCode value) and a description a person can act on."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from qscore.contracts import ContractViolation

log = logging.getLogger(__name__)

# Service Bus caps application property values; keep the description readable and well under it.
MAX_DESCRIPTION_CHARS = 1024


class DeadLetteringReceiver(Protocol):
    async def dead_letter_message(
        self, message: Any, reason: str | None = None, error_description: str | None = None
    ) -> None: ...


async def dead_letter(receiver: DeadLetteringReceiver, message: Any, violation: ContractViolation) -> bool:
    """Dead-letter `message` with the violation's code as reason; False if the broker refused
    (lock lost: the message comes back and is judged again)."""
    description = violation.description[:MAX_DESCRIPTION_CHARS]
    try:
        await receiver.dead_letter_message(message, reason=str(violation.code), error_description=description)
    except Exception as exc:
        log.warning("could not dead-letter message %s: %r", getattr(message, "message_id", "?"), exc)
        return False
    log.info(
        "dead-lettered message %s: %s: %s", getattr(message, "message_id", "?"), violation.code, description
    )
    return True
