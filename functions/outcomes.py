"""What happens to a bad request on the Functions path: the worker's outcome for the same input.

PLACEHOLDER until the shared bad-input table lands in qscore.scoring.
"""

from __future__ import annotations

from enum import Enum

from functions.payloads import InboundMessage
from qscore.contracts import ContractViolation, ErrorCode


class BadInputOutcome(Enum):
    REPLY = "reply"
    DEAD_LETTER = "dead_letter"


NO_REPLY_ADDRESS = ContractViolation(
    ErrorCode.SCHEMA_VIOLATION,
    "the message names no reply queue: set reply_to (and reply_to_session_id for a session reply queue)",
)


def outcome_of(violation: ContractViolation) -> BadInputOutcome:
    return BadInputOutcome.REPLY if violation.code == ErrorCode.EXPIRED else BadInputOutcome.DEAD_LETTER


def check_reply_address(message: InboundMessage) -> None:
    if not message.reply_to:
        raise NO_REPLY_ADDRESS
