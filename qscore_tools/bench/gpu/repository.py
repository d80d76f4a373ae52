"""The GPU benchmark's model repository, derived from the production `triton_repo/`.

One Triton serves every variant at once, so the server starts once per run: for each model and
each max batch size, one copy with the production dynamic batching and one without, named
`<model>__mb<M>_db` / `<model>__mb<M>_nodb`. Each is a Python-backend model whose `model.py`
(torch_model.py) runs the production `model.onnx` with PyTorch on `device`. What differs from
the production config: `backend` (python, not onnxruntime), `name`, `max_batch_size` (the
variant's), `dynamic_batching` (cleared in `_nodb`), `instance_group` kind (`KIND_GPU` when the
server accepts it, else `KIND_CPU` with torch still on CUDA), `parameters` (two added) and the
version policy (only the latest version, the one measured, is loaded).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qscore_local.triton.repository import ONNX_FILENAME, read_config, version_dirs

HERE = Path(__file__).resolve().parent
MODEL_SOURCES = (HERE / "torch_model.py", HERE / "onnx_torch.py")
# Must match torch_model.py (it runs inside Triton's stub and cannot import this module).
DEVICE_PARAMETER = "qscore.torch_device"
THREADS_PARAMETER = "qscore.torch_threads"


@dataclass(frozen=True)
class Variant:
    """One served copy of a production model."""

    model: str
    max_batch_size: int
    dynamic_batching: bool

    @property
    def name(self) -> str:
        return f"{self.model}__mb{self.max_batch_size}_{'db' if self.dynamic_batching else 'nodb'}"


@dataclass(frozen=True)
class DeviceSettings:
    device: str  # "cuda" or "cpu": where torch runs inside the stub
    instance_kind: str  # "GPU" or "CPU": Triton's instance_group kind
    torch_threads: int = 1  # torch CPU threads per instance (the dry run's compute; copies on GPU)


def variants(models: tuple[str, ...], max_batch_sizes: tuple[int, ...]) -> list[Variant]:
    return [
        Variant(model, size, batching)
        for model in models
        for size in max_batch_sizes
        for batching in (True, False)
    ]


def variant_config(production: Any, variant: Variant, settings: DeviceSettings, version: int) -> Any:
    """The Python-backend ModelConfig of one variant."""
    from tritonclient.grpc import model_config_pb2

    config = model_config_pb2.ModelConfig()
    config.CopyFrom(production)
    for field in ("platform", "optimization", "default_model_filename", "instance_group", "version_policy"):
        config.ClearField(field)
    config.name = variant.name
    config.backend = "python"
    config.max_batch_size = variant.max_batch_size
    if not variant.dynamic_batching:
        config.ClearField("dynamic_batching")
    config.version_policy.specific.versions.append(version)
    group = config.instance_group.add()
    group.kind = getattr(model_config_pb2.ModelInstanceGroup, f"KIND_{settings.instance_kind}")
    group.count = max((g.count for g in production.instance_group), default=1)
    config.parameters[DEVICE_PARAMETER].string_value = settings.device
    config.parameters[THREADS_PARAMETER].string_value = str(settings.torch_threads)
    return config


def derive_variant(source_repo: Path, target_repo: Path, variant: Variant, settings: DeviceSettings) -> None:
    """Write one variant: config.pbtxt, and in its latest version dir model.py, onnx_torch.py, model.onnx."""
    from google.protobuf import text_format

    source = source_repo / variant.model
    production = read_config(source / "config.pbtxt")
    latest = version_dirs(source)[-1]
    target = target_repo / variant.name
    (target / latest.name).mkdir(parents=True)
    config = variant_config(production, variant, settings, int(latest.name))
    (target / "config.pbtxt").write_text(text_format.MessageToString(config))
    model_py, converter = MODEL_SOURCES
    shutil.copyfile(model_py, target / latest.name / "model.py")
    shutil.copyfile(converter, target / latest.name / converter.name)
    os.symlink((latest / ONNX_FILENAME).resolve(), target / latest.name / ONNX_FILENAME)


def derive_gpu_repository(
    source_repo: Path, target_repo: Path, wanted: list[Variant], settings: DeviceSettings
) -> Path:
    """Write every variant into the (new or empty) directory `target_repo`; returns it."""
    if target_repo.exists():
        shutil.rmtree(target_repo)
    target_repo.mkdir(parents=True)
    for variant in wanted:
        derive_variant(source_repo, target_repo, variant, settings)
    return target_repo


def latest_onnx(source_repo: Path, model: str) -> Path:
    return version_dirs(source_repo / model)[-1] / ONNX_FILENAME
