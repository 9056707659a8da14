"""Group fairness: per-group and intersectional metrics with fairlearn, gaps with intervals, proxy screen."""

from __future__ import annotations

import functools
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
from sklearn.base import BaseEstimator, ClassifierMixin

from audit.context import AuditContext
from audit.judge import judge_metric
from audit.plotting import PALETTE, figure, to_svg
from audit.proxies import MISSING_LABEL, proxy_scores
from audit.registry import Check, CheckConfig, Requires, register
from audit.results import CheckResult, Figure, Finding, Metric, Status, Table, Threshold
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


@dataclass
class _Attribute:
    """One way of grouping the rows: a sensitive feature, or the intersection of all of them."""

    name: str                      # "afam" or "afam x single"
    groups: list[str]              # "afam=yes", "afam=yes & single=no"
    labels: np.ndarray             # group name of each row
    members: np.ndarray            # (groups, finest groups) 0/1
    sizes: np.ndarray = field(default_factory=lambda: np.zeros(0))
    eligible: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


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
        split = config.split or ctx.eval_split
        if split not in ctx.splits:
            raise ValueError(f"split {split!r} is not in the policy's data (have: {ctx.splits})")
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
        fine_groups = sorted(set(fine_labels))
        fine_codes = np.searchsorted(np.asarray(fine_groups, dtype=object), np.asarray(fine_labels, dtype=object))
        counts = fs.confusion_counts(fine_codes, len(fine_groups), y_pos, pred_pos)
        attributes = [_attribute(n, columns[n], fine_groups, [columns[n][i] for i in _first_rows(fine_codes)])
                      for n in names]
        if config.intersections and len(names) > 1:
            attributes.append(_Attribute(" x ".join(names), fine_groups, np.asarray(fine_labels, dtype=object),
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
                    metrics.append(Metric(m, _num(table.loc[g, m]), group=g, ci_low=_num(lo[gi, mi]),
                                          ci_high=_num(hi[gi, mi]), description=fs.RATE_DESCRIPTIONS[m]))

        gaps = _gaps(attributes, counts, boot, per_group, config, alpha)
        metrics[:0] = _headline(gaps, config)
        findings = _gap_findings(gaps)
        if small:
            findings.append(Finding("info", f"{len(small)} group(s) under min_group_size = {config.min_group_size} "
                                    "rows are shown but left out of the judged gaps: " + ", ".join(small) + ".",
                                    evidence=[{"group": s} for s in small[:50]]))
        tables = [_gap_table(gaps, config)]
        figures = [_bar_figure(a, per_group[a.name], metrics, config) for a in attributes if len(a.groups) > 1]
        if config.intersections and len(names) > 1:
            figures.append(_heatmap(attributes[-1], names, columns, per_group[attributes[-1].name], config))

        if config.proxy_screen:
            proxy_findings, proxy_table, proxy_note = _proxies(ctx, names, config)
            findings += proxy_findings
            tables.append(proxy_table)
            notes.append(proxy_note)
        if config.mitigation == "threshold_optimizer":
            table, note = _mitigation(ctx, split, attributes, fine_labels, y_pos, pred_pos, config)
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
        labels = col.astype(object).where(col.notna(), MISSING_LABEL).astype(str)
        if (labels == MISSING_LABEL).any():
            notes.append(f"{int((labels == MISSING_LABEL).sum())} rows have no value for {name}: the group "
                         f"{name}={MISSING_LABEL}.")
        out[name] = [f"{name}={v}" for v in labels]
    return out, notes


def _first_rows(codes: np.ndarray) -> np.ndarray:
    _, first = np.unique(codes, return_index=True)
    return first


def _attribute(name: str, labels: list[str], fine_groups: list[str], fine_to_coarse: list[str]) -> _Attribute:
    groups = sorted(set(labels))
    index = {g: i for i, g in enumerate(groups)}
    members = np.zeros((len(groups), len(fine_groups)))
    members[[index[c] for c in fine_to_coarse], np.arange(len(fine_groups))] = 1
    return _Attribute(name, groups, np.asarray(labels, dtype=object), members)


# -- per-group metrics (fairlearn) and their intervals (vectorised bootstrap) --------------------------------------
def _defined(fn: Any, need: Literal["pos", "neg", "pred", "any"]) -> Any:
    """A fairlearn/scikit-learn rate that is NaN, not 0, when its denominator is empty."""

    @functools.wraps(fn)
    def wrapped(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        has = {"pos": y_true == 1, "neg": y_true == 0, "pred": y_pred == 1, "any": y_true == y_true}[need]
        return float(fn(y_true, y_pred)) if np.any(has) else float("nan")

    return wrapped


_FAIRLEARN = {
    "selection_rate": _defined(functools.partial(selection_rate, pos_label=1), "any"),
    "true_positive_rate": _defined(functools.partial(true_positive_rate, pos_label=1), "pos"),
    "true_negative_rate": _defined(functools.partial(true_negative_rate, pos_label=1), "neg"),
    "false_positive_rate": _defined(functools.partial(false_positive_rate, pos_label=1), "neg"),
    "false_negative_rate": _defined(functools.partial(false_negative_rate, pos_label=1), "pos"),
    "precision": _defined(functools.partial(skm.precision_score, zero_division=np.nan), "pred"),
    "accuracy": skm.accuracy_score,
    "balanced_accuracy": lambda y, p: float(np.nanmean([_FAIRLEARN_TPR(y, p), _FAIRLEARN_TNR(y, p)])),
    "count": count,
}
_FAIRLEARN_TPR = _FAIRLEARN["true_positive_rate"]
_FAIRLEARN_TNR = _FAIRLEARN["true_negative_rate"]
_GAP_RATES = ["selection_rate", "true_positive_rate", "false_positive_rate"]


def _metric_frame(y_pos: np.ndarray, pred_pos: np.ndarray, a: _Attribute, names: list[str]) -> pd.DataFrame:
    """The ``MetricFrame.by_group`` (fairlearn) for the attribute: the reported metrics and the gap rates."""
    wanted = list(dict.fromkeys([*names, *_GAP_RATES]))
    with np.errstate(all="ignore"):
        mf = MetricFrame(metrics={m: _FAIRLEARN[m] for m in wanted}, y_true=y_pos.astype(int),
                         y_pred=pred_pos.astype(int), sensitive_features=pd.Series(a.labels, name=a.name))
    return mf.by_group.reindex(a.groups)


def _group_intervals(boot: np.ndarray, a: _Attribute, names: list[str], alpha: float
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


def _gaps(attributes: list[_Attribute], counts: np.ndarray, boot: np.ndarray, per_group: dict[str, pd.DataFrame],
          config: FairnessConfig, alpha: float) -> list[_Gap]:
    out: list[_Gap] = []
    for a in attributes:
        table = per_group[a.name].loc[np.asarray(a.groups)[a.eligible]]
        point = fs.disparities(fs.aggregate(counts, a.members), a.eligible)
        samples = fs.disparities(fs.aggregate(boot, a.members), a.eligible) if len(boot) else {}
        for name in fs.DISPARITY_DESCRIPTIONS:
            value = _num(point[name])
            s = samples.get(name, np.zeros(0))
            component = _COMPONENT.get(name) or _eo_component(table, name)
            best, worst = _extremes(table, component, config.positive_is_favorable)
            ci = fs.percentile_interval(s, alpha) if len(s) else (None, None)
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
                g.judged_ci = fs.percentile_interval(g.samples, alpha * g.p / g.p_adj)
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
    level = f"{config.confidence:.0%}"
    rows = []
    for g in gaps:
        ci = "" if g.ci[0] is None else f"[{g.ci[0]:.3f}, {g.ci[1]:.3f}]"
        jci = "" if g.threshold is None or g.judged_ci[0] is None or g.judged_ci == g.ci else \
            f"[{g.judged_ci[0]:.3f}, {g.judged_ci[1]:.3f}]"
        rows.append([g.attribute, g.metric, None if g.value is None else round(g.value, 4), ci, jci,
                     g.worst, g.best, g.threshold.describe() if g.threshold else "",
                     "" if g.threshold is None else f"{g.p_adj:.3g}",
                     g.status.value if g.status else "informative"])
    return Table("gaps", "Gaps between groups, by attribute",
                 ["attribute", "gap", "value", f"{level} CI", "corrected CI", "worst-treated", "best-treated",
                  "threshold", "adjusted p", "status"], rows,
                 caption="Each gap over the groups of one attribute that have at least min_group_size rows. "
                 "'corrected CI' is the interval judged after the multiple-comparison correction (blank when it "
                 "equals the plain one); 'adjusted p' is the corrected one-sided bootstrap p-value that the "
                 "bound lies on the other side of the estimate.")


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
             "strong proxy" if r.auc >= config.proxy_auc else ""] for r in scores.head(20).itertuples()]
    table = Table("proxies", "Proxy screen: how well each feature predicts a sensitive attribute",
                  ["feature", "sensitive", "AUC", "normalised MI", ""], rows,
                  caption=f"Strongest 20 of {len(scores)} pairs. A strong proxy has AUC >= {config.proxy_auc:g}.")
    note = (scores.attrs.get("method", "Proxy screen.") + f" Split: {scores.attrs.get('split')}. "
            f"{len(strong)} strong proxies (AUC >= {config.proxy_auc:g}).")
    return findings, table, note


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


def _mitigation(ctx: AuditContext, split: str, attributes: list[_Attribute], fine_labels: list[str],
                y_pos: np.ndarray, pred_pos: np.ndarray, config: FairnessConfig) -> tuple[Table, str]:
    """Before/after table of fairlearn's ThresholdOptimizer, 2-fold cross-fitted on the evaluation rows."""
    from fairlearn.postprocessing import ThresholdOptimizer
    from sklearn.model_selection import StratifiedKFold

    columns = ["model", "accuracy", *[m for m in fs.DISPARITY_DESCRIPTIONS]]
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
        worst: dict[str, float | None] = {}
        for a in attributes:
            counts = fs.aggregate(fs.confusion_counts(_codes(fine_labels), len(a.members[0]), y_pos, pred),
                                  a.members)
            for name, v in fs.disparities(counts, a.eligible).items():
                v = _num(v)
                old = worst.get(name)
                if v is not None and (old is None or (v < old if name.endswith("ratio") else v > old)):
                    worst[name] = v
        return [label, round(float(np.mean(pred == y_pos)), 4),
                *[None if worst.get(m) is None else round(worst[m], 4) for m in fs.DISPARITY_DESCRIPTIONS]]

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
        rows.append(row(f"ThresholdOptimizer({constraint})", pred))
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


def _codes(labels: list[str]) -> np.ndarray:
    groups = np.asarray(sorted(set(labels)), dtype=object)
    return np.searchsorted(groups, np.asarray(labels, dtype=object))


# -- figures ---------------------------------------------------------------------------------------------------
def _bar_figure(a: _Attribute, table: pd.DataFrame, metrics: list[Metric], config: FairnessConfig) -> Figure:
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
            lo = np.array([_nan(ci.get((g, m), (None, None))[0]) for g in a.groups])
            hi = np.array([_nan(ci.get((g, m), (None, None))[1]) for g in a.groups])
            err = np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)])
            err = np.where(np.isfinite(err), err, 0)
            colors = [PALETTE[0] if ok else PALETTE[5] for ok in a.eligible]
            y = np.arange(k)
            ax.barh(y, np.nan_to_num(vals), color=colors, height=0.65, xerr=err,
                    error_kw={"ecolor": "#333", "lw": 0.8, "capsize": 2})
            ax.set_yticks(y, [_short(g, a.name) for g in a.groups] if i % ncols == 0 else [""] * k, fontsize=7)
            ax.invert_yaxis()
            ax.set_xlim(0, 1.05)
            ax.set_title(m.replace("_", " "), fontsize=8)
            ax.tick_params(axis="x", labelsize=7)
            _threshold_line(ax, m, vals[a.eligible], config)
        data = to_svg(fig)
    return Figure(f"bars_{_slug(a.name)}", f"Metrics by group: {a.name}", data,
                  caption=f"Each metric per {a.name} group with its {config.confidence:.0%} bootstrap interval. "
                  f"Grey bars: groups under {config.min_group_size} rows (not judged). Dashed line: the threshold, "
                  "relative to the best group (groups left of it make the gap miss its bound).",
                  alt=f"Horizontal bar charts of {', '.join(names)} for each {a.name} group, with interval whiskers.")


