"""Small statistics shared by checks: percentile bootstrap intervals."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float],
    n: int,
    *,
    n_boot: int,
    confidence: float,
    rng: np.random.Generator,
) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of ``statistic(indices)`` over ``n`` rows resampled with replacement.

    ``statistic`` receives an index array and returns a number (NaN when undefined on that resample, e.g.
    ROC AUC on a resample with one class; such resamples are dropped). Returns ``(None, None)`` when
    ``n_boot`` is 0 or fewer than half the resamples gave a value.
    """
    if n_boot <= 0 or n == 0:
        return None, None
    values = np.empty(n_boot)
    for b in range(n_boot):
        values[b] = statistic(rng.integers(0, n, size=n))
    values = values[np.isfinite(values)]
    if len(values) < n_boot / 2:
        return None, None
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return float(lo), float(hi)
