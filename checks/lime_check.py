"""LIME local explanations for a sample of rows, each repeated with several seeds to show how stable they are."""

from __future__ import annotations

from itertools import combinations
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from audit.context import AuditContext
from audit.plotting import PALETTE, figure, to_svg
from audit.registry import Check, CheckConfig, Requires, register
from audit.results import CheckResult, Figure, Finding, Metric, Table
from checks._explain import (
    OBLIGATIONS,
    Attributions,
    LimeParams,
    jaccard,
    lime_attributions,
    mean_finite,
    params_for,
    top_k,
)

_D = LimeParams()

METRICS = {
    "stability": "Mean Jaccard overlap of the top-k features between the explanations of the same row under "
    "different seeds, averaged over pairs of runs and rows (1 = the same top-k every time).",
    "weight_spread": "Mean standard deviation of a feature's LIME weight across seeds, relative to the row's mean "
    "|weight| (0 = identical weights every time).",
    "local_fidelity": "Mean R^2 of LIME's weighted linear surrogate on its perturbed samples (how well a linear "
    "model describes the model around the row).",
}


class LimeConfig(CheckConfig):
    """Options of the ``lime`` check."""

    split: Literal["test", "train"] | None = Field(
        None, description="Rows to explain. Default: test when given, else train.")
    explain_rows: int = Field(
        _D.explain_rows, ge=1, description="Rows explained (a seeded random sample of the split, the first of "
        "those SHAP explains).")
    stability_runs: int = Field(
        _D.stability_runs, ge=2, le=100, description="Explanations per row, each with its own seed (derived from "
        "the policy seed); their spread is the stability.")
    num_samples: int = Field(
        _D.num_samples, ge=50, description="Perturbed samples per explanation (LIME's num_samples).")
    kernel_width: float | None = Field(
        _D.kernel_width, gt=0, description="Width of LIME's exponential kernel. Default: LIME's 0.75 x "
        "sqrt(number of features).")
    discretize_continuous: bool = Field(
        _D.discretize_continuous, description="Explain continuous features through bins (LIME's default).")
    discretizer: Literal["quartile", "decile"] = Field(
        _D.discretizer, description="Bins for discretize_continuous.")
    top_k: int = Field(5, ge=1, description="Size of the top-feature sets compared across runs.")


@register
class Lime(Check[LimeConfig]):
    """LIME explanations of sampled rows and their stability across seeds."""

    id: ClassVar[str] = "lime"
    title: ClassVar[str] = "Local explanations (LIME) and their stability"
    description: ClassVar[str] = (
        "LIME's local linear explanations for a sample of rows, each computed several times with different seeds: "
        "which features LIME says drive each decision, and how much that answer drifts from run to run.")
    config_model = LimeConfig
    applies_to: ClassVar[Requires] = Requires(needs=frozenset({"tabular", "probabilities"}))
    obligations: ClassVar[tuple[str, ...]] = OBLIGATIONS
    metric_names: ClassVar[dict[str, str]] = METRICS
    # random methods drift: unstable explanations are a warning for the reviewer, not a failed model
    default_thresholds: ClassVar[dict[str, dict[str, Any]]] = {"stability": {"min": 0.7, "severity": "warn"}}

    def run(self, ctx: AuditContext, config: LimeConfig) -> CheckResult:
        """Explain the rows ``stability_runs`` times each; measure overlap, spread and fidelity; draw."""
        split = ctx.resolve_split(config.split)
        params = params_for(ctx, LimeParams, config)
        att = lime_attributions(ctx, params)
        k = min(config.top_k, len(ctx.features))
        per_row_jac, per_row_spread = stability(att, k)
        metrics = [
            Metric("stability", float(per_row_jac.mean()), description=METRICS["stability"]),
            Metric("weight_spread", mean_finite(per_row_spread), description=METRICS["weight_spread"]),
            Metric("local_fidelity", mean_finite(att.fidelity), description=METRICS["local_fidelity"]),
        ]
        features = list(ctx.features)
        findings = []
        worst = int(np.argmin(per_row_jac))
        runs_top = [[features[j] for j in top_k(att.runs[r, worst], k)] for r in range(att.runs.shape[0])]
        findings.append(Finding(
            "info", f"least stable row {int(att.rows[worst])}: top-{k} Jaccard {per_row_jac[worst]:.2f} across "
            f"{att.runs.shape[0]} seeds; its top features changed between runs",
            metric="stability", evidence=[{"row": int(att.rows[worst]), "run": r, f"top_{k}": t}
                                          for r, t in enumerate(runs_top)]))
        notes = [
            f"Explainer: {att.explainer}, in regression mode on the {att.output_label} (the quantity the shap check "
            "explains), with the training data's statistics (seeded sampling).",
            f"Rows: {len(att.rows)} rows of the {split} split (seeded sample), each explained {config.stability_runs} "
            f"times with seeds derived from the policy seed; the weights shown are the mean over runs.",
            f"Stability: for each row, the Jaccard overlap of the top-{k} features by |weight| for every pair of "
            "runs; weight spread: the standard deviation of each weight across runs over the row's mean |weight|.",
            "With discretised features a weight is the effect of the row's bin (e.g. 'lvrat <= 0.7') against "
            "the other bins, not a slope; compare ranks with SHAP, not magnitudes.",
        ]
        tables = [_row_table(ctx, att, per_row_jac, per_row_spread, k)]
        figures = [_global_figure(features, att, config), _runs_figure(features, att, worst, per_row_jac[worst])]
        return CheckResult(check_id=self.id, summary=f"stability {per_row_jac.mean():.2f} (top-{k} Jaccard over "
                           f"{config.stability_runs} seeds, {len(att.rows)} rows)", metrics=metrics,
                           findings=findings, figures=figures, tables=tables, notes=notes)


