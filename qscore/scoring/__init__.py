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
from qscore.scoring.shadow import (
    SHADOW_ROUTE,
    InteractionRoute,
    InteractionSink,
    ShadowGroup,
    log_interactions,
    score_shadow,
    shadow_groups,
)

__all__ = [
    "SHADOW_ROUTE",
    "InferenceBackend",
    "InteractionRoute",
    "InteractionSink",
    "PreparedRequest",
    "RequestPreparer",
    "ScoredItem",
    "ScoringItem",
    "ShadowGroup",
    "SpecSource",
    "UnknownModel",
    "error_reply",
    "group_key",
    "log_interactions",
    "ok_reply",
    "score_group",
    "score_shadow",
    "shadow_groups",
]
