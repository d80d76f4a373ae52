"""Triton Python-backend model that runs one ONNX file with onnxruntime on CPU.

The local launcher copies this file as `model.py` into every version directory of the
derived CPU repository, next to a link to the production `model.onnx`. It runs inside
Triton's Python-backend stub, not inside qscore, so it imports only numpy, onnxruntime and
`triton_python_backend_utils` (which the stub provides).

Dynamic batching hands `execute` a list of requests; they are stacked along axis 0 and run
as one onnxruntime call, then split back, so Triton's batch statistics mean what they mean
for the production onnxruntime backend.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

# Must match qscore_local/triton/repository.py (this file cannot import qscore inside the stub).
INTRA_OP_THREADS_PARAMETER = "qscore.onnx_intra_op_threads"
ONNX_FILENAME = "model.onnx"


def _parameter(config: dict[str, Any], key: str, default: str) -> str:
    return str(config.get("parameters", {}).get(key, {}).get("string_value", default))


class TritonPythonModel:
    """One onnxruntime session per model instance; threads kept low so instances do not oversubscribe."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        threads = int(_parameter(config, INTRA_OP_THREADS_PARAMETER, "1"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        path = os.path.join(args["model_repository"], args["model_version"], ONNX_FILENAME)
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_names = [tensor["name"] for tensor in config["input"]]
        self.output_names = [tensor["name"] for tensor in config["output"]]

    def execute(self, requests: list[Any]) -> list[Any]:
        feeds: dict[str, np.ndarray] = {}
        counts: list[int] = []
        for name in self.input_names:
            arrays = [pb_utils.get_input_tensor_by_name(request, name).as_numpy() for request in requests]
            feeds[name] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
            counts = [len(array) for array in arrays]
        try:
            results = self.session.run(self.output_names, feeds)
        except Exception as exc:  # a bad batch fails its requests, not the model instance
            error = pb_utils.TritonError(f"onnxruntime failed: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses = []
        offsets = np.cumsum([0, *counts])
        for index in range(len(requests)):
            start, stop = offsets[index], offsets[index + 1]
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(result[start:stop]))
                for name, result in zip(self.output_names, results, strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
