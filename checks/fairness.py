"""Group fairness: per-group and intersectional metrics with fairlearn, gaps with intervals, proxy screen."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
    false_negative_rate,
    false_positive_rate,
    selection_rate,
    true_negative_rate,
    true_positive_rate,
)
from pydantic import Field, field_validator
from sklearn import metrics as skm

from audit.context import AuditContext
from audit.judge import judge_metric
from audit.proxies import MISSING_LABEL, proxy_scores
from audit.registry import Check, CheckConfig, Requires, register
from audit.results import CheckResult, Finding, Metric, Status, Table, Threshold
from audit.stats import finite, percentile_interval
from checks import _fairness_stats as fs

GroupMetric = Literal["selection_rate", "true_positive_rate", "true_negative_rate", "false_positive_rate",
                      "false_negative_rate", "precision", "accuracy", "balanced_accuracy", "count"]
DEFAULT_METRICS: list[GroupMetric] = ["selection_rate", "true_positive_rate", "false_positive_rate",
                                      "false_negative_rate", "precision", "accuracy", "count"]
_AUTO_BIN_UNIQUE = 10  # a numeric sensitive column with more values and no bins given is cut into quintiles


class FairnessConfig(CheckConfig):
    """Options of the ``fairness`` check."""

    sensitive_features: list[str] | None = Field(
        None, description="Columns that define the groups. Default: data.sensitive_features.")
    split: Literal["test", "train"] | None = Field(
        None, description="Data to measure on. Default: test when given, else train.")
    intersections: bool = Field(
        True, description="Also measure every combination of the sensitive features (e.g. sex x age_group).")
    min_group_size: int = Field(
        30, ge=1, description="Groups with fewer rows are reported and flagged, but left out of the gaps "
        "that are judged (never merged into other groups).")
    metrics: list[GroupMetric] = Field(
        default_factory=lambda: list(DEFAULT_METRICS), min_length=1,
        description="Metrics reported for each group (the gaps always use selection, true and false positive "
        "rates).")
    n_boot: int = Field(1000, ge=0, le=100_000, description="Bootstrap resamples for the intervals (0 = off).")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Confidence level of the intervals.")
    correction: Literal["holm", "bh", "none"] = Field(
        "holm", description="Multiple-comparison correction of the judged gaps over the attributes (each "
        "sensitive feature and their intersection): holm (family-wise, Holm 1979), bh (false discovery rate, "
        "Benjamini-Hochberg 1995) or none.")
    continuous_bins: dict[str, list[float]] = Field(
        default_factory=dict, description="Numeric sensitive column -> bin edges, e.g. {age: [0, 25, 40, 60, "
        "200]}: groups [0, 25), [25, 40), ... Numeric columns with more than 10 values and no edges are cut "
        "into quintiles.")
    decision_threshold: float | None = Field(
        None, gt=0, lt=1, description="Predict positive when its probability is at least this. Default: the "
        "model's own prediction (most probable class).")
    positive_is_favorable: bool = Field(
        True, description="Whether a positive prediction is the favourable outcome for the person (loan "
        "granted: true; loan denied, fraud flag: false). Decides which group is named worst-treated.")
    proxy_screen: bool = Field(True, description="Screen the other model features for proxies of the "
                               "sensitive ones (audit.proxies).")
    proxy_auc: float = Field(0.7, gt=0.5, le=1, description="A feature whose one-feature classifier predicts "
                             "a sensitive attribute with at least this cross-validated ROC AUC is a strong proxy.")
    proxy_severity: Literal["info", "warn"] = Field(
        "warn", description="Severity of a strong-proxy finding (warn lowers the check's status).")
    mitigation: Literal["threshold_optimizer"] | None = Field(
        None, description="Preview what fairlearn's ThresholdOptimizer (group-specific thresholds) would do "
        "to the gaps and accuracy on the evaluation data. Informs only; no model is changed.")

    @field_validator("continuous_bins")
    @classmethod
    def _edges_increase(cls, value: dict[str, list[float]]) -> dict[str, list[float]]:
        for name, edges in value.items():
            if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
                raise ValueError(f"continuous_bins.{name} must be at least two strictly increasing edges; "
                                 f"got {edges}")
        return value


@register
class Fairness(Check[FairnessConfig]):
    """Group fairness with fairlearn: per-group metrics, gaps with intervals and corrections, proxies."""

    id: ClassVar[str] = "fairness"
    title: ClassVar[str] = "Group fairness"
    description: ClassVar[str] = (
        "Whom the model treats worse: selection, error and accuracy rates per sensitive group and per "
        "intersection (fairlearn MetricFrame), demographic-parity and equalized-odds gaps with bootstrap "
        "intervals judged against the policy, and a screen for features that stand in for sensitive ones.")
    config_model = FairnessConfig
    applies_to: ClassVar[Requires] = Requires(tasks=frozenset({"binary_classification"}),
                                              needs=frozenset({"sensitive_features"}))
    obligations: ClassVar[tuple[str, ...]] = ("eu_ai_act.art10.2.f", "eu_ai_act.art10.2.g", "gdpr.art22")
    metric_names: ClassVar[dict[str, str]] = dict(fs.DISPARITY_DESCRIPTIONS)
    default_thresholds: ClassVar[dict[str, dict[str, float]]] = {
        "demographic_parity_ratio": {"min": 0.8, "warn_margin": 0.02},
        "equalized_odds_difference": {"max": 0.1},
        "equal_opportunity_difference": {"max": 0.1},
    }

    def run(self, ctx: AuditContext, config: FairnessConfig) -> CheckResult:
        """Measure per group, bootstrap the counts, compute the gaps, screen proxies, draw."""
        split = ctx.resolve_split(config.split)
        names = list(config.sensitive_features or ctx.sensitive_features)
        frame = ctx.frame(split)
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise ValueError(f"sensitive_features {missing} are not columns of the {split} data "
                             f"(columns: {list(frame.columns)})")
        y_pos = np.asarray(ctx.y(split) == ctx.positive_label)
        pred_pos = _predict_positive(ctx, split, config)
        notes = [f"Measured on the {split} split ({len(y_pos)} rows); positive = {ctx.positive_label!r}"
                 + (f", predicted when P >= {config.decision_threshold}" if config.decision_threshold else "")
                 + "."]

        columns, bin_notes = _group_columns(frame, names, config.continuous_bins)
        notes += bin_notes
        fine_labels = [" & ".join(t) for t in zip(*(columns[n] for n in names), strict=True)]
        fine_codes, fine_groups = fs.group_codes(fine_labels)
        counts = fs.confusion_counts(fine_codes, len(fine_groups), y_pos, pred_pos)
        attributes = [_attribute(n, columns[n], fine_groups, [columns[n][i] for i in _first_rows(fine_codes)])
                      for n in names]
        if config.intersections and len(names) > 1:
            attributes.append(fs.Attribute(" x ".join(names), fine_groups, np.asarray(fine_labels, dtype=object),
                                         np.eye(len(fine_groups))))
        boot = fs.resample_counts(counts, config.n_boot, ctx.rng("fairness.bootstrap"))
        alpha = (1 - config.confidence) / 2

        metrics: list[Metric] = []
        per_group: dict[str, pd.DataFrame] = {}
        small: list[str] = []
        for a in attributes:
            a.sizes = fs.aggregate(counts, a.members).sum(-1)
            a.eligible = a.sizes >= config.min_group_size
            small += [f"{g} (n={int(n)})" for g, n, ok in zip(a.groups, a.sizes, a.eligible, strict=True) if not ok]
            table = _metric_frame(y_pos, pred_pos, a, config.metrics)
            per_group[a.name] = table
            lo, hi = _group_intervals(boot, a, config.metrics, alpha)
            for gi, g in enumerate(a.groups):
                for mi, m in enumerate(config.metrics):
                    has_ci = m != "count"  # the group's size is a fact of the data, not an estimate
                    metrics.append(Metric(m, finite(table.loc[g, m]), group=g,
                                          ci_low=finite(lo[gi, mi]) if has_ci else None,
                                          ci_high=finite(hi[gi, mi]) if has_ci else None,
                                          description=fs.RATE_DESCRIPTIONS[m]))

        gaps = _gaps(attributes, counts, boot, per_group, config, alpha)
        metrics[:0] = _headline(gaps, config)
        findings = _gap_findings(gaps)
        if small:
            findings.append(Finding("info", f"{len(small)} group(s) under min_group_size = {config.min_group_size} "
                                    "rows are shown but left out of the judged gaps: " + ", ".join(small) + ".",
                                    evidence=[{"group": s} for s in small[:50]]))
        tables = [_gap_table(gaps, config), _extremes_table(attributes, per_group, config)]
        figures = [fs.bar_figure(a, per_group[a.name], metrics, config) for a in attributes if len(a.groups) > 1]
        if config.intersections and len(names) > 1:
            figures.append(fs.heatmap(attributes[-1], names, columns, per_group[attributes[-1].name], config))

        if config.proxy_screen:
            proxy_findings, proxy_table, proxy_note = _proxies(ctx, names, config)
            findings += proxy_findings
            tables.append(proxy_table)
            notes.append(proxy_note)
        if config.mitigation == "threshold_optimizer":
            table, note = fs.mitigation_preview(ctx, split, attributes, fine_labels, y_pos, pred_pos, config)
            tables.append(table)
            notes.append(note)

        notes += _method_notes(attributes, config, len(y_pos), small)
        worst = [g for g in gaps if g.threshold is not None]
        summary = ", ".join(f"{g.metric} {g.value:.3f} ({g.attribute})" for g in _worst_per_metric(worst)
                            if g.value is not None) or "no gaps could be computed"
        return CheckResult(check_id=self.id, summary=summary, metrics=metrics, findings=findings,
                           figures=figures, tables=tables, notes=notes)


# -- groups --------------------------------------------------------------------------------------------------
def _predict_positive(ctx: AuditContext, split: str, config: FairnessConfig) -> np.ndarray:
    if config.decision_threshold is None:
        return np.asarray(ctx.predict(split) == ctx.positive_label)
    proba = ctx.proba(split)
    if proba is None:
        raise ValueError("decision_threshold needs a model with probabilities")
    return np.asarray(proba[:, ctx.positive_index], dtype=np.float64) >= config.decision_threshold


def _group_columns(frame: pd.DataFrame, names: list[str], bins: dict[str, list[float]]
                   ) -> tuple[dict[str, list[str]], list[str]]:
    """Each sensitive column as ``name=value`` strings: missing values their own group, numbers binned."""
    unknown = sorted(set(bins) - set(names))
    if unknown:
        raise ValueError(f"continuous_bins names {unknown}, which are not among the sensitive features {names}")
    out: dict[str, list[str]] = {}
    notes: list[str] = []
    for name in names:
        col = frame[name]
        numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
        if name in bins or (numeric and col.nunique(dropna=True) > _AUTO_BIN_UNIQUE):
            if not numeric:
                raise ValueError(f"continuous_bins.{name}: column {name!r} is not numeric ({col.dtype})")
            if name in bins:
                edges = list(bins[name])
                cut = pd.cut(col, edges, right=False)
                text = cut.astype(object).map(lambda iv: f"[{iv.left:g}, {iv.right:g})", na_action="ignore")
                outside = col.notna() & cut.isna()
                text = text.where(~outside, f"outside [{edges[0]:g}, {edges[-1]:g})")
                if outside.any():
                    notes.append(f"{int(outside.sum())} rows of {name} fall outside its bins: a group of their own.")
            else:
                cut = pd.qcut(col, 5, duplicates="drop")
                text = cut.astype(object).map(lambda iv: f"({iv.left:.4g}, {iv.right:.4g}]", na_action="ignore")
                notes.append(f"{name} is numeric with {col.nunique()} values and no continuous_bins: cut into "
                             "quintiles.")
            col = text
        if pd.api.types.is_float_dtype(col):  # 0/1 read as floats because of a missing value: "1", not "1.0"
            col = col.map(lambda v: f"{v:g}", na_action="ignore")
        labels = col.astype(object).where(col.notna(), MISSING_LABEL).astype(str)
        if (labels == MISSING_LABEL).any():
            notes.append(f"{int((labels == MISSING_LABEL).sum())} rows have no value for {name}: the group "
                         f"{name}={MISSING_LABEL}.")
        out[name] = [f"{name}={v}" for v in labels]
    return out, notes


def _first_rows(codes: np.ndarray) -> np.ndarray:
    _, first = np.unique(codes, return_index=True)
    return first


def _attribute(name: str, labels: list[str], fine_groups: list[str], fine_to_coarse: list[str]) -> fs.Attribute:
    groups = sorted(set(labels))
    index = {g: i for i, g in enumerate(groups)}
    members = np.zeros((len(groups), len(fine_groups)))
    members[[index[c] for c in fine_to_coarse], np.arange(len(fine_groups))] = 1
    return fs.Attribute(name, groups, np.asarray(labels, dtype=object), members)


# -- per-group metrics (fairlearn) and their intervals (vectorised bootstrap) --------------------------------------
def _defined(fn: Any, need: Literal["pos", "neg", "pred", "any"]) -> Any:
    """A fairlearn/scikit-learn rate that is NaN, not 0, when its denominator is empty."""

    @functools.wraps(fn)
    def wrapped(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        has = {"pos": y_true == 1, "neg": y_true == 0, "pred": y_pred == 1, "any": y_true == y_true}[need]
        return float(fn(y_true, y_pred)) if np.any(has) else float("nan")

    return wrapped


_FAIRLEARN_TPR = _defined(functools.partial(true_positive_rate, pos_label=1), "pos")
_FAIRLEARN_TNR = _defined(functools.partial(true_negative_rate, pos_label=1), "neg")
_FAIRLEARN: dict[str, Any] = {
    "selection_rate": _defined(functools.partial(selection_rate, pos_label=1), "any"),
    "true_positive_rate": _FAIRLEARN_TPR,
    "true_negative_rate": _FAIRLEARN_TNR,
    "false_positive_rate": _defined(functools.partial(false_positive_rate, pos_label=1), "neg"),
    "false_negative_rate": _defined(functools.partial(false_negative_rate, pos_label=1), "pos"),
    "precision": _defined(functools.partial(skm.precision_score, zero_division=np.nan), "pred"),
    "accuracy": skm.accuracy_score,
    "balanced_accuracy": lambda y, p: float(np.nanmean([_FAIRLEARN_TPR(y, p), _FAIRLEARN_TNR(y, p)])),
    "count": count,
}
_GAP_RATES = ["selection_rate", "true_positive_rate", "false_positive_rate"]


def _metric_frame(y_pos: np.ndarray, pred_pos: np.ndarray, a: fs.Attribute, names: Sequence[str]) -> pd.DataFrame:
    """The ``MetricFrame.by_group`` (fairlearn) for the attribute: the reported metrics and the gap rates."""
    wanted = list(dict.fromkeys([*names, *_GAP_RATES]))
    with np.errstate(all="ignore"):
        mf = MetricFrame(metrics={m: _FAIRLEARN[m] for m in wanted}, y_true=y_pos.astype(int),
                         y_pred=pred_pos.astype(int), sensitive_features=pd.Series(a.labels, name=a.name))
    return mf.by_group.reindex(a.groups)


def _group_intervals(boot: np.ndarray, a: fs.Attribute, names: Sequence[str], alpha: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Percentile intervals ``(groups, metrics)`` of each group metric over the resampled counts."""
    shape = (len(a.groups), len(names))
    if len(boot) == 0:
        return np.full(shape, np.nan), np.full(shape, np.nan)
    c = fs.aggregate(boot, a.members)
    samples = np.stack([fs.RATES[m](c) for m in names], axis=-1).reshape(len(boot), -1)
    lo, hi = fs.percentile_intervals(samples, alpha)
    return lo.reshape(shape), hi.reshape(shape)


