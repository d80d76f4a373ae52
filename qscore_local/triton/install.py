"""Where the pip-installed tritonserver lives and what it needs to run here.

Facts measured on this machine (issue 2): nvidia-pytriton ships the binary in
`pytriton/tritonserver/bin/`, its shared libraries in `nvidia_pytriton.libs/`, and one
Python-backend stub per Python version in `pytriton/tritonserver/python_backend_stubs/<ver>/`.
The stub must sit in `backends/python/` next to `libtriton_python.so` and
`triton_python_backend_utils.py`; the interpreter's own LIBDIR must come first on
LD_LIBRARY_PATH (or the stub loads the system libpython and breaks); and PATH must start
with this venv's `bin` so the stub imports numpy and onnxruntime from it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path


class TritonNotInstalled(Exception):
    """nvidia-pytriton (the tritonserver binary) is not installed in this environment."""


@dataclass(frozen=True)
class TritonInstall:
    """Paths inside the nvidia-pytriton package."""

    binary: Path
    libs: Path
    python_backend: Path  # libtriton_python.so and triton_python_backend_utils.py
    stub: Path  # triton_python_backend_stub for this interpreter's version

    @classmethod
    def locate(cls) -> TritonInstall:
        spec = importlib.util.find_spec("pytriton")
        if spec is None or not spec.submodule_search_locations:
            raise TritonNotInstalled("nvidia-pytriton is not installed (pip install nvidia-pytriton)")
        package = Path(next(iter(spec.submodule_search_locations)))
        server = package / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        install = cls(
            binary=server / "bin" / "tritonserver",
            libs=package.parent / "nvidia_pytriton.libs",
            python_backend=server / "backends" / "python",
            stub=server / "python_backend_stubs" / version / "triton_python_backend_stub",
        )
        for path in (install.binary, install.libs, install.python_backend, install.stub):
            if not path.exists():
                raise TritonNotInstalled(f"{path} is missing from the nvidia-pytriton install")
        return install

    def prepare_backends(self, target: Path) -> Path:
        """Build a `backends/` directory with the Python backend and this interpreter's stub."""
        python_dir = target / "python"
        python_dir.mkdir(parents=True, exist_ok=True)
        for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
            shutil.copy2(self.python_backend / name, python_dir / name)
        shutil.copy2(self.stub, python_dir / self.stub.name)
        return target

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for tritonserver: LIBDIR first, then the bundled libs; venv bin first on PATH."""
        env = dict(os.environ if base is None else base)
        libdir = str(sysconfig.get_config_var("LIBDIR") or "")
        library_path = [libdir, str(self.libs), env.get("LD_LIBRARY_PATH", "")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in library_path if p)
        venv_bin = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join(p for p in (venv_bin, env.get("PATH", "")) if p)
        return env
