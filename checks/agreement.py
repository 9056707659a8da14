"""Agreement between SHAP and LIME on the rows both explained: rank correlation, top-k overlap, sign agreement."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field
from scipy import stats

from audit.context import AuditContext
from audit.plotting import PALETTE, figure, to_svg
from audit.registry import Check, CheckConfig, Requires, register
from audit.results import CheckResult, Figure, Finding, Metric, Table
from checks._explain import (
    OBLIGATIONS,
    Attributions,
    LimeParams,
    ShapParams,
    lime_attributions,
    mean_finite,
    params_from_policy,
    rank_of,
    shap_attributions,
    top_k,
)

METRICS = {
    "rank_correlation": "Mean over rows of the rank correlation (Spearman or Kendall, as configured) between the "
    "features' |SHAP| and |LIME weight| (1 = same order, 0 = unrelated, -1 = reversed).",
    "top_k_overlap": "Mean over rows of the share of SHAP's top-k features that are also in LIME's top-k.",
    "sign_agreement": "Share of the (row, feature) pairs in SHAP's top-k where LIME's weight has the same sign.",
    "global_rank_correlation": "Rank correlation between the features' mean |SHAP| and mean |LIME weight| over the "
    "common rows (agreement on global importance).",
}


class AgreementConfig(CheckConfig):
    """Options of the ``explanation_agreement`` check."""

    correlation: Literal["spearman", "kendall"] = Field(
        "spearman", description="Rank correlation used per row and overall.")
    top_k: int = Field(5, ge=1, description="Size of the top-feature sets compared.")
    show_rows: int = Field(3, ge=1, le=10, description="Rows with the largest disagreement shown side by side.")


def agreement(a: np.ndarray, b: np.ndarray, *, k: int,
              correlation: str = "spearman") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row rank correlation of ``|a|`` and ``|b|``, top-k overlap, and sign agreement on a's top-k.

    Parameters
    ----------
    a, b : numpy.ndarray
        Attributions, shape ``(n_rows, n_features)``, for the same rows and features.
    k : int
        Size of the top sets.
    correlation : {"spearman", "kendall"}
        Rank correlation.

    Returns
    -------
    tuple of numpy.ndarray
        Correlation (NaN where a row's attributions are constant), overlap and sign agreement, one per row.
    """
    k = min(k, a.shape[1])
    corr = np.array([_corr(np.abs(x), np.abs(y), correlation) for x, y in zip(a, b, strict=True)])
    ta, tb = top_k(a, k), top_k(b, k)
    overlap = np.array([len(set(x) & set(y)) / k for x, y in zip(ta, tb, strict=True)])
    signs = np.array([np.mean(np.sign(a[i, ta[i]]) == np.sign(b[i, ta[i]])) for i in range(len(a))])
    return corr, overlap, signs


def _corr(x: np.ndarray, y: np.ndarray, method: str) -> float:
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    fn = stats.spearmanr if method == "spearman" else stats.kendalltau
    return float(fn(x, y)[0])


