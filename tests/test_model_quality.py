"""Model quality on a schedule: `qscore model watch` over a logged run (one version whose
traffic shifts, one that stays put, ground truth for both) exports drift, accuracy and the
model's thresholds as OpenMetrics; promtool, fed exactly that output, fires the drift and
accuracy alerts for the shifted version only; a real Prometheus that scraped that output
answers every query of the dashboard's model-quality row, per version. The CronJob renders in
every environment and the PrometheusRule carries the rules file's groups."""

from __future__ import annotations

import asyncio
import csv
import re
import shutil
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from typer.testing import CliRunner

from qscore.monitoring import InteractionRecord
from qscore.monitoring.blob_log import BlobInteractionLog, parse_log_url
from qscore_cli import app
from qscore_local.azurite import AzuriteEndpoint
from qscore_local.processes import stop_process
from qscore_tools.scaling.manifests import OVERLAYS, find, render_overlay
from tests.fixtures.dashboard import QUALITY_ROW, concrete, load_dashboard, panels_by_row
from tests.fixtures.parts import missing_part, require_tool
from tests.fixtures.ports import free_port
from tests.fixtures.prometheus import LocalPrometheus, serving_exposition, start_prometheus

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "monitoring" / "qscore-model-quality.rules.yaml"
RULE_RESOURCE = ROOT / "deploy" / "components" / "monitoring" / "model-quality-rule.yaml"
FEATURES = 8
ROWS = 300  # per window


def _window(rng: np.random.Generator, version: str, start: float, *, shift: float, correct: float) -> tuple:
    features = np.clip(np.round(rng.normal(6 + shift, 4, size=(ROWS, FEATURES))), 0, 16)
    predictions = rng.integers(0, 10, ROWS)
    truth = np.where(rng.random(ROWS) < correct, predictions, (predictions + 1) % 10)
    records = [
        InteractionRecord(
            at=start + index,
            request_id=f"v{version}-{start}-{index}",
            model="digits",
            version=version,
            inputs={"pixels": [row.tolist()]},
            prediction=[int(p)],
            max_probability=[0.9 - shift / 20],
        )
        for index, (row, p) in enumerate(zip(features, predictions, strict=True))
    ]
    return records, [(r.request_id, int(t)) for r, t in zip(records, truth, strict=True)]


def _run() -> tuple[list[InteractionRecord], list[tuple[str, int]]]:
    """A run's interactions and ground truth: v2 drifts and gets worse in its second window;
    v3 stays as it was."""
    rng = np.random.default_rng(7)
    records, truth = [], []
    for version, (shift, correct) in {"2": (4.0, 0.5), "3": (0.0, 0.97)}.items():
        for start, window_shift, window_correct in ((0.0, 0.0, 0.97), (3600.0, shift, correct)):
            got, labels = _window(rng, version, start, shift=window_shift, correct=window_correct)
            records += got
            truth += labels
    return records, truth


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The interaction log (JSONL, as the workers write it) and the ground truth of a run."""
    directory = tmp_path_factory.mktemp("logged-run")
    records, truth = _run()
    log = directory / "interactions.jsonl"
    log.write_text("".join(r.model_dump_json() + "\n" for r in records))
    feedback = directory / "feedback.csv"
    with feedback.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["request_id", "label"])
        writer.writerows(truth)
    return log, feedback


def _watch(log: Path, feedback: Path, output: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    result = CliRunner().invoke(
        app,
        [
            *("model", "watch", "--model", "digits", "--log", str(log), "--reference", "first-window"),
            *("--window-records", str(ROWS), "--psi-alert", "0.25", "--feedback", str(feedback)),
            *("--min-accuracy", "0.9", "--output", str(output)),
        ],
    )
    assert result.exit_code == 0, result.output
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(output.read_text())
        for sample in family.samples
    }


def _series(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}"


def test_the_jobs_output_fires_the_alerts_for_the_drifting_version_only(
    logged_run: tuple[Path, Path], tmp_path: Path
) -> None:
    promtool = require_tool("promtool", "Debian's prometheus package (scripts/bootstrap.sh installs it)")
    samples = _watch(*logged_run, tmp_path / "model-quality.prom")
    psi = {
        dict(labels)["version"]: value
        for (name, labels), value in samples.items()
        if name == "qscore_model_drift_psi"
    }
    accuracy = {
        dict(labels)["version"]: value
        for (name, labels), value in samples.items()
        if name == "qscore_model_feedback_accuracy"
    }
    assert psi["2"] > 0.25 > psi["3"] and accuracy["2"] < 0.9 < accuracy["3"]
    series = [
        {"series": _series(name, labels), "values": f"{value}x10"}
        for (name, labels), value in samples.items()
    ]
    drift = {"model": "digits", "version": "2", "severity": "warning"}
    low = {"model": "digits", "version": "2", "severity": "critical"}
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "eval_time": "5m",
                        "alertname": "QScoreModelDrift",
                        "exp_alerts": [
                            {"exp_labels": drift, "exp_annotations": _annotations("drift", psi["2"])}
                        ],
                    },
                    {
                        "eval_time": "5m",
                        "alertname": "QScoreModelAccuracyLow",
                        "exp_alerts": [
                            {"exp_labels": low, "exp_annotations": _annotations("accuracy", accuracy["2"])}
                        ],
                    },
                    {"eval_time": "5m", "alertname": "QScoreModelQualityStale", "exp_alerts": []},
                ],
            },
            {  # the job stopped: its last report is older than 3 h
                "interval": "1h",
                "input_series": [
                    {"series": 'qscore_model_quality_run_timestamp_seconds{model="digits"}', "values": "0x5"}
                ],
                "alert_rule_test": [
                    {"eval_time": "2h", "alertname": "QScoreModelQualityStale", "exp_alerts": []},
                    {
                        "eval_time": "4h",
                        "alertname": "QScoreModelQualityStale",
                        "exp_alerts": [
                            {
                                "exp_labels": {"model": "digits", "severity": "warning"},
                                "exp_annotations": _annotations("stale", 0.0),
                            }
                        ],
                    },
                ],
            },
        ],
    }
    test_file = tmp_path / "model-quality.test.yaml"
    test_file.write_text(yaml.safe_dump(tests))
    proc = subprocess.run(
        [promtool, "test", "rules", str(test_file)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _annotations(alert: str, value: float) -> dict[str, str]:
    """The rule's annotations as Prometheus renders them for model digits, version 2."""
    rules = {r["alert"]: r for r in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]}
    name = {
        "drift": "QScoreModelDrift",
        "accuracy": "QScoreModelAccuracyLow",
        "stale": "QScoreModelQualityStale",
    }
    rendered = {}
    for key, template in rules[name[alert]]["annotations"].items():
        text = template.replace("{{ $labels.model }}", "digits").replace("{{ $labels.version }}", "2")
        text = text.replace('{{ $value | printf "%.2f" }}', f"{value:.2f}")
        rendered[key] = text.replace('{{ $value | printf "%.3f" }}', f"{value:.3f}")
    return rendered


