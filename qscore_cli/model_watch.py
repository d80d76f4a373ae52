"""`qscore model watch`: one model's quality, for a schedule (deploy/components/model-quality).

Drift per served version (the latest judged window against the reference) over the interaction
log (a file, or the Blob log the workers write), feedback accuracy when ground truth is given,
and the model's thresholds, as OpenMetrics (qscore/monitoring/quality_metrics.py): written to
--output and/or pushed to a Prometheus Pushgateway (a CronJob's pod is gone before Prometheus
could scrape it). The alerts are deploy/monitoring/qscore-model-quality.rules.yaml.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from qscore_cli.errors import UserError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

PUSH_JOB = "qscore-model-quality"


def watch(
    model: Annotated[str, typer.Option(help="The model to judge.")],
    log: Annotated[Path | None, typer.Option("--log", help="Interaction log (JSONL file).")] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--source", help="Blob interaction log: https://<account>.blob.core.windows.net/<container>."
        ),
    ] = None,
    reference: Annotated[
        str, typer.Option(help="'auto', 'first-window' or an .npz with 'pixels' and 'labels'.")
    ] = "auto",
    window_records: Annotated[int, typer.Option(min=1, help="Drift window size in records.")] = 500,
    psi_alert: Annotated[float, typer.Option(help="This model's PSI alert threshold.")] = 0.25,
    feedback: Annotated[
        str | None,
        typer.Option(
            help="Ground truth (CSV, Parquet or JSONL with request_id[, row], label): a file, or a blob"
            " URL (no blob yet: accuracy is not judged this run)."
        ),
    ] = None,
    label_column: Annotated[str, typer.Option(help="Feedback column with the true value.")] = "label",
    feedback_window_minutes: Annotated[float, typer.Option(min=0.0, help="Accuracy window.")] = 60.0,
    min_accuracy: Annotated[float | None, typer.Option(help="This model's accuracy alert threshold.")] = None,
    min_rows: Annotated[
        int, typer.Option(min=1, help="Accuracy windows with fewer rows are not judged.")
    ] = 20,
    output: Annotated[
        Path | None, typer.Option(help="Write the OpenMetrics text here ('-': stdout).")
    ] = None,
    push_gateway: Annotated[
        str | None, typer.Option(help="Push to this Pushgateway (http://host:9091), grouped by model.")
    ] = None,
) -> None:
    """Judge MODEL's drift and feedback accuracy and export them as metrics."""
    from rich.console import Console

    from qscore.monitoring import DriftThresholds, drift_report, select_records
    from qscore.monitoring.quality_metrics import QualityThresholds, openmetrics_text, quality_registry
    from qscore_cli.registry_drift import load_reference, read_source
    from qscore_cli.registry_views import stdout_console

    if output is None and push_gateway is None:
        raise UserError("give --output and/or --push-gateway: the metrics must go somewhere")
    if psi_alert <= 0:
        raise UserError("--psi-alert must be > 0")
    # With --output - the metrics are stdout: notes go to stderr.
    console = Console(stderr=True) if str(output) == "-" else stdout_console()
    records = select_records(read_source(log, source, model, console), model=model)
    if not records:
        raise UserError(f"the log {log or source} has no served interactions of {model!r}")
    baseline = load_reference(reference, model)
    thresholds = DriftThresholds(psi_warn=min(0.1, psi_alert), psi_alert=psi_alert)
    drift = {
        version: drift_report(
            [r for r in records if r.version == version],
            reference=baseline,
            window_records=window_records,
            thresholds=thresholds,
        )
        for version in sorted({r.version for r in records if r.version})
    }
    accuracy = None
    if feedback is not None:
        from qscore.monitoring.feedback import FeedbackError, accuracy_report, read_feedback

        with tempfile.TemporaryDirectory(prefix="qscore-feedback-") as scratch:
            path = _feedback_file(feedback, Path(scratch))
            if path is None:
                console.print(f"no ground truth at {feedback} yet: accuracy not judged")
            else:
                try:
                    truth = read_feedback(path, label_column=label_column)
                except FeedbackError as exc:
                    raise UserError(str(exc)) from None
                accuracy = accuracy_report(records, truth, window_s=feedback_window_minutes * 60)
    registry = quality_registry(
        model,
        drift,
        accuracy,
        QualityThresholds(psi_alert=psi_alert, min_accuracy=min_accuracy, min_rows=min_rows),
    )
    text = openmetrics_text(registry)
    if output is not None:
        if str(output) == "-":
            typer.echo(text.decode(), nl=False)
        else:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_bytes(text)
            console.print(f"metrics written to {output}")
    if push_gateway is not None:
        _push(push_gateway, model, registry)
        console.print(f"metrics pushed to {push_gateway} (job {PUSH_JOB}, model {model})")


def _feedback_file(feedback: str, scratch: Path) -> Path | None:
    """A local feedback file as is; a blob URL downloaded into `scratch` (None: no blob)."""
    if not feedback.startswith(("http://", "https://")):
        path = Path(feedback)
        if not path.is_file():
            raise UserError(f"no feedback file at {feedback}")
        return path
    from qscore.monitoring.blob_log import download_blob

    try:
        return download_blob(feedback, scratch)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    except Exception as exc:  # unreachable account, no such container, no rights
        raise UserError(f"cannot read the feedback at {feedback}: {str(exc).splitlines()[0]}") from None


def _push(gateway: str, model: str, registry: CollectorRegistry) -> None:
    """Replace this model's group on the Pushgateway with the new values (HTTP PUT)."""
    from prometheus_client import push_to_gateway

    try:
        push_to_gateway(gateway, job=PUSH_JOB, registry=registry, grouping_key={"model": model}, timeout=30)
    except OSError as exc:  # URLError is an OSError: unreachable, refused, HTTP error
        raise UserError(f"cannot push to {gateway}: {exc}") from None


def register(app: typer.Typer) -> None:
    app.command()(watch)
