"""Version comparison, feedback accuracy and model-agnostic output/input handling (fast, no servers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from qscore.monitoring import InteractionRecord, Sample
from qscore.monitoring.compare import compare_versions
from qscore.monitoring.feedback import accuracy_report, read_feedback
from qscore.monitoring.records import summarize_outputs
from qscore_cli import app

runner = CliRunner()


def record(
    rid: str,
    version: str,
    prediction: int,
    *,
    route: str = "production",
    total: float = 5.0,
    status: str = "ok",
    at: float = 0.0,
) -> InteractionRecord:
    return InteractionRecord(
        at=at,
        request_id=rid,
        model="m",
        version=version,
        route=route,
        status=status,  # type: ignore[arg-type]
        prediction=[prediction],
        timings={"inference_ms": total / 2, "total_ms": total},
    )


def flight_log(
    rng: np.random.Generator, *, canary_shift: int = 0, canary_slow: float = 1.0
) -> list[InteractionRecord]:
    records = []
    for index in range(1000):
        canary = index % 5 == 0
        value = int(rng.integers(0, 10))
        if canary:
            records.append(
                record(
                    f"r{index}",
                    "1",
                    canary_shift if canary_shift and index % 2 else value,
                    total=5.0 * canary_slow,
                )
            )
        else:
            records.append(record(f"r{index}", "2", value))
    return records


def test_clean_canary_is_promoted_and_shifted_one_rolled_back() -> None:
    clean = compare_versions(flight_log(np.random.default_rng(1)), model="m", production="2")
    assert [s.version for s in clean.versions] == ["1", "2"]
    assert clean.summary("1") is not None and clean.summary("1").requests == 200  # type: ignore[union-attr]
    assert clean.assessments[0].verdict == "promote", clean.assessments[0].reasons
    shifted = compare_versions(
        flight_log(np.random.default_rng(1), canary_shift=7), model="m", production="2"
    )
    assert shifted.assessments[0].verdict == "roll back", shifted.assessments[0]
    slow = compare_versions(flight_log(np.random.default_rng(1), canary_slow=3.0), model="m", production="2")
    assert slow.assessments[0].verdict == "roll back" and "p99" in slow.assessments[0].reasons[0]


def test_errors_by_code_and_shadow_agreement() -> None:
    records = [record(f"r{i}", "2", i % 10) for i in range(300)]
    records += [record(f"r{i}", "3", i % 10 if i % 10 else 1, route="shadow") for i in range(300)]
    records += [record("bad", "2", 0, status="inference_failed")]
    comparison = compare_versions(records, model="m", production="2")
    assert comparison.summary("2").errors == {"inference_failed": 1}  # type: ignore[union-attr]
    shadow = comparison.assessments[0]
    assert shadow.shadow_pairs == 300 and shadow.shadow_agreement == pytest.approx(0.9)
    assert shadow.verdict == "roll back"  # 90 % agreement < 95 %


def test_compare_command_writes_markdown_and_png(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text("".join(r.model_dump_json() + "\n" for r in flight_log(np.random.default_rng(2))))
    result = runner.invoke(
        app,
        ["model", "compare", "m", "--log", str(log), "--production", "2", "--output", str(tmp_path / "out")],
    )
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| v1 |" in markdown and "Thresholds:" in markdown and "**promote**" in markdown
    assert (tmp_path / "out" / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_outputs_are_found_by_shape_or_by_the_configs_name() -> None:
    scores = np.array([[0.1, 0.9], [0.8, 0.2]], dtype=np.float32)
    assert summarize_outputs({"y": np.array([[1], [0]]), "scores": scores}) == (
        [1, 0],
        pytest.approx([0.9, 0.8]),
    )
    assert summarize_outputs({"scores": scores})[0] == [1, 0]  # argmax when no class output
    named = {"a": np.array([[3], [4]]), "b": np.array([[5], [6]])}
    assert summarize_outputs(named, class_output="b")[0] == [5, 6]
    assert summarize_outputs({"value": np.array([[2.5], [1.5]], dtype=np.float32)})[0] == [2.5, 1.5]


def test_drift_features_cover_every_input() -> None:
    records = [
        InteractionRecord(
            at=i,
            request_id=str(i),
            model="m",
            version="1",
            inputs={"a": [[1.0, 2.0]], "b": [[3.0]]},
            prediction=[0],
        )
        for i in range(3)
    ]
    sample = Sample.from_records(records)
    assert sample.feature_names == ["a[0]", "a[1]", "b[0]"] and sample.features is not None
    assert sample.features.shape == (3, 3)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_feedback_accuracy_per_version_and_window(tmp_path: Path, suffix: str) -> None:
    records = [record(f"r{i}", "1" if i % 2 else "2", i % 3, at=float(i * 60)) for i in range(120)]
    truth = {f"r{i}": 0 for i in range(120)}  # prediction i % 3 == 0 is right
    path = tmp_path / f"feedback{suffix}"
    rows = [{"request_id": rid, "row": 0, "label": label} for rid, label in truth.items()]
    if suffix == ".csv":
        path.write_text(
            "request_id,row,label\n" + "".join(f"{r['request_id']},0,{r['label']}\n" for r in rows)
        )
    elif suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    feedback = read_feedback(path, label_column="label")
    report = accuracy_report(records, feedback, window_s=3600)
    expected = {v: np.mean([r.prediction[0] == 0 for r in records if r.version == v]) for v in ("1", "2")}
    for version, window in report.overall.items():
        assert abs(window.accuracy - expected[version]) < 1e-9
    assert len(report.windows) == 4  # two hours, two versions
    if suffix != ".csv":
        return  # the command once is enough; the readers differ, not the command
    log = tmp_path / "log.jsonl"
    log.write_text("".join(r.model_dump_json() + "\n" for r in records))
    args = [
        "model",
        "feedback",
        str(path),
        "--model",
        "m",
        "--log",
        str(log),
        "--plot",
        str(tmp_path / "a.png"),
    ]
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, [*args, "--fail-below", "0.9"]).exit_code == 1
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
