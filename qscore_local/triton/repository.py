"""Derive the local CPU model repository from the production `triton_repo/`.

Production configs use the onnxruntime backend on GPU instances. The pip-installed
tritonserver ships only the Python backend, so each ONNX model becomes a Python-backend
model running the same `model.onnx` through onnxruntime (qscore_local/triton/onnx_model.py) with
the same inputs, outputs, max_batch_size, dynamic batching and version policy. Only the
fields in `CPU_ONLY_FIELDS` change; tests/test_triton_config.py checks that field by field.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REPO = ROOT / "triton_repo"
ONNX_BACKENDS = {"onnxruntime"}
ONNX_PLATFORMS = {"onnxruntime_onnx"}
# Fields the CPU copy sets differently from production; everything else must be equal.
CPU_ONLY_FIELDS = (
    "backend",
    "platform",
    "instance_group",
    "parameters",
    "optimization",
    "default_model_filename",
)
# The Python-backend model file; it runs inside Triton's stub, so it cannot import qscore and
# repeats these two names (tests/test_triton_config.py checks they agree).
RUNNER_SOURCE = Path(__file__).with_name("onnx_model.py")
INTRA_OP_THREADS_PARAMETER = "qscore.onnx_intra_op_threads"
ONNX_FILENAME = "model.onnx"
THREADS_ENV = "QSCORE_TRITON_ORT_THREADS"


class RepositoryError(Exception):
    """The model repository is missing, malformed, or lacks a requested model."""


@dataclass(frozen=True)
class CpuSettings:
    """How the derived CPU models run: instances per model and onnxruntime threads per instance."""

    instance_count: int = 1
    intra_op_threads: int = 1

    @classmethod
    def from_env(cls, *, instance_count: int = 1, intra_op_threads: int | None = None) -> CpuSettings:
        """Settings with the thread count from QSCORE_TRITON_ORT_THREADS unless given."""
        threads = intra_op_threads or int(os.environ.get(THREADS_ENV, "1"))
        return cls(instance_count=instance_count, intra_op_threads=threads)


def read_config(path: Path) -> Any:
    """Parse a config.pbtxt into Triton's ModelConfig protobuf (RepositoryError if malformed)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    except (OSError, text_format.ParseError) as exc:
        raise RepositoryError(f"cannot read {path}: {exc}") from exc


def config_to_dict(config: Any) -> dict[str, Any]:
    """JSON form of a ModelConfig, the same shape Triton's `get_model_config(as_json=True)` uses."""
    from google.protobuf import json_format

    return dict(json_format.MessageToDict(config, preserving_proto_field_name=True))


def is_onnx_model(config: Any) -> bool:
    return config.backend in ONNX_BACKENDS or config.platform in ONNX_PLATFORMS


def derive_cpu_config(production: Any, settings: CpuSettings) -> Any:
    """The Python-backend ModelConfig for one production onnxruntime config."""
    from tritonclient.grpc import model_config_pb2

    derived = model_config_pb2.ModelConfig()
    derived.CopyFrom(production)
    for field in ("platform", "optimization", "default_model_filename", "instance_group"):
        derived.ClearField(field)
    derived.backend = "python"
    group = derived.instance_group.add()
    group.kind = model_config_pb2.ModelInstanceGroup.KIND_CPU
    group.count = settings.instance_count
    derived.parameters[INTRA_OP_THREADS_PARAMETER].string_value = str(settings.intra_op_threads)
    return derived


def list_models(repo: Path) -> list[str]:
    """Model names in a repository: directories that hold a config.pbtxt."""
    if not repo.is_dir():
        raise RepositoryError(f"model repository {repo} does not exist")
    return sorted(child.name for child in repo.iterdir() if (child / "config.pbtxt").is_file())


def version_dirs(model_dir: Path) -> list[Path]:
    return sorted(
        (d for d in model_dir.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name)
    )


def derive_model(source: Path, target: Path, settings: CpuSettings) -> None:
    """Write one derived model: config.pbtxt plus, per version, model.py and a link to model.onnx."""
    from google.protobuf import text_format

    production = read_config(source / "config.pbtxt")
    if not is_onnx_model(production):
        # Already servable on CPU as is: Python-backend steps (their code is in the model folder)
        # and ensembles, which only schedule other models.
        shutil.copytree(source, target, symlinks=True)
        return
    versions = version_dirs(source)
    if not versions:
        raise RepositoryError(f"model {source.name} has no numbered version directories")
    target.mkdir(parents=True)
    derived = derive_cpu_config(production, settings)
    (target / "config.pbtxt").write_text(text_format.MessageToString(derived))
    for version in versions:
        onnx_file = version / ONNX_FILENAME
        if not onnx_file.is_file():
            raise RepositoryError(f"{onnx_file} is missing (run python -m qscore_tools.training.digits)")
        (target / version.name).mkdir()
        shutil.copyfile(RUNNER_SOURCE, target / version.name / "model.py")
        os.symlink(onnx_file.resolve(), target / version.name / ONNX_FILENAME)


def with_ensemble_steps(source: Path, names: list[str]) -> list[str]:
    """`names` plus every model an ensemble among them schedules (transitively), in a stable order."""
    wanted: list[str] = []
    pending = list(names)
    while pending:
        name = pending.pop(0)
        if name in wanted:
            continue
        wanted.append(name)
        config_path = source / name / "config.pbtxt"
        if config_path.is_file():
            config = read_config(config_path)
            pending.extend(step.model_name for step in config.ensemble_scheduling.step)
    return wanted


def derive_cpu_repository(
    source: Path, target: Path, *, models: list[str] | None = None, settings: CpuSettings | None = None
) -> list[str]:
    """Derive every (or each named) model of `source` into the empty directory `target`."""
    available = list_models(source)
    wanted = available if models is None else with_ensemble_steps(source, list(models))
    missing = sorted(set(wanted) - set(available))
    if missing:
        raise RepositoryError(f"model(s) {', '.join(missing)} not in {source} (have: {', '.join(available)})")
    target.mkdir(parents=True, exist_ok=True)
    for name in wanted:
        derive_model(source / name, target / name, settings or CpuSettings())
    return wanted
