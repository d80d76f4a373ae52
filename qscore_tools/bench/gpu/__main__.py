"""`python -m qscore_tools.bench.gpu [--dry-run] [--out DIR]`: the GPU benchmark (bench/gpu/run.sh runs it).

Exit codes: 0 measured; 2 bad arguments; 3 a preflight or conversion check failed (nothing
measured, results still written); 4 Triton did not start. Results go to `--out`, else `$OUT`,
else `.qscore/gpu-bench/`, and are rewritten after every search, so a run killed at its time
limit still leaves what it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from qscore_tools.bench.gpu import report
from qscore_tools.bench.gpu.gpu_monitor import GpuMonitor
from qscore_tools.bench.gpu.plan import GpuBenchSettings, missing_there, searches
from qscore_tools.bench.gpu.preflight import compute_apps, gpu_facts, preflight
from qscore_tools.bench.gpu.repository import Variant, variants
from qscore_tools.bench.gpu.runner import (
    Budget,
    GpuRun,
    check_conversion,
    measure_all,
    resolve_device,
    served_check,
    start_triton,
)
from qscore_tools.bench.machine import machine_facts
from qscore_tools.bench.workload import ROOT, load_pixels

DEFAULT_OUT = ROOT / ".qscore" / "gpu-bench"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU dry run: tiny windows, device cpu")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--out", type=Path, help="results directory (default $OUT, else .qscore/gpu-bench)")
    parser.add_argument("--budget-s", type=float, help="seconds after which no point starts")
    parser.add_argument("--duration-s", type=float, help="measured seconds per point")
    parser.add_argument("--models", help="comma-separated (default bench_mlp,digits)")
    parser.add_argument("--max-batch-sizes", help="comma-separated (default 64,256)")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> GpuBenchSettings:
    overrides = {
        "device": args.device,
        "budget_s": args.budget_s,
        "duration_s": args.duration_s,
        "models": tuple(args.models.split(",")) if args.models else None,
        "max_batch_sizes": tuple(int(x) for x in args.max_batch_sizes.split(","))
        if args.max_batch_sizes
        else None,
    }
    base = GpuBenchSettings.dry() if args.dry_run else GpuBenchSettings()
    return base.with_overrides(**overrides)


def served_checks(run: GpuRun, url: str, pixels: object) -> None:
    largest = max(run.settings.max_batch_sizes)
    for model in run.settings.models:
        check = served_check(url, Variant(model, largest, True), pixels)  # type: ignore[arg-type]
        run.served.append(check)
        if not check["passed"]:
            run.problems.append(f"served outputs differ from onnxruntime: {check}")


def measure(run: GpuRun, out_dir: Path, budget: Budget) -> int:
    """Start Triton on the variant repository, check what it serves, run the searches."""
    pixels = load_pixels()
    wanted = variants(run.settings.models, run.settings.max_batch_sizes)
    with tempfile.TemporaryDirectory(prefix="qscore-gpu-repo-") as tmp:
        triton = start_triton(run, Path(tmp) / "models", wanted, out_dir / "tritonserver.log")
        if triton is None:
            run.problems.append(f"tritonserver did not start: {run.triton}")
            return 4
        try:
            run.triton["compute_apps"] = compute_apps()
            url = run.triton["grpc_url"]
            served_checks(run, url, pixels)
            with GpuMonitor(out_dir / "nvidia-smi.csv") as gpu:
                write = lambda: report.write(run, out_dir)  # noqa: E731
                urls = (url, run.triton["metrics_url"])
                asyncio.run(measure_all(run, urls, searches(run.settings), budget, gpu, write))
        finally:
            triton.stop()
    return 0


def execute(settings: GpuBenchSettings, out_dir: Path) -> int:
    started = time.time()
    budget = Budget(started, settings.budget_s)
    run = GpuRun(settings=settings, started_at=started, device=resolve_device(settings.device))
    run.machine, run.gpu = machine_facts(), gpu_facts()
    code = 0
    try:
        run.preflight, run.problems, install = preflight(run.device)
        print(f"preflight: {'ok' if not run.problems else run.problems}", flush=True)
        if run.problems or install is None:
            return 3
        if not check_conversion(run, load_pixels()):
            return 3
        print(f"conversion checks passed on {run.device}", flush=True)
        code = measure(run, out_dir, budget)
        # Dry run: imported here but absent on the GPU machine (by name; versions cannot be
        # checked). There, an import that worked is proof enough.
        missing = missing_there(list(sys.modules)) if settings.dry_run else []
        run.preflight["imports_missing_on_gpu_machine"] = missing
        if missing:
            run.problems.append(f"this run imported {', '.join(missing)}, which the GPU machine lacks")
        return 3 if run.problems and code == 0 else code
    finally:
        run.finished_at = time.time()
        json_path, md_path = report.write(run, out_dir)
        print(f"wrote {json_path} and {md_path}", flush=True)
        print(md_path.read_text(), flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = settings_from(args)
    out_dir = args.out or (Path(os.environ["OUT"]) if os.environ.get("OUT") else DEFAULT_OUT)
    sys.exit(execute(settings, out_dir))


if __name__ == "__main__":
    main()
