"""Small statistics shared by checks: bootstrap resamples and percentile intervals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def bootstrap_samples(statistic: Callable[[np.ndarray], float], n: int, *, n_boot: int,
                      rng: np.random.Generator) -> np.ndarray:
    """``statistic(indices)`` on ``n_boot`` resamples of ``n`` rows drawn with replacement (NaN kept)."""
    values = np.empty(n_boot)
    for b in range(n_boot):
        values[b] = statistic(rng.integers(0, n, size=n))
    return values


def percentile_interval(samples: np.ndarray, alpha: float) -> tuple[float | None, float | None]:
    """The ``[alpha, 1 - alpha]`` percentile interval of the finite ``samples``.

    ``(None, None)`` when fewer than half the samples are finite (the statistic is mostly undefined).
    """
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if len(s) == 0 or len(s) < len(samples) / 2:
        return None, None
    lo, hi = np.quantile(s, [alpha, 1 - alpha])
    return float(lo), float(hi)


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
    return percentile_interval(bootstrap_samples(statistic, n, n_boot=n_boot, rng=rng), (1 - confidence) / 2)


def finite(x: Any) -> float | None:
    """``float(x)``, or ``None`` when it is not a finite number (how metrics say "not computable")."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None
