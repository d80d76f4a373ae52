"""Triton Python-backend model that runs one production `model.onnx` with PyTorch (GPU benchmark).

The GPU repository (qscore_tools/bench/gpu/repository.py) copies this file as `model.py` into
every version directory, with `onnx_torch.py` beside it and a link to the production
`model.onnx`. It runs inside Triton's stub, where qscore is not importable, so it imports only
numpy, torch, onnx, `triton_python_backend_utils` and its neighbour `onnx_torch`.

Like qscore_local/triton/onnx_model.py: the requests Triton's dynamic batcher hands `execute` are
stacked along axis 0 and run as one call, then split back.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The neighbour file, found through the path entry above.
from onnx_torch import OnnxTorchGraph

# Must match qscore_tools/bench/gpu/repository.py (this file cannot import qscore in the stub).
DEVICE_PARAMETER = "qscore.torch_device"
THREADS_PARAMETER = "qscore.torch_threads"
ONNX_FILENAME = "model.onnx"
TRITON_DTYPES = {"TYPE_FP32": np.float32, "TYPE_INT64": np.int64, "TYPE_INT32": np.int32}


def _parameter(config: dict[str, Any], key: str, default: str) -> str:
    return str(config.get("parameters", {}).get(key, {}).get("string_value", default))


def _device(config: dict[str, Any], args: dict[str, str]) -> str:
    """cuda:<id> on a GPU instance, plain cuda for a CPU-kind instance asked to use the GPU."""
    wanted = _parameter(config, DEVICE_PARAMETER, "cpu")
    if wanted == "cuda" and args.get("model_instance_kind") == "GPU":
        return f"cuda:{args.get('model_instance_device_id', '0')}"
    return wanted


class TritonPythonModel:
    """One interpreted graph per model instance, its weights resident on the instance's device."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        torch.set_num_threads(int(_parameter(config, THREADS_PARAMETER, "1")))
        # Full float32 matmuls: the outputs must match onnxruntime on CPU within 1e-4.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        path = os.path.join(args["model_repository"], args["model_version"], ONNX_FILENAME)
        self.graph = OnnxTorchGraph.load(path, _device(config, args))
        self.input_names = [tensor["name"] for tensor in config["input"]]
        self.outputs = [(tensor["name"], TRITON_DTYPES[tensor["data_type"]]) for tensor in config["output"]]

    def execute(self, requests: list[Any]) -> list[Any]:
        feeds: dict[str, np.ndarray] = {}
        counts: list[int] = []
        for name in self.input_names:
            arrays = [pb_utils.get_input_tensor_by_name(request, name).as_numpy() for request in requests]
            feeds[name] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
            counts = [len(array) for array in arrays]
        try:
            results = self.graph.run(feeds, [name for name, _ in self.outputs])
        except Exception as exc:  # a bad batch fails its requests, not the model instance
            error = pb_utils.TritonError(f"torch failed: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        offsets = np.cumsum([0, *counts])
        responses = []
        for index in range(len(requests)):
            start, stop = offsets[index], offsets[index + 1]
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(result[start:stop], dtype=dtype))
                for (name, dtype), result in zip(self.outputs, results, strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
