"""Checks that take seconds, before any device time goes into starting Triton.

On the lent GPU machine the likely failures are missing pieces, not slow code: the carried
wheels not installed, the Python-backend stub unable to find `libpython3.12.so.1.0`, no CUDA.
Each is found here and named in the results, and the run stops at once rather than after
a Triton start time-out.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from qscore_tools.bench.workload import DIGITS_NPZ

LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/local/lib", "/usr/lib", "/lib/x86_64-linux-gnu")
SEARCH_ROOTS = ("/usr", "/opt", "/root")  # bounded search for a libpython that ldconfig does not know


def missing_libraries(binary: Path, env: dict[str, str]) -> list[str]:
    """Shared libraries `ldd` reports as 'not found' for `binary` under `env`."""
    result = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env, timeout=20)
    return re.findall(r"^\s*(\S+) => not found", result.stdout, flags=re.MULTILINE)


def find_library_dir(name: str) -> Path | None:
    """A directory holding `name`: LIBDIR, the base prefix, the usual dirs, then a search."""
    candidates = [sysconfig.get_config_var("LIBDIR"), os.path.join(sys.base_prefix, "lib"), *LIBRARY_DIRS]
    for directory in candidates:
        if directory and (Path(directory) / name).exists():
            return Path(directory)
    for root in SEARCH_ROOTS:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            found = subprocess.run(
                ["find", root, "-xdev", "-name", name, "-print", "-quit"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.split()
            if found:
                return Path(found[0]).parent
    return None


def prepend_library_path(directory: Path) -> None:
    """Put `directory` first on LD_LIBRARY_PATH for tritonserver (TritonInstall reads os.environ)."""
    current = os.environ.get("LD_LIBRARY_PATH", "")
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(directory), current) if p)


def check_stub(install: Any, facts: dict[str, Any], problems: list[str]) -> None:
    """The Python-backend stub must load: find a missing libpython and put it on the path."""
    missing = missing_libraries(install.stub, install.environment())
    facts["stub"] = str(install.stub)
    facts["stub_missing_libraries"] = missing
    for name in [lib for lib in missing if lib.startswith("libpython")]:
        directory = find_library_dir(name)
        if directory is not None:
            prepend_library_path(directory)
            facts.setdefault("library_path_added", []).append(str(directory))
    still = missing_libraries(install.stub, install.environment()) if missing else []
    facts["stub_missing_after_fix"] = still
    if still:
        problems.append(
            f"the Python-backend stub cannot load {', '.join(still)} (it needs this Python's shared library)"
        )


def check_imports(facts: dict[str, Any], problems: list[str]) -> Any:
    """torch, tritonclient and the pip tritonserver; returns the TritonInstall or None."""
    for module in ("torch", "onnx", "onnxruntime", "tritonclient.grpc"):
        try:
            imported = __import__(module, fromlist=["__name__"])
            facts[f"{module}_version"] = str(getattr(imported, "__version__", "?"))
        except Exception as exc:
            problems.append(f"cannot import {module}: {exc!r} (are the carried wheels installed? see run.sh)")
    from qscore_local.triton.install import TritonInstall, TritonNotInstalled

    try:
        install = TritonInstall.locate()
    except TritonNotInstalled as exc:
        problems.append(f"tritonserver: {exc}")
        return None
    facts["tritonserver"] = str(install.binary)
    return install


def gpu_facts() -> dict[str, Any]:
    """What nvidia-smi and torch say about the GPU (empty values on the CPU dry run)."""
    facts: dict[str, Any] = {"nvidia_smi": shutil.which("nvidia-smi")}
    if facts["nvidia_smi"]:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            query = "name,driver_version,memory.total,compute_cap"
            facts["gpus"] = subprocess.run(
                ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.strip()
    with contextlib.suppress(Exception):
        import torch

        facts["torch"] = torch.__version__
        facts["torch_cuda"] = torch.version.cuda
        facts["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            facts["device_name"] = torch.cuda.get_device_name(0)
    return facts


def compute_apps() -> str:
    """Processes holding GPU memory (the Triton stubs, when the models really are on the GPU)."""
    if not shutil.which("nvidia-smi"):
        return ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        query = "pid,process_name,used_memory"
        return subprocess.run(
            ["nvidia-smi", f"--query-compute-apps={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
    return ""


def preflight(device: str) -> tuple[dict[str, Any], list[str], Any]:
    """(facts, fatal problems, TritonInstall or None)."""
    facts: dict[str, Any] = {"python": sys.version.split()[0], "executable": sys.executable}
    problems: list[str] = []
    install = check_imports(facts, problems)
    if install is not None:
        check_stub(install, facts, problems)
    if not DIGITS_NPZ.is_file():
        problems.append(f"{DIGITS_NPZ} is missing (the load generator's inputs)")
    if device == "cuda":
        try:
            import torch

            if not torch.cuda.is_available():
                problems.append("device cuda asked for, but torch sees no GPU")
        except ImportError:
            pass  # already reported by check_imports
    return facts, problems, install
