"""Model monitoring: the interaction log and drift reports over it."""

from qscore.monitoring.drift import (
    DEFAULT_REFERENCE_NPZ,
    DriftReport,
    DriftThresholds,
    Sample,
    StatisticDrift,
    WindowDrift,
    compare_window,
    default_reference_path,
    drift_report,
    split_windows,
)
from qscore.monitoring.interaction_log import INTERACTION_LOG_ENV, InteractionLog, record_from_scored
from qscore.monitoring.records import InteractionRecord, iter_records, log_files, select_records
from qscore.monitoring.statistics import ks_critical, ks_statistic, psi

__all__ = [
    "DEFAULT_REFERENCE_NPZ",
    "INTERACTION_LOG_ENV",
    "DriftReport",
    "DriftThresholds",
    "InteractionLog",
    "InteractionRecord",
    "Sample",
    "StatisticDrift",
    "WindowDrift",
    "compare_window",
    "default_reference_path",
    "drift_report",
    "iter_records",
    "ks_critical",
    "ks_statistic",
    "log_files",
    "psi",
    "record_from_scored",
    "select_records",
    "split_windows",
]