# -- gaps ------------------------------------------------------------------------------------------------------
@dataclass
class _Gap:
    metric: str
    attribute: str
    value: float | None
    ci: tuple[float | None, float | None]
    judged_ci: tuple[float | None, float | None]
    best: str
    worst: str
    component: str
    threshold: Threshold | None
    samples: np.ndarray = field(default_factory=lambda: np.zeros(0))
    p: float = 1.0
    p_adj: float = 1.0
    status: Status | None = None
    note: str = ""


_COMPONENT = {"demographic_parity_difference": "selection_rate", "demographic_parity_ratio": "selection_rate",
              "equal_opportunity_difference": "true_positive_rate"}


def _gaps(attributes: list[fs.Attribute], counts: np.ndarray, boot: np.ndarray, per_group: dict[str, pd.DataFrame],
          config: FairnessConfig, alpha: float) -> list[_Gap]:
    out: list[_Gap] = []
    for a in attributes:
        table = per_group[a.name].loc[np.asarray(a.groups)[a.eligible]]
        point = fs.disparities(fs.aggregate(counts, a.members), a.eligible)
        samples = fs.disparities(fs.aggregate(boot, a.members), a.eligible) if len(boot) else {}
        for name in fs.DISPARITY_DESCRIPTIONS:
            value = finite(point[name])
            s = samples.get(name, np.zeros(0))
            component = _COMPONENT.get(name) or _eo_component(table, name)
            best, worst = _extremes(table, component, config.positive_is_favorable)
            ci = percentile_interval(s, alpha) if len(s) else (None, None)
            t = config.thresholds.get(name)
            gap = _Gap(name, a.name, value, ci, ci, best, worst, component, t, samples=s)
            if t is not None and value is not None and len(s):
                gap.p = fs.crossing_pvalue(s, value, t.min, t.max)
            out.append(gap)
    for name in config.thresholds:
        family = [g for g in out if g.metric == name]
        adj = fs.adjust_pvalues(np.array([g.p for g in family]), config.correction)
        for g, p_adj in zip(family, adj, strict=True):
            g.p_adj = float(p_adj)
            if len(g.samples) and g.p_adj > g.p:
                g.judged_ci = percentile_interval(g.samples, alpha * g.p / g.p_adj)
            judged = judge_metric(Metric(name, g.value, ci_low=g.judged_ci[0], ci_high=g.judged_ci[1]),
                                  g.threshold) if g.threshold else None
            g.status, g.note = (judged.status, judged.note) if judged else (None, "")
    return out