@register
class ExplanationAgreement(Check[AgreementConfig]):
    """How far SHAP and LIME agree on the same rows."""

    id: ClassVar[str] = "explanation_agreement"
    title: ClassVar[str] = "Agreement of explanations (SHAP vs LIME)"
    description: ClassVar[str] = (
        "Whether two explanation methods tell the same story for the same rows: rank correlation and top-k "
        "overlap of SHAP and LIME attributions, per row and overall, with the rows where they disagree most.")
    config_model = AgreementConfig
    applies_to: ClassVar[Requires] = Requires(needs=frozenset({"tabular", "probabilities"}))
    obligations: ClassVar[tuple[str, ...]] = OBLIGATIONS
    metric_names: ClassVar[dict[str, str]] = METRICS
    default_thresholds: ClassVar[dict[str, dict[str, float]]] = {"rank_correlation": {"min": 0.0, "warn_margin": 0.5}}

    def run(self, ctx: AuditContext, config: AgreementConfig) -> CheckResult:
        """Reuse (or compute) the shap and lime checks' attributions and compare them row by row."""
        sp: ShapParams = params_from_policy(ctx, "shap", ShapParams)
        lp: LimeParams = params_from_policy(ctx, "lime", LimeParams)
        s_split, l_split = sp.split or ctx.eval_split, lp.split or ctx.eval_split
        if s_split != l_split:
            raise ValueError(f"shap explains the {s_split} split and lime the {l_split} split: no rows in common. "
                             "Give both checks the same `split`")
        shap_att = shap_attributions(ctx, sp)
        lime_att = lime_attributions(ctx, lp)
        rows = np.intersect1d(shap_att.rows, lime_att.rows)
        if len(rows) == 0:
            raise ValueError("SHAP and LIME explained no row in common; raise shap's explain_rows/agnostic_rows")
        a = shap_att.values[shap_att.subset(rows)]
        b = lime_att.values[lime_att.subset(rows)]
        k = min(config.top_k, a.shape[1])
        corr, overlap, signs = agreement(a, b, k=k, correlation=config.correlation)
        g = _corr(np.abs(a).mean(axis=0), np.abs(b).mean(axis=0), config.correlation)
        metrics = [
            Metric("rank_correlation", mean_finite(corr), description=METRICS["rank_correlation"]),
            Metric("top_k_overlap", float(overlap.mean()), description=METRICS["top_k_overlap"]),
            Metric("sign_agreement", float(signs.mean()), description=METRICS["sign_agreement"]),
            Metric("global_rank_correlation", None if np.isnan(g) else g,
                   description=METRICS["global_rank_correlation"]),
        ]
        # disagreement: low correlation first, then low overlap
        key = np.where(np.isnan(corr), 2.0, corr) + overlap
        worst = np.argsort(key, kind="stable")[: config.show_rows]
        features = list(ctx.features)
        findings = [Finding(
            "info", f"SHAP and LIME disagree most on row {int(rows[i])}: {config.correlation} {corr[i]:.2f}, "
            f"top-{k} overlap {overlap[i]:.0%}; SHAP's top: {', '.join(features[j] for j in top_k(a[i], 3))}; "
            f"LIME's top: {', '.join(features[j] for j in top_k(b[i], 3))}", metric="rank_correlation",
            evidence=[{"row": int(rows[i]), "correlation": corr[i], "top_k_overlap": overlap[i]}]) for i in worst]
        notes = [
            f"Compared on the {len(rows)} rows of the {s_split} split that both methods explained (LIME's rows are "
            "the first rows of the seeded order SHAP also follows).",
            f"SHAP: {shap_att.explainer}. LIME: {lime_att.explainer}, mean of {lp.stability_runs} seeded runs.",
            f"Both explain the {shap_att.output_label}. Correlations are between the features' absolute "
            f"attributions ({config.correlation}); rows where one method gives all features the same weight have "
            "no correlation and are left out of its mean.",
            "The methods answer different questions (SHAP: contributions against the average prediction; LIME: a "
            "local linear fit on perturbed, discretised samples), so some disagreement is expected; large "
            "disagreement means neither explanation should be shown to a data subject without review.",
        ]
        if "shap" not in ctx.loaded_policy.configs or "lime" not in ctx.loaded_policy.configs:
            notes.append("The shap and/or lime check is not in the policy: their attributions were computed here "
                         "with those checks' default options.")
        table = _side_by_side(features, rows, worst, a, b, k)
        per_row = Table("agreement_rows", "Agreement per row", ["row", config.correlation, f"top-{k} overlap",
                                                               "sign agreement"],
                        [[int(rows[i]), None if np.isnan(corr[i]) else float(corr[i]), float(overlap[i]),
                          float(signs[i])] for i in np.argsort(key, kind="stable")])
        figures = [_figure(features, rows, worst, a, b, shap_att, lime_att, corr)]
        return CheckResult(check_id=self.id, summary=f"{config.correlation} {mean_finite(corr) or 0:.2f}, top-{k} "
                           f"overlap {overlap.mean():.0%} over {len(rows)} rows", metrics=metrics, findings=findings,
                           tables=[per_row, table], figures=figures, notes=notes)


def _side_by_side(features: list[str], rows: np.ndarray, worst: np.ndarray, a: np.ndarray, b: np.ndarray,
                  k: int) -> Table:
    out = []
    for i in worst:
        ra, rb = rank_of(a[i]), rank_of(b[i])
        shown = sorted(set(top_k(a[i], k)) | set(top_k(b[i], k)), key=lambda j: ra[j])
        for j in shown:
            out.append([int(rows[i]), features[j], float(a[i, j]), int(ra[j]), float(b[i, j]), int(rb[j])])
    return Table("agreement_worst", "Rows where SHAP and LIME disagree most, side by side",
                 ["row", "feature", "SHAP value", "SHAP rank", "LIME weight", "LIME rank"], out,
                 caption=f"For each row, the features in either method's top {k}, in SHAP's order.")


def _figure(features: list[str], rows: np.ndarray, worst: np.ndarray, a: np.ndarray, b: np.ndarray,
            sa: Attributions, la: Attributions, corr: np.ndarray) -> Figure:
    n = len(worst)
    m = min(8, a.shape[1])
    with figure(width=6.0, height=n * (0.7 + 0.3 * m), nrows=n, squeeze=False) as (fig, axes):
        for col, i in enumerate(worst):
            ax = axes[col, 0]
            order = sorted(set(top_k(a[i], m)) | set(top_k(b[i], m)), key=lambda j: -abs(a[i, j]))[:m]
            y = np.arange(len(order))[::-1]
            na = a[i, order] / (np.abs(a[i]).max() or 1)
            nb = b[i, order] / (np.abs(b[i]).max() or 1)
            ax.barh(y + 0.2, na, height=0.38, color=PALETTE[0], label="SHAP")
            ax.barh(y - 0.2, nb, height=0.38, color=PALETTE[1], label="LIME")
            ax.axvline(0, color="#999", lw=0.8)
            ax.set_yticks(y, [features[j] for j in order])
            ax.set_xlim(-1.05, 1.05)
            c = "n/a" if np.isnan(corr[i]) else f"{corr[i]:.2f}"
            ax.set_title(f"row {int(rows[i])} (rank corr. {c})", fontsize=8)
        axes[-1, 0].set_xlabel("attribution / the row's largest |attribution|")
        axes[0, 0].legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        data = to_svg(fig)
    return Figure("agreement_worst", "Where SHAP and LIME disagree most", data,
                  caption=f"SHAP values ({sa.explainer.split(' ')[0]}) and LIME weights for the {n} rows with the "
                  f"lowest agreement, each scaled by the row's largest absolute value so the two are comparable; "
                  f"features in either method's top {m}, in SHAP's order.",
                  alt="Paired bar charts of SHAP and LIME attributions for the rows where they disagree most.")