def _threshold_line(ax: Any, metric: str, eligible_vals: np.ndarray, config: FairnessConfig) -> None:
    v = eligible_vals[np.isfinite(eligible_vals)]
    if len(v) < 2:
        return
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
    if x is not None:
        ax.axvline(x, color=PALETTE[3], ls="--", lw=1)
        ax.text(x, -0.9, label, color=PALETTE[3], fontsize=6, ha="center", va="bottom")


def _max_of(t: dict[str, Threshold], name: str) -> float | None:
    return t[name].max if name in t else None


def _heatmap(a: _Attribute, names: list[str], columns: dict[str, list[str]], table: pd.DataFrame,
             config: FairnessConfig) -> Figure:
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
                        n = int(table.loc[g, "count"]) if "count" in table else int(a.sizes[a.groups.index(g)])
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
    return Figure(f"heatmap_{_slug(a.name)}", f"Intersectional groups: {a.name}", data,
                  caption=f"Selection rate and true positive rate of each combination of {', '.join(names)}, with "
                  f"its size; groups under {config.min_group_size} rows are greyed and not judged.",
                  alt=f"Heat map of selection rate and true positive rate over the combinations of {', '.join(names)}.")


def _short(group: str, attribute: str) -> str:
    return group if " x " in attribute else group.split("=", 1)[1]


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text).strip("_").lower()


# -- notes and helpers -----------------------------------------------------------------------------------------
def _method_notes(attributes: list[_Attribute], config: FairnessConfig, n: int, small: list[str]) -> list[str]:
    notes = [f"Per-group metrics: fairlearn MetricFrame ({len(attributes)} attribute(s): "
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
                     "percentile interval at the correspondingly widened level (shown as 'corrected CI').")
    if small:
        notes.append(f"Groups too small to judge (under {config.min_group_size} rows): {len(small)}.")
    return notes


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _nan(x: float | None) -> float:
    return np.nan if x is None else float(x)