def stability(att: Attributions, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: mean pairwise top-``k`` Jaccard across runs, and the weights' spread relative to their size."""
    runs = att.runs
    if runs is None:
        raise ValueError("stability needs the per-run weights (LIME attributions)")
    n_runs, n_rows, _ = runs.shape
    jac = np.empty(n_rows)
    spread = np.empty(n_rows)
    for i in range(n_rows):
        tops = [top_k(runs[r, i], k) for r in range(n_runs)]
        jac[i] = np.mean([jaccard(a, b) for a, b in combinations(tops, 2)])
        scale = np.abs(runs[:, i]).mean()
        spread[i] = runs[:, i].std(axis=0).mean() / scale if scale > 0 else np.nan
    return jac, spread


def _row_table(ctx: AuditContext, att: Attributions, jac: np.ndarray, spread: np.ndarray, k: int) -> Table:
    features = list(ctx.features)
    rows = []
    for i in np.argsort(jac, kind="stable"):
        top = top_k(att.values[i], min(3, len(features)))
        rows.append([int(att.rows[i]), float(att.output[i]), float(jac[i]), float(spread[i]),
                     float(att.fidelity[i]) if att.fidelity is not None else None,
                     ", ".join(f"{features[j]} {att.values[i, j]:+.3g}" for j in top)])
    return Table("lime_rows", "Explained rows, least stable first",
                 ["row", "score", f"top-{k} Jaccard", "weight spread", "local R^2", "top features (mean weight)"],
                 rows, caption=f"Score: the {att.output_label}.")


def _global_figure(features: list[str], att: Attributions, config: LimeConfig) -> Figure:
    runs = att.runs
    if runs is None:
        raise ValueError("the LIME attributions lack their per-seed runs")
    per_run = np.abs(runs).mean(axis=1)  # (n_runs, n_features)
    mean, sd = per_run.mean(axis=0), per_run.std(axis=0)
    order = np.argsort(-mean, kind="stable")[:15]
    with figure(width=6.0, height=0.8 + 0.28 * len(order)) as (fig, ax):
        y = np.arange(len(order))[::-1]
        ax.barh(y, mean[order], xerr=sd[order], color=PALETTE[1], height=0.7,
                error_kw={"ecolor": "#333", "lw": 0.8, "capsize": 2})
        ax.set_yticks(y, [features[j] for j in order])
        ax.set_xlabel(f"mean |LIME weight| ({att.output_label})")
        data = to_svg(fig)
    return Figure("lime_global", "Mean |LIME weight| per feature", data,
                  caption=f"Mean absolute LIME weight over {len(att.rows)} rows; error bars: standard deviation of "
                  f"that mean across the {config.stability_runs} seeds.",
                  alt="Bar chart of mean absolute LIME weight per feature with error bars across seeds; largest: "
                  + ", ".join(features[j] for j in order[:3]) + ".")


def _runs_figure(features: list[str], att: Attributions, i: int, jac: float) -> Figure:
    runs = att.runs
    if runs is None:
        raise ValueError("the LIME attributions lack their per-seed runs")
    w = runs[:, i, :]  # (n_runs, n_features)
    order = np.argsort(-np.abs(w).mean(axis=0), kind="stable")[:12]
    with figure(width=6.0, height=0.8 + 0.3 * len(order)) as (fig, ax):
        y = np.arange(len(order))[::-1]
        for r in range(w.shape[0]):
            ax.scatter(w[r, order], y, s=14, color=PALETTE[r % 5], alpha=0.8, linewidths=0,
                       label=f"seed {r + 1}" if r < 5 else None)
        ax.axvline(0, color="#999", lw=0.8)
        ax.set_yticks(y, [features[j] for j in order])
        ax.set_xlabel(f"LIME weight ({att.output_label})")
        ax.legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        data = to_svg(fig)
    row = int(att.rows[i])
    return Figure("lime_least_stable", f"Least stable row ({row}): weights under each seed", data,
                  caption=f"Row {row}'s LIME weights under each of the {w.shape[0]} seeds (top-k Jaccard {jac:.2f}). "
                  "Dots far apart for one feature mean LIME's answer for it depends on the seed.",
                  alt=f"Dot plot of LIME weights per feature for row {row} under each seed.")
