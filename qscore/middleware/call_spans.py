"""The span around each Triton call, held from `before_score` to `after_score`: one keeper for
the worker's tracing middleware and the Functions app's, which open different spans around it."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from typing import Any

from qscore.middleware.base import ScoreBatch, ScoreResult


class CallSpans:
    """Open spans by `ScoreBatch.call`; `end` closes one, recording the call's error on it."""

    def __init__(self) -> None:
        self._open: dict[int, contextlib.ExitStack] = {}

    def begin(self, batch: ScoreBatch, span: AbstractContextManager[Any]) -> None:
        opened = contextlib.ExitStack()
        opened.enter_context(span)
        self._open[batch.call] = opened

    def end(self, result: ScoreResult) -> None:
        opened = self._open.pop(result.batch.call, None)
        if opened is None:
            return
        error = result.error
        if error is None:
            opened.close()
        else:  # the span records the error, as it did around the call
            opened.__exit__(type(error), error, error.__traceback__)
