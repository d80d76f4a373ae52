"""What one GPU run measures, and whether it fits the lent machine's limits.

Limits (the device tool's README): 64 MiB travel with a call (working tree + carried wheels),
10 minutes per command, 15 minutes of device time per session. The issue asks the run to end
well inside 8 minutes, so `run.sh` kills it at `HARD_LIMIT_S` and the Python entry stops
starting points at `budget_s`, keeping `RESERVE_S` to stop Triton and write the results.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from qscore_tools.bench.children import SPAWN_ALLOWANCE_S
from qscore_tools.bench.workload import ROOT

TRAVEL_LIMIT_BYTES = 64 * 1024 * 1024
WHEELS_FILE = ROOT / "bench" / "gpu" / "wheels.txt"
HARD_LIMIT_S = 420  # run.sh's `timeout` around install + Python entry: 7 min
INSTALL_ALLOWANCE_S = 40  # pip install --target of the carried wheels (unzip of ~57 MB)
# Triton start timeout (per instance kind tried): 8 stubs importing torch took 43 s on 2 busy
# cores here; a start that hangs on the GPU must not eat the whole budget.
START_ALLOWANCE_S = 90
RESERVE_S = 25  # stopping Triton (~3 s) and writing the results
# Per point beyond its window: children start Python + tritonclient, then write their result.
POINT_OVERHEAD_S = SPAWN_ALLOWANCE_S + 1.0

FULL_LEVELS = (1, 2, 4, 8, 16)  # requests of max-batch rows in flight
ROW_LEVELS = (16, 64, 256, 1024)  # one-row requests in flight (Triton's batcher must gather them)


@dataclass(frozen=True, kw_only=True)
class GpuBenchSettings:
    models: tuple[str, ...] = ("bench_mlp", "digits")
    max_batch_sizes: tuple[int, ...] = (64, 256)
    device: str = "auto"  # auto = cuda when torch sees a GPU, else cpu (the dry run)
    warmup_s: float = 0.5
    duration_s: float = 2.0
    full_levels: tuple[int, ...] = FULL_LEVELS
    row_levels: tuple[int, ...] = ROW_LEVELS
    budget_s: float = 280.0  # from the Python entry's start; points that would end later are skipped
    torch_threads: int = 1
    dry_run: bool = False
    # Try KIND_GPU instances before KIND_CPU even without CUDA: the dry run exercises the fallback.
    try_gpu_instances: bool = False

    def with_overrides(self, **overrides: Any) -> GpuBenchSettings:
        return replace(self, **{key: value for key, value in overrides.items() if value is not None})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def dry(cls, **overrides: Any) -> GpuBenchSettings:
        """The CPU dry run: same code path, tiny windows and levels, so 2 shared cores cope."""
        dry = cls(
            device="cpu",
            warmup_s=0.2,
            duration_s=2.0,
            full_levels=(1, 2),
            row_levels=(8, 32),
            budget_s=300.0,
            dry_run=True,
            try_gpu_instances=True,
        )
        return dry.with_overrides(**overrides)


@dataclass(frozen=True)
class Search:
    """One ceiling search: a variant (model, max batch, batching) under requests of `rows` rows."""

    model: str
    max_batch_size: int
    dynamic_batching: bool
    rows: int  # rows per request: max_batch_size ("full", pre-batched) or 1 ("rows")
    levels: tuple[int, ...]

    @property
    def mode(self) -> str:
        return "full" if self.rows > 1 else "rows"

    @property
    def label(self) -> str:
        batching = "db" if self.dynamic_batching else "nodb"
        return f"{self.model} mb{self.max_batch_size} {batching} {self.mode}"


def searches(settings: GpuBenchSettings) -> list[Search]:
    """Most important first, so a run short of time drops the least telling ones."""
    largest = max(settings.max_batch_sizes)
    first: list[Search] = []
    for model in settings.models:
        first += [Search(model, m, True, m, settings.full_levels) for m in settings.max_batch_sizes]
        first += [Search(model, m, True, 1, settings.row_levels) for m in settings.max_batch_sizes]
        first.append(Search(model, largest, False, 1, settings.row_levels))
    last = [
        Search(model, m, False, m, settings.full_levels)
        for model in settings.models
        for m in settings.max_batch_sizes
    ]
    return first + last


def point_cost_s(settings: GpuBenchSettings) -> float:
    return POINT_OVERHEAD_S + settings.warmup_s + settings.duration_s


def estimated_measure_s(settings: GpuBenchSettings) -> float:
    """Every level of every search run (the worst case; searches usually stop earlier)."""
    return sum(len(s.levels) for s in searches(settings)) * point_cost_s(settings)


def time_plan(settings: GpuBenchSettings) -> dict[str, float]:
    """The run's time line against the hard limit (what tests/test_gpu_prep.py checks)."""
    worst = INSTALL_ALLOWANCE_S + settings.budget_s + RESERVE_S
    return {
        "install_allowance_s": INSTALL_ALLOWANCE_S,
        "start_allowance_s": START_ALLOWANCE_S,
        "budget_s": settings.budget_s,
        "reserve_s": RESERVE_S,
        "worst_case_end_s": worst,
        "hard_limit_s": HARD_LIMIT_S,
        "all_levels_s": estimated_measure_s(settings),
    }


