"""Run the endpoint in this process until SIGTERM/SIGINT (used by `qscore bus serve`)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from proton.reactor import Container

from qscore.heap import freeze_start_up_heap
from qscore_local.bus import codec
from qscore_local.bus.addressing import entity_summary
from qscore_local.bus.broker import Broker
from qscore_local.bus.config import QueueConfig
from qscore_local.bus.latency import NetworkLatency
from qscore_local.bus.loop import BusLoop
from qscore_local.bus.server import BusServer
from qscore_local.bus.store import MessageStore

DEFAULT_PORT = 5672
REACTOR_ENV = "QSCORE_BUS_REACTOR"


def connection_string(host: str, port: int) -> str:
    """What producers and workers pass to ServiceBusClient.from_connection_string."""
    return (
        f"Endpoint=sb://{host}:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=local;UseDevelopmentEmulator=true"
    )


def serve(
    queues: list[QueueConfig],
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    data_dir: Path | None = None,
    latency: NetworkLatency | None = None,
) -> None:
    """Serve until a signal arrives; blocks the calling thread (it is the reactor thread).

    `latency` delays every AMQP connection's bytes each way (qscore_local/bus/latency.py).
    """
    latency = latency or NetworkLatency()
    container = os.environ.get(REACTOR_ENV) == "container"
    if container and latency.enabled:
        raise ValueError(f"network latency needs the endpoint's own loop (unset {REACTOR_ENV})")
    store_path = None
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        store_path = data_dir / "bus.sqlite3"
    store = MessageStore(store_path)
    broker = Broker(queues, store)
    recovered = broker.recover(codec.now_ms())
    server = BusServer(broker, host=host, port=port)
    # proton's own reactor (QSCORE_BUS_REACTOR=container) is slower, kept to compare.
    runner = Container(server) if container else BusLoop(server, host=host, port=port, latency=latency)

    def _stop(signum: int, frame: FrameType | None) -> None:
        runner.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"qscore bus listening on amqp://{host}:{port}", flush=True)
    print(f"connection string: {connection_string(host, port)}", flush=True)
    if not isinstance(runner, Container):
        print("same port: AMQP over WebSockets, administration API (https, self-signed)", flush=True)
    if latency.enabled:
        jitter = f" + up to {latency.jitter_s * 1000:g} ms jitter" if latency.jitter_s else ""
        print(f"network latency: {latency.one_way_s * 1000:g} ms each way{jitter}", flush=True)
    print(f"store: {store_path or 'in memory'} ({recovered} messages recovered)", flush=True)
    for name in broker.queue_names():
        print(f"queue: {entity_summary(broker.entities[name])}", flush=True)
    # The endpoint's start-up objects are left out of its collections (qscore.heap): a full
    # collection otherwise stopped the reactor for ~100 ms under load, every queue's traffic with it.
    freeze_start_up_heap()  # for the process's life: the undo is not needed
    try:
        runner.run()
    finally:
        store.close()
        print("qscore bus stopped", file=sys.stderr, flush=True)


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
