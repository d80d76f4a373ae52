"""Tensor names shared by every qscore classifier, and the graph edit that applies them.

All models take `pixels` FP32 [N, 64] and return `probabilities` FP32 [N, 10] and `label`
INT64 [N, 1]. skl2onnx emits the label as a flat [N] tensor; Triton wants a per-sample
dim, so the export appends a Reshape to [N, 1].
"""

from __future__ import annotations

from typing import Any

INPUT_NAME = "pixels"
PROBABILITIES_NAME = "probabilities"
LABEL_NAME = "label"
FEATURES = 64
CLASSES = 10
_FLAT_LABEL = "label_flat"


def rename_digits_graph(model: Any) -> Any:
    """Reshape skl2onnx's flat `label` output to [N, 1] (in place; returns the model)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    for node in graph.node:
        node.output[:] = [_FLAT_LABEL if name == LABEL_NAME else name for name in node.output]
    shape = numpy_helper.from_array(np.array([-1, 1], dtype=np.int64), name="label_shape")
    graph.initializer.append(shape)
    graph.node.append(
        helper.make_node("Reshape", [_FLAT_LABEL, "label_shape"], [LABEL_NAME], name="label_2d")
    )
    outputs = [o for o in graph.output if o.name != LABEL_NAME]
    del graph.output[:]
    graph.output.extend(outputs)
    graph.output.append(helper.make_tensor_value_info(LABEL_NAME, TensorProto.INT64, [None, 1]))
    return model