async def test_the_quality_panels_show_the_jobs_output_per_version(
    logged_run: tuple[Path, Path], tmp_path: Path
) -> None:
    """The dashboard's model-quality row against Debian's Prometheus scraping the job's output
    as written (the worker-scrape check, test_observability_real.py, leaves this row out): each
    metric a panel names is exported, each query returns data, per-version ones both versions."""
    output = tmp_path / "model-quality.prom"
    exported = {name for name, _ in await asyncio.to_thread(_watch, *logged_run, output)}
    panels = panels_by_row(load_dashboard())[QUALITY_ROW]
    assert len(panels) == 3
    job = "qscore-model-quality"
    with (
        serving_exposition(output.read_bytes(), CONTENT_TYPE_LATEST) as target,
        start_prometheus([target], tmp_path, job=job) as prometheus,
    ):
        await _scraped(prometheus, job)
        for panel in panels:
            for query in panel["targets"]:
                named = set(re.findall(r"\bqscore_\w+", query["expr"]))
                assert named and named <= exported, (panel["title"], named - exported)
                result = await prometheus.query(concrete(query["expr"]))
                assert result, (panel["title"], query["expr"])
                if "{{version}}" in query["legendFormat"]:
                    assert {r["metric"]["version"] for r in result} == {"2", "3"}, panel["title"]
                if panel["fieldConfig"]["defaults"]["unit"] == "s":  # just ran: seconds, not ms
                    assert 0 <= float(result[0]["value"][1]) < 3600, result


