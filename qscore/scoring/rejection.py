"""What becomes of a request that will not be scored: the one decision both runtimes follow.

A caller that can be reached hears back: an error reply with the stable code and a description
it can act on, whatever was wrong with the request (`qscore.contracts.BAD_INPUT`). Only what
cannot be answered is dead-lettered with its reason: no usable reply address (`reply_address_of`
raised), a reply the broker refused, a failure on qscore's side that outlived its retries.
An operator who also wants answered rejections kept turns on `keep_answered_rejections`: such
a request is then answered AND dead-lettered (a message is settled once: dead-lettering takes
the place of completing it). An item of a request-batch message is always answered alone:
dead-lettering or keeping it would settle the message its batch-mates travel in.
"""

from __future__ import annotations

from enum import StrEnum

from qscore.contracts import ContractViolation
from qscore.contracts.errors import DEAD_LETTERED
from qscore.scoring.envelope import ReplyPolicy
from qscore.transport.replies import ReplyAddress


class Disposition(StrEnum):
    """How a refused request is settled."""

    REPLY = "reply"  # an error reply, then the message is completed
    REPLY_AND_KEEP = "reply_and_keep"  # an error reply, then the message is dead-lettered (kept)
    DEAD_LETTER = "dead_letter"  # no reply can reach the caller: dead-lettered with the reason


def rejection_disposition(
    violation: ContractViolation,
    address: ReplyAddress | None,
    policy: ReplyPolicy,
    *,
    batch_item: bool = False,
) -> Disposition:
    """Error reply when the caller is reachable (`address`, from `reply_address_of`) and the
    table answers the code; dead-letter otherwise. `batch_item`: an item of a request-batch
    message (reachable by its message's address): always an error reply of its own."""
    if batch_item and address is not None:
        return Disposition.REPLY
    if address is None or violation.outcome == DEAD_LETTERED:
        return Disposition.DEAD_LETTER
    return Disposition.REPLY_AND_KEEP if policy.keep_answered_rejections else Disposition.REPLY
