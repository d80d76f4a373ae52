"""Distribution-shift statistics: population stability index and two-sample Kolmogorov-Smirnov.

PSI sums (p_cur - p_ref) * ln(p_cur / p_ref) over bins. Bins are deciles of the reference
(ties merged, so a pixel that is mostly 0 gets few bins), or one bin per category for
class labels. Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 significant.
PSI is biased upwards for small samples (about (bins - 1) * (1/n + 1/m)), which is why a
verdict also asks the KS test whether the shift is more than sampling noise.
"""

from __future__ import annotations

import math

import numpy as np

# Empty bins get this share so the logarithm stays finite; a bin going from empty to
# populated still scores high, which is the shift PSI is meant to catch.
PSI_EPSILON = 1e-4


def _proportions(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    shares = counts / total if total else np.zeros_like(counts, dtype=np.float64)
    return np.clip(shares, PSI_EPSILON, None)


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Interior bin edges: the reference's inner quantiles, duplicates merged."""
    inner = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    return np.unique(np.quantile(reference, inner))


def psi(reference: np.ndarray, current: np.ndarray, *, bins: int = 10, categorical: bool = False) -> float:
    """Population stability index of `current` against `reference` (1-D samples)."""
    ref = np.asarray(reference, dtype=np.float64).ravel()
    cur = np.asarray(current, dtype=np.float64).ravel()
    if ref.size == 0 or cur.size == 0:
        return float("nan")
    if categorical:
        categories = np.union1d(np.unique(ref), np.unique(cur))
        ref_counts = np.array([np.count_nonzero(ref == value) for value in categories], dtype=np.float64)
        cur_counts = np.array([np.count_nonzero(cur == value) for value in categories], dtype=np.float64)
    else:
        edges = quantile_edges(ref, bins)
        # side="left": a value equal to an edge belongs to the bin below it, so a reference
        # that is constant keeps its own bin and anything above it lands in the next one.
        bins_total = edges.size + 1
        ref_counts = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=bins_total).astype(
            np.float64
        )
        cur_counts = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=bins_total).astype(
            np.float64
        )
    ref_share = _proportions(ref_counts)
    cur_share = _proportions(cur_counts)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def ks_statistic(reference: np.ndarray, current: np.ndarray) -> float:
    """Two-sample KS statistic: the largest gap between the two empirical CDFs."""
    ref = np.sort(np.asarray(reference, dtype=np.float64).ravel())
    cur = np.sort(np.asarray(current, dtype=np.float64).ravel())
    if ref.size == 0 or cur.size == 0:
        return float("nan")
    points = np.union1d(ref, cur)
    ref_cdf = np.searchsorted(ref, points, side="right") / ref.size
    cur_cdf = np.searchsorted(cur, points, side="right") / cur.size
    return float(np.max(np.abs(ref_cdf - cur_cdf)))


def ks_critical(n: int, m: int, alpha: float = 0.01) -> float:
    """The KS statistic above which the samples differ at significance `alpha` (asymptotic)."""
    if n == 0 or m == 0:
        return float("inf")
    coefficient = math.sqrt(-math.log(alpha / 2) / 2)
    return coefficient * math.sqrt((n + m) / (n * m))
