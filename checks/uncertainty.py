"""When the model does not know: calibration of its probabilities and MC-dropout uncertainty.

``calibration`` (every model with probabilities): expected calibration error with equal-width and equal-mass
bins, Brier score, a reliability diagram, the same per sensitive group. ``mc_dropout`` (PyTorch models with
dropout layers): Gal and Ghahramani's stochastic forward passes, per-sample uncertainty, how well it finds the
model's errors, the referral rate that reaches a target accuracy, an out-of-distribution probe, and the
referral rate per group. The arithmetic lives in ``checks/_uncertainty.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from audit.context import AuditContext
from audit.judge import judge_metric
from audit.plotting import PALETTE, figure, to_svg
from audit.registry import Check, CheckConfig, Requires, register
from audit.results import CheckResult, Figure, Finding, Metric, Table, Threshold
from audit.stats import bootstrap_ci
from checks import _uncertainty as U

# ============================================================================================================
# calibration
# ============================================================================================================
CAL_METRICS = {
    "ece": "Expected calibration error, equal-width bins: mean |observed rate - predicted probability| "
           "weighted by bin size (binary: positive class; multiclass: top label).",
    "ece_equal_mass": "Expected calibration error with equal-mass bins (each bin holds about n/bins rows).",
    "mce": "Maximum calibration error: the largest |observed - predicted| over the equal-width bins.",
    "classwise_ece": "Multiclass: mean over classes of each class's one-vs-rest ECE.",
    "brier": "Brier score (binary: mean (p - y)^2 in [0, 1]; multiclass: mean sum_k (p_k - y_k)^2 in [0, 2]).",
    "calibration_gap": "Mean predicted probability minus observed rate (> 0: over-confident / over-predicts).",
    "max_group_ece": "The largest ECE of any sensitive group with at least min_group_size rows.",
    "count": "Rows in the group.",
}


class CalibrationConfig(CheckConfig):
    """Options of the ``calibration`` check."""

    split: Literal["test", "train"] | None = Field(
        None, description="Data to measure on. Default: test when given, else train.")
    n_bins: int = Field(15, ge=2, le=100, description="Bins of the overall ECE and reliability diagram.")
    n_boot: int = Field(200, ge=0, le=10000, description="Bootstrap resamples for the intervals (0 = off).")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Confidence level of the intervals.")
    per_group: bool = Field(True, description="Also measure calibration for each group of each sensitive feature.")
    min_group_size: int = Field(30, ge=1, description="Groups smaller than this are reported but not judged.")
    rows_per_bin: int = Field(
        25, ge=5, description="Groups use equal-mass bins with about this many rows each (at most n_bins, at "
        "least 2), because ECE is biased upward when bins hold few rows.")


@register
class Calibration(Check[CalibrationConfig]):
    """Calibration: ECE (equal-width, equal-mass), Brier score, reliability diagrams, per group."""

    id: ClassVar[str] = "calibration"
    title: ClassVar[str] = "Calibration of predicted probabilities"
    description: ClassVar[str] = (
        "Whether the model's probabilities mean what they say (of cases given 80%, about 80% happen): expected "
        "calibration error and Brier score with bootstrap intervals, reliability diagrams, overall and per "
        "sensitive group.")
    config_model = CalibrationConfig
    applies_to: ClassVar[Requires] = Requires(needs=frozenset({"probabilities"}))
    obligations: ClassVar[tuple[str, ...]] = ("eu_ai_act.art14", "eu_ai_act.art15.1", "eu_ai_act.art15.3")
    metric_names: ClassVar[dict[str, str]] = CAL_METRICS
    default_thresholds: ClassVar[dict[str, dict[str, float]]] = {
        "ece": {"max": 0.1, "warn_margin": 0.03},
        "max_group_ece": {"max": 0.15, "warn_margin": 0.03},
    }

    def run(self, ctx: AuditContext, config: CalibrationConfig) -> CheckResult:
        """Bin, measure, bootstrap, break down by group, draw."""
        split = config.split or ctx.eval_split
        if split not in ctx.splits:
            raise ValueError(f"split {split!r} is not in the policy's data (have: {ctx.splits})")
        proba = ctx.proba(split)
        if proba is None:
            raise ValueError("calibration needs a model with probabilities")
        y_idx = _label_index(ctx.y(split), ctx.labels)
        pos = ctx.positive_index if ctx.task == "binary_classification" else None
        score, outcome, kind = U.calibration_target(proba, y_idx, pos)
        rng = ctx.rng("calibration.bootstrap")
        n = len(y_idx)
        uniform = U.assign_bins(score, config.n_bins, "uniform")
        mass = U.assign_bins(score, config.n_bins, "quantile")

        def ci(fn: Any) -> tuple[float | None, float | None]:
            return bootstrap_ci(fn, n, n_boot=config.n_boot, confidence=config.confidence, rng=rng)

        table = U.bin_table(score, outcome, uniform)
        metrics = [
            _metric("ece", U.ece_from_table(table), ci(lambda i: U.ece_from_table(
                U.bin_table(score, outcome, uniform, i)))),
            _metric("ece_equal_mass", U.ece_from_table(U.bin_table(score, outcome, mass)), ci(
                lambda i: U.ece_from_table(U.bin_table(score, outcome, mass, i)))),
            _metric("mce", U.mce_from_table(table)),
            _metric("brier", U.brier_score(proba, y_idx, pos), ci(lambda i: U.brier_score(proba[i], y_idx[i], pos))),
            _metric("calibration_gap", float(score.mean() - outcome.mean())),
        ]
        if pos is None:
            metrics.append(_metric("classwise_ece", U.classwise_ece(proba, y_idx, n_bins=config.n_bins)))
        what = (f"P({ctx.positive_label!r}) against the observed share of {ctx.positive_label!r}"
                if kind == "positive-class" else "the top-label confidence (highest probability) against "
                "whether the arg-max class is right")
        notes = [
            f"Measured on the {split} split ({n} rows): {kind} calibration, {what}.",
            f"ECE with {config.n_bins} equal-width bins (k/B, (k+1)/B] and with {config.n_bins} equal-mass bins; "
            "MCE over the equal-width bins. Brier score: " + (
                "binary form, mean (p - y)^2." if pos is not None else "multiclass form, mean sum_k (p_k - y_k)^2."),
        ]
        if config.n_boot:
            notes.append(f"Intervals: {config.confidence:.0%} percentile bootstrap over {config.n_boot} resamples "
                         "with the bins held fixed. ECE is biased upward on few rows: read small-sample values "
                         "as an upper estimate.")
        figures = [_reliability_figure(table, kind, ctx.positive_label)]
        tables = [_bin_table(table, uniform.edges)]
        findings: list[Finding] = []
        if config.per_group and ctx.sensitive_features:
            g_metrics, g_findings, g_fig, g_notes = _calibration_by_group(
                ctx, split, proba, y_idx, pos, score, outcome, config, metrics[0].value, rng)
            metrics += g_metrics
            findings += g_findings
            figures += g_fig
            notes += g_notes
        ece = metrics[0].value
        summary = f"ECE {ece:.3f}, Brier {metrics[3].value:.3f} ({kind}, n={n})"
        return CheckResult(check_id=self.id, summary=summary, metrics=metrics, findings=findings,
                           figures=figures, tables=tables, notes=notes)


def _metric(name: str, value: float, ci: tuple[float | None, float | None] = (None, None),
            descriptions: dict[str, str] = CAL_METRICS) -> Metric:
    """An ungrouped metric with its interval and description (NaN becomes None: not computable)."""
    v = float(value)
    return Metric(name, v if np.isfinite(v) else None, ci_low=ci[0], ci_high=ci[1],
                  description=descriptions.get(name, ""))


def _label_index(y: np.ndarray, labels: list[Any]) -> np.ndarray:
    """Each label's column in the probability matrix."""
    lookup = {lab: i for i, lab in enumerate(labels)}
    lookup.update({str(lab): i for i, lab in enumerate(labels)})
    try:
        return np.array([lookup[v] if v in lookup else lookup[str(v)] for v in y], dtype=int)
    except KeyError as exc:
        raise ValueError(f"label {exc.args[0]!r} is not one of the model's classes {labels}") from None


