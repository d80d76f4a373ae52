"""Chaos run: steady load through the real local stack while its parts are killed, then count.

    python -m qscore_tools.bench.chaos --duration 60 --rate 80 --workers 2 \
        --faults worker-kill,triton-kill,bus-kill,worker-term

Parts: a durable local bus (`qscore_local.bus`, own data dir; request and reply locks of 5 s so
a killed worker's messages come back quickly), Triton (`qscore_local.triton`, or `--triton-url`
for one already running, then without triton faults), N workers (`python -m workers`
subprocesses). Faults, spread evenly over the load: `worker-kill` (SIGKILL a worker mid-batch,
start a new one), `worker-term` (SIGTERM: drain, exit, start a new one), `triton-kill` (SIGKILL
Triton, start it again on the same ports), `bus-kill` (SIGKILL the bus, start it again on the
same port and data). After the load the run waits for every accepted request to be answered
(or `--drain-timeout`), reads the dead-letter queue, and reports lost requests (must be 0),
wrong answers (0) and duplicates. Exit code 1 when anything was lost or wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qscore_local.bus.config import QueueConfig
from qscore_local.bus.launcher import LocalBus
from qscore_tools.bench.chaos_load import ChaosReport, Ledger, Producer, ReplyReader

log = logging.getLogger(__name__)

FAULTS = ("worker-kill", "worker-term", "triton-kill", "bus-kill")
REQUEST_QUEUE = "scoring-requests"
REPLY_QUEUE = "scoring-replies"


def chaos_queues(lock_s: int) -> list[QueueConfig]:
    """Short locks, so a killed worker's messages come back quickly; max delivery 10, so five
    kills in a row do not dead-letter a request the run counts on."""
    return [
        QueueConfig(
            name=REQUEST_QUEUE,
            lock_duration_s=lock_s,
            max_delivery_count=10,
            dead_lettering_on_expiration=True,
        ),
        QueueConfig(name=REPLY_QUEUE, requires_session=True, lock_duration_s=lock_s, default_ttl_s=900),
    ]


@dataclass(frozen=True, kw_only=True)
class ChaosConfig:
    duration_s: float = 30.0
    rate: float = 80.0  # requests per second
    workers: int = 2
    faults: Sequence[str] = FAULTS
    drain_timeout_s: float = 90.0
    triton_url: str | None = None  # None: start (and be free to kill) a Triton of our own
    work_dir: Path | None = None
    samples: int = 200
    lock_s: int = 5  # the queues' lock duration


@dataclass
class ChaosStack:
    """The processes a chaos run owns; each fault acts on one of them."""

    config: ChaosConfig
    work_dir: Path
    bus: LocalBus
    triton: Any = None
    triton_url: str = ""
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started_workers: int = 0

    @property
    def connection(self) -> str:
        assert self.bus.endpoint is not None
        return self.bus.endpoint.connection_string

    def worker_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "QSCORE_SERVICEBUS_CONNECTION": self.connection,
            "QSCORE_SERVICEBUS_NAMESPACE": "",
            "QSCORE_TRITON_URL": self.triton_url,
            "QSCORE_HEALTH_PORT": "off",
            "QSCORE_REGISTRY_PATH": str(self.work_dir / "registry.json"),
            "QSCORE_DRAIN_GRACE_S": "10",
            "QSCORE_BACKOFF_INITIAL_S": "0.2",
            "QSCORE_BACKOFF_MAX_S": "2",
            "QSCORE_WORKER_ID": f"chaos-worker-{self.started_workers}",
        }

    def start_worker(self) -> subprocess.Popen[bytes]:
        log_file = (self.work_dir / f"worker-{self.started_workers}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "workers"],
            env=self.worker_env(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        log_file.close()  # the child holds its own descriptor
        self.started_workers += 1
        self.workers.append(process)
        return process

    def next_victim(self) -> subprocess.Popen[bytes]:
        alive = [worker for worker in self.workers if worker.poll() is None]
        return alive[self.started_workers % len(alive)]

    async def stop_workers(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                await asyncio.to_thread(worker.wait, 20)
            except subprocess.TimeoutExpired:
                worker.kill()
                await asyncio.to_thread(worker.wait)


async def apply_fault(stack: ChaosStack, fault: str) -> None:
    """Inflict one fault and start the part again (a new worker for a worker fault)."""
    if fault in {"worker-kill", "worker-term"}:
        victim = stack.next_victim()
        victim.send_signal(signal.SIGKILL if fault == "worker-kill" else signal.SIGTERM)
        await asyncio.to_thread(victim.wait, 30)
        stack.workers.remove(victim)
        stack.start_worker()
    elif fault == "triton-kill":
        if stack.triton is None:
            raise ValueError("triton-kill needs a Triton of the run's own (no --triton-url)")
        await asyncio.to_thread(stack.triton.kill)
        await asyncio.to_thread(stack.triton.start)
    elif fault == "bus-kill":
        await asyncio.to_thread(stack.bus.kill)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(stack.bus.start)
    else:
        raise ValueError(f"unknown fault {fault!r}; choose from {', '.join(FAULTS)}")


async def _inflict(stack: ChaosStack, faults: Sequence[str], duration_s: float, done: list[str]) -> None:
    started = time.monotonic()
    for index, fault in enumerate(faults):
        at = duration_s * (index + 1) / (len(faults) + 1)
        await asyncio.sleep(max(0.0, started + at - time.monotonic()))
        began = time.monotonic()
        await apply_fault(stack, fault)
        done.append(f"{fault}@{began - started:.1f}s (back in {time.monotonic() - began:.1f}s)")
        log.info("fault %s done", fault)


async def expected_labels(triton_url: str, samples: np.ndarray) -> np.ndarray:
    """What the served production version answers for each sample, asked of Triton directly."""
    from qscore.inference import TritonClient

    client = TritonClient(triton_url)
    try:
        await client.wait_ready(timeout=120)
        spec = await client.model_spec("digits")
        version = max(spec.versions, key=int) if spec.versions else ""
        result = await client.infer("digits", {"pixels": samples.astype(np.float32)}, version=version)
    finally:
        await client.close()
    return np.asarray(result.outputs["label"]).reshape(-1).astype(np.int64)


async def dead_lettered(connection: str) -> dict[str, str]:
    """Request id -> dead-letter reason, for everything in the request queue's dead-letter queue."""
    from azure.servicebus import ServiceBusReceiveMode, ServiceBusSubQueue
    from azure.servicebus.aio import ServiceBusClient

    found: dict[str, str] = {}
    async with ServiceBusClient.from_connection_string(connection) as client:
        receiver = client.get_queue_receiver(
            REQUEST_QUEUE,
            sub_queue=ServiceBusSubQueue.DEAD_LETTER,
            receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE,
        )
        async with receiver:
            while batch := await receiver.receive_messages(max_message_count=200, max_wait_time=1.0):
                found.update({str(m.message_id): str(m.dead_letter_reason) for m in batch})
    return found


