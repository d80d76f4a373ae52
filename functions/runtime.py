"""The per-process objects the activities share: Triton client, request preparer, reply sender,
payload and dead-letter stores.

The Functions host runs every activity of a worker process on one event loop, so one runtime per
process (built on first use from the app settings) keeps one gRPC channel and one AMQP connection
open across invocations instead of one per activity. Tests and the in-process driver install
their own with `install_runtime`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from functions.dead_letters import DeadLetterStore
from functions.payload_store import FilePayloadStore, PayloadStore
from functions.settings import FunctionsSettings
from qscore.registry import ModelRegistry
from qscore.scoring import RequestPreparer

if TYPE_CHECKING:
    from qscore.inference import TritonClient
    from qscore.transport import ReplySender


@dataclass
class ScoringRuntime:
    settings: FunctionsSettings
    triton: TritonClient
    preparer: RequestPreparer
    replies: ReplySender
    payloads: PayloadStore
    dead_letters: DeadLetterStore
    servicebus: Any = None  # the ServiceBusClient behind `replies`, closed with the runtime

    async def close(self) -> None:
        await self.replies.close()
        if self.servicebus is not None:
            await self.servicebus.close()
        await self.triton.close()


_current: ScoringRuntime | None = None


def build_runtime(settings: FunctionsSettings) -> ScoringRuntime:
    """Everything from settings; no connection is opened until first use."""
    from qscore.inference import ModelNotFound, TritonClient
    from qscore.transport import ReplySender, servicebus_client

    triton = TritonClient(settings.triton_url)
    if settings.connection:
        client = servicebus_client(connection=settings.connection)
    else:
        client = servicebus_client(namespace=settings.namespace)
    preparer = RequestPreparer(specs=triton, registry=ModelRegistry(), unknown_model_errors=(ModelNotFound,))
    return ScoringRuntime(
        settings=settings,
        triton=triton,
        preparer=preparer,
        replies=ReplySender(client),
        payloads=FilePayloadStore(settings.payload_dir),
        dead_letters=DeadLetterStore(settings.dead_letter_path),
        servicebus=client,
    )


def current_runtime() -> ScoringRuntime:
    global _current
    if _current is None:
        _current = build_runtime(FunctionsSettings.from_env())
    return _current


def install_runtime(runtime: ScoringRuntime | None) -> ScoringRuntime | None:
    """Use `runtime` from now on (None: build from settings on next use); returns the previous one."""
    global _current
    previous, _current = _current, runtime
    return previous


def current_settings() -> FunctionsSettings:
    """The installed runtime's settings, else the app settings (without building a runtime)."""
    return _current.settings if _current is not None else FunctionsSettings.from_env()


def payload_store() -> PayloadStore:
    """The payload store alone (the trigger needs it, not Triton or the bus)."""
    if _current is not None:
        return _current.payloads
    return FilePayloadStore(FunctionsSettings.from_env().payload_dir)
