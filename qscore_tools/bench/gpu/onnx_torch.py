"""Run an ONNX graph with PyTorch ops: the GPU benchmark's stand-in for Triton's onnxruntime backend.

The pip tritonserver has only the Python backend, and the GPU machine's onnxruntime is a CPU
build, so the GPU benchmark executes the production `model.onnx` files with torch on CUDA. The
graph is interpreted node by node with the same weights (initializers become device tensors);
only the operators the qscore models use are implemented (`OPS`), and any other one fails at
load with its name, never silently.

Self-contained on purpose (imports numpy, onnx and torch only): the GPU repository copies this
file next to the Python-backend `model.py`, inside Triton's stub, where qscore is not importable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

Attributes = dict[str, Any]
OpFunction = Callable[[list[Tensor], Attributes], list[Tensor]]

# onnx.TensorProto data types -> torch dtypes (only those the models use).
ONNX_DTYPES: dict[int, torch.dtype] = {
    1: torch.float32,
    6: torch.int32,
    7: torch.int64,
    9: torch.bool,
    10: torch.float16,
    11: torch.float64,
}


class UnsupportedModel(Exception):
    """The graph uses an operator or attribute this interpreter does not implement."""


def _softmax(scores: Tensor, axis: int = -1) -> Tensor:
    return torch.softmax(scores, dim=axis)


def _post_transform(scores: Tensor, transform: str) -> Tensor:
    if transform == "NONE":
        return scores
    if transform == "SOFTMAX":
        return _softmax(scores)
    if transform == "LOGISTIC":
        return torch.sigmoid(scores)
    raise UnsupportedModel(f"post_transform {transform} is not implemented")


def _reshape(inputs: list[Tensor], attrs: Attributes) -> list[Tensor]:
    data, shape = inputs
    dims = [int(d) for d in shape.tolist()]
    if not attrs.get("allowzero", 0):
        dims = [data.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return [data.reshape(dims)]


def _argmax(inputs: list[Tensor], attrs: Attributes) -> list[Tensor]:
    if attrs.get("select_last_index", 0):
        raise UnsupportedModel("ArgMax select_last_index=1 is not implemented")
    keep = bool(attrs.get("keepdims", 1))
    return [torch.argmax(inputs[0], dim=int(attrs.get("axis", 0)), keepdim=keep)]


def _gemm(inputs: list[Tensor], attrs: Attributes) -> list[Tensor]:
    a, b = inputs[0], inputs[1]
    a = a.transpose(0, 1) if attrs.get("transA", 0) else a
    b = b.transpose(0, 1) if attrs.get("transB", 0) else b
    out = float(attrs.get("alpha", 1.0)) * (a @ b)
    if len(inputs) > 2:
        out = out + float(attrs.get("beta", 1.0)) * inputs[2]
    return [out]


def _scaler(inputs: list[Tensor], attrs: Attributes) -> list[Tensor]:
    """ai.onnx.ml Scaler: (x - offset) * scale, per feature or one value for all."""
    x = inputs[0]
    offset = torch.tensor(attrs.get("offset", [0.0]), dtype=torch.float32, device=x.device)
    scale = torch.tensor(attrs.get("scale", [1.0]), dtype=torch.float32, device=x.device)
    return [(x.to(torch.float32) - offset) * scale]


def _linear_classifier(inputs: list[Tensor], attrs: Attributes) -> list[Tensor]:
    """ai.onnx.ml LinearClassifier (multi-class, integer labels): (label, scores)."""
    x = inputs[0].to(torch.float32)
    labels = attrs.get("classlabels_ints")
    if labels is None:
        raise UnsupportedModel("LinearClassifier without classlabels_ints is not implemented")
    classes = len(labels)
    if classes < 2:
        raise UnsupportedModel("binary LinearClassifier is not implemented")
    weight = torch.tensor(attrs["coefficients"], dtype=torch.float32, device=x.device).reshape(classes, -1)
    bias = torch.tensor(attrs.get("intercepts", [0.0] * classes), dtype=torch.float32, device=x.device)
    scores = _post_transform(x @ weight.T + bias, str(attrs.get("post_transform", "NONE")))
    label_values = torch.tensor(labels, dtype=torch.int64, device=x.device)
    return [label_values[torch.argmax(scores, dim=1)], scores]


def _normalizer(inputs: list[Tensor], attrs: Attributes) -> list[Tensor]:
    """ai.onnx.ml Normalizer along axis 1 (MAX, L1 or L2)."""
    x = inputs[0].to(torch.float32)
    norm = str(attrs.get("norm", "MAX"))
    if norm == "MAX":
        return [x / x.max(dim=1, keepdim=True).values]
    if norm == "L1":
        return [x / x.abs().sum(dim=1, keepdim=True)]
    if norm == "L2":
        return [x / torch.sqrt((x * x).sum(dim=1, keepdim=True))]
    raise UnsupportedModel(f"Normalizer norm {norm} is not implemented")


def _array_feature_extractor(inputs: list[Tensor], attrs: Attributes) -> list[Tensor]:
    """ai.onnx.ml ArrayFeatureExtractor: elements of the last axis at the given indices."""
    del attrs
    data, indices = inputs
    picked = torch.index_select(data, -1, indices.reshape(-1).to(torch.int64))
    return [picked.unsqueeze(0) if data.dim() == 1 else picked]


def _cast(inputs: list[Tensor], attrs: Attributes) -> list[Tensor]:
    target = int(attrs["to"])
    if target not in ONNX_DTYPES:
        raise UnsupportedModel(f"Cast to ONNX type {target} is not implemented")
    return [inputs[0].to(ONNX_DTYPES[target])]


def _unary(function: Callable[[Tensor], Tensor]) -> OpFunction:
    return lambda inputs, attrs: [function(inputs[0])]


def _binary(function: Callable[[Tensor, Tensor], Tensor]) -> OpFunction:
    return lambda inputs, attrs: [function(inputs[0], inputs[1])]


# (domain, op_type) -> implementation. "" is the default ONNX domain.
OPS: dict[tuple[str, str], OpFunction] = {
    ("", "Add"): _binary(torch.add),
    ("", "Sub"): _binary(torch.sub),
    ("", "Mul"): _binary(torch.mul),
    ("", "Div"): _binary(torch.div),
    ("", "MatMul"): _binary(torch.matmul),
    ("", "Gemm"): _gemm,
    ("", "Relu"): _unary(torch.relu),
    ("", "Sigmoid"): _unary(torch.sigmoid),
    ("", "Tanh"): _unary(torch.tanh),
    ("", "Identity"): _unary(lambda x: x),
    ("", "Softmax"): lambda inputs, attrs: [_softmax(inputs[0], int(attrs.get("axis", -1)))],
    ("", "ArgMax"): _argmax,
    ("", "Cast"): _cast,
    ("", "Reshape"): _reshape,
    ("ai.onnx.ml", "Scaler"): _scaler,
    ("ai.onnx.ml", "LinearClassifier"): _linear_classifier,
    ("ai.onnx.ml", "Normalizer"): _normalizer,
    ("ai.onnx.ml", "ArrayFeatureExtractor"): _array_feature_extractor,
}


def _attributes(node: Any) -> Attributes:
    from onnx import helper

    values: Attributes = {}
    for attribute in node.attribute:
        value = helper.get_attribute_value(attribute)
        values[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return values


class OnnxTorchGraph:
    """An ONNX graph bound to one torch device; `run({"pixels": array})` returns numpy outputs."""

    def __init__(self, model: Any, device: str | torch.device = "cpu") -> None:
        from onnx import numpy_helper

        graph = model.graph
        self.device = torch.device(device)
        self.input_names = [value.name for value in graph.input]
        self.output_names = [value.name for value in graph.output]
        self.constants: dict[str, Tensor] = {
            init.name: torch.from_numpy(np.array(numpy_helper.to_array(init))).to(self.device)
            for init in graph.initializer
        }
        self.nodes: list[tuple[OpFunction, list[str], list[str], Attributes]] = []
        for node in graph.node:
            key = (node.domain or "", node.op_type)
            if key not in OPS:
                raise UnsupportedModel(f"operator {key[0] or 'ai.onnx'}.{key[1]} (node {node.name!r})")
            self.nodes.append((OPS[key], list(node.input), list(node.output), _attributes(node)))

    @classmethod
    def load(cls, path: str, device: str | torch.device = "cpu") -> OnnxTorchGraph:
        import onnx

        return cls(onnx.load(path), device)

    @torch.inference_mode()
    def forward(self, feeds: dict[str, Tensor]) -> list[Tensor]:
        """Evaluate the nodes in graph order (ONNX stores them topologically sorted)."""
        values = dict(self.constants)
        values.update(feeds)
        for function, inputs, outputs, attrs in self.nodes:
            results = function([values[name] for name in inputs if name], attrs)
            values.update(zip(outputs, results, strict=False))
        return [values[name] for name in self.output_names]

    def run(
        self, feeds: dict[str, np.ndarray], output_names: Sequence[str] | None = None
    ) -> list[np.ndarray]:
        """numpy in, numpy out (host copies): the same call shape as onnxruntime's `session.run`."""
        tensors = {
            name: torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for name, a in feeds.items()
        }
        outputs = dict(zip(self.output_names, self.forward(tensors), strict=True))
        wanted = list(output_names) if output_names is not None else self.output_names
        return [outputs[name].cpu().numpy() for name in wanted]
