"""The scoring core shared by the worker and the Functions app."""

from qscore.scoring.core import (
    InferenceBackend,
    ScoredItem,
    ScoringItem,
    error_reply,
    group_key,
    ok_reply,
    score_group,
)
from qscore.scoring.prepare import PreparedRequest, RequestPreparer, SpecSource, UnknownModel

__all__ = [
    "InferenceBackend",
    "PreparedRequest",
    "RequestPreparer",
    "ScoredItem",
    "ScoringItem",
    "SpecSource",
    "UnknownModel",
    "error_reply",
    "group_key",
    "ok_reply",
    "score_group",
]
