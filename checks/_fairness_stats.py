"""Helpers of the ``fairness`` check: vectorised counts, rates, gaps, bootstrap and corrections; figures; mitigation.

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
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from audit.plotting import PALETTE, figure, figure_id, to_svg
from audit.results import Figure, Metric, Table, Threshold
from audit.stats import finite

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


def percentile_intervals(samples: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`audit.stats.percentile_interval` for each column of ``samples`` ``(B, K)``: two ``(K,)`` arrays."""
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


# -- groups, mitigation preview, figures ---------------------------------------------------------------------
@dataclass
class Attribute:
    """One way of grouping the rows: a sensitive feature, or the intersection of all of them."""

    name: str                      # "afam" or "afam x single"
    groups: list[str]              # "afam=yes", "afam=yes & single=no"
    labels: np.ndarray             # group name of each row
    members: np.ndarray            # (groups, finest groups) 0/1
    sizes: np.ndarray = field(default_factory=lambda: np.zeros(0))
    eligible: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


class _ScoreColumn(ClassifierMixin, BaseEstimator):
    """A "fitted" estimator whose P(positive) is its single input column (for ThresholdOptimizer, prefit)."""

    classes_ = np.array([0, 1])

    def __sklearn_is_fitted__(self) -> bool:
        """Always fitted: there is nothing to learn."""
        return True

    def fit(self, X: Any, y: Any) -> _ScoreColumn:  # noqa: N803 - scikit-learn's names
        """Nothing to fit."""
        return self

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        """``[1 - s, s]`` for the score column ``s`` (as float64: ThresholdOptimizer fails on float32)."""
        s = np.asarray(X, dtype=np.float64)[:, 0]
        return np.column_stack([1 - s, s])


def mitigation_preview(ctx: Any, split: str, attributes: list[Attribute], fine_labels: list[str],
                y_pos: np.ndarray, pred_pos: np.ndarray, config: Any) -> tuple[Table, str]:
    """Before/after table of fairlearn's ThresholdOptimizer, 2-fold cross-fitted on the evaluation rows."""
    from fairlearn.postprocessing import ThresholdOptimizer
    from sklearn.model_selection import StratifiedKFold

    columns = ["decisions", "accuracy", *[m.replace("_", " ") for m in DISPARITY_DESCRIPTIONS]]
    title = "Mitigation preview: fairlearn ThresholdOptimizer (informs only; no model is changed)"
    proba = ctx.proba(split)
    if proba is None:
        return Table("mitigation", title, columns, []), "Mitigation preview skipped: the model gives no " \
            "probabilities, and ThresholdOptimizer needs scores."
    score = pd.DataFrame({"score": np.asarray(proba[:, ctx.positive_index], dtype=np.float64)})
    sens = pd.Series(fine_labels, name="group")
    y = y_pos.astype(int)
    rng = ctx.rng("fairness.mitigation")

    def row(label: str, pred: np.ndarray) -> list[Any]:
        worst: dict[str, float] = {}
        fine = confusion_counts(codes, n_fine, y_pos, pred)
        for a in attributes:
            for name, value in disparities(aggregate(fine, a.members), a.eligible).items():
                v, old = finite(value), worst.get(name)
                if v is not None and (old is None or (v < old if name.endswith("ratio") else v > old)):
                    worst[name] = v
        return [label, round(float(np.mean(pred == y_pos)), 3),
                *[round(worst[m], 3) if m in worst else None for m in DISPARITY_DESCRIPTIONS]]

    codes, fine_groups = group_codes(fine_labels)
    n_fine = len(fine_groups)
    rows = [row("current model", pred_pos)]
    failed = []
    folds = list(StratifiedKFold(2, shuffle=True, random_state=int(rng.integers(2**31 - 1))).split(score, y))
    for constraint in ("demographic_parity", "equalized_odds"):
        pred = np.zeros(len(y), dtype=bool)
        try:
            for fit_idx, eval_idx in folds:
                opt = ThresholdOptimizer(estimator=_ScoreColumn(), constraints=constraint, objective="accuracy_score",
                                         prefit=True, predict_method="predict_proba")
                opt.fit(score.iloc[fit_idx], y[fit_idx], sensitive_features=sens.iloc[fit_idx])
                pred[eval_idx] = opt.predict(score.iloc[eval_idx], sensitive_features=sens.iloc[eval_idx],
                                             random_state=int(rng.integers(2**31 - 1))).astype(bool)
        except Exception as exc:  # noqa: BLE001 - a preview that cannot be made is reported, not fatal
            failed.append(f"{constraint}: {type(exc).__name__}: {exc}")
            continue
        rows.append(row(f"ThresholdOptimizer, {constraint.replace('_', ' ')}", pred))
    note = ("Mitigation preview: fairlearn ThresholdOptimizer (objective accuracy, one threshold per "
            f"{' x '.join(a.name for a in attributes if ' x ' not in a.name)} group, randomised between two "
            f"thresholds), fitted on one half of the {split} rows and applied to the other (2-fold cross-fitting, "
            "so no row is judged by thresholds fitted on it). Gaps are the worst over the attributes, as above. It "
            "needs the sensitive attribute at decision time, which the law may not allow; it informs only.")
    if failed:
        note += " Could not run: " + "; ".join(failed) + "."
    return Table("mitigation", title, columns, rows,
                 caption="Accuracy and gaps of the current model and of group-specific thresholds that "
                 "ThresholdOptimizer would choose, on held-out halves of the evaluation data."), note


