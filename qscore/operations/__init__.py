"""Operator tasks over the bus (what `qscore dead-letters` presents)."""

from qscore.operations.dead_letters import (
    DeadLetter,
    DeadLetterQueues,
    Fix,
    ResubmitResult,
    Source,
)

__all__ = ["DeadLetter", "DeadLetterQueues", "Fix", "ResubmitResult", "Source"]
