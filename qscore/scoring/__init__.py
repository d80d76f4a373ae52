"""The scoring core shared by the worker and the Functions app."""

from qscore.scoring.core import (
    InferenceBackend,
    InteractionRoute,
    ReadinessProbe,
    ScoredItem,
    ScoringItem,
    SpecCache,
    error_reply,
    group_key,
    ok_reply,
    score_group,
    split_expired,
    time_left_s,
)
from qscore.scoring.envelope import (
    ReplyPolicy,
    RequestEnvelope,
    check_envelope,
    inference_violation,
    undeliverable,
)
from qscore.scoring.outcomes import RequestOutcome, log_outcomes, outcome_of_dead_letter, outcome_of_reply
from qscore.scoring.prepare import (
    PreparedRequest,
    RequestPreparer,
    SpecSource,
    UnknownModel,
    model_named_in,
)
from qscore.scoring.shadow import (
    SHADOW_ROUTE,
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
    "ReadinessProbe",
    "ReplyPolicy",
    "RequestEnvelope",
    "RequestOutcome",
    "RequestPreparer",
    "ScoredItem",
    "ScoringItem",
    "ShadowGroup",
    "SpecCache",
    "SpecSource",
    "UnknownModel",
    "check_envelope",
    "error_reply",
    "group_key",
    "inference_violation",
    "log_interactions",
    "log_outcomes",
    "model_named_in",
    "ok_reply",
    "outcome_of_dead_letter",
    "outcome_of_reply",
    "score_group",
    "score_shadow",
    "shadow_groups",
    "split_expired",
    "time_left_s",
    "undeliverable",
]
