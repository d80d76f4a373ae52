"""No misaligned answer, against the real parts: a tiny ONNX model served by a real Triton that
returns one row too few, next to the real `digits` model, behind the worker on the local bus.

Every request to the short model gets exactly one `model_output_mismatch` error reply (no
outputs, so nothing a producer could take for its answer), the mismatch metric counts the calls,
and the `digits` requests scored by the same worker are answered with their own rows."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qscore.contracts import ErrorCode, ReplyStatus
from qscore.inference.client import TritonClient
from qscore.scoring import ModelOutputMismatch, RequestPreparer, score_group
from qscore_local.triton.launcher import TritonEndpoints
from qscore_local.triton.repository import DEFAULT_REPO
from tests.fixtures.triton import start_triton
from tests.fixtures.worker import (
    OutgoingRequest,
    ReplyCollector,
    WorkerSettingsFactory,
    digits_request,
    running_worker,
    send_requests,
)
from workers.telemetry import WorkerTelemetry

SHORT_MODEL = "short_rows"
SHORT_CONFIG = f"""name: "{SHORT_MODEL}"
backend: "onnxruntime"
max_batch_size: 64
input [ {{ name: "pixels", data_type: TYPE_FP32, dims: [ 64 ] }} ]
output [ {{ name: "probabilities", data_type: TYPE_FP32, dims: [ 10 ] }} ]
"""


def write_short_model(model_dir: Path) -> None:
    """An ONNX graph that answers [N, 64] with its first N-1 rows' first 10 columns."""
    import onnx
    from onnx import TensorProto, helper

    def constant(name: str, values: list[int]) -> Any:
        return helper.make_node(
            "Constant", [], [name], value=helper.make_tensor(name, TensorProto.INT64, [len(values)], values)
        )

    graph = helper.make_graph(
        [
            constant("starts", [0, 0]),
            constant("ends", [-1, 10]),
            constant("axes", [0, 1]),
            helper.make_node("Slice", ["pixels", "starts", "ends", "axes"], ["probabilities"]),
        ],
        SHORT_MODEL,
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [None, 64])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 10])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # what the onnxruntime in the venv reads
    (model_dir / "1").mkdir(parents=True)
    onnx.save(model, str(model_dir / "1" / "model.onnx"))
    (model_dir / "config.pbtxt").write_text(SHORT_CONFIG)


@pytest.fixture(scope="module")
def short_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonEndpoints]:
    """A private Triton serving the short model and the real `digits` model."""
    repo = tmp_path_factory.mktemp("short-repo")
    write_short_model(repo / SHORT_MODEL)
    shutil.copytree(DEFAULT_REPO / "digits", repo / "digits")
    with start_triton(repo=repo) as server:
        assert server.endpoints is not None
        yield server.endpoints


class CountingTelemetry(WorkerTelemetry):
    def __init__(self) -> None:
        super().__init__(enabled=False)
        self.mismatches: list[tuple[str, str]] = []

    def output_mismatch(self, model: str, version: str) -> None:
        self.mismatches.append((model, version))


async def test_the_core_refuses_the_real_short_result(short_triton: TritonEndpoints, tmp_path: Path) -> None:
    from qscore.registry import ModelRegistry

    client = TritonClient(short_triton.grpc_url, timeout_s=30)
    try:
        preparer = RequestPreparer(specs=client, registry=ModelRegistry(tmp_path / "registry.json"))
        prepared = [
            await preparer.prepare(
                request_id=f"r{rows}",
                body=digits_request(np.ones((rows, 64)), model=SHORT_MODEL).encode(),
                received_at=0.0,
            )
            for rows in (1, 3)
        ]
        spec = prepared[0].spec
        with pytest.raises(ModelOutputMismatch) as raised:
            await score_group(client, spec, prepared[0].version, [each.item for each in prepared])
        assert "batch of 4 rows" in raised.value.description and "3 rows" in raised.value.description
    finally:
        await client.close()


async def test_a_model_one_row_short_gets_mismatch_replies_and_nothing_misaligned(
    bus: Any,
    short_triton: TritonEndpoints,
    replies: ReplyCollector,
    fresh_queue: str,
    worker_settings: WorkerSettingsFactory,
) -> None:
    session = replies.session_id
    short = [
        OutgoingRequest(
            f"short-{i}", digits_request(np.ones((i + 1, 64)), model=SHORT_MODEL), session_id=session
        )
        for i in range(3)
    ]
    digits = [
        OutgoingRequest(f"digits-{i}", digits_request(np.full((i + 1, 64), i)), session_id=session)
        for i in range(3)
    ]
    await send_requests(
        bus.connection_string, fresh_queue, [x for pair in zip(short, digits, strict=True) for x in pair]
    )
    telemetry = CountingTelemetry()
    settings = worker_settings(request_queue=fresh_queue, triton_url=short_triton.grpc_url)
    async with running_worker(settings, telemetry=telemetry):
        await replies.collect(6, timeout_s=60, settle_s=0.5)
    for i in range(3):
        (mismatch,) = replies.replies[f"short-{i}"]
        assert (
            mismatch.status == ReplyStatus.ERROR and mismatch.outputs is None and mismatch.error is not None
        )
        assert mismatch.error.code == ErrorCode.MODEL_OUTPUT_MISMATCH
        assert "rows in output 'probabilities'" in mismatch.error.message
        (scored,) = replies.replies[f"digits-{i}"]
        assert scored.status == ReplyStatus.OK
        assert scored.output_arrays()["probabilities"].shape == (i + 1, 10)  # its own rows, no more
    assert telemetry.mismatches and {model for model, _ in telemetry.mismatches} == {SHORT_MODEL}
    assert len(telemetry.mismatches) <= 3  # one per Triton call, never retried request by request
