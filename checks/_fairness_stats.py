"""Vectorised arithmetic behind the ``fairness`` check: confusion counts, rates, gaps, bootstrap, corrections.

Every group metric the check reports (selection rate, true/false positive rate, precision, accuracy, ...) is a
function of the group's four confusion counts (TP, FP, FN, TN). Resampling the rows with replacement, as a
bootstrap does, therefore only changes those counts, and their joint distribution is known exactly: a
multinomial over the cells (finest group x confusion cell) with the observed shares. Drawing the counts for
all resamples at once (``numpy.random.Generator.multinomial`` with ``size=n_boot``) gives the same bootstrap
distribution as resampling rows and re-running fairlearn's ``MetricFrame`` each time, in milliseconds.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Literal

import numpy as np

CELLS = ("tp", "fp", "fn", "tn")
TP, FP, FN, TN = range(4)

RATE_DESCRIPTIONS = {
    "selection_rate": "Share predicted positive.",
    "true_positive_rate": "Of the truly positive, the share predicted positive (recall).",
    "true_negative_rate": "Of the truly negative, the share predicted negative.",
    "false_positive_rate": "Of the truly negative, the share predicted positive.",
    "false_negative_rate": "Of the truly positive, the share predicted negative.",
    "precision": "Of the predicted positive, the share truly positive.",
    "accuracy": "Share of correct predictions.",
    "balanced_accuracy": "Mean of the true positive and true negative rates.",
    "count": "Rows in the group.",
}

DISPARITY_DESCRIPTIONS = {
    "demographic_parity_difference": "Largest minus smallest selection rate between groups (0 = parity).",
    "demographic_parity_ratio": "Smallest over largest selection rate between groups (1 = parity; the "
                                "four-fifths rule asks for at least 0.8).",
    "equalized_odds_difference": "The larger of the true-positive-rate gap and the false-positive-rate gap "
                                 "between groups (0 = equalized odds).",
    "equalized_odds_ratio": "The smaller of the true-positive-rate ratio and the false-positive-rate ratio "
                            "between groups (1 = equalized odds).",
    "equal_opportunity_difference": "Largest minus smallest true positive rate between groups (0 = equal "
                                    "opportunity).",
}
"""Gaps between the groups of one attribute, each a function of per-group rates (fairlearn's definitions,
``method='between_groups'``, ``agg='worst_case'``)."""


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _balanced(c: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # both rates undefined: NaN, as intended
        return np.nanmean(np.stack([_div(c[..., TP], c[..., TP] + c[..., FN]),
                                    _div(c[..., TN], c[..., TN] + c[..., FP])]), axis=0)


RATES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "selection_rate": lambda c: _div(c[..., TP] + c[..., FP], c.sum(-1)),
    "true_positive_rate": lambda c: _div(c[..., TP], c[..., TP] + c[..., FN]),
    "true_negative_rate": lambda c: _div(c[..., TN], c[..., TN] + c[..., FP]),
    "false_positive_rate": lambda c: _div(c[..., FP], c[..., FP] + c[..., TN]),
    "false_negative_rate": lambda c: _div(c[..., FN], c[..., TP] + c[..., FN]),
    "precision": lambda c: _div(c[..., TP], c[..., TP] + c[..., FP]),
    "accuracy": lambda c: _div(c[..., TP] + c[..., TN], c.sum(-1)),
    "balanced_accuracy": _balanced,
    "count": lambda c: c.sum(-1).astype(float),
}
"""Metric name -> function of confusion counts ``(..., 4)`` (TP, FP, FN, TN) -> ``(...)``; NaN where undefined."""


def confusion_counts(codes: np.ndarray, n_groups: int, y_pos: np.ndarray, pred_pos: np.ndarray) -> np.ndarray:
    """Confusion counts per group: an ``(n_groups, 4)`` integer array, columns TP, FP, FN, TN.

    Parameters
    ----------
    codes : numpy.ndarray
        Group code (0 .. n_groups - 1) of each row.
    n_groups : int
        Number of groups.
    y_pos, pred_pos : numpy.ndarray
        Boolean: the row is truly positive; the row is predicted positive.
    """
    cell = np.where(pred_pos, np.where(y_pos, TP, FP), np.where(y_pos, FN, TN))
    return np.bincount(np.asarray(codes) * 4 + cell, minlength=n_groups * 4).reshape(n_groups, 4)


def resample_counts(counts: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of ``counts`` (``(G, 4)``): ``(n_boot, G, 4)``, as if rows were resampled.

    Resampling n rows with replacement makes the cell counts multinomial(n, observed shares); one vectorised
    draw gives every replicate. Group sizes vary between replicates, as in a plain row bootstrap.
    """
    total = int(counts.sum())
    if n_boot <= 0 or total == 0:
        return np.zeros((0, *counts.shape), dtype=np.int64)
    p = counts.ravel() / total
    return rng.multinomial(total, p, size=n_boot).reshape(n_boot, *counts.shape)


