"""BENCHMARK MODEL, not a real classifier: a wide MLP with random fixed-seed weights.

It exists so `qscore bench` has a compute-bound model where inference time dominates the
per-request overhead (issue 5). Same interface as `digits` (`pixels` in; `probabilities`,
`label` out) so the benchmark can feed it the held-out digits set, but its answers mean
nothing. Sized so one batch of 64 takes a few milliseconds in onnxruntime on one CPU core
(measured: `python -m qscore.training.bench_mlp [threads]`, about 2.9 ms at batch 64 on one core).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qscore.training.onnx_names import CLASSES, FEATURES, INPUT_NAME, LABEL_NAME, PROBABILITIES_NAME

HIDDEN_WIDTH = 1024
HIDDEN_LAYERS = 3
OPSET = 17


def build_bench_mlp(*, seed: int, width: int = HIDDEN_WIDTH, layers: int = HIDDEN_LAYERS) -> Any:
    """ONNX ModelProto: pixels/16 -> `layers` x (MatMul, Add, Relu) of `width` -> softmax and argmax."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes: list[Any] = [
        helper.make_node("Mul", [INPUT_NAME, "pixel_scale"], ["h0"], name="scale"),
    ]
    initializers = [numpy_helper.from_array(np.array(1.0 / 16.0, dtype=np.float32), "pixel_scale")]
    fan_in, current = FEATURES, "h0"
    for layer, fan_out in enumerate([width] * layers + [CLASSES], start=1):
        weight = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        bias = np.zeros(fan_out, dtype=np.float32)
        initializers += [
            numpy_helper.from_array(weight, f"w{layer}"),
            numpy_helper.from_array(bias, f"b{layer}"),
        ]
        nodes += [
            helper.make_node("MatMul", [current, f"w{layer}"], [f"m{layer}"], name=f"matmul{layer}"),
            helper.make_node("Add", [f"m{layer}", f"b{layer}"], [f"a{layer}"], name=f"add{layer}"),
        ]
        current = f"a{layer}"
        if fan_out != CLASSES:
            nodes.append(helper.make_node("Relu", [current], [f"h{layer}"], name=f"relu{layer}"))
            current = f"h{layer}"
        fan_in = fan_out
    nodes += [
        helper.make_node("Softmax", [current], [PROBABILITIES_NAME], axis=1, name="softmax"),
        helper.make_node("ArgMax", [current], [LABEL_NAME], axis=1, keepdims=1, name="argmax"),
    ]
    graph = helper.make_graph(
        nodes,
        "bench_mlp",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, FEATURES])],
        [
            helper.make_tensor_value_info(PROBABILITIES_NAME, TensorProto.FLOAT, [None, CLASSES]),
            helper.make_tensor_value_info(LABEL_NAME, TensorProto.INT64, [None, 1]),
        ],
        initializer=initializers,
        doc_string="BENCHMARK MODEL: random fixed-seed weights; compute-bound load for qscore bench.",
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
        for _ in range(5):
            session.run(None, {INPUT_NAME: pixels})
        runs, started = 50, time.perf_counter()
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
        print(f"bench_mlp batch {size:>3}: {ms:.2f} ms ({thread_count} onnxruntime thread(s))")
