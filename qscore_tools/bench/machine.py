"""Facts about the machine and software a run measured on (goes into the results JSON)."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from qscore_tools.bench.workload import ROOT

PACKAGES = (
    "qscore",
    "numpy",
    "onnxruntime",
    "tritonclient",
    "nvidia-pytriton",
    "azure-servicebus",
    "python-qpid-proton",
    "pydantic",
    "grpcio",
    "psutil",
)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_revision() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        )
        if result.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, timeout=5)
            return result.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    return "unknown"


def machine_facts() -> dict[str, Any]:
    """Cores, CPU model, memory, load, OS, Python and package versions."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "load_average_at_start": [round(value, 2) for value in load],
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "git_revision": git_revision(),
    }
