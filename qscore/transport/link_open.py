"""Open a Service Bus link without the SDK's 50 ms sleep after each handshake frame.

`ServiceBusReceiver._open` and `ServiceBusSender._open` (azure-servicebus 7.x) wait for a new
link by polling its AMQP client: `while not await handler.client_ready_async(): await
asyncio.sleep(0.05)` (Azure/azure-sdk-for-python#5618). Each `client_ready_async` call reads at
most one frame (it waits up to the link's socket timeout for it) and the handshake after the
connection opens takes about ten of them (the CBS links' attaches, the token's put and its
answer, the link's attach and flow), so a link spends ~0.5 s asleep between frames that had
long arrived: the larger part of a starting worker's way to its first reply.

`fast_open(link)` makes that wait read frames as they come: the client's `client_ready_async`
(for the open only) calls the SDK's own one up to `STEPS_PER_POLL` times in a row, each step
reading the next frame or waiting the socket timeout for it, and returns as soon as the link
is ready. The SDK's loop, its deadline and its error handling stay as they are: a link not
ready after those steps returns to the SDK's sleep, so a handshake that stalls polls no faster
than `STEPS_PER_POLL` socket reads per 50 ms. Once ready, the client's own method is back
(the wrapper removes itself), so running links are untouched; a re-open (after a link error)
wraps the new client the same way.

The private attributes used here are declared in `qscore.transport.sdk_hooks.HOOKS`
(receiver/sender.create_handler, receiver/sender.handler, client.client_ready), checked at
start there; a link whose SDK lacks one opens the SDK's way, counted as that hook's fallback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from qscore.transport import sdk_hooks

if TYPE_CHECKING:
    from azure.servicebus.aio import ServiceBusClient, ServiceBusSender

# Steps (frames read, or socket-timeout waits) per SDK poll: more than a handshake takes, few
# enough that a stalled handshake does not spin (a step that reads nothing waits the timeout).
STEPS_PER_POLL = 40


def _hook_names(link: Any) -> tuple[str, str]:
    """(create_handler, handler) hook names for a sender or a receiver."""
    from azure.servicebus.aio import ServiceBusSender

    if isinstance(link, ServiceBusSender):
        return "sender.create_handler", "sender.handler"
    return "receiver.create_handler", "receiver.handler"


def fast_open(link: Any) -> bool:
    """Make `link`'s (a ServiceBusReceiver's or ServiceBusSender's) opens wait for the handshake
    frame by frame rather than every 50 ms; call before it opens. False (counted) when the SDK
    lacks a hook: the link then opens the SDK's way."""
    create_hook, handler_hook = _hook_names(link)
    create_handler = getattr(link, "_create_handler", None)
    if not callable(create_handler):
        sdk_hooks.fallback(create_hook)
        return False

    def create_and_wrap(*args: Any, **kwargs: Any) -> Any:
        created = create_handler(*args, **kwargs)
        handler = getattr(link, "_handler", None)
        if handler is None:
            sdk_hooks.fallback(handler_hook)
        else:
            _wrap_client_ready(handler)
        return created

    link._create_handler = create_and_wrap
    return True


def fast_open_sender(client: ServiceBusClient, queue: str) -> ServiceBusSender:
    """`client.get_queue_sender(queue)`, opening as `fast_open` describes."""
    sender = client.get_queue_sender(queue)
    fast_open(sender)
    return sender


async def attach_link(link: Any) -> None:
    """Open `link` (a ServiceBusSender or ServiceBusReceiver) now: connection, token and attach,
    several round trips, taken in the background by a link pool ahead of need."""
    await link.__aenter__()


def _wrap_client_ready(handler: Any) -> None:
    poll: Callable[[], Awaitable[bool]] | None = getattr(handler, "client_ready_async", None)
    if not callable(poll):
        sdk_hooks.fallback("client.client_ready")
        return

    async def client_ready_async() -> bool:
        for _ in range(STEPS_PER_POLL):
            if await poll():
                vars(handler).pop("client_ready_async", None)  # ready: the SDK's own method again
                return True
            await asyncio.sleep(0)  # let the other links' opens (and the worker) run between frames
        return False

    handler.client_ready_async = client_ready_async