async def _drain(ledger: Ledger, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while ledger.unanswered and time.monotonic() < deadline:  # noqa: ASYNC110 (polls a counter)
        await asyncio.sleep(0.25)


async def _load_and_faults(
    stack: ChaosStack, config: ChaosConfig, samples: np.ndarray, labels: np.ndarray
) -> ChaosReport:
    ledger = Ledger()
    session_id = f"chaos-{uuid.uuid4().hex[:8]}"
    reader = ReplyReader(stack.connection, REPLY_QUEUE, session_id, ledger)
    reading = asyncio.create_task(reader.run())
    producer = Producer(
        stack.connection,
        REQUEST_QUEUE,
        REPLY_QUEUE,
        session_id,
        samples,
        labels,
        ledger,
        config.rate,
        config.duration_s,
    )
    done: list[str] = []
    started = time.monotonic()
    try:
        await asyncio.gather(producer.run(), _inflict(stack, config.faults, config.duration_s, done))
        await _drain(ledger, config.drain_timeout_s)
    finally:
        reader.stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reading, timeout=10)
    elapsed = time.monotonic() - started
    return ledger.report(await dead_lettered(stack.connection), done, elapsed)


async def run_chaos(config: ChaosConfig) -> ChaosReport:
    """Start the stack, run load with the faults, stop everything; the counts."""
    from qscore.inference.testset import load_digits_test_set

    bad = sorted(set(config.faults) - set(FAULTS))
    if bad:
        raise ValueError(f"unknown faults {bad}; choose from {', '.join(FAULTS)}")
    with contextlib.ExitStack() as cleanup:
        work_dir = config.work_dir or Path(
            cleanup.enter_context(tempfile.TemporaryDirectory(prefix="qscore-chaos-"))
        )
        work_dir.mkdir(parents=True, exist_ok=True)
        bus = LocalBus(
            queues=chaos_queues(config.lock_s), data_dir=work_dir / "bus-data", log_path=work_dir / "bus.log"
        )
        bus.start()
        cleanup.callback(bus.close)
        stack = ChaosStack(config=config, work_dir=work_dir, bus=bus, triton_url=config.triton_url or "")
        if not config.triton_url:
            from qscore_local.triton.launcher import LocalTriton

            stack.triton = LocalTriton(models=["digits"], log_path=work_dir / "triton.log")
            stack.triton_url = (await asyncio.to_thread(stack.triton.start)).grpc_url
            cleanup.callback(stack.triton.stop)
        test_set = load_digits_test_set()
        samples = test_set.pixels[: config.samples].astype(np.float32)
        labels = await expected_labels(stack.triton_url, samples)
        for _ in range(config.workers):
            stack.start_worker()
        try:
            return await _load_and_faults(stack, config, samples, labels)
        finally:
            await stack.stop_workers()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qscore_tools.bench.chaos", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=80.0, help="requests per second")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--faults", default=",".join(FAULTS), help=f"comma-separated, in order: {', '.join(FAULTS)}"
    )
    parser.add_argument("--drain-timeout", type=float, default=90.0)
    parser.add_argument("--triton-url", default=None, help="use this Triton (then no triton-kill)")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep logs and bus data here")
    parser.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The SDK logs every link torn down by a bus kill with a traceback; the run counts what matters.
    logging.getLogger("azure").setLevel(logging.CRITICAL)
    config = ChaosConfig(
        duration_s=args.duration,
        rate=args.rate,
        workers=args.workers,
        faults=[fault for fault in args.faults.split(",") if fault],
        drain_timeout_s=args.drain_timeout,
        triton_url=args.triton_url,
        work_dir=args.work_dir,
    )
    try:
        report = asyncio.run(run_chaos(config))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
    return 1 if report.lost or report.wrong else 0


if __name__ == "__main__":
    sys.exit(main())
