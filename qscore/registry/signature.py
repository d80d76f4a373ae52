"""What a registered model version is made of: its Triton config, signature and file digests."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_NAME = "config.pbtxt"
PREPROCESSING_DIR = "preprocessing"
# config.pbtxt `parameters` key naming the output that holds the predicted class (monitoring).
CLASS_OUTPUT_PARAMETER = "qscore.predicted_class_output"


class ArtefactError(Exception):
    """A model folder that cannot be registered (no ONNX file, no or malformed config)."""


def read_model_config(path: Path) -> Any:
    """Parse a config.pbtxt into Triton's ModelConfig protobuf."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    except (OSError, text_format.ParseError) as exc:
        raise ArtefactError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None


def signature_of(config: Any) -> dict[str, list[dict[str, Any]]]:
    """Inputs and outputs (name, data type, dims) as the config declares them; what clients rely on."""
    from tritonclient.grpc import model_config_pb2

    def tensors(entries: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": entry.name,
                "data_type": model_config_pb2.DataType.Name(entry.data_type),
                "dims": list(entry.dims),
            }
            for entry in entries
        ]

    return {"inputs": tensors(config.input), "outputs": tensors(config.output)}


def config_parameter(config: Any, key: str) -> str | None:
    """A `parameters { key: ... value: { string_value: ... } }` entry of a config, if set."""
    if key in config.parameters:
        return str(config.parameters[key].string_value)
    return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelArtefacts:
    """The files of one version: ONNX file(s), the config, packaged preprocessing (if any)."""

    root: Path  # the folder holding the ONNX files
    config_path: Path
    files: dict[str, Path]  # name inside the registered version -> file on disk

    @classmethod
    def collect(cls, folder: Path, *, config: Path | None = None) -> ModelArtefacts:
        """The version in `folder`: *.onnx and preprocessing/ there; config.pbtxt there or one level up
        (a Triton version folder such as triton_repo/digits/2 takes the model's config)."""
        if not folder.is_dir():
            raise ArtefactError(f"{folder} is not a folder")
        candidates = [config] if config else [folder / CONFIG_NAME, folder.parent / CONFIG_NAME]
        config_path = next((path for path in candidates if path is not None and path.is_file()), None)
        if config_path is None:
            raise ArtefactError(f"no {CONFIG_NAME} in {folder} or its parent (pass --config)")
        files = {path.name: path for path in sorted(folder.glob("*.onnx"))}
        if not files:
            raise ArtefactError(f"no .onnx file in {folder}")
        preprocessing = folder / PREPROCESSING_DIR
        if preprocessing.is_dir():
            for path in sorted(preprocessing.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    files[path.relative_to(folder).as_posix()] = path
        files[CONFIG_NAME] = config_path
        return cls(folder, config_path, dict(sorted(files.items())))

    def digests(self) -> dict[str, str]:
        return {name: sha256_file(path) for name, path in self.files.items()}


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal values give equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
