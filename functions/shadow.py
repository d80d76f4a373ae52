"""Shadow flights on the Functions path: the requests of one shadow group are scored again by
the shadow version, and the results go to the interaction log only (route "shadow").

The orchestrator runs this as its own activity (`names.SHADOW_INFER`) after the replies are
sent, so a shadow never delays a reply and its failure never changes one. The scoring and
logging are the shared core's (`qscore.scoring.score_shadow`), as in the worker.
"""

from __future__ import annotations

from functions.payloads import Group, ShadowOutcome
from functions.runtime import ScoringRuntime
from functions.steps import load_members
from functions.telemetry import scoring_span
from qscore.scoring import ShadowGroup, score_shadow, split_expired


async def shadow_infer(group: Group, runtime: ScoringRuntime) -> ShadowOutcome:
    """Score the group with its shadow version; errors raise (the orchestrator records them).

    The requests come from the production groups' prepared documents (nothing is decoded
    again). Those whose deadline has passed are left out: they got an error reply, so there is
    nothing to compare.
    """
    members = await load_members(group, runtime.payloads)
    live, _ = split_expired([member.request.item for member in members])
    if not live:
        return ShadowOutcome(group=group)
    shadow = ShadowGroup(spec=members[0].request.spec, version=group.version, items=live)
    in_time = {item.request_id for item in live}
    with scoring_span(
        "qscore.functions.shadow_infer",
        [member.envelope for member in members if member.envelope.message_id in in_time],
        model=group.model,
        version=group.version,
        route="shadow",
    ):
        scored = await score_shadow(
            runtime.triton, shadow, runtime.interactions, scored_by=runtime.settings.scored_by
        )
    return ShadowOutcome(group=group, scored=len(scored), logged=runtime.interactions is not None)
