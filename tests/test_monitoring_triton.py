"""The interaction log and drift report on real Triton outputs (digits v2 on the local server)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qscore.contracts import ScoreRequest, Tensor
from qscore.inference.client import TritonClient
from qscore.inference.testset import DIGITS_TEST_SET, DigitsTestSet
from qscore.monitoring import InteractionLog, Sample, drift_report, iter_records
from qscore.scoring import ScoringItem, score_group

ROWS_PER_CALL = 150  # under the model's max_batch_size


async def _score_and_log(client: TritonClient, pixels: np.ndarray, log: InteractionLog, tag: str) -> None:
    spec = await client.model_spec("digits")
    items = [
        ScoringItem(
            request_id=f"{tag}-{index}",
            request=ScoreRequest(
                model="digits", version="2", inputs={"pixels": Tensor.from_numpy(row[None])}
            ),
            arrays={"pixels": row[None]},
            received_at=0.0,
        )
        for index, row in enumerate(pixels)
    ]
    for start in range(0, len(items), ROWS_PER_CALL):
        for scored in await score_group(client, spec, "2", items[start : start + ROWS_PER_CALL]):
            await log.log_scored(scored, scored_by="test")


async def test_logged_triton_scores_drift_only_when_inputs_shift(
    triton_client: TritonClient, digits_test_set: DigitsTestSet, tmp_path: Path
) -> None:
    path = tmp_path / "interactions.jsonl"
    async with InteractionLog(path) as log:
        await _score_and_log(triton_client, digits_test_set.pixels, log, "same")
        await _score_and_log(triton_client, 16 - digits_test_set.pixels, log, "inverted")
    records = list(iter_records(path))
    assert len(records) == 2 * len(digits_test_set)
    served = records[: len(digits_test_set)]
    predicted = np.array([record.prediction[0] for record in served])
    assert np.mean(predicted == digits_test_set.labels) > 0.9
    assert all(0.0 < record.max_probability[0] <= 1.0 and record.version == "2" for record in served)

    report = drift_report(
        records,
        reference=Sample.from_npz(DIGITS_TEST_SET, features_key="pixels", labels_key="labels"),
        window_records=len(served),
    )
    assert [window.verdict for window in report.windows] == ["ok", "drift"]
