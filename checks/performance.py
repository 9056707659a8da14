"""Predictive performance: accuracy and friends, with bootstrap intervals, overall and per group."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field
from sklearn import metrics as skm

from audit.context import AuditContext
from audit.plotting import PALETTE, figure, to_svg
from audit.registry import Check, CheckConfig, Requires, register
from audit.results import CheckResult, Figure, Metric, Table
from audit.stats import bootstrap_ci, finite

METRICS = {
    "accuracy": "Share of correct predictions.",
    "balanced_accuracy": "Mean recall over classes (robust to class imbalance).",
    "precision": "Of the predicted positives, the share truly positive (multiclass: averaged over classes).",
    "recall": "Of the true positives, the share predicted positive (multiclass: averaged over classes).",
    "f1": "Harmonic mean of precision and recall.",
    "roc_auc": "Area under the ROC curve of the predicted probabilities (multiclass: one-vs-rest).",
    "log_loss": "Cross-entropy of the predicted probabilities (lower is better).",
    "train_accuracy": "Accuracy on the training data, to compare with the test accuracy (overfitting).",
}


class PerformanceConfig(CheckConfig):
    """Options of the ``performance`` check."""

    split: Literal["test", "train"] | None = Field(
        None, description="Data to measure on. Default: test when given, else train (and the report says so)."
    )
    decision_threshold: float | None = Field(
        None, gt=0, lt=1, description="Binary tasks: predict positive when its probability is at least this. "
        "Default: the most probable class."
    )
    average: Literal["macro", "weighted"] = Field(
        "macro", description="Multiclass: how precision, recall and F1 are averaged over classes."
    )
    n_boot: int = Field(200, ge=0, le=10000, description="Bootstrap resamples for the intervals (0 = off).")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Confidence level of the intervals.")
    per_group: bool = Field(True, description="Also report the metrics for each group of each sensitive feature.")
    min_group_size: int = Field(30, ge=1, description="Groups smaller than this are reported but flagged.")


@register
class Performance(Check[PerformanceConfig]):
    """Accuracy, balanced accuracy, precision, recall, F1, ROC AUC and log loss; confusion matrix."""

    id: ClassVar[str] = "performance"
    title: ClassVar[str] = "Predictive performance"
    description: ClassVar[str] = ("How well the model predicts on held-out data, with bootstrap confidence "
                                  "intervals, overall and per sensitive group.")
    config_model = PerformanceConfig
    applies_to: ClassVar[Requires] = Requires()
    obligations: ClassVar[tuple[str, ...]] = ("eu_ai_act.art15.1", "eu_ai_act.art15.3", "eu_ai_act.annex_iv.2.g")
    metric_names: ClassVar[dict[str, str]] = METRICS

    def run(self, ctx: AuditContext, config: PerformanceConfig) -> CheckResult:
        """Measure, bootstrap, break down by group, draw the confusion matrix and ROC curve."""
        split = ctx.resolve_split(config.split)
        y = ctx.y(split)
        proba = ctx.proba(split)
        pred = self._predict(ctx, split, config)
        labels = ctx.labels
        scorer = _Scorer(ctx.task, labels, ctx.positive_label, config.average)
        notes = [f"Measured on the {split} split ({len(y)} rows)."]
        if config.split is None and split == "train":
            notes.append("No test data was given: these numbers are on the training data and overstate "
                         "performance on new data.")
        if config.decision_threshold is not None:
            notes.append(f"Positive when P({ctx.positive_label!r}) >= {config.decision_threshold}.")

        rng = ctx.rng("performance.bootstrap")
        out: list[Metric] = []
        for name, fn in scorer.functions(proba).items():
            value = fn(y, pred, proba, slice(None))
            lo, hi = bootstrap_ci(lambda idx, fn=fn: fn(y, pred, proba, idx), len(y), n_boot=config.n_boot,
                                  confidence=config.confidence, rng=rng)
            out.append(Metric(name, finite(value), ci_low=lo, ci_high=hi, description=METRICS[name]))
        if config.n_boot:
            notes.append(f"Intervals: {config.confidence:.0%} percentile bootstrap over {config.n_boot} resamples "
                         "of the evaluation rows.")
        if proba is None:
            notes.append("The model gives no probabilities: ROC AUC and log loss are not reported.")
        if split != "train" and "train" in ctx.splits:
            y_tr = ctx.y("train")
            acc_tr = float(np.mean(self._predict(ctx, "train", config) == y_tr))
            out.append(Metric("train_accuracy", acc_tr, description=METRICS["train_accuracy"]))

        tables = [_confusion_table(y, pred, labels)]
        figures = [_confusion_figure(y, pred, labels)]
        if proba is not None and ctx.task == "binary_classification":
            figures.append(_roc_figure(y, proba[:, ctx.positive_index], ctx.positive_label))
        if config.per_group and ctx.sensitive_features:
            group_metrics, small = _per_group(ctx, split, y, pred, proba, scorer, config)
            out.extend(group_metrics)
            if small:
                notes.append(f"Groups under {config.min_group_size} rows, whose numbers are unreliable: "
                             + ", ".join(small) + ".")

        head = {m.name: m.value for m in out if m.group is None}
        parts = [f"{k} {head[k]:.3f}" for k in ("accuracy", "roc_auc", "f1") if head.get(k) is not None]
        return CheckResult(check_id=self.id, summary=", ".join(parts) + f" on {split} (n={len(y)})",
                           metrics=out, tables=tables, figures=figures, notes=notes)

    @staticmethod
    def _predict(ctx: AuditContext, split: str, config: PerformanceConfig) -> np.ndarray:
        if config.decision_threshold is None or ctx.task != "binary_classification":
            return ctx.predict(split)
        proba = ctx.proba(split)
        if proba is None:
            raise ValueError("decision_threshold needs a model with probabilities")
        neg = next(lab for lab in ctx.labels if lab != ctx.positive_label)
        is_pos = proba[:, ctx.positive_index] >= config.decision_threshold
        return np.where(is_pos, ctx.positive_label, neg).astype(ctx.y(split).dtype)


class _Scorer:
    """The metric functions, each ``f(y, pred, proba, idx) -> float`` on the rows ``idx``."""

    def __init__(self, task: str, labels: list[Any], positive: Any, average: str):
        self.binary = task == "binary_classification"
        self.labels = labels
        self.positive = positive
        self.average = average

    def functions(self, proba: np.ndarray | None) -> dict[str, Any]:
        avg: dict[str, Any] = ({"average": "binary", "pos_label": self.positive} if self.binary
                               else {"average": self.average, "labels": self.labels})
        fns: dict[str, Any] = {
            "accuracy": lambda y, p, _, i: skm.accuracy_score(y[i], p[i]),
            "balanced_accuracy": lambda y, p, _, i: _quiet(skm.balanced_accuracy_score, y[i], p[i]),
            "precision": lambda y, p, _, i: skm.precision_score(y[i], p[i], zero_division=0, **avg),
            "recall": lambda y, p, _, i: skm.recall_score(y[i], p[i], zero_division=0, **avg),
            "f1": lambda y, p, _, i: skm.f1_score(y[i], p[i], zero_division=0, **avg),
        }
        if proba is not None:
            fns["roc_auc"] = self._auc
            fns["log_loss"] = lambda y, _, pr, i: skm.log_loss(y[i], pr[i], labels=self.labels)
        return fns

    def _auc(self, y: np.ndarray, _: np.ndarray, proba: np.ndarray, idx: Any) -> float:
        yi = y[idx]
        if len(np.unique(yi)) < 2:
            return float("nan")
        if self.binary:
            return skm.roc_auc_score(yi == self.positive, proba[idx][:, self.labels.index(self.positive)])
        present = np.isin(self.labels, np.unique(yi))
        if present.sum() < len(self.labels):
            return float("nan")
        return skm.roc_auc_score(yi, proba[idx], multi_class="ovr", average=self.average, labels=self.labels)


def _quiet(fn: Any, *args: Any) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


def _per_group(ctx: AuditContext, split: str, y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None,
               scorer: _Scorer, config: PerformanceConfig) -> tuple[list[Metric], list[str]]:
    """The headline metrics and the row count for each group of each sensitive feature (``feature=value``)."""
    fns = scorer.functions(proba)
    names = [n for n in ("accuracy", "precision", "recall", "f1", "roc_auc") if n in fns]
    sens = ctx.sensitive(split)
    metrics: list[Metric] = []
    small: list[str] = []
    for feature in ctx.sensitive_features:
        col = sens[feature].astype(str).to_numpy()
        for value in sorted(np.unique(col)):
            idx = np.flatnonzero(col == value)
            group = f"{feature}={value}"
            metrics.append(Metric("count", float(len(idx)), group=group))
            metrics.extend(Metric(n, finite(fns[n](y, pred, proba, idx)), group=group) for n in names)
            if len(idx) < config.min_group_size:
                small.append(f"{group} (n={len(idx)})")
    return metrics, small


def _confusion_table(y: np.ndarray, pred: np.ndarray, labels: list[Any]) -> Table:
    cm = skm.confusion_matrix(y, pred, labels=labels)
    rows = [[f"true {lab}", *map(int, r)] for lab, r in zip(labels, cm, strict=True)]
    return Table("confusion_matrix", "Confusion matrix", ["", *[f"predicted {lab}" for lab in labels]], rows)


def _confusion_figure(y: np.ndarray, pred: np.ndarray, labels: list[Any]) -> Figure:
    cm = skm.confusion_matrix(y, pred, labels=labels)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = len(labels)
    with figure(width=min(2.2 + 0.9 * k, 8), height=min(1.8 + 0.8 * k, 7)) as (fig, ax):
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{cm[i, j]}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.6 else "#222")
        ax.set_xticks(range(k), [str(v) for v in labels])
        ax.set_yticks(range(k), [str(v) for v in labels])
        ax.set_xlabel("predicted label")
        ax.set_ylabel("true label")
        ax.spines[:].set_visible(False)
        data = to_svg(fig)
    return Figure("confusion_matrix", "Confusion matrix", data,
                  caption="Counts and the share of each true class (row) predicted as each class (column).",
                  alt="Confusion matrix heat map of true against predicted labels, with counts and row shares.")


def _roc_figure(y: np.ndarray, score: np.ndarray, positive: Any) -> Figure:
    fpr, tpr, _ = skm.roc_curve(y == positive, score)
    auc = skm.auc(fpr, tpr)
    with figure(width=4.2, height=3.6) as (fig, ax):
        ax.plot(fpr, tpr, color=PALETTE[0], lw=1.8, label=f"model (AUC {auc:.3f})")
        ax.plot([0, 1], [0, 1], color=PALETTE[5], lw=1, ls="--", label="chance")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.legend(loc="lower right", frameon=False)
        data = to_svg(fig)
    return Figure("roc_curve", "ROC curve", data,
                  caption=f"True against false positive rate as the threshold on P({positive!r}) varies.",
                  alt=f"ROC curve with area {auc:.3f}, above the chance diagonal.")