@dataclass(frozen=True)
class Wheel:
    requirement: str  # NAME==VERSION
    size_bytes: int  # as downloaded by fetch-wheels.sh (checked there and here)


def planned_wheels(path: Path = WHEELS_FILE) -> list[Wheel]:
    """bench/gpu/wheels.txt: `NAME==VERSION SIZE_BYTES` per line, # comments."""
    wheels = []
    for line in path.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            requirement, size = text.split()
            wheels.append(Wheel(requirement, int(size)))
    return wheels


def tracked_tree_bytes(root: Path = ROOT) -> int:
    """Bytes of the files git tracks: what travels besides the wheels (untracked files add to it)."""
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True)
    names = [name for name in listing.stdout.decode().split("\0") if name]
    return sum(os.path.getsize(root / name) for name in names if (root / name).is_file())


def travel_plan(root: Path = ROOT) -> dict[str, int]:
    wheels = sum(w.size_bytes for w in planned_wheels())
    tree = tracked_tree_bytes(root)
    return {
        "wheels_bytes": wheels,
        "tracked_tree_bytes": tree,
        "total_bytes": wheels + tree,
        "limit_bytes": TRAVEL_LIMIT_BYTES,
        "headroom_bytes": TRAVEL_LIMIT_BYTES - wheels - tree,
    }


MACHINE_PACKAGES_FILE = ROOT / "bench" / "gpu" / "gpu-machine-packages.txt"
# Distributions that come with the interpreter or are never imported at run time.
ALWAYS_THERE = {"pip", "setuptools", "wheel"}


def normalized(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def available_there() -> set[str]:
    """What the GPU machine has (bench/gpu/gpu-machine-packages.txt) plus the carried wheels."""
    lines = MACHINE_PACKAGES_FILE.read_text().splitlines()
    there = {normalized(line) for line in lines if line.strip() and not line.startswith("#")}
    carried = {normalized(w.requirement.split("==")[0]) for w in planned_wheels()}
    return there | carried | ALWAYS_THERE


def imported_distributions(modules: list[str]) -> set[str]:
    """Distributions providing `modules` (dotted names, e.g. sys.modules' keys).

    A namespace shared by several distributions (`google`, `azure`) is resolved one level down,
    by which distribution's files hold that subpackage.
    """
    from importlib import metadata

    by_package = metadata.packages_distributions()
    found: set[str] = set()
    shared: dict[str, list[str]] = {}
    for name in modules:
        parts = name.split(".")
        owners = by_package.get(parts[0], [])
        if len(owners) == 1:
            found.add(normalized(owners[0]))
        elif len(owners) > 1 and len(parts) > 1:
            shared[f"{parts[0]}/{parts[1]}"] = owners
    for prefix, owners in shared.items():
        for owner in owners:
            files = metadata.files(owner) or []
            if any(str(f).startswith((f"{prefix}/", f"{prefix}.")) for f in files):
                found.add(normalized(owner))
    return found


def missing_there(modules: list[str]) -> list[str]:
    """Distributions a process imported that the GPU machine would not have."""
    return sorted(imported_distributions(modules) - available_there())
