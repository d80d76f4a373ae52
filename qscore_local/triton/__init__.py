"""Local NVIDIA Triton: derive the CPU repository from triton_repo/, start/stop tritonserver."""

from __future__ import annotations

from pathlib import Path


def onnx_model_source() -> str:
    """Source of the Python-backend ONNX runner that the derived repository uses as model.py."""
    return (Path(__file__).with_name("onnx_model.py")).read_text()