def _eo_component(table: pd.DataFrame, name: str) -> str:
    """Which rate drives an equalized-odds gap: the one with the larger gap (or smaller ratio)."""
    tpr, fpr = table["true_positive_rate"].dropna(), table["false_positive_rate"].dropna()
    if len(tpr) < 2 or len(fpr) < 2:
        return "true_positive_rate" if len(tpr) >= 2 else "false_positive_rate"
    if name.endswith("difference"):
        return "true_positive_rate" if np.ptp(tpr) >= np.ptp(fpr) else "false_positive_rate"
    r_t = tpr.min() / tpr.max() if tpr.max() > 0 else np.nan
    r_f = fpr.min() / fpr.max() if fpr.max() > 0 else np.nan
    return "true_positive_rate" if not (r_f < r_t) else "false_positive_rate"


def _extremes(table: pd.DataFrame, rate: str, favorable: bool) -> tuple[str, str]:
    """(best-treated, worst-treated) group on a rate: who gets the favourable outcome most and least often."""
    r = table[rate].dropna() if rate in table else pd.Series(dtype=float)
    if len(r) < 2:
        return "", ""
    hi, lo = f"{r.idxmax()} ({r.max():.3f})", f"{r.idxmin()} ({r.min():.3f})"
    return (hi, lo) if favorable else (lo, hi)