def _calibration_by_group(ctx: AuditContext, split: str, proba: np.ndarray, y_idx: np.ndarray, pos: int | None,
                          score: np.ndarray, outcome: np.ndarray, config: CalibrationConfig, overall: float | None,
                          rng: np.random.Generator) -> tuple[list[Metric], list[Finding], list[Figure], list[str]]:
    """Per group: ECE (equal-mass bins sized for the group), Brier, gap; the worst group; findings; figures."""
    sens = ctx.sensitive(split)
    bound = config.thresholds.get("max_group_ece")
    metrics: list[Metric] = []
    findings: list[Finding] = []
    figures: list[Figure] = []
    small: list[str] = []
    worst: tuple[float, Metric] | None = None
    for feature in ctx.sensitive_features:
        col = sens[feature].astype(str).to_numpy()
        curves = []
        for value in sorted(np.unique(col)):
            rows = np.flatnonzero(col == value)
            group = f"{feature}={value}"
            s, o = score[rows], outcome[rows]
            b = int(np.clip(len(rows) // config.rows_per_bin, 2, config.n_bins))
            bins = U.assign_bins(s, b, "quantile")
            tab = U.bin_table(s, o, bins)
            ece = U.ece_from_table(tab)
            lo, hi = bootstrap_ci(lambda i, s=s, o=o, bins=bins: U.ece_from_table(U.bin_table(s, o, bins, i)),
                                  len(rows), n_boot=config.n_boot, confidence=config.confidence, rng=rng)
            m = Metric("ece", ece, group=group, ci_low=lo, ci_high=hi)
            metrics += [Metric("count", float(len(rows)), group=group), m,
                        Metric("brier", U.brier_score(proba[rows], y_idx[rows], pos), group=group),
                        Metric("calibration_gap", float(s.mean() - o.mean()), group=group)]
            curves.append((value, tab, len(rows)))
            if len(rows) < config.min_group_size:
                small.append(f"{group} (n={len(rows)})")
                continue
            if worst is None or ece > worst[0]:
                worst = (ece, m)
            if bound is not None:
                judged = judge_metric(m, bound)
                if judged.status is not None and judged.status.value in ("warn", "fail"):
                    gap = float(s.mean() - o.mean())
                    findings.append(Finding(
                        "fail" if judged.status.value == "fail" else "warn",
                        f"ECE {ece:.3f} for {group} (n={len(rows)}, {b} equal-mass bins) against "
                        f"{overall:.3f} overall; max_group_ece must be {bound.describe()}"
                        + (f" ({judged.note})" if judged.note else "")
                        + f"; predicted minus observed {gap:+.3f}",
                        metric="max_group_ece",
                        evidence=[{"group": group, "n": len(rows), "ece": ece, "ci": [lo, hi], "gap": gap}]))
        figures.append(_group_reliability_figure(feature, curves))
    notes = [f"Per group: ECE with equal-mass bins of about {config.rows_per_bin} rows (2 to {config.n_bins} bins); "
             f"groups under {config.min_group_size} rows are reported but not judged."]
    if small:
        notes.append("Groups too small to judge: " + ", ".join(small) + ".")
    if worst is not None:
        m = worst[1]
        metrics.append(Metric("max_group_ece", m.value, ci_low=m.ci_low, ci_high=m.ci_high,
                              description=CAL_METRICS["max_group_ece"] + f" Here: {m.group}."))
    return metrics, findings, figures, notes


def _bin_table(table: np.ndarray, edges: np.ndarray) -> Table:
    rows = [[f"({edges[k]:.2f}, {edges[k + 1]:.2f}]", int(c), None if c == 0 else round(float(conf), 4),
             None if c == 0 else round(float(acc), 4), None if c == 0 else round(float(acc - conf), 4)]
            for k, (c, conf, acc) in enumerate(table)]
    return Table("reliability_bins", "Reliability bins (equal width)",
                 ["bin", "rows", "mean predicted", "observed", "observed - predicted"], rows)


def _reliability_figure(table: np.ndarray, kind: str, positive: Any) -> Figure:
    filled = table[:, 0] > 0
    k = len(table)
    centers = (np.arange(k) + 0.5) / k
    with figure(width=4.6, height=4.6, nrows=2, sharex=True, gridspec_kw={"height_ratios": [3, 1]}) as (fig, ax):
        top, bottom = ax
        top.plot([0, 1], [0, 1], color=PALETTE[5], lw=1, ls="--", label="perfect calibration")
        top.bar(centers[filled], table[filled, 2] - table[filled, 1], bottom=table[filled, 1], width=1 / k,
                color=PALETTE[3], alpha=0.25, label="gap")
        top.plot(table[filled, 1], table[filled, 2], "o-", color=PALETTE[0], lw=1.6, ms=4, label="model")
        top.set_ylabel("observed share" if kind == "positive-class" else "accuracy")
        top.set_xlim(0, 1)
        top.set_ylim(0, 1.02)
        top.legend(loc="upper left", frameon=False)
        bottom.bar(centers, table[:, 0], width=1 / k, color=PALETTE[0], alpha=0.6)
        bottom.set_ylabel("rows")
        bottom.set_xlabel(f"predicted P({positive!r})" if kind == "positive-class" else "confidence (top label)")
        data = to_svg(fig)
    return Figure("reliability_diagram", "Reliability diagram", data,
                  caption="Observed share against mean predicted probability per equal-width bin; on the "
                          "diagonal the probabilities mean what they say. Below: rows per bin.",
                  alt="Reliability diagram: model curve against the diagonal, with a histogram of rows per bin.")


def _group_reliability_figure(feature: str, curves: list[tuple[str, np.ndarray, int]]) -> Figure:
    with figure(width=4.6, height=3.8) as (fig, ax):
        ax.plot([0, 1], [0, 1], color=PALETTE[5], lw=1, ls="--")
        for i, (value, tab, n) in enumerate(curves[:len(PALETTE) - 1]):
            f = tab[:, 0] > 0
            ax.plot(tab[f, 1], tab[f, 2], "o-", color=PALETTE[i], lw=1.4, ms=3, label=f"{value} (n={n})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("mean predicted probability")
        ax.set_ylabel("observed share")
        ax.legend(title=feature, loc="upper left", frameon=False)
        data = to_svg(fig)
    return Figure(f"reliability_by_{_slug(feature)}", f"Reliability by {feature}", data,
                  caption=f"Reliability curve of each {feature} group (equal-mass bins).",
                  alt=f"One reliability curve per {feature} group against the diagonal.")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in str(text)).strip("_").lower() or "x"