async def _scraped(prometheus: LocalPrometheus, job: str, timeout_s: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not (up := await prometheus.query(f'up{{job="{job}"}}')):
        assert loop.time() < deadline, "prometheus did not scrape the job's output"
        await asyncio.sleep(0.25)
    assert up[0]["value"][1] == "1", "the scrape of the job's output failed (see prometheus.log)"


def test_prometheus_rule_carries_the_rules_files_groups() -> None:
    resource: dict[str, Any] = yaml.safe_load(RULE_RESOURCE.read_text())
    assert resource["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_the_job_runs_in_every_environment() -> None:
    for env in OVERLAYS:
        docs = render_overlay(env)
        (job,) = find(docs, "CronJob", "qscore-model-quality")
        pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        args = pod["containers"][0]["args"]
        assert args[:2] == ["model", "watch"] and "--source" in args
        feedback = args[args.index("--feedback") + 1]
        assert feedback.startswith(
            "https://$(STORAGE_ACCOUNT_NAME).blob.core.windows.net/$(FEEDBACK_CONTAINER)/"
        )
        (environment,) = [
            d for d in find(docs, "ConfigMap") if d["metadata"]["name"].startswith("qscore-environment")
        ]
        bicep = (ROOT / "deploy" / "infra" / "main.bicep").read_text()
        assert f"'{environment['data']['FEEDBACK_CONTAINER']}'" in bicep
        assert pod["serviceAccountName"] == "qscore-worker"  # Blob reader of the interaction log
        pushes = "--push-gateway" in args
        assert pushes == (env != "dev"), env  # dev has no Prometheus: it prints
        assert bool(find(docs, "PrometheusRule", "qscore-model-quality")) == pushes


def _pushgateway() -> str:
    found = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    if found is None:
        missing_part("the Pushgateway", "Debian's prometheus-pushgateway (scripts/bootstrap.sh installs it)")
    return found


def test_the_job_pushes_to_a_real_pushgateway(logged_run: tuple[Path, Path], tmp_path: Path) -> None:
    """What the CronJob does in qa and prod: push, replacing the model's group, where
    Prometheus scrapes it with the job and model labels."""
    port = free_port()
    gateway = subprocess.Popen(
        [_pushgateway(), f"--web.listen-address=127.0.0.1:{port}", "--persistence.file="],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/-/ready", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        log, feedback = logged_run
        for _ in range(2):  # a second run replaces the first's values, it does not add to them
            result = CliRunner().invoke(
                app,
                [
                    *(
                        "model",
                        "watch",
                        "--model",
                        "digits",
                        "--log",
                        str(log),
                        "--reference",
                        "first-window",
                    ),
                    *("--window-records", str(ROWS), "--feedback", str(feedback), "--push-gateway", url),
                ],
            )
            assert result.exit_code == 0, result.output
        scraped = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    finally:
        stop_process(gateway)
    drift = [
        line
        for line in scraped.splitlines()
        if line.startswith("qscore_model_drift_psi{") and 'job="qscore-model-quality"' in line
    ]
    assert len(drift) == 2 and all('model="digits"' in line for line in drift), drift
    accuracy = [line for line in scraped.splitlines() if line.startswith("qscore_model_feedback_accuracy{")]
    assert len(accuracy) == 2 and any('version="2"' in line for line in accuracy), accuracy


async def test_the_job_reads_the_blob_log_the_workers_write(
    azurite: AzuriteEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CronJob's --source and --feedback: the Blob interaction log (Azurite) the workers'
    logger wrote, and ground truth dropped as a blob (none yet: drift is still judged)."""
    monkeypatch.setenv("QSCORE_BLOB_CONNECTION", azurite.connection_string)
    url = f"{azurite.blob_url}/interactions-{uuid.uuid4().hex[:8]}"
    log = BlobInteractionLog(url, flush_interval_s=0.2)
    records, truth = _run()
    for record in records:
        await log.log(record)
    assert await log.flush()
    await log.close()
    feedback_url = f"{azurite.blob_url}/feedback-{uuid.uuid4().hex[:8]}/digits.csv"
    samples = await _watch_blob(url, feedback_url)
    assert samples["qscore_model_drift_psi", "2"] > 0.25 > samples["qscore_model_drift_psi", "3"]
    assert ("qscore_model_feedback_accuracy", "2") not in samples  # no ground truth yet
    await asyncio.to_thread(_upload, azurite.connection_string, feedback_url, truth)
    samples = await _watch_blob(url, feedback_url)
    assert (
        samples["qscore_model_feedback_accuracy", "2"] < 0.9 < samples["qscore_model_feedback_accuracy", "3"]
    )


async def _watch_blob(url: str, feedback_url: str) -> dict[tuple[str, str], float]:
    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        [
            *("model", "watch", "--model", "digits", "--source", url, "--reference", "first-window"),
            *("--window-records", str(ROWS), "--feedback", feedback_url, "--output", "-"),
        ],
    )
    assert result.exit_code == 0, result.output
    text = result.stdout[result.stdout.index("# HELP") :]  # after the "no ground truth" note, if any
    return {
        (sample.name, sample.labels["version"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "version" in sample.labels
    }


def _upload(connection: str, url: str, truth: list[tuple[str, int]]) -> None:
    from azure.storage.blob import BlobServiceClient

    location = parse_log_url(url)
    with BlobServiceClient.from_connection_string(connection) as service:
        container = service.get_container_client(location.container)
        container.create_container()
        body = "request_id,label\n" + "".join(f"{request_id},{label}\n" for request_id, label in truth)
        container.upload_blob(location.prefix.rstrip("/"), body.encode())