def _worst_per_metric(gaps: list[_Gap]) -> list[_Gap]:
    out = []
    for name in dict.fromkeys(g.metric for g in gaps):
        family = [g for g in gaps if g.metric == name]
        out.append(max(family, key=lambda g: (g.status.rank if g.status else -1, _badness(g))))
    return out


def _badness(g: _Gap) -> float:
    if g.value is None:
        return -np.inf
    return -g.value if g.metric.endswith("ratio") else g.value


def _headline(gaps: list[_Gap], config: FairnessConfig) -> list[Metric]:
    """One ungrouped metric per gap, for the core to judge: the worst attribute, with its corrected interval."""
    out = []
    for g in _worst_per_metric(gaps):
        where = f"worst of {len({x.attribute for x in gaps})} attribute(s): {g.attribute}"
        if g.worst:
            where += f"; worst-treated {g.worst}, best-treated {g.best} on {g.component.replace('_', ' ')}"
        ci = g.judged_ci if g.threshold is not None else g.ci
        out.append(Metric(g.metric, g.value, ci_low=ci[0], ci_high=ci[1],
                          description=f"{fs.DISPARITY_DESCRIPTIONS[g.metric]} ({where})"))
    return out


def _gap_findings(gaps: list[_Gap]) -> list[Finding]:
    """One finding per attribute whose judged gaps miss or may miss their bounds, naming the groups."""
    out = []
    for attribute in dict.fromkeys(g.attribute for g in gaps):
        bad = [g for g in gaps if g.attribute == attribute and g.status in (Status.FAIL, Status.WARN)
               and g.threshold is not None and g.value is not None]
        if not bad:
            continue
        parts = []
        for g in bad:
            note = f", {g.note}" if g.note else ""
            parts.append(f"{g.metric} = {g.value:.3f}, required {g.threshold.describe()} "  # type: ignore[union-attr]
                         f"({g.status.value if g.status else ''}{note}); worst-treated {g.worst or 'n/a'}, "
                         f"best-treated {g.best or 'n/a'} on {g.component.replace('_', ' ')}")
        sev: Literal["fail", "warn"] = "fail" if any(g.status is Status.FAIL for g in bad) else "warn"
        out.append(Finding(sev, f"{attribute}: " + "; ".join(parts) + ".", metric=bad[0].metric,
                           evidence=[{"gap": g.metric, "value": round(g.value, 4),  # type: ignore[arg-type]
                                      "adjusted_p": round(g.p_adj, 4), "worst_group": g.worst,
                                      "best_group": g.best} for g in bad]))
    return out


