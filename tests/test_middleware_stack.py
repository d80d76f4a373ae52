"""The core's middleware stack (qscore/middleware/): before-hooks in order, after-hooks in
reverse (as dramatiq's), placement before/after another, and the one setting both runtimes read
(QSCORE_MIDDLEWARE, with QSCORE_WORKER_MIDDLEWARE as its deprecated name)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from qscore.contracts import ReplyStatus, ScoreReply
from qscore.middleware import Middleware, MiddlewareStack, Replied, ScoreBatch, ScoreResult, Settled
from qscore.middleware.loading import references_in, variable_in_use
from qscore.transport import ReplyAddress
from workers.settings import WorkerSettings

AUDIT = "qscore.middleware.audit:AuditMiddleware"


class Named(Middleware):
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    async def startup(self) -> None:
        self.calls.append(f"startup:{self.name}")

    async def before_score(self, batch: ScoreBatch) -> None:
        self.calls.append(f"before_score:{self.name}")

    async def after_score(self, result: ScoreResult) -> None:
        self.calls.append(f"after_score:{self.name}")

    async def after_reply(self, replied: Replied) -> None:
        self.calls.append(f"after_reply:{self.name}")

    async def after_settle(self, settled: Settled) -> None:
        self.calls.append(f"after_settle:{self.name}")

    async def shutdown(self) -> None:
        self.calls.append(f"shutdown:{self.name}")


class Outer(Named):
    pass


class Inner(Named):
    pass


class BeforeInner(Named):
    place_before = "Inner"


class AfterOuter(Named):
    place_after = Outer


async def test_after_hooks_run_in_reverse_of_before_hooks() -> None:
    calls: list[str] = []
    stack = MiddlewareStack([Outer("a", calls), Inner("b", calls)])
    batch = ScoreBatch(model="m", version="1", requests=(), call=1)
    await stack.startup()
    await stack.before_score(batch)
    await stack.after_score(ScoreResult(batch, (), None, 0.0))
    await stack.after_reply(Replied(sent=()))
    await stack.after_settle(Settled(messages=(object(),), outcome="completed"))
    await stack.shutdown()
    assert calls == [
        "startup:a",
        "startup:b",
        "before_score:a",
        "before_score:b",
        "after_score:b",
        "after_score:a",
        "after_reply:b",
        "after_reply:a",
        "after_settle:b",
        "after_settle:a",
        "shutdown:b",
        "shutdown:a",
    ]


def test_a_middleware_is_placed_before_or_after_another_by_class_or_name() -> None:
    calls: list[str] = []
    outer, inner = Outer("outer", calls), Inner("inner", calls)
    stack = MiddlewareStack([outer, inner, BeforeInner("x", calls), AfterOuter("y", calls)])
    assert [getattr(m, "name", "") for m in stack.middleware] == ["outer", "y", "x", "inner"]
    stack.add(Named("z", calls), before=Outer)
    stack.add(Named("w", calls), after="Inner")
    assert [getattr(m, "name", "") for m in stack.middleware] == ["z", "outer", "y", "x", "inner", "w"]
    with pytest.raises(ValueError, match="no middleware Missing"):
        stack.add(Named("v", calls), before="Missing")


def test_one_setting_for_both_runtimes_with_the_old_name_still_read() -> None:
    assert references_in({"QSCORE_MIDDLEWARE": f"{AUDIT}, a.b:c"}) == (AUDIT, "a.b:c")
    assert references_in({"QSCORE_WORKER_MIDDLEWARE": AUDIT}) == (AUDIT,)
    both = {"QSCORE_MIDDLEWARE": AUDIT, "QSCORE_WORKER_MIDDLEWARE": "old.one:f"}
    assert references_in(both) == (AUDIT,) and variable_in_use(both) == "QSCORE_MIDDLEWARE"
    assert WorkerSettings.from_env({"QSCORE_MIDDLEWARE": AUDIT}).worker_middleware == (AUDIT,)
    assert WorkerSettings.from_env(both).worker_middleware == (AUDIT,)


class Addressing(Middleware):
    """Gives each reply a traceparent of its own (as the tracing middleware does) and records
    the addresses it saw (what an earlier `before_reply` left)."""

    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    async def before_reply(self, replying: Sequence[Any]) -> list[Any]:
        self.calls.append(
            f"before_reply:{self.name}:" + ",".join(str(each.address.traceparent) for each in replying)
        )
        return [dataclasses.replace(each.address, traceparent=self.name) for each in replying]


class Miscounting(Middleware):
    async def before_reply(self, replying: Sequence[Any]) -> list[Any]:
        return []


async def test_before_reply_runs_in_order_and_gives_the_addresses() -> None:
    """Both runtimes call it just before sending (workers/replying.py, functions/delivery.py):
    in the stack's order, each hook seeing the addresses the one before it returned; a hook that
    returns a different number is left out."""
    calls: list[str] = []
    stack = MiddlewareStack([Addressing("a", calls), Miscounting(), Addressing("b", calls)])
    reply = ScoreReply(request_id="r1", status=ReplyStatus.OK, model="m", model_version="1")
    replying = [SimpleNamespace(message="m1", reply=reply, address=ReplyAddress("q", "s"))]
    addresses = await stack.before_reply(replying)
    assert calls == ["before_reply:a:None", "before_reply:b:a"]
    assert addresses == [ReplyAddress("q", "s", traceparent="b")]
    assert stack.failures[("Miscounting", "before_reply")] == 1
    assert await MiddlewareStack([Named("n", calls)]).before_reply(replying) is None
