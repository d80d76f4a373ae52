"""The model lifecycle end to end ("Done when" of issue 15), against the real MLflow store (SQLite),
the real Triton and the local Service Bus, every registry step through the `qscore` CLI:

register v1, v2 -> promote v1, then v2 -> release package -> the worker serves v2 -> canary v1
at 20 % (+ release) -> the worker reloads the routing table and v1 answers about a fifth ->
`model compare` reports both -> feedback accuracy per version matches the labels ->
rollback (+ release) -> v1 serves.

The default form serves with the session Triton (the committed triton_repo/, whose digits files
are byte-identical to what the package holds; the test checks that); the slow form starts a
Triton on the packaged repository itself.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from qscore.contracts import ScoreReply
from qscore.inference.testset import DigitsTestSet
from qscore.monitoring.records import iter_records
from qscore_cli import app
from tests.fixtures.mlflow_registry import CHECKOUT_REPO
from tests.fixtures.triton import start_triton
from tests.fixtures.worker import (
    OutgoingRequest,
    ReplyCollector,
    WorkerSettingsFactory,
    digits_request,
    running_worker,
    send_requests,
)

runner = CliRunner()


def qscore(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.output


class Traffic:
    """Sends held-out digits and keeps every reply with its true label."""

    def __init__(self, bus: Any, queue: str, replies: ReplyCollector, digits: DigitsTestSet) -> None:
        self.bus, self.queue, self.replies, self.digits = bus, queue, replies, digits
        self.sent = 0
        self.labels: dict[str, int] = {}

    async def send(self, count: int) -> list[ScoreReply]:
        ids = []
        for _ in range(count):
            row = self.sent % len(self.digits.labels)
            ids.append(f"req-{self.sent}")
            self.labels[ids[-1]] = int(self.digits.labels[row])
            self.sent += 1
        requests = [
            OutgoingRequest(
                rid,
                digits_request(self.digits.pixels[int(rid[4:]) % len(self.digits.labels)]),
                session_id=self.replies.session_id,
            )
            for rid in ids
        ]
        await send_requests(self.bus.connection_string, self.queue, requests)
        expected = len(set(self.replies.replies) | set(ids))
        await self.replies.collect(expected, timeout_s=60)
        return [self.replies.first(rid) for rid in ids]

    async def until(self, condition: Any, *, batch: int = 40, timeout_s: float = 30) -> list[ScoreReply]:
        """Send batches until one satisfies `condition` (the worker reloads its table within ~2 s)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            answered = await self.send(batch)
            if condition(answered) or loop.time() > deadline:
                return answered
            await asyncio.sleep(0.5)


def versions(answered: list[ScoreReply]) -> Counter[str | None]:
    return Counter(reply.model_version for reply in answered)


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.onnx"))
    }


def logged(log: Path) -> int:
    return sum(1 for _ in iter_records(log)) if log.exists() else 0


async def wait_logged(log: Path, count: int) -> None:
    """The log's writer thread appends soon after a reply; wait until it has every request."""
    for _ in range(100):
        if await asyncio.to_thread(logged, log) >= count:
            return
        await asyncio.sleep(0.1)


def register_and_release(tmp_path: Path) -> Path:
    for version in ("1", "2"):
        qscore(
            "model",
            "register",
            str(CHECKOUT_REPO / "digits" / version),
            "--name",
            "digits",
            "--metric",
            "accuracy=0.9",
            "--git-commit",
            "0" * 40,
        )
    qscore("model", "promote", "digits", "1")
    assert "production 1 -> 2" in qscore("model", "promote", "digits", "2")
    package = tmp_path / "release"
    assert "digits: versions 1, 2" in qscore("release", "package", "--output", str(package))
    return package


async def run_lifecycle(tmp_path: Path, package: Path, traffic: Traffic, settings: Any) -> None:
    log = settings.interaction_log
    async with running_worker(settings):
        first = await traffic.send(60)
        assert versions(first) == {"2": 60}, versions(first)

        qscore("model", "flight", "digits", "1", "--canary", "20")
        qscore("release", "package", "--output", str(package))
        canary = await traffic.until(lambda answered: versions(answered)["1"] > 0)
        canary += await traffic.send(200)
        share = versions(canary)["1"] / len(canary)
        assert 0.1 < share < 0.3, versions(canary)

        await wait_logged(log, traffic.sent)
        report_dir = tmp_path / "compare"
        report = qscore("model", "compare", "digits", "--log", str(log), "--output", str(report_dir))
        assert "| v1 |" in report and "| v2 |" in report and "production v2" in report
        assert "## Verdict" in report and (report_dir / "report.png").read_bytes()[:4] == b"\x89PNG"

        check_feedback(tmp_path, traffic, log)

        assert "production 2 -> 1" in qscore("model", "rollback", "digits")
        qscore("release", "package", "--output", str(package))
        after = await traffic.until(lambda answered: versions(answered) == {"1": len(answered)})
        assert versions(after) == {"1": len(after)}, versions(after)


def check_feedback(tmp_path: Path, traffic: Traffic, log: Path) -> None:
    """`model feedback` accuracy per version equals the accuracy of the replies against the labels."""
    feedback = tmp_path / "feedback.csv"
    with feedback.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["request_id", "row", "label"])
        for request_id, label in traffic.labels.items():
            writer.writerow([request_id, 0, label])
    direct: dict[str, list[bool]] = {}
    for request_id, label in traffic.labels.items():
        reply = traffic.replies.first(request_id)
        predicted = int(reply.output_arrays()["label"].ravel()[0])
        direct.setdefault(str(reply.model_version), []).append(predicted == label)
    out = qscore(
        "model", "feedback", str(feedback), "--model", "digits", "--log", str(log), "--fail-below", "0.5"
    )
    for version, hits in direct.items():
        expected = float(np.mean(hits))
        line = next(line for line in out.splitlines() if f"v{version} (all)" in line)
        reported = float(re.findall(r"\d\.\d{4}", line)[-1])
        assert abs(reported - expected) <= 0.01, (line, expected)


@pytest.fixture
def traffic(bus: Any, fresh_queue: str, replies: ReplyCollector, digits_test_set: DigitsTestSet) -> Traffic:
    return Traffic(bus, fresh_queue, replies, digits_test_set)


async def test_lifecycle_through_the_cli(
    mlflow_store: str, tmp_path: Path, traffic: Traffic, worker_settings: WorkerSettingsFactory
) -> None:
    package = register_and_release(tmp_path)
    digits_package = tree_digest(package / "triton_repo" / "digits")
    assert digits_package == tree_digest(CHECKOUT_REPO / "digits")  # what the session Triton serves
    settings = worker_settings(
        request_queue=traffic.queue,
        registry_path=package / "registry.json",
        interaction_log=tmp_path / "interactions.jsonl",
    )
    await run_lifecycle(tmp_path, package, traffic, settings)


@pytest.mark.slow
async def test_lifecycle_serving_the_packaged_repository(
    mlflow_store: str, tmp_path: Path, traffic: Traffic, worker_settings: WorkerSettingsFactory
) -> None:
    package = register_and_release(tmp_path)
    with start_triton(repo=package / "triton_repo", models=["digits"]) as server:
        assert server.endpoints is not None
        settings = worker_settings(
            request_queue=traffic.queue,
            triton_url=server.endpoints.grpc_url,
            registry_path=package / "registry.json",
            interaction_log=tmp_path / "interactions.jsonl",
        )
        await run_lifecycle(tmp_path, package, traffic, settings)