def _gap_table(gaps: list[_Gap], config: FairnessConfig) -> Table:
    rows = []
    for g in gaps:
        judged = g.threshold is not None
        rows.append([g.attribute, g.metric.replace("_", " "), None if g.value is None else round(g.value, 3),
                     _ci_text(g.ci), _ci_text(g.judged_ci) if judged else "",
                     g.threshold.describe() if g.threshold else "", g.status.value if g.status else "informative"])
    return Table("gaps", "Gaps between groups, by attribute",
                 ["attribute", "gap", "value", f"{config.confidence:.0%} CI", "judged CI", "threshold", "status"], rows,
                 caption="Each gap over the groups of one attribute that have at least min_group_size rows. "
                 "'judged CI' is the interval the status is decided on: the plain one widened by the "
                 "multiple-comparison correction (see the method notes; the adjusted p-values are in the findings' "
                 "evidence).")


def _extremes_table(attributes: list[fs.Attribute], per_group: dict[str, pd.DataFrame],
                    config: FairnessConfig) -> Table:
    """Worst- and best-treated group of each attribute on each rate the gaps are made of."""
    rows = []
    for a in attributes:
        table = per_group[a.name].loc[np.asarray(a.groups)[a.eligible]]
        for rate in _GAP_RATES:
            best, worst = _extremes(table, rate, config.positive_is_favorable)
            if worst:
                rows.append([a.name, rate.replace("_", " "), worst, best])
    side = "lowest" if config.positive_is_favorable else "highest"
    return Table("treated", "Worst- and best-treated groups", ["attribute", "rate", "worst-treated", "best-treated"],
                 rows, caption=f"Among groups with at least {config.min_group_size} rows; worst-treated has the "
                 f"{side} rate (the positive prediction is {'' if config.positive_is_favorable else 'not '}the "
                 "favourable outcome: positive_is_favorable). Demographic parity gaps are made of selection rates, "
                 "equal opportunity of true positive rates, equalized odds of true and false positive rates.")


