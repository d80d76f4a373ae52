"""Metrics from the activities through `qscore.telemetry` (the orchestrator records none: it
replays, and a replayed orchestrator would count everything again)."""

from __future__ import annotations

import logging
from typing import Any

from qscore.contracts import ScoreReply

log = logging.getLogger("qscore.functions")


def _metrics() -> Any:
    try:
        from qscore.telemetry.metrics import scoring_metrics
    except ImportError:  # telemetry is optional for the Functions app
        return None
    return scoring_metrics()


def record_batch(model: str, version: str, size: int) -> None:
    metrics = _metrics()
    if metrics is not None:
        metrics.record_batch(model, version, size)


def record_replies(replies: list[ScoreReply]) -> None:
    metrics = _metrics()
    if metrics is None:
        return
    for reply in replies:
        metrics.record_reply(reply.model, reply.model_version or "", reply.status, reply.timings)


def record_dead_letters(reasons: list[str]) -> None:
    metrics = _metrics()
    for reason in reasons:
        log.warning("request stored as dead letter: %s", reason)
        if metrics is not None:
            metrics.record_dead_letter(reason)
