"""A model's serving contract from its config.pbtxt in a model repository (no Triton needed).

The queue engine never talks to Triton (the workers do), yet the column mapping needs the
model's inputs: it reads them from the same config file Triton loads.
"""

from __future__ import annotations

from pathlib import Path

from qscore.contracts.model_spec import ModelSpec


class ModelConfigError(ValueError):
    """No readable config for the model (one line for a person)."""


def local_versions(repo: Path, model: str) -> list[str]:
    """Version folders of `model` in `repo`, oldest first (empty when the model is absent)."""
    model_dir = repo / model
    if not model_dir.is_dir():
        return []
    versions = [child.name for child in model_dir.iterdir() if child.is_dir() and child.name.isdigit()]
    return sorted(versions, key=int)


def spec_from_repository(repo: Path, model: str) -> ModelSpec:
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    path = repo / model / "config.pbtxt"
    if not path.is_file():
        raise ModelConfigError(f"model {model!r} has no config in {repo} (pass --repo)")
    try:
        config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise ModelConfigError(f"{path}: {exc}") from None
    as_json = json_format.MessageToDict(config, preserving_proto_field_name=True)
    return ModelSpec.from_triton_config(as_json, local_versions(repo, model))
