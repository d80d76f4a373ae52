"""Azure ML batch endpoint entry: `init()` once per process, `run(mini_batch)` per list of files.

Each file of a mini-batch is scored as `qscore batch score FILE --engine direct` would score
it: the same readers, column mapping, version routing, unscoreable-rows side file, writers and
per-file manifest (so a retried mini-batch resumes a half-done file). The outputs go to the
deployment's output folder (`AZUREML_BI_OUTPUT_PATH`) as `<file stem>.scores<suffix>`;
`run()` returns one line per file (file, output, rows, scored, rejected) for the endpoint's
`append_row` summary. deploy/azureml/score.py is the scoring script that re-exports these.

Settings (the deployment's environment_variables): QSCORE_TRITON_URL, QSCORE_BATCH_MODEL,
and optionally QSCORE_BATCH_VERSION, QSCORE_REGISTRY_PATH (default: registry.json of the
deployment's model, the release package, under AZUREML_MODEL_DIR), QSCORE_BATCH_ID_COLUMN,
QSCORE_BATCH_MAP (`input=column`, several separated by `;`), QSCORE_BATCH_OUTPUTS (`a,b`),
QSCORE_BATCH_FORMAT (output format), QSCORE_BATCH_CHUNK_ROWS, QSCORE_BATCH_IN_FLIGHT.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qscore.batch.direct_requests import RawRequests
from qscore.batch.engines import DirectEngine
from qscore.batch.formats import Format, format_of, output_format
from qscore.batch.job import BatchRun
from qscore.batch.plan import BatchJob, file_fingerprint, plan_job
from qscore.batch.store import LocalStore
from qscore.batch.summary import BatchSummary
from qscore.contracts.model_spec import ModelSpec
from qscore.inference.client import TritonClient
from qscore.registry import ModelRegistry

OUTPUT_DIR_ENV = "AZUREML_BI_OUTPUT_PATH"  # set by the batch endpoint: the job's output folder
FALLBACK_OUTPUT_DIR_ENV = "QSCORE_BATCH_OUTPUT_DIR"  # elsewhere (tests, a plain VM)
OUTPUT_INFIX = ".scores"
MODEL_DIR_ENV = "AZUREML_MODEL_DIR"  # the deployment's registered model: the release package
ROUTING_TABLE = "registry.json"


@dataclass(frozen=True, kw_only=True)
class FileScoringSettings:
    triton_url: str
    model: str
    output_dir: Path
    version: str | None = None
    registry_path: Path | None = None
    id_column: str | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    outputs: list[str] | None = None
    output_format: Format | None = None
    chunk_rows: int | None = None
    in_flight: int = 4
    triton_timeout_s: float = 60.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FileScoringSettings:
        env = os.environ if environ is None else environ
        missing = [n for n in ("QSCORE_TRITON_URL", "QSCORE_BATCH_MODEL") if not env.get(n)]
        output_dir = env.get(OUTPUT_DIR_ENV) or env.get(FALLBACK_OUTPUT_DIR_ENV)
        if not output_dir:
            missing.append(f"{OUTPUT_DIR_ENV} (or {FALLBACK_OUTPUT_DIR_ENV})")
        if missing:
            raise ValueError(f"the batch entry script needs {', '.join(missing)}")
        assert output_dir is not None
        overrides = dict(
            pair.split("=", 1) for pair in env.get("QSCORE_BATCH_MAP", "").split(";") if "=" in pair
        )
        outputs = [o.strip() for o in env.get("QSCORE_BATCH_OUTPUTS", "").split(",") if o.strip()]
        chunk_rows = env.get("QSCORE_BATCH_CHUNK_ROWS")
        output_format = env.get("QSCORE_BATCH_FORMAT")
        registry = env.get("QSCORE_REGISTRY_PATH") or _packaged_routing_table(env.get(MODEL_DIR_ENV))
        return cls(
            triton_url=env["QSCORE_TRITON_URL"],
            model=env["QSCORE_BATCH_MODEL"],
            output_dir=Path(output_dir),
            version=env.get("QSCORE_BATCH_VERSION") or None,
            registry_path=Path(registry) if registry else None,
            id_column=env.get("QSCORE_BATCH_ID_COLUMN") or None,
            overrides={k.strip(): v.strip() for k, v in overrides.items()},
            outputs=outputs or None,
            output_format=Format(output_format) if output_format else None,
            chunk_rows=int(chunk_rows) if chunk_rows else None,
            in_flight=int(env.get("QSCORE_BATCH_IN_FLIGHT", "4")),
        )


def _packaged_routing_table(model_dir: str | None) -> str | None:
    """registry.json of the registered release package (`qscore release package`), found at the
    top of AZUREML_MODEL_DIR or in its one folder; None without one."""
    if not model_dir:
        return None
    root = Path(model_dir)
    for candidate in (root / ROUTING_TABLE, *sorted(root.glob(f"*/{ROUTING_TABLE}"))):
        if candidate.is_file():
            return str(candidate)
    return None


class FileScorer:
    """One Triton connection and model contract for every file the process is given."""

    def __init__(self, settings: FileScoringSettings) -> None:
        self.settings = settings
        self.registry = ModelRegistry(settings.registry_path)
        self._client: TritonClient | None = None
        self._requests: RawRequests | None = None
        self._spec: ModelSpec | None = None

    async def open(self) -> None:
        settings = self.settings
        self._client = TritonClient(settings.triton_url, timeout_s=settings.triton_timeout_s)
        self._requests = RawRequests(settings.triton_url, timeout_s=settings.triton_timeout_s)
        await self._client.wait_ready(timeout=settings.triton_timeout_s)
        self._spec = await self._client.model_spec(settings.model)
        # An unknown version fails init(), before any mini-batch, as the CLI fails before scoring.
        self.registry.resolve(settings.model, settings.version, available=self._spec.versions, routing_key="")

    def output_for(self, path: Path, fmt: Format) -> Path:
        return self.settings.output_dir / f"{path.stem}{OUTPUT_INFIX}{fmt.suffix}"

    async def score_file(self, path: Path) -> BatchSummary:
        assert self._client is not None and self._spec is not None, "open() first"
        settings = self.settings
        input_format = format_of(path.name)
        output = self.output_for(path, settings.output_format or output_format(input_format))
        job = BatchJob(
            input=str(path),
            output=str(output),
            model=settings.model,
            version=settings.version,
            chunk_rows=settings.chunk_rows,
            in_flight=settings.in_flight,
            input_format=input_format,
            output_format=settings.output_format,
            overrides=settings.overrides,
            id_column=settings.id_column,
        )
        plan = plan_job(job, path, input_format, self._spec)
        engine = DirectEngine(
            self._client,
            self._spec,
            requested_version=settings.version,
            registry=self.registry,
            outputs=[o.name for o in plan.mapping.outputs],
            requests=self._requests,
        )
        run = BatchRun(
            plan,
            local_input=path,
            fingerprint=file_fingerprint(path),
            store=LocalStore(output),
            engine=engine,
            allow_non_finite=self._spec.allow_non_finite,
        )
        return await run.run()

    async def close(self) -> None:
        if self._requests is not None:
            await self._requests.close()
        if self._client is not None:
            await self._client.close()


def summary_line(path: Path, summary: BatchSummary) -> str:
    """What `run()` returns for one file (the endpoint appends it to its predictions file)."""
    return f"{path.name},{summary.output},{summary.rows_total},{summary.rows_scored},{summary.rows_rejected}"


# --- the Azure ML contract: module-level init() and run() -----------------------------

_loop: asyncio.AbstractEventLoop | None = None
_scorer: FileScorer | None = None


def init() -> None:
    """Once per worker process: connect to Triton, read the model's contract, check the version."""
    global _loop, _scorer
    scorer = FileScorer(FileScoringSettings.from_env())
    scorer.settings.output_dir.mkdir(parents=True, exist_ok=True)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(scorer.open())
    except BaseException:
        loop.run_until_complete(scorer.close())
        loop.close()
        raise
    _loop, _scorer = loop, scorer


def run(mini_batch: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Score each file of the mini-batch into the output folder; one summary line per file."""
    if _loop is None or _scorer is None:
        raise RuntimeError("init() was not called")
    scorer, loop = _scorer, _loop
    lines = []
    for item in mini_batch:
        path = Path(item)
        summary = loop.run_until_complete(scorer.score_file(path))
        lines.append(summary_line(path, summary))
    return lines


def shutdown() -> None:
    """Close the Triton connection (the endpoint ends the process; tests call this)."""
    global _loop, _scorer
    if _loop is not None and _scorer is not None:
        _loop.run_until_complete(_scorer.close())
    if _loop is not None:
        _loop.close()
    _loop, _scorer = None, None
