"""Run the Functions app end to end without the host: receive request batches from the (local)
bus, invoke the Service Bus trigger with a real DurableOrchestrationClient pointed at the local
Durable API, run each orchestration with its activities, complete or abandon the messages as
`autoCompleteMessages` would. Used by tests and `qscore functions run-local`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func

from functions import names
from functions.runtime import ScoringRuntime, install_runtime
from functions.trigger import tracking_id
from qscore_local.functions_host.app_index import engine_for, user_function
from qscore_local.functions_host.durable_api import LocalDurableApi
from qscore_local.functions_host.engine import InstanceRecord
from qscore_local.functions_host.messages import to_function_messages


@dataclass
class DriverStats:
    batches: int = 0
    messages: int = 0
    instances: list[InstanceRecord] = field(default_factory=list)


class InProcessDriver:
    """Async context manager; `runtime` serves the activities (Triton, replies, stores)."""

    def __init__(
        self, app: func.FunctionApp, runtime: ScoringRuntime, *, max_batch: int = 32, max_wait_s: float = 1.0
    ) -> None:
        self.app = app
        self.runtime = runtime
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.api = LocalDurableApi(engine_for(app))
        self.stats = DriverStats()
        self._previous: ScoringRuntime | None = None
        self._trigger = user_function(app, names.TRIGGER)

    async def __aenter__(self) -> InProcessDriver:
        self._previous = install_runtime(self.runtime)
        await self.api.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.api.stop()
        install_runtime(self._previous)

    async def invoke_trigger(self, messages: list[func.ServiceBusMessage]) -> str:
        """Call the trigger function as the host would; returns the batch's instance id."""
        await self._trigger(messages=messages, client=self.api.binding_json())
        return names.messages_instance_id(tracking_id(m) for m in messages)

    async def run_batch(self, receiver: Any, *, timeout_s: float = 60.0) -> InstanceRecord | None:
        """Receive one batch, trigger, settle, wait for its orchestration. None if the queue was empty."""
        received = await receiver.receive_messages(
            max_message_count=self.max_batch, max_wait_time=self.max_wait_s
        )
        if not received:
            return None
        try:
            instance_id = await self.invoke_trigger(to_function_messages(received))
        except Exception:
            await asyncio.gather(*(receiver.abandon_message(m) for m in received))
            raise
        await asyncio.gather(*(receiver.complete_message(m) for m in received))
        self.stats.batches += 1
        self.stats.messages += len(received)
        record = await self.api.engine.wait(instance_id, timeout_s) if self.api.engine else None
        if record is not None:
            self.stats.instances.append(record)
        return record

    async def run_until_idle(self, *, connection_receiver: Any, max_batches: int = 1000) -> DriverStats:
        """Drain the request queue batch by batch until a receive comes back empty."""
        for _ in range(max_batches):
            if await self.run_batch(connection_receiver) is None:
                break
        return self.stats
