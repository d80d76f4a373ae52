"""Smoke tests of the built images, not of the source tree.

Worker: `qscore worker` runs inside the worker image (`buildah run --isolation chroot`, host
network) against the local bus endpoint and a local Triton serving the repository copied out
of the model image; held-out digits go in, replies come back and are checked (all ok, labels
mostly right), and the worker exits by itself after the last one (job mode).
Functions: the app indexes inside the Functions image with the azure.functions it ships.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from qscore_tools.release.buildah import Buildah, ReleaseError

SMOKE_REQUESTS = 24
MIN_ACCURACY = 0.8
WWWROOT = "/home/site/wwwroot"
_INDEX_APP = """
import json, sys
sys.path[:0] = ["WWWROOT", "WWWROOT/.python_packages/lib/site-packages"]
import azure.functions, function_app
functions = [{"name": f.get_function_name(), **json.loads(f.get_function_json())}
             for f in function_app.app.get_functions()]
print(json.dumps({"azure_functions": azure.functions.__version__, "functions": functions}))
""".replace("WWWROOT", WWWROOT)


@dataclass(frozen=True)
class WorkerSmoke:
    requests: int
    ok: int
    accuracy: float
    model_versions: list[str]
    worker_exit: int
    seconds: float


def index_functions_app(buildah: Buildah, image: str) -> list[str]:
    """Names of the functions the app defines, indexed inside `image`."""
    with buildah.container(image) as container:
        proc = subprocess.run(
            buildah.run_command(container, ["python3", "-c", _INDEX_APP], {}),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    if proc.returncode != 0:
        raise ReleaseError(f"the Functions app does not index in {image}: {proc.stderr.strip()[-600:]}")
    indexed = json.loads(proc.stdout.strip().splitlines()[-1])
    names = [f["name"] for f in indexed["functions"]]
    if not names:
        raise ReleaseError(f"the Functions app in {image} indexes no functions")
    return names


def copy_model_repository(buildah: Buildah, image: str, target: Path) -> Path:
    """/models of the model image, copied to `target` (what the Triton init container does)."""
    with buildah.mounted(image) as root:
        shutil.copytree(root / "models", target)
    return target


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ReleaseError(f"the worker in the image exited ({process.returncode}) before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise ReleaseError(f"the worker in the image was not ready ({url}) within {timeout:.0f} s")


async def _score(connection: str, count: int) -> tuple[int, float, list[str]]:
    import numpy as np

    from qscore.inference.testset import load_digits_test_set
    from qscore.producer import ProducerSettings, ScoringProducer
    from qscore_local.demo.workload import LABEL_NAME, DigitsWorkload

    workload = DigitsWorkload(test_set=load_digits_test_set(), requests=count)
    requests = list(workload)
    async with ScoringProducer(
        settings=ProducerSettings(connection=connection, reply_timeout_s=90)
    ) as producer:
        outcomes = await producer.score_many(requests)
    ok = [o for o in outcomes if o.ok and o.reply is not None]
    correct = sum(
        int(np.sum(o.reply.outputs[LABEL_NAME].to_numpy() == workload.labels_by_request[o.request_id]))
        for o in ok
        if o.reply is not None and o.reply.outputs and LABEL_NAME in o.reply.outputs
    )
    versions = sorted({str(o.reply.model_version) for o in ok if o.reply is not None})
    return len(ok), correct / max(len(requests), 1), versions


def smoke_worker(
    buildah: Buildah, worker_image: str, models_image: str, work: Path, log: Path
) -> WorkerSmoke:
    """Score SMOKE_REQUESTS requests through the worker running inside `worker_image`."""
    from qscore_local.bus import LocalBus
    from qscore_local.triton.launcher import LocalTriton, pick_free_port

    started = time.monotonic()
    repository = copy_model_repository(buildah, models_image, work / "models")
    with LocalBus(log_path=work / "bus.log") as bus:
        triton = LocalTriton(repo=repository, models=["digits"], log_path=work / "triton.log")
        endpoints = triton.start()
        try:
            health_port = pick_free_port()
            argv = [
                "qscore", "worker", "--connection", bus.connection_string,
                "--triton-url", endpoints.grpc_url, "--health-port", str(health_port),
            ]  # fmt: skip
            env = {"QSCORE_EXIT_AFTER_MESSAGES": str(SMOKE_REQUESTS)}
            with buildah.container(worker_image) as container, log.open("a") as out:
                process = subprocess.Popen(
                    buildah.run_command(container, argv, env),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                try:
                    _wait_ready(f"http://127.0.0.1:{health_port}/readyz", process, timeout=90)
                    ok, accuracy, versions = asyncio.run(_score(bus.connection_string, SMOKE_REQUESTS))
                    exit_code = process.wait(timeout=60)
                finally:
                    if process.poll() is None:
                        os.killpg(process.pid, signal.SIGKILL)
                        process.wait()
        finally:
            triton.stop()
    result = WorkerSmoke(SMOKE_REQUESTS, ok, accuracy, versions, exit_code, time.monotonic() - started)
    if ok != SMOKE_REQUESTS or accuracy < MIN_ACCURACY or exit_code != 0:
        raise ReleaseError(f"worker smoke test failed: {result} (worker log: {log})")
    return result
