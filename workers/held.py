"""A received request on its way through the worker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qscore.scoring import PreparedRequest
from qscore.transport import ReplyAddress


@dataclass(slots=True)
class HeldRequest:
    """A validated request: its message (to settle), where its reply goes, and its span."""

    message: Any
    prepared: PreparedRequest
    address: ReplyAddress
    span: Any = None

    @property
    def rows(self) -> int:
        return self.prepared.item.rows
