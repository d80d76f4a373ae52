"""One GPU benchmark run: check the conversion, start Triton once, search each ceiling, in a budget.

Steps: preflight (seconds) -> torch-vs-onnxruntime check of every `model.onnx` on the device ->
derive the variant repository -> start tritonserver (KIND_GPU; KIND_CPU with torch on CUDA if the
server refuses GPU instances) -> served outputs checked against onnxruntime -> the ceiling
searches of plan.searches(), most telling first, each point's GPU utilisation from nvidia-smi.
The run never starts a point that would end past its budget; what it skipped is listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qscore_tools.bench.children import SPAWN_ALLOWANCE_S, LoadGeneratorFailed
from qscore_tools.bench.direct import CeilingSearch, measure_direct
from qscore_tools.bench.gpu.equivalence import OUTPUTS, Equivalence, check_repository, compare_outputs
from qscore_tools.bench.gpu.gpu_monitor import GpuMonitor
from qscore_tools.bench.gpu.plan import START_ALLOWANCE_S, GpuBenchSettings, Search, point_cost_s
from qscore_tools.bench.gpu.repository import DeviceSettings, Variant, derive_gpu_repository, latest_onnx
from qscore_tools.bench.workload import ROOT

SOURCE_REPO = ROOT / "triton_repo"


@dataclass(frozen=True)
class Budget:
    started_at: float
    budget_s: float

    @property
    def deadline(self) -> float:
        return self.started_at + self.budget_s

    def remaining(self) -> float:
        return self.deadline - time.time()

    def fits(self, seconds: float) -> bool:
        return seconds <= self.remaining()


@dataclass
class SearchResult:
    search: Search
    points: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = ""  # why the search ended early, if it did ("time budget", an error)

    @property
    def best(self) -> dict[str, Any] | None:
        return max(self.points, key=lambda p: float(p["samples_per_s"]), default=None)


@dataclass
class GpuRun:
    settings: GpuBenchSettings
    started_at: float
    device: str = "cpu"
    machine: dict[str, Any] = field(default_factory=dict)
    gpu: dict[str, Any] = field(default_factory=dict)
    preflight: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    equivalence: list[Equivalence] = field(default_factory=list)
    served: list[dict[str, Any]] = field(default_factory=list)
    triton: dict[str, Any] = field(default_factory=dict)
    results: list[SearchResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    finished_at: float = 0.0


def resolve_device(requested: str) -> str:
    if requested != "auto":
        return requested
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def start_triton(run: GpuRun, repo_dir: Path, variants: list[Variant], log_path: Path) -> Any:
    """Start tritonserver on the variant repository; KIND_GPU first when on CUDA, then KIND_CPU."""
    from qscore_local.triton.launcher import LocalTriton, TritonStartError

    kinds = ["GPU", "CPU"] if run.device == "cuda" or run.settings.try_gpu_instances else ["CPU"]
    for kind in kinds:
        settings = DeviceSettings(run.device, kind, run.settings.torch_threads)
        derive_gpu_repository(SOURCE_REPO, repo_dir, variants, settings)
        triton = LocalTriton(repo=repo_dir, log_path=log_path)
        began = time.monotonic()
        try:
            endpoints = triton.start(timeout=START_ALLOWANCE_S)
        except TritonStartError as exc:
            run.triton[f"kind_{kind.lower()}_error"] = exc.last_error
            continue
        run.triton |= {"instance_kind": kind, "start_s": round(time.monotonic() - began, 1)}
        run.triton["grpc_url"] = endpoints.grpc_url
        run.triton["metrics_url"] = endpoints.metrics_url
        return triton
    return None


def served_check(url: str, variant: Variant, pixels: np.ndarray) -> dict[str, Any]:
    """Score the held-out set through Triton in max-batch requests; compare with onnxruntime."""
    import onnxruntime as ort
    import tritonclient.grpc as grpcclient

    session = ort.InferenceSession(
        str(latest_onnx(SOURCE_REPO, variant.model)), providers=["CPUExecutionProvider"]
    )
    reference = session.run(list(OUTPUTS), {"pixels": pixels})
    client = grpcclient.InferenceServerClient(url)
    parts: list[list[np.ndarray]] = []
    try:
        for start in range(0, len(pixels), variant.max_batch_size):
            chunk = pixels[start : start + variant.max_batch_size]
            tensor = grpcclient.InferInput("pixels", list(chunk.shape), "FP32")
            tensor.set_data_from_numpy(chunk)
            result = client.infer(variant.name, [tensor])
            parts.append([result.as_numpy(name) for name in OUTPUTS])
    finally:
        client.close()
    served = [np.concatenate([part[i] for part in parts]) for i in range(len(OUTPUTS))]
    diff, mismatches, ties = compare_outputs(reference, served)
    passed = diff <= 1e-4 and mismatches == 0
    return {"variant": variant.name, "rows": len(pixels), "max_abs_probability_diff": diff,
            "label_mismatches": mismatches, "near_tie_flips": ties, "passed": passed}  # fmt: skip


COUNTERS = (
    "nv_inference_request_success",
    "nv_inference_count",
    "nv_inference_exec_count",
    "nv_inference_compute_infer_duration_us",
)


def model_counters(text: str, model: str) -> dict[str, float]:
    """COUNTERS for `model` summed over versions, from Prometheus text.

    Not qscore.inference.metrics: importing qscore.inference pulls in pydantic, which the GPU
    machine lacks (tests/test_gpu_prep.py checks the direct path's imports).
    """
    totals = dict.fromkeys(COUNTERS, 0.0)
    label = f'model="{model}"'
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if name in totals and label in rest:
            with contextlib.suppress(ValueError):
                totals[name] += float(rest.rsplit("}", 1)[1].split()[0])
    return totals


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def counters_at(at: float, metrics_url: str, model: str) -> dict[str, float] | None:
    """Triton's cumulative counters for `model`, read at epoch time `at` (None if unreadable)."""
    await asyncio.sleep(max(0.0, at - time.time()))
    try:
        return model_counters(await asyncio.to_thread(_fetch, metrics_url), model)
    except OSError:
        return None


def server_figures(
    start: dict[str, float] | None, end: dict[str, float] | None, seconds: float
) -> dict[str, float] | None:
    """What Triton did inside the window: batch sizes formed, and how busy the model instance was."""
    if start is None or end is None:
        return None
    delta = {name: end[name] - start[name] for name in COUNTERS}
    executions = delta["nv_inference_exec_count"]
    requests = delta["nv_inference_request_success"]
    # Triton adds an execution's compute time to every request in its batch: scale back by
    # executions / requests to get the instance's (one here) compute seconds per second.
    compute_s = (
        delta["nv_inference_compute_infer_duration_us"] / 1e6 * (executions / requests if requests else 0.0)
    )
    return {
        "executions": executions,
        "rows_per_execution": delta["nv_inference_count"] / executions if executions else 0.0,
        "requests_per_execution": requests / executions if executions else 0.0,
        "instance_busy_fraction": compute_s / seconds,  # 1.0 = the model instance never idle
    }


def _record(point: Any, gpu: GpuMonitor, window: tuple[float, float]) -> dict[str, Any]:
    record = point.as_dict()
    record.pop("latency_cdf", None)  # keeps the JSON small; the percentiles stay
    record["window"] = [round(window[0], 3), round(window[1], 3)]
    record["gpu"] = gpu.window(*window)
    return record


async def run_search(
    urls: tuple[str, str], search: Search, settings: GpuBenchSettings, budget: Budget, gpu: GpuMonitor
) -> SearchResult:
    """Raise in-flight requests until samples/s stops growing (as qscore_tools.bench.direct does)."""
    url, metrics_url = urls
    rules = CeilingSearch(patience=1)
    result = SearchResult(search)
    variant = Variant(search.model, search.max_batch_size, search.dynamic_batching)
    processes = 1 if search.mode == "full" else max(1, rules.max_processes // 4)
    best = 0.0
    for level in search.levels:
        if not budget.fits(point_cost_s(settings)):
            result.stopped = "time budget"
            break
        start = time.time() + SPAWN_ALLOWANCE_S + settings.warmup_s  # as measure_direct's Window
        end = start + settings.duration_s
        reads = [asyncio.create_task(counters_at(at, metrics_url, variant.name)) for at in (start, end)]
        try:
            point = await measure_direct(
                url, variant.name, batch_size=search.rows, concurrency=level,
                processes=min(processes, level), warmup_s=settings.warmup_s, duration_s=settings.duration_s,
            )  # fmt: skip
        except LoadGeneratorFailed as exc:
            result.stopped = f"load generator failed: {exc}"
            break
        finally:
            counters = await asyncio.gather(*reads)
        record = _record(point, gpu, (start, end))
        record["triton"] = server_figures(counters[0], counters[1], settings.duration_s)
        result.points.append(record)
        if point.client_cpu_fraction >= rules.client_busy_fraction:
            processes = min(processes * 2, rules.max_processes)
        if point.samples_per_s > best * (1 + rules.growth_threshold):
            best = point.samples_per_s
        elif point.client_cpu_fraction < rules.client_busy_fraction:
            break  # no growth and the clients had room: the server is the limit
    return result


async def measure_all(
    run: GpuRun,
    urls: tuple[str, str],
    searches: list[Search],
    budget: Budget,
    gpu: GpuMonitor,
    after_each: Callable[[], object] | None = None,
) -> None:
    """Every search that fits the budget; `after_each` (the results writer) runs after each one."""
    for search in searches:
        if not budget.fits(point_cost_s(run.settings)):
            run.skipped.append(search.label)
            continue
        result = await run_search(urls, search, run.settings, budget, gpu)
        run.results.append(result)
        print(describe(result), flush=True)
        if after_each is not None:
            await asyncio.to_thread(after_each)


def describe(result: SearchResult) -> str:
    best = result.best
    if best is None:
        return f"{result.search.label}: no point ({result.stopped or 'none run'})"
    gpu = best.get("gpu") or {}
    util = f", GPU {gpu['gpu_util_mean_pct']:.0f}%" if gpu else ""
    return (
        f"{result.search.label}: {best['samples_per_s']:,.0f} samples/s at c={best['concurrency']} "
        f"x{best['processes']} proc{util}" + (f" [{result.stopped}]" if result.stopped else "")
    )


def check_conversion(run: GpuRun, pixels: np.ndarray) -> bool:
    # Every model file the run can serve, whatever --models narrows the searches to.
    run.equivalence = check_repository(SOURCE_REPO, pixels, run.device, GpuBenchSettings().models)
    for check in run.equivalence:
        if not check.passed:
            run.problems.append(
                f"torch != onnxruntime for {check.onnx_file} on {check.device}: {check.as_dict()}"
            )
    return all(check.passed for check in run.equivalence)
