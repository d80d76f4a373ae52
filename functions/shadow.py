"""Shadow flights on the Functions path: the requests of one shadow group are scored again by
the shadow version, and the results go to the interaction log only (route "shadow").

Shadow scoring is the core's middleware (`qscore.middleware.shadow.ShadowMiddleware`), in the
app's stack as in the worker's. The worker's starts it from `after_reply`; here the
orchestrator runs this as its own activity (`names.SHADOW_INFER`) after the replies are sent,
so a shadow never delays a reply and its failure never changes one, and the activity hands
the group's requests to that middleware (`score_now`).
"""

from __future__ import annotations

from functions.middleware import ValidatedMessage
from functions.payloads import Group, ShadowOutcome
from functions.runtime import ScoringRuntime
from functions.steps import load_members
from functions.telemetry import scoring_span
from qscore.scoring import split_expired


async def shadow_infer(group: Group, runtime: ScoringRuntime) -> ShadowOutcome:
    """Score the group with its shadow version; errors raise (the orchestrator records them).

    The requests come from the production groups' prepared documents (nothing is decoded
    again); those whose deadline has passed are left out by the middleware.
    """
    members = await load_members(group, runtime.payloads)
    live, _ = split_expired([member.request.item for member in members])
    if not live:
        return ShadowOutcome(group=group)
    in_time = {item.request_id for item in live}
    with scoring_span(
        "qscore.functions.shadow_infer",
        [member.envelope for member in members if member.envelope.message_id in in_time],
        model=group.model,
        version=group.version,
        route="shadow",
    ):
        scored = await runtime.shadow().score_now(
            [ValidatedMessage(member.envelope, member.request) for member in members]
        )
    return ShadowOutcome(group=group, scored=scored, logged=runtime.interactions is not None)
