"""The worker's middleware: hooks around its steps, in the shape of dramatiq's middleware.

A request goes receive -> validate -> score -> reply -> settle (docs/worker.md). Each step calls
the matching hook of every middleware, in order; every hook is a no-op here, so a middleware
overrides only what it needs. Spans, metrics, the interaction log, shadow scoring and job
accounting are middleware (this package); a deployment adds its own (audit, custom logging,
request enrichment) with `run_worker(..., middleware=[...])` or `QSCORE_WORKER_MIDDLEWARE`.

What the worker guarantees (workers/middleware/stack.py): a hook that raises is logged and
counted and changes nothing: every request still ends as exactly one reply or one dead-letter
record. Only `before_score` may change what is scored, by returning the requests to score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from qscore.scoring import ScoredItem
    from workers.held import HeldRequest
    from workers.replying import OutgoingReply

SettleOutcome = Literal["completed", "abandoned", "dead_lettered"]


@dataclass(frozen=True, slots=True)
class ScoreBatch:
    """One Triton call's requests, all of one (model, version).

    `retry` is True when the pipeline scores requests again that a `before_score` already saw:
    a batch Triton refused is scored one request at a time, and one cut short by a deadline is
    scored again without its expired requests. `call` tells the calls of one worker apart."""

    model: str
    version: str
    requests: tuple[HeldRequest, ...]
    call: int
    retry: bool = False


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """What one Triton call gave: the scored items (in request order), or the error it raised."""

    batch: ScoreBatch
    scored: tuple[ScoredItem, ...] | None
    error: BaseException | None
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class Replied:
    """One reply step: the replies the broker took (`sent`) and those it did not (`unsent`;
    each such request is then dead-lettered or abandoned, which `after_settle` reports)."""

    sent: tuple[OutgoingReply, ...]
    unsent: tuple[OutgoingReply, ...] = ()


@dataclass(frozen=True, slots=True)
class Settled:
    """Messages settled together with one outcome.

    `reason`: why a message was abandoned (`inference_unavailable`, `reply_send_failed`,
    `shutdown`, ...) or dead-lettered (the error code, e.g. `bad_input`); `description` is the
    dead-letter record's. `refused` counts the messages the broker refused to settle (lock
    lost: it redelivers them). A request-batch message is settled once, after its items.
    `answered`: dead-lettered after its error reply was sent (QSCORE_KEEP_ANSWERED_REJECTIONS)."""

    messages: tuple[Any, ...]
    outcome: SettleOutcome
    reason: str | None = None
    description: str | None = None
    refused: int = 0
    answered: bool = False


class Middleware:
    """Override the hooks you need; each is awaited on the worker's event loop, so it must not
    block (use asyncio.to_thread for blocking work). Hooks run in the order of the stack."""

    async def startup(self) -> None:
        """Before the first receive. An exception here stops the worker from starting."""

    async def after_receive(self, queue: str, messages: Sequence[Any]) -> None:
        """Messages just received from `queue` (SDK `ServiceBusReceivedMessage`s), not yet judged."""

    async def after_validate(self, request: HeldRequest) -> None:
        """A request that passed validation, just before it joins a batch (rejected ones are
        dead-lettered or answered, which `after_settle`/`after_reply` report). The request's
        `span` and `address` may be set here (the tracing middleware does)."""

    async def before_score(self, batch: ScoreBatch) -> Sequence[HeldRequest] | None:
        """Before each Triton call. Return the requests to score instead (same number, same
        order, e.g. with enriched inputs), or None to leave them as they are."""
        return None

    async def after_score(self, result: ScoreResult) -> None:
        """After each Triton call, whether it succeeded (`result.scored`) or raised (`result.error`)."""

    async def after_reply(self, replied: Replied) -> None:
        """After a reply step (scored requests, `expired` and other error replies), once the
        requests whose replies were sent are completed."""

    async def after_settle(self, settled: Settled) -> None:
        """After messages were completed, abandoned or dead-lettered."""

    async def after_drain(self) -> None:
        """The receive loop has stopped and drained; the Triton and broker clients are still open."""

    async def shutdown(self) -> None:
        """After the worker closed its clients: the last hook."""
