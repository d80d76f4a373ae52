"""Batch scoring: score a whole dataset (Parquet, CSV, JSON Lines, NumPy; local or Blob) with
the same models as runtime scoring, straight to Triton or through the request queue,
resumable after a kill with every row in the output exactly once."""

from qscore.batch.formats import Format, InputError
from qscore.batch.job import BatchObserver
from qscore.batch.manifest import ManifestMismatch
from qscore.batch.mapping import MappingError
from qscore.batch.plan import BatchJob, JobPlan
from qscore.batch.runner import Backends, OpenedJob, open_job, run_job
from qscore.batch.summary import BatchSummary

__all__ = [
    "Backends",
    "BatchJob",
    "BatchObserver",
    "BatchSummary",
    "Format",
    "InputError",
    "JobPlan",
    "ManifestMismatch",
    "MappingError",
    "OpenedJob",
    "open_job",
    "run_job",
]
