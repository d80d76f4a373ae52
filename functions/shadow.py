"""Shadow flights on the Functions path: the requests of one shadow group are scored again by
the shadow version, and the results go to the interaction log only (route "shadow").

The orchestrator runs this as its own activity (`names.SHADOW_INFER`) after the replies are
sent, so a shadow never delays a reply and its failure never changes one. The scoring and
logging are the shared core's (`qscore.scoring.score_shadow`), as in the worker.
"""

from __future__ import annotations

from functions.payloads import Carried, Group, ShadowOutcome
from functions.runtime import ScoringRuntime
from functions.steps import prepare_group
from functions.telemetry import scoring_span
from qscore.scoring import ShadowGroup, score_shadow


async def shadow_infer(carried: Carried, group: Group, runtime: ScoringRuntime) -> ShadowOutcome:
    """Score the group with its shadow version; errors raise (the orchestrator records them).

    Requests that stopped being valid since validation (a passed deadline) are left out: they
    got an error reply, so there is nothing to compare.
    """
    members = await prepare_group(carried, group, runtime)
    if not members.prepared:
        return ShadowOutcome(group=group)
    shadow = ShadowGroup(
        spec=members.prepared[0].spec,
        version=group.version,
        items=[request.item for request in members.prepared],
    )
    with scoring_span(
        "qscore.functions.shadow_infer",
        members.scored_messages,
        model=group.model,
        version=group.version,
        route="shadow",
    ):
        scored = await score_shadow(
            runtime.triton, shadow, runtime.interactions, scored_by=runtime.settings.scored_by
        )
    return ShadowOutcome(group=group, scored=len(scored), logged=runtime.interactions is not None)
