"""Run an ONNX graph with PyTorch ops: the GPU benchmark's stand-in for Triton's onnxruntime backend.

The pip tritonserver has only the Python backend, and the GPU machine's onnxruntime is a CPU
build, so the GPU benchmark executes the production `model.onnx` files with torch on CUDA. The
graph is interpreted node by node with the same weights (initializers become device tensors);
only the operators the qscore models use are implemented (`OPS`), and any other one fails at
load with its name, never silently.

The operators are written once, against a few array primitives (`ArrayOps`), with two sets:
`TorchOps` (the GPU run: `OnnxTorchGraph`) and `NumpyOps` (`OnnxNumpyGraph`). The numpy set is
how CI checks the interpreter itself (graph walk, attributes, each operator's semantics) against
onnxruntime without torch, whose PyPI build for Linux is CUDA's, several GB; torch's own
kernels are checked by the GPU run's equivalence step on the device before it measures, and by
tests/test_gpu_prep.py wherever torch is installed.

Self-contained on purpose (imports numpy, onnx and, for `TorchOps`, torch only): the GPU
repository copies this file next to the Python-backend `model.py`, inside Triton's stub, where
qscore is not importable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

Array = Any  # a torch.Tensor or a numpy.ndarray, by the ops set in use
Attributes = dict[str, Any]

# onnx.TensorProto data types -> dtype names numpy and torch share (only those the models use).
ONNX_DTYPES: dict[int, str] = {1: "float32", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}


class UnsupportedModel(Exception):
    """The graph uses an operator or attribute this interpreter does not implement."""


class ArrayOps(Protocol):
    """The primitives the operators need; `+ - * / @`, `.reshape`, `.shape`, `.tolist()` and
    indexing by an integer array are common to numpy and torch and used directly."""

    def constant(self, values: Any, dtype: str, like: Array | None = None) -> Array: ...
    def cast(self, x: Array, dtype: str) -> Array: ...
    def transpose(self, x: Array) -> Array: ...
    def softmax(self, x: Array, axis: int) -> Array: ...
    def sigmoid(self, x: Array) -> Array: ...
    def tanh(self, x: Array) -> Array: ...
    def relu(self, x: Array) -> Array: ...
    def sqrt(self, x: Array) -> Array: ...
    def argmax(self, x: Array, axis: int, keepdims: bool) -> Array: ...
    def row_max(self, x: Array) -> Array: ...  # along axis 1, kept as a column
    def row_sum(self, x: Array) -> Array: ...  # along axis 1, kept as a column
    def absolute(self, x: Array) -> Array: ...
    def take_last(self, x: Array, indices: Array) -> Array: ...  # last axis at int64 `indices`
    def from_numpy(self, array: np.ndarray) -> Array: ...
    def to_numpy(self, x: Array) -> np.ndarray: ...
    def no_grad(self) -> contextlib.AbstractContextManager[Any]: ...


class NumpyOps:
    """The interpreter on numpy: CPU only, no torch (CI's check of the operators)."""

    def constant(self, values: Any, dtype: str, like: Array | None = None) -> Array:
        return np.asarray(values, dtype=dtype)

    def cast(self, x: Array, dtype: str) -> Array:
        return np.asarray(x).astype(dtype)

    def transpose(self, x: Array) -> Array:
        return np.swapaxes(x, 0, 1)

    def softmax(self, x: Array, axis: int) -> Array:
        shifted = np.exp(x - np.max(x, axis=axis, keepdims=True))
        return shifted / np.sum(shifted, axis=axis, keepdims=True)

    def sigmoid(self, x: Array) -> Array:
        return 1.0 / (1.0 + np.exp(-x))

    def tanh(self, x: Array) -> Array:
        return np.tanh(x)

    def relu(self, x: Array) -> Array:
        return np.maximum(x, 0)

    def sqrt(self, x: Array) -> Array:
        return np.sqrt(x)

    def argmax(self, x: Array, axis: int, keepdims: bool) -> Array:
        return np.argmax(x, axis=axis, keepdims=keepdims).astype(np.int64)

    def row_max(self, x: Array) -> Array:
        return np.max(x, axis=1, keepdims=True)

    def row_sum(self, x: Array) -> Array:
        return np.sum(x, axis=1, keepdims=True)

    def absolute(self, x: Array) -> Array:
        return np.abs(x)

    def take_last(self, x: Array, indices: Array) -> Array:
        return np.take(x, indices, axis=-1)

    def from_numpy(self, array: np.ndarray) -> Array:
        return np.ascontiguousarray(array)

    def to_numpy(self, x: Array) -> np.ndarray:
        return np.asarray(x)

    def no_grad(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()


class TorchOps:
    """The interpreter on torch, its tensors on `device` (the GPU run: cuda)."""

    def __init__(self, device: Any = "cpu") -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)

    def constant(self, values: Any, dtype: str, like: Array | None = None) -> Array:
        device = like.device if like is not None else self.device
        return self.torch.tensor(values, dtype=getattr(self.torch, dtype), device=device)

    def cast(self, x: Array, dtype: str) -> Array:
        return x.to(getattr(self.torch, dtype))

    def transpose(self, x: Array) -> Array:
        return x.transpose(0, 1)

    def softmax(self, x: Array, axis: int) -> Array:
        return self.torch.softmax(x, dim=axis)

    def sigmoid(self, x: Array) -> Array:
        return self.torch.sigmoid(x)

    def tanh(self, x: Array) -> Array:
        return self.torch.tanh(x)

    def relu(self, x: Array) -> Array:
        return self.torch.relu(x)

    def sqrt(self, x: Array) -> Array:
        return self.torch.sqrt(x)

    def argmax(self, x: Array, axis: int, keepdims: bool) -> Array:
        return self.torch.argmax(x, dim=axis, keepdim=keepdims)

    def row_max(self, x: Array) -> Array:
        return x.max(dim=1, keepdim=True).values

    def row_sum(self, x: Array) -> Array:
        return x.sum(dim=1, keepdim=True)

    def absolute(self, x: Array) -> Array:
        return x.abs()

    def take_last(self, x: Array, indices: Array) -> Array:
        return self.torch.index_select(x, -1, indices)

    def from_numpy(self, array: np.ndarray) -> Array:
        return self.torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def to_numpy(self, x: Array) -> np.ndarray:
        return np.asarray(x.cpu().numpy())

    def no_grad(self) -> contextlib.AbstractContextManager[Any]:
        return self.torch.inference_mode()


OpFunction = Callable[[ArrayOps, list[Array], Attributes], list[Array]]


def _post_transform(ops: ArrayOps, scores: Array, transform: str) -> Array:
    if transform == "NONE":
        return scores
    if transform == "SOFTMAX":
        return ops.softmax(scores, -1)
    if transform == "LOGISTIC":
        return ops.sigmoid(scores)
    raise UnsupportedModel(f"post_transform {transform} is not implemented")


def _reshape(ops: ArrayOps, inputs: list[Array], attrs: Attributes) -> list[Array]:
    data, shape = inputs
    dims = [int(d) for d in shape.tolist()]
    if not attrs.get("allowzero", 0):
        dims = [data.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return [data.reshape(dims)]


def _argmax(ops: ArrayOps, inputs: list[Array], attrs: Attributes) -> list[Array]:
    if attrs.get("select_last_index", 0):
        raise UnsupportedModel("ArgMax select_last_index=1 is not implemented")
    return [ops.argmax(inputs[0], int(attrs.get("axis", 0)), bool(attrs.get("keepdims", 1)))]


def _gemm(ops: ArrayOps, inputs: list[Array], attrs: Attributes) -> list[Array]:
    a, b = inputs[0], inputs[1]
    a = ops.transpose(a) if attrs.get("transA", 0) else a
    b = ops.transpose(b) if attrs.get("transB", 0) else b
    out = float(attrs.get("alpha", 1.0)) * (a @ b)
    if len(inputs) > 2:
        out = out + float(attrs.get("beta", 1.0)) * inputs[2]
    return [out]


def _scaler(ops: ArrayOps, inputs: list[Array], attrs: Attributes) -> list[Array]:
    """ai.onnx.ml Scaler: (x - offset) * scale, per feature or one value for all."""
    x = inputs[0]
    offset = ops.constant(attrs.get("offset", [0.0]), "float32", like=x)
    scale = ops.constant(attrs.get("scale", [1.0]), "float32", like=x)
    return [(ops.cast(x, "float32") - offset) * scale]


def _linear_classifier(ops: ArrayOps, inputs: list[Array], attrs: Attributes) -> list[Array]:
    """ai.onnx.ml LinearClassifier (multi-class, integer labels): (label, scores)."""
    x = ops.cast(inputs[0], "float32")
    labels = attrs.get("classlabels_ints")
    if labels is None:
        raise UnsupportedModel("LinearClassifier without classlabels_ints is not implemented")
    classes = len(labels)
    if classes < 2:
        raise UnsupportedModel("binary LinearClassifier is not implemented")
    weight = ops.constant(attrs["coefficients"], "float32", like=x).reshape(classes, -1)
    bias = ops.constant(attrs.get("intercepts", [0.0] * classes), "float32", like=x)
    scores = _post_transform(ops, x @ ops.transpose(weight) + bias, str(attrs.get("post_transform", "NONE")))
    label_values = ops.constant(labels, "int64", like=x)
    return [label_values[ops.argmax(scores, 1, False)], scores]


def _normalizer(ops: ArrayOps, inputs: list[Array], attrs: Attributes) -> list[Array]:
    """ai.onnx.ml Normalizer along axis 1 (MAX, L1 or L2)."""
    x = ops.cast(inputs[0], "float32")
    norm = str(attrs.get("norm", "MAX"))
    if norm == "MAX":
        return [x / ops.row_max(x)]
    if norm == "L1":
        return [x / ops.row_sum(ops.absolute(x))]
    if norm == "L2":
        return [x / ops.sqrt(ops.row_sum(x * x))]
    raise UnsupportedModel(f"Normalizer norm {norm} is not implemented")


def _array_feature_extractor(ops: ArrayOps, inputs: list[Array], attrs: Attributes) -> list[Array]:
    """ai.onnx.ml ArrayFeatureExtractor: elements of the last axis at the given indices."""
    del attrs
    data, indices = inputs
    picked = ops.take_last(data, ops.cast(indices.reshape(-1), "int64"))
    return [picked.reshape(1, -1) if len(data.shape) == 1 else picked]


def _cast(ops: ArrayOps, inputs: list[Array], attrs: Attributes) -> list[Array]:
    target = int(attrs["to"])
    if target not in ONNX_DTYPES:
        raise UnsupportedModel(f"Cast to ONNX type {target} is not implemented")
    return [ops.cast(inputs[0], ONNX_DTYPES[target])]


def _unary(name: str) -> OpFunction:
    return lambda ops, inputs, attrs: [getattr(ops, name)(inputs[0])]


def _binary(function: Callable[[Array, Array], Array]) -> OpFunction:
    return lambda ops, inputs, attrs: [function(inputs[0], inputs[1])]


# (domain, op_type) -> implementation. "" is the default ONNX domain.
OPS: dict[tuple[str, str], OpFunction] = {
    ("", "Add"): _binary(lambda a, b: a + b),
    ("", "Sub"): _binary(lambda a, b: a - b),
    ("", "Mul"): _binary(lambda a, b: a * b),
    ("", "Div"): _binary(lambda a, b: a / b),
    ("", "MatMul"): _binary(lambda a, b: a @ b),
    ("", "Gemm"): _gemm,
    ("", "Relu"): _unary("relu"),
    ("", "Sigmoid"): _unary("sigmoid"),
    ("", "Tanh"): _unary("tanh"),
    ("", "Identity"): lambda ops, inputs, attrs: [inputs[0]],
    ("", "Softmax"): lambda ops, inputs, attrs: [ops.softmax(inputs[0], int(attrs.get("axis", -1)))],
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


class OnnxGraph:
    """An ONNX graph bound to one ops set; `run({"pixels": array})` returns numpy outputs."""

    def __init__(self, model: Any, ops: ArrayOps) -> None:
        from onnx import numpy_helper

        graph = model.graph
        self.ops = ops
        self.input_names = [value.name for value in graph.input]
        self.output_names = [value.name for value in graph.output]
        # Operators first: an unsupported model is refused by name before any weight is moved.
        self.nodes: list[tuple[OpFunction, list[str], list[str], Attributes]] = []
        for node in graph.node:
            key = (node.domain or "", node.op_type)
            if key not in OPS:
                raise UnsupportedModel(f"operator {key[0] or 'ai.onnx'}.{key[1]} (node {node.name!r})")
            self.nodes.append((OPS[key], list(node.input), list(node.output), _attributes(node)))
        self.constants: dict[str, Array] = {
            init.name: ops.from_numpy(np.array(numpy_helper.to_array(init))) for init in graph.initializer
        }

    def forward(self, feeds: dict[str, Array]) -> list[Array]:
        """Evaluate the nodes in graph order (ONNX stores them topologically sorted)."""
        values = dict(self.constants)
        values.update(feeds)
        with self.ops.no_grad():
            for function, inputs, outputs, attrs in self.nodes:
                results = function(self.ops, [values[name] for name in inputs if name], attrs)
                values.update(zip(outputs, results, strict=False))
        return [values[name] for name in self.output_names]

    def run(
        self, feeds: dict[str, np.ndarray], output_names: Sequence[str] | None = None
    ) -> list[np.ndarray]:
        """numpy in, numpy out (host copies): the same call shape as onnxruntime's `session.run`."""
        arrays = {name: self.ops.from_numpy(array) for name, array in feeds.items()}
        outputs = dict(zip(self.output_names, self.forward(arrays), strict=True))
        wanted = list(output_names) if output_names is not None else self.output_names
        return [self.ops.to_numpy(outputs[name]) for name in wanted]


class OnnxTorchGraph(OnnxGraph):
    """The graph on torch, on `device` (what the GPU run's model.py serves)."""

    def __init__(self, model: Any, device: Any = "cpu") -> None:
        ops = TorchOps(device)
        super().__init__(model, ops)
        self.device = ops.device

    @classmethod
    def load(cls, path: str, device: Any = "cpu") -> OnnxTorchGraph:
        import onnx

        return cls(onnx.load(path), device)


class OnnxNumpyGraph(OnnxGraph):
    """The graph on numpy (CPU, no torch)."""

    def __init__(self, model: Any) -> None:
        super().__init__(model, NumpyOps())

    @classmethod
    def load(cls, path: str) -> OnnxNumpyGraph:
        import onnx

        return cls(onnx.load(path))


def load_graph(path: str, device: str) -> OnnxGraph:
    """`device` "numpy" for the numpy ops, else a torch device ("cpu", "cuda", "cuda:1")."""
    return OnnxNumpyGraph.load(path) if device == "numpy" else OnnxTorchGraph.load(path, device)