def aggregate(counts: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Counts of coarser groups: ``members`` is a ``(G_coarse, G_fine)`` 0/1 matrix; ``counts`` ``(..., G_fine, 4)``."""
    return np.einsum("gf,...fk->...gk", members, counts)


def spread(rates: np.ndarray, eligible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Largest minus smallest, and smallest over largest, of ``rates[..., eligible]`` (NaN rates ignored).

    NaN when fewer than two eligible groups have a defined rate; the ratio is NaN when the largest is 0.
    """
    r = rates[..., eligible]
    finite = np.isfinite(r)
    enough = finite.sum(-1) >= 2
    hi = np.where(finite, r, -np.inf).max(-1, initial=-np.inf)
    lo = np.where(finite, r, np.inf).min(-1, initial=np.inf)
    diff = np.where(enough, hi - lo, np.nan)
    ratio = np.where(enough, _div(lo, np.where(enough, hi, 1.0)), np.nan)
    return diff, ratio


def disparities(counts: np.ndarray, eligible: np.ndarray) -> dict[str, np.ndarray]:
    """The five gaps of :data:`DISPARITY_DESCRIPTIONS` over the eligible groups, from counts ``(..., G, 4)``."""
    sr_d, sr_r = spread(RATES["selection_rate"](counts), eligible)
    tpr_d, tpr_r = spread(RATES["true_positive_rate"](counts), eligible)
    fpr_d, fpr_r = spread(RATES["false_positive_rate"](counts), eligible)
    return {
        "demographic_parity_difference": sr_d,
        "demographic_parity_ratio": sr_r,
        "equalized_odds_difference": np.fmax(tpr_d, fpr_d),
        "equalized_odds_ratio": np.fmin(tpr_r, fpr_r),
        "equal_opportunity_difference": tpr_d,
    }


def percentile_interval(samples: np.ndarray, alpha: float) -> tuple[float | None, float | None]:
    """The ``[alpha, 1 - alpha]`` percentile interval of the finite ``samples`` along the first axis.

    ``(None, None)`` when fewer than half the samples are finite (the statistic is mostly undefined).
    """
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if len(s) == 0 or len(s) < len(samples) / 2:
        return None, None
    lo, hi = np.quantile(s, [alpha, 1 - alpha])
    return float(lo), float(hi)


def percentile_intervals(samples: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`percentile_interval` for each column of ``samples`` ``(B, K)`` at once: two ``(K,)`` arrays."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column gives NaN, as intended
        lo, hi = np.nanquantile(samples, [alpha, 1 - alpha], axis=0)
    mostly_undefined = np.isfinite(samples).sum(0) < max(1, samples.shape[0] / 2)
    return np.where(mostly_undefined, np.nan, lo), np.where(mostly_undefined, np.nan, hi)


def crossing_pvalue(samples: np.ndarray, value: float, lower: float | None, upper: float | None) -> float:
    """One-sided bootstrap p-value that the bound(s) could lie on the other side of ``value``.

    The share of resamples on the far side of each bound from the estimate (with the usual ``+1`` so that it
    is never 0), the largest over the bounds. Small: the data place the metric firmly on its side of the
    bound (a confident pass or a confident miss); the percentile interval at level ``1 - 2 p`` just reaches
    the bound.
    """
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if len(s) == 0 or not np.isfinite(value):
        return 1.0
    ps = []
    for bound in (lower, upper):
        if bound is None:
            continue
        far = s >= bound if value < bound else s < bound
        ps.append((far.sum() + 1) / (len(s) + 1))
    return max(ps) if ps else 1.0


def adjust_pvalues(p: np.ndarray, method: Literal["holm", "bh", "none"]) -> np.ndarray:
    """Family-wise (Holm) or false-discovery-rate (Benjamini-Hochberg) adjusted p-values.

    Holm (1979): the i-th smallest of m p-values times (m - i + 1), made non-decreasing. Benjamini-Hochberg
    (1995): the i-th smallest times m / i, made non-increasing from the top. Both capped at 1.
    """
    p = np.asarray(p, dtype=float)
    m = len(p)
    if method == "none" or m <= 1:
        return p.copy()
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        adj = np.maximum.accumulate(ranked * (m - np.arange(m)))
    elif method == "bh":
        adj = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    else:
        raise ValueError(f"correction must be 'holm', 'bh' or 'none'; got {method!r}")
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out
