"""BENCHMARK MODEL, not a real classifier: a deep weight-tied MLP with random fixed-seed weights.

It exists so `qscore bench` has a compute-bound model where inference time dominates the
per-message cost of the queue path (issue 5): about 1 ms of onnxruntime compute per sample on
one core of the 2-core CI machine, so the direct ceiling there is of the order of 1,000 samples/s
and the queue path's own overhead (well under 1 ms of CPU per message) is the smaller part.
Same interface as `digits` (`pixels` in; `probabilities`, `label` out) so the benchmark can feed
it the held-out digits set, but its answers mean nothing.

Shape: pixels/16 -> 64x1024 (ReLU) -> `depth` x the SAME 1024x1024 block (MatMul, Add, ReLU)
-> 1024x10 -> softmax and argmax. The hidden blocks all reference one weight initializer
(ONNX lets many nodes share one), so the compute grows with `depth` while the file stays
about 4.5 MB. Measured: `python -m qscore_tools.training.bench_mlp [threads]`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qscore_tools.training.onnx_names import CLASSES, FEATURES, INPUT_NAME, LABEL_NAME, PROBABILITIES_NAME

HIDDEN_WIDTH = 1024
# Tied hidden blocks; chosen by measurement for ~1 ms per sample with one onnxruntime thread.
TIED_DEPTH = 48
OPSET = 17
# Rounding the layer gain keeps the weights byte-stable across BLAS builds (the gain is
# estimated with a float64 matmul whose last bits may differ between machines).
_GAIN_DECIMALS = 3


def he_weight(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    return rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)


def tied_layer_gain(
    tied: np.ndarray, rng: np.random.Generator, *, probes: int = 32, steps: int = 32
) -> float:
    """Mean per-layer norm growth of relu(h @ tied) on random probes, after a burn-in.

    ReLU with zero bias is positively homogeneous, so dividing the tied weight by this gain
    makes repeated blocks keep activations at a steady size instead of shrinking or growing
    geometrically with depth.
    """
    hidden = np.maximum(rng.standard_normal((probes, tied.shape[0])), 0.0)
    for _ in range(8):
        hidden = np.maximum(hidden @ tied, 0.0)
    start = np.linalg.norm(hidden, axis=1)
    for _ in range(steps):
        hidden = np.maximum(hidden @ tied, 0.0)
    ratio = np.linalg.norm(hidden, axis=1) / start
    return round(float(np.exp(np.mean(np.log(ratio)) / steps)), _GAIN_DECIMALS)


def dense_block(
    name: str, current: str, weight: str, bias: str, *, relu: bool = True
) -> tuple[list[Any], str]:
    """MatMul + Add (+ Relu) nodes reading `current`; returns the nodes and the output name."""
    from onnx import helper

    nodes = [
        helper.make_node("MatMul", [current, weight], [f"{name}_m"], name=f"{name}_matmul"),
        helper.make_node("Add", [f"{name}_m", bias], [f"{name}_a"], name=f"{name}_add"),
    ]
    if not relu:
        return nodes, f"{name}_a"
    nodes.append(helper.make_node("Relu", [f"{name}_a"], [f"{name}_h"], name=f"{name}_relu"))
    return nodes, f"{name}_h"


def bench_initializers(rng: np.random.Generator, width: int) -> list[Any]:
    """pixel scale, input layer, the one tied hidden layer (gain-normalised) and the output layer."""
    from onnx import numpy_helper

    tied = he_weight(rng, width, width)
    tied = tied / tied_layer_gain(tied, rng)
    arrays = {
        "pixel_scale": np.array(1.0 / 16.0),
        "w_in": he_weight(rng, FEATURES, width),
        "b_in": np.zeros(width),
        "w_tied": tied,
        "b_tied": np.zeros(width),
        "w_out": he_weight(rng, width, CLASSES),
        "b_out": np.zeros(CLASSES),
    }
    return [numpy_helper.from_array(value.astype(np.float32), name) for name, value in arrays.items()]


def build_bench_mlp(*, seed: int, width: int = HIDDEN_WIDTH, depth: int = TIED_DEPTH) -> Any:
    """ONNX ModelProto: pixels/16 -> input layer -> `depth` tied ReLU blocks -> softmax, argmax."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    nodes: list[Any] = [helper.make_node("Mul", [INPUT_NAME, "pixel_scale"], ["h0"], name="scale")]
    block, current = dense_block("input", "h0", "w_in", "b_in")
    nodes += block
    for index in range(1, depth + 1):
        block, current = dense_block(f"tied{index}", current, "w_tied", "b_tied")
        nodes += block
    block, logits = dense_block("output", current, "w_out", "b_out", relu=False)
    nodes += block
    nodes += [
        helper.make_node("Softmax", [logits], [PROBABILITIES_NAME], axis=1, name="softmax"),
        helper.make_node("ArgMax", [logits], [LABEL_NAME], axis=1, keepdims=1, name="argmax"),
    ]
    graph = helper.make_graph(
        nodes,
        "bench_mlp",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, FEATURES])],
        [
            helper.make_tensor_value_info(PROBABILITIES_NAME, TensorProto.FLOAT, [None, CLASSES]),
            helper.make_tensor_value_info(LABEL_NAME, TensorProto.INT64, [None, 1]),
        ],
        initializer=bench_initializers(rng, width),
        doc_string=(
            f"BENCHMARK MODEL: random fixed-seed weights; {depth} weight-tied {width}x{width} ReLU blocks; "
            "compute-bound load for qscore bench. Its answers mean nothing."
        ),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="qscore")
    model.ir_version = 8
    return model


def time_onnx(path: str, batch_sizes: tuple[int, ...] = (1, 64, 256), threads: int = 1) -> dict[int, float]:
    """Mean onnxruntime latency in ms per batch size (how the model was sized; not a test)."""
    import time

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    latencies = {}
    for batch in batch_sizes:
        pixels = rng.uniform(0, 16, (batch, FEATURES)).astype(np.float32)
        session.run(None, {INPUT_NAME: pixels})
        # ~1 s of runs per size: the model is deliberately slow.
        runs = max(3, min(50, int(1000 / max(batch, 1))))
        started = time.perf_counter()
        for _ in range(runs):
            session.run(None, {INPUT_NAME: pixels})
        latencies[batch] = (time.perf_counter() - started) / runs * 1e3
    return latencies


if __name__ == "__main__":
    import sys
    from pathlib import Path

    model_path = Path(__file__).resolve().parents[2] / "triton_repo" / "bench_mlp" / "1" / "model.onnx"
    thread_count = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    for size, ms in time_onnx(str(model_path), threads=thread_count).items():
        print(
            f"bench_mlp batch {size:>3}: {ms:.2f} ms, {ms / size:.3f} ms per sample "
            f"({thread_count} onnxruntime thread(s))"
        )
