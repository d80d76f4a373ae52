"""`qscore batch score` (score a dataset, resumable) and `qscore batch bench`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from qscore_cli.errors import UserError

if TYPE_CHECKING:
    from qscore.batch import Backends, BatchJob, BatchSummary
    from qscore.batch.shards import Shard

app = typer.Typer(help="Batch scoring: a whole dataset with the runtime's models.", no_args_is_help=True)

ENGINES = ("direct", "queue")
FORMATS = ("parquet", "csv", "jsonl", "npy", "npz")


@app.command("score")
def score(
    input: str = typer.Argument(..., help="Parquet, CSV, JSON Lines, .npy or .npz: a path or a Blob URL."),
    model: str = typer.Option(..., "--model", help="Model to score with (as Triton serves it)."),
    output: str = typer.Option(..., "--output", "-o", help="Output path or Blob URL."),
    version: str | None = typer.Option(None, help="Version number or label (default: production)."),
    engine: str = typer.Option("direct", help="direct (gRPC to Triton) or queue (the request queue)."),
    map_: list[str] = typer.Option([], "--map", help="input=column, input=c1,c2,... or input=glob*."),
    id_column: str | None = typer.Option(None, help="Column carried to the output as the id."),
    fmt: str | None = typer.Option(None, "--format", help=f"Output format ({', '.join(FORMATS)})."),
    input_format: str | None = typer.Option(None, help="Input format when its suffix does not say."),
    outputs: str | None = typer.Option(None, help="Model outputs to write, comma-separated (default: all)."),
    chunk_rows: int | None = typer.Option(
        None, help="Rows per chunk (default: 4096 direct, max batch queue)."
    ),
    in_flight: int = typer.Option(4, help="Chunks scored at once (queue engine: at least 16 is sensible)."),
    shard: str | None = typer.Option(
        None,
        help="Score only shard I of N (0-based; e.g. 0/4) into its own output, resumable on its own "
        "(default: $JOB_COMPLETION_INDEX of $QSCORE_BATCH_SHARDS when both are set).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the mapping and chunking, score nothing."),
    triton_url: str | None = typer.Option(None, help="Triton gRPC address (default: $QSCORE_TRITON_URL)."),
    repo: Path | None = typer.Option(None, help="Model repository with config.pbtxt (queue engine)."),
    registry: Path | None = typer.Option(None, help="Model registry file (default: $QSCORE_REGISTRY_PATH)."),
    connection: str | None = typer.Option(None, help="Service Bus connection (queue engine)."),
    namespace: str | None = typer.Option(None, help="Service Bus namespace (queue engine, Azure AD)."),
    timeout: float = typer.Option(120.0, help="Seconds to wait for a chunk's reply (queue engine)."),
    summary_json: Path | None = typer.Option(None, help="Also write the summary as JSON here."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Score INPUT with MODEL into OUTPUT; rerun the same command to finish after a kill."""
    import asyncio

    from qscore.batch import BatchJob, Format

    if engine not in ENGINES:
        raise UserError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    job = BatchJob(
        input=input,
        output=output,
        model=model,
        version=version,
        engine=engine,
        chunk_rows=_positive("--chunk-rows", chunk_rows),
        in_flight=_positive("--in-flight", in_flight) or 4,
        input_format=Format(_choice("--input-format", input_format)) if input_format else None,
        output_format=Format(_choice("--format", fmt)) if fmt else None,
        overrides=_mapping(map_),
        id_column=id_column,
        outputs=[name.strip() for name in outputs.split(",") if name.strip()] if outputs else None,
        shard=_shard(shard),
    )
    backends = _backends(engine, triton_url, repo, registry, connection, namespace, timeout)
    summary = asyncio.run(_score(job, backends, dry_run=dry_run, progress=progress))
    if summary is not None:
        from qscore_cli.batch_views import print_summary

        print_summary(summary)
        if summary_json is not None:
            summary_json.write_text(json.dumps(summary.as_dict(), indent=2))


async def _score(job: BatchJob, backends: Backends, *, dry_run: bool, progress: bool) -> BatchSummary | None:
    """Bad input and unreachable services become one `error:` line (exit 2), never a traceback."""
    from qscore.batch import open_job, run_job
    from qscore_cli.batch_views import ProgressObserver, print_plan, user_message

    try:
        async with open_job(job, backends) as opened:
            if dry_run:
                print_plan(opened.plan)
                return None
            with ProgressObserver(enabled=progress) as observer:
                return await run_job(opened, backends, observer)
    except Exception as exc:
        message = user_message(exc)
        if message is None:
            raise
        raise UserError(message) from None


_CHECKOUT_REPO = Path(__file__).resolve().parents[1] / "triton_repo"