def _ci_text(ci: tuple[float | None, float | None]) -> str:
    return "" if ci[0] is None or ci[1] is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


# -- proxies, mitigation ---------------------------------------------------------------------------------------
def _proxies(ctx: AuditContext, names: list[str], config: FairnessConfig) -> tuple[list[Finding], Table, str]:
    scores = proxy_scores(ctx)
    scores = scores[scores["sensitive"].isin(names)]
    strong = scores[scores["auc"] >= config.proxy_auc]
    findings = [Finding(config.proxy_severity,
                        f"{r.feature} predicts {r.sensitive} with cross-validated ROC AUC {r.auc:.3f} >= proxy_auc "
                        f"{config.proxy_auc:g}: a strong proxy; leaving {r.sensitive} out of the model does not "
                        "remove what it carries.",
                        evidence=[{"feature": r.feature, "sensitive": r.sensitive, "auc": round(r.auc, 4),
                                   "mutual_info": round(r.mutual_info, 4)}])
                for r in strong.itertuples()]
    rows = [[r.feature, r.sensitive, round(r.auc, 3), round(r.mutual_info, 4),
             "strong proxy" if r.auc >= config.proxy_auc else ""] for r in scores.head(10).itertuples()]
    table = Table("proxies", "Proxy screen: how well each feature predicts a sensitive attribute",
                  ["feature", "sensitive", "AUC", "normalised MI", ""], rows,
                  caption=f"Strongest 10 of {len(scores)} pairs; a strong proxy has AUC >= {config.proxy_auc:g} "
                  "(each one is also a finding).")
    note = (scores.attrs.get("method", "Proxy screen.") + f" Split: {scores.attrs.get('split')}. "
            f"{len(strong)} strong proxies (AUC >= {config.proxy_auc:g}).")
    return findings, table, note