def group_codes(labels: list[str]) -> tuple[np.ndarray, list[str]]:
    """The sorted distinct ``labels`` (the groups), and each row's position among them (its group code)."""
    groups = sorted(set(labels))
    return np.searchsorted(np.asarray(groups, dtype=object), np.asarray(labels, dtype=object)), groups


# -- figures ---------------------------------------------------------------------------------------------------
def bar_figure(a: Attribute, table: pd.DataFrame, metrics: list[Metric], config: Any) -> Figure:
    names = [m for m in config.metrics if m != "count"] or ["selection_rate"]
    ci = {(m.group, m.name): (m.ci_low, m.ci_high) for m in metrics if m.group is not None}
    ncols = min(3, len(names))
    nrows = -(-len(names) // ncols)
    k = len(a.groups)
    height = 0.6 + nrows * (0.55 + 0.24 * k)
    with figure(width=7.2, height=min(height, 9.5), nrows=nrows, ncols=ncols, squeeze=False) as (fig, axes):
        for i, ax in enumerate(axes.flat):
            if i >= len(names):
                ax.set_visible(False)
                continue
            m = names[i]
            vals = table[m].to_numpy(dtype=float)
            lo = np.array([none_to_nan(ci.get((g, m), (None, None))[0]) for g in a.groups])
            hi = np.array([none_to_nan(ci.get((g, m), (None, None))[1]) for g in a.groups])
            err = np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)])
            err = np.where(np.isfinite(err), err, 0)
            colors = [PALETTE[0] if ok else PALETTE[5] for ok in a.eligible]
            y = np.arange(k)
            ax.barh(y, np.nan_to_num(vals), color=colors, height=0.65, xerr=err,
                    error_kw={"ecolor": "#333", "lw": 0.8, "capsize": 2})
            ax.set_yticks(y, [_short(g, a.name) for g in a.groups] if i % ncols == 0 else [""] * k, fontsize=7)
            ax.invert_yaxis()
            ax.set_xlim(0, 1.05)
            line = _threshold_line(ax, m, vals[a.eligible], config)
            ax.set_title(m.replace("_", " ") + (f"\n(dashed: {line})" if line else ""), fontsize=8)
            ax.tick_params(axis="x", labelsize=7)
        data = to_svg(fig)
    return Figure(f"bars_{figure_id(a.name)}", f"Metrics by group: {a.name}", data,
                  caption=f"Each metric per {a.name} group with its {config.confidence:.0%} bootstrap interval. "
                  f"Grey bars: groups under {config.min_group_size} rows (not judged). Dashed line: the threshold, "
                  "relative to the best group (groups left of it make the gap miss its bound).",
                  alt=f"Horizontal bar charts of {', '.join(names)} for each {a.name} group, with interval whiskers.")


