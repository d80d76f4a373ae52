"""The one exception type for requests that break the contract."""

from __future__ import annotations

from qscore.contracts.messages import ErrorCode


class ContractViolation(Exception):
    """A request that can never be scored as sent: dead-letter it (or reply with an error) with `code`.

    `description` is written for the person who sent the request: what was wrong and what to change.
    """

    def __init__(self, code: ErrorCode, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