def default_repository() -> Path | None:
    """$QSCORE_TRITON_REPO, else ./triton_repo, else the checkout's triton_repo; None if none exists."""
    configured = os.environ.get("QSCORE_TRITON_REPO")
    if configured:
        return Path(configured)
    for candidate in (Path("triton_repo"), _CHECKOUT_REPO):
        if candidate.is_dir():
            return candidate
    return None


def _backends(
    engine: str,
    triton_url: str | None,
    repo: Path | None,
    registry: Path | None,
    connection: str | None,
    namespace: str | None,
    timeout: float,
) -> Backends:
    from qscore.batch import Backends

    producer = None
    if engine == "queue":
        from qscore.producer import ProducerSettings

        producer = ProducerSettings.from_env(
            connection=connection, namespace=namespace, reply_timeout_s=timeout, binary_tensors=True
        )
        if bool(producer.connection) == bool(producer.namespace):
            raise UserError(
                "the queue engine needs a Service Bus: --connection / QSCORE_SERVICEBUS_CONNECTION, "
                "or --namespace / QSCORE_SERVICEBUS_NAMESPACE (exactly one)"
            )
    return Backends(
        triton_url=triton_url or os.environ.get("QSCORE_TRITON_URL") or "127.0.0.1:8001",
        repository=repo or (default_repository() if engine == "queue" else None),
        producer=producer,
        registry_path=registry,
        reply_timeout_s=timeout,
    )


def _shard(text: str | None) -> Shard | None:
    """--shard I/N, else the Indexed Job's JOB_COMPLETION_INDEX of QSCORE_BATCH_SHARDS, else None."""
    from qscore.batch.shards import Shard, shard_from_env

    try:
        return Shard.parse(text) if text is not None else shard_from_env()
    except ValueError as exc:
        raise UserError(f"--shard: {exc}") from None


def _mapping(pairs: list[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs:
        name, sep, columns = pair.partition("=")
        if not sep or not name.strip() or not columns.strip():
            raise UserError(f"--map {pair!r}: write it as INPUT=COLUMN (or INPUT=c1,c2 or INPUT=prefix_*)")
        result[name.strip()] = columns.strip()
    return result


def _choice(flag: str, value: str) -> str:
    if value not in FORMATS:
        raise UserError(f"{flag} must be one of {', '.join(FORMATS)}, not {value!r}")
    return value


def _positive(flag: str, value: int | None) -> int | None:
    if value is not None and value < 1:
        raise UserError(f"{flag} must be at least 1")
    return value


@app.command("status")
def status(
    output: str = typer.Argument(..., help="The run's --output (a path or a Blob URL)."),
    shards: int | None = typer.Option(
        None, help="The run's shard count N (default: $QSCORE_BATCH_SHARDS; none: an unsharded run)."
    ),
) -> None:
    """Which shards of a batch run are done, started (running or to be resumed) or not started."""
    import asyncio

    from qscore.batch.shards import SHARDS_ENV
    from qscore.batch.status import batch_status
    from qscore_cli.batch_views import print_status, user_message

    if shards is None and os.environ.get(SHARDS_ENV, "").strip():
        shards = _positive(f"${SHARDS_ENV}", _integer(SHARDS_ENV, os.environ[SHARDS_ENV]))
    try:
        runs = asyncio.run(batch_status(output, _positive("--shards", shards)))
    except Exception as exc:
        message = user_message(exc)
        if message is None:
            raise
        raise UserError(message) from None
    print_status(runs)


def _integer(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{name} must be a whole number, not {text!r}") from None


@app.command("bench")
def bench(
    rows: int = typer.Option(1_000_000, help="Rows in the generated digits Parquet file."),
    engines: str = typer.Option("direct,queue", help="Engines to measure, comma-separated."),
    workers: str = typer.Option("1,2", help="Worker counts for the queue engine."),
    ceiling_s: float = typer.Option(10.0, help="Seconds per ceiling level (0: skip the ceiling)."),
    rss_rows: str = typer.Option("", help="Row counts for the peak-RSS comparison, e.g. 100000,1000000."),
    out: Path = typer.Option(Path("bench/results/batch.json"), help="Where the figures go (JSON)."),
    engine_code: Path | None = typer.Option(
        None, help="Run the direct engine from this checkout (a before/after pair, same ceilings)."
    ),
) -> None:
    """Batch throughput vs the direct-Triton ceiling, peak RSS, queue engine with N workers."""
    import asyncio

    from qscore_tools.bench.batch import BatchBenchOptions, run_batch_bench

    options = BatchBenchOptions(
        rows=rows,
        engines=[e.strip() for e in engines.split(",") if e.strip()],
        workers=[int(w) for w in workers.split(",") if w.strip()],
        ceiling_s=ceiling_s,
        rss_rows=[int(r) for r in rss_rows.split(",") if r.strip()],
        out=out,
        engine_code=engine_code,
    )
    asyncio.run(run_batch_bench(options))