def _threshold_line(ax: Any, metric: str, eligible_vals: np.ndarray, config: Any) -> str:
    """Draw the bound relative to the best group; return its label ('' when none applies)."""
    v = eligible_vals[np.isfinite(eligible_vals)]
    if len(v) < 2:
        return ""
    t = config.thresholds
    x = label = None
    if metric == "selection_rate" and "demographic_parity_ratio" in t and t["demographic_parity_ratio"].min:
        r = t["demographic_parity_ratio"].min
        x, label = v.max() * r, f"{r:g} x highest"
    elif metric == "true_positive_rate":
        d = _max_of(t, "equal_opportunity_difference") or _max_of(t, "equalized_odds_difference")
        if d is not None:
            x, label = v.max() - d, f"highest - {d:g}"
    elif metric == "false_positive_rate" and _max_of(t, "equalized_odds_difference") is not None:
        d = _max_of(t, "equalized_odds_difference")
        x, label = v.max() - d, f"highest - {d:g}"  # type: ignore[operator]
    if x is None or label is None or x <= 0:
        return ""
    ax.axvline(x, color=PALETTE[3], ls="--", lw=1)
    return label


def _max_of(t: dict[str, Threshold], name: str) -> float | None:
    return t[name].max if name in t else None


def heatmap(a: Attribute, names: list[str], columns: dict[str, list[str]], table: pd.DataFrame,
             config: Any) -> Figure:
    """Intersectional groups as a grid: the last feature across, the others down; selection rate and TPR."""
    col_vals = sorted({v.split("=", 1)[1] for v in columns[names[-1]]})
    row_keys = sorted({" & ".join(t) for t in zip(*(columns[n] for n in names[:-1]), strict=True)})
    panels = [m for m in ("selection_rate", "true_positive_rate") if m in table]
    with figure(width=7.2, height=1.4 + 0.45 * len(row_keys), ncols=len(panels), squeeze=False) as (fig, axes):
        for ax, m in zip(axes.flat, panels, strict=False):
            grid = np.full((len(row_keys), len(col_vals)), np.nan)
            for i, rk in enumerate(row_keys):
                for j, cv in enumerate(col_vals):
                    g = f"{rk} & {names[-1]}={cv}"
                    if g in table.index:
                        grid[i, j] = table.loc[g, m]
                        n = int(a.sizes[a.groups.index(g)])
                        small = n < config.min_group_size
                        txt = "n/a" if not np.isfinite(grid[i, j]) else f"{grid[i, j]:.2f}"
                        ax.text(j, i, f"{txt}\nn={n}" + ("\n(small)" if small else ""), ha="center", va="center",
                                fontsize=7, color="#888" if small else ("white" if grid[i, j] > 0.6 else "#222"))
            ax.imshow(np.ma.masked_invalid(grid), cmap="Blues", vmin=0, vmax=1, aspect="auto")
            ax.set_xticks(range(len(col_vals)), [f"{names[-1]}={v}" for v in col_vals], fontsize=7)
            ax.set_yticks(range(len(row_keys)), row_keys, fontsize=7)
            ax.set_title(m.replace("_", " "), fontsize=8)
            ax.spines[:].set_visible(False)
        data = to_svg(fig)
    return Figure(f"heatmap_{figure_id(a.name)}", f"Intersectional groups: {a.name}", data,
                  caption=f"Selection rate and true positive rate of each combination of {', '.join(names)}, with "
                  f"its size; groups under {config.min_group_size} rows are greyed and not judged.",
                  alt=f"Heat map of selection rate and true positive rate over the combinations of {', '.join(names)}.")


def _short(group: str, attribute: str) -> str:
    return group if " x " in attribute else group.split("=", 1)[1]


def none_to_nan(x: float | None) -> float:
    """``None`` as NaN."""
    return np.nan if x is None else float(x)