# -- notes and helpers -----------------------------------------------------------------------------------------
def _method_notes(attributes: list[fs.Attribute], config: FairnessConfig, n: int, small: list[str]) -> list[str]:
    notes = [f"Per-group metrics: fairlearn MetricFrame on {n} rows ({len(attributes)} attribute(s): "
             + ", ".join(f"{a.name} with {len(a.groups)} groups" for a in attributes) + "). Rates whose "
             "denominator is empty in a group (e.g. true positive rate without positives) are undefined (n/a), "
             "not 0. Gaps follow fairlearn's definitions (between groups; equalized odds: worst case of true and "
             f"false positive rates) over the groups with at least {config.min_group_size} rows."]
    if config.n_boot:
        notes.append(f"Intervals: {config.confidence:.0%} percentile bootstrap, {config.n_boot} resamples of the "
                     f"{n} rows, drawn as multinomial confusion counts per finest group (exactly the distribution "
                     "of a row bootstrap, vectorised); resamples where a metric is undefined are dropped.")
    else:
        notes.append("n_boot = 0: no intervals; thresholds are judged on the point estimates alone.")
    if config.correction != "none" and len(attributes) > 1 and config.n_boot:
        name = {"holm": "Holm (1979) step-down, family-wise error",
                "bh": "Benjamini-Hochberg (1995), false discovery rate"}[config.correction]
        notes.append(f"Multiple comparisons: each judged gap is tested on {len(attributes)} attributes; the "
                     f"one-sided bootstrap p-values are adjusted with {name}, and the interval judged is the "
                     "percentile interval at the correspondingly widened level (shown as 'judged CI').")
    if small:
        shown = ", ".join(small[:20]) + (f" and {len(small) - 20} more" if len(small) > 20 else "")
        notes.append(f"Groups too small to judge (under {config.min_group_size} rows), shown but left out of the "
                     f"gaps: {shown}.")
    return notes
