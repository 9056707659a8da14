"""When the model does not know: calibration of its probabilities and MC-dropout uncertainty.

``calibration`` (every model with probabilities): expected calibration error with equal-width and equal-mass
bins, Brier score, a reliability diagram, the same per sensitive group. ``mc_dropout`` (PyTorch models with
dropout layers): Gal and Ghahramani's stochastic forward passes, per-sample uncertainty, how well it finds the
model's errors, the referral rate that reaches a target accuracy, an out-of-distribution probe, and the
referral rate per group. The arithmetic lives in ``checks/_uncertainty.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from audit.context import AuditContext
from audit.judge import judge_metric
from audit.registry import Check, CheckConfig, Requires, register
from audit.results import CheckResult, Figure, Finding, Metric
from audit.stats import bootstrap_ci
from checks import _uncertainty as U
from checks import _uncertainty_figures as F

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
        split = ctx.resolve_split(config.split)
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
            return U.bias_corrected_ci(fn, n, n_boot=config.n_boot, confidence=config.confidence, rng=rng)

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
            notes.append(f"Intervals: {config.confidence:.0%} bootstrap over {config.n_boot} resamples with the bins "
                         "held fixed, shifted by the bootstrap's estimate of the bias (the plug-in ECE is biased "
                         "upward: noise alone puts observed shares off the diagonal in small bins), floored at 0. "
                         "The point values are the usual plug-in estimates.")
        figures = [F.reliability_figure(table, kind, ctx.positive_label)]
        tables = [F.bin_table(table, uniform.edges)]
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
            lo, hi = U.bias_corrected_ci(lambda i, s=s, o=o, bins=bins: U.ece_from_table(U.bin_table(s, o, bins, i)),
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
                        + ("n/a" if overall is None else f"{overall:.3f}")
                        + f" overall; max_group_ece must be {bound.describe()}"
                        + (f" ({judged.note})" if judged.note else "")
                        + f"; predicted minus observed {gap:+.3f}",
                        metric="max_group_ece",
                        evidence=[{"group": group, "n": len(rows), "ece": ece, "ci": [lo, hi], "gap": gap}]))
        figures.append(F.group_reliability_figure(feature, curves))
    notes = [f"Per group: ECE with equal-mass bins of about {config.rows_per_bin} rows (2 to {config.n_bins} bins); "
             f"groups under {config.min_group_size} rows are reported but not judged."]
    if small:
        notes.append("Groups too small to judge: " + ", ".join(small) + ".")
    if worst is not None:
        m = worst[1]
        metrics.append(Metric("max_group_ece", m.value, ci_low=m.ci_low, ci_high=m.ci_high,
                              description=CAL_METRICS["max_group_ece"] + f" Here: {m.group}."))
    return metrics, findings, figures, notes



# ============================================================================================================
# MC dropout
# ============================================================================================================
Score = Literal["entropy", "mutual_information", "std", "one_minus_max"]
MC_METRICS = {
    "accuracy": "Accuracy of the model's deterministic predictions on the rows measured.",
    "mc_accuracy": "Accuracy of the arg-max of the MC-dropout predictive mean.",
    "mean_entropy": "Mean predictive entropy H[mean of the passes] in nats (total uncertainty).",
    "mean_mutual_information": "Mean mutual information between prediction and weights in nats (epistemic part).",
    "mean_std": "Mean standard deviation over passes of the predicted class's probability.",
    "error_detection_auroc": "AUROC of the uncertainty score for telling wrong predictions from right ones "
                             "(0.5 = no better than chance).",
    "accuracy_coverage_area": "Mean accuracy over all coverage levels when the most uncertain are referred.",
    "referral_rate": "Share of cases referred to a person (the most uncertain) so that the accuracy on the rest "
                     "reaches target_accuracy (1.0: no threshold reaches it).",
    "accuracy_after_referral": "Accuracy on the cases decided automatically at that referral rate.",
    "referral_threshold": "Uncertainty above which a case is referred (decide automatically when <= this).",
    "ood_auroc": "The smallest AUROC, over the out-of-distribution probes run, of the uncertainty for telling "
                 "probe inputs from test inputs (> 0.5: the probes look more uncertain).",
    "ood_auroc_noise": "OOD probe 'noise': random inputs with the test data's per-feature (per-channel) mean and std.",
    "ood_auroc_shift": "OOD probe 'shift': test inputs moved by shift_scale standard deviations.",
    "ood_auroc_data": "OOD probe 'data': the out-of-distribution data set given as the ood option.",
    "referral_rate_ratio": "Lowest group referral rate divided by the highest, over the groups of each sensitive "
                           "feature (worst feature; 1.0 when nobody is referred).",
    "count": "Rows in the group.",
    "mean_uncertainty": "Mean uncertainty score in the group.",
}


class MCDropoutConfig(CheckConfig):
    """Options of the ``mc_dropout`` check."""

    split: Literal["test", "train"] | None = Field(
        None, description="Data to measure on. Default: test when given, else train.")
    passes: int = Field(50, ge=2, le=2000, description="Stochastic forward passes per sample (Gal and "
                        "Ghahramani used 10 to 100).")
    score: Score = Field("entropy", description="Uncertainty score used to rank and refer cases: predictive "
                         "entropy, mutual_information (epistemic), std of the predicted class's probability, "
                         "or one_minus_max (1 - highest mean probability).")
    target_accuracy: float = Field(0.95, gt=0, le=1, description="Accuracy the automatically decided cases must "
                                   "reach; the check reports the referral rate and threshold that reach it.")
    max_samples: int | None = Field(5000, ge=10, description="Measure on a seeded random subset of at most this "
                                    "many rows (null: all).")
    memory_budget_mb: float = Field(64, gt=0, description="Bound on the activation memory of one batched "
                                    "forward call (rows per call = budget / measured bytes per row). Larger "
                                    "is not faster on CPUs: past a few tens of MB the activations leave the cache.")
    ood: str | None = Field(None, description="Out-of-distribution data (relative to the policy): csv/parquet "
                            "with the model's feature columns, or for images an npz file (`x`, optional `y`) "
                            "preprocessed like the test data.")
    ood_probes: list[Literal["noise", "shift"]] = Field(
        default_factory=lambda: ["noise", "shift"], description="Generated out-of-distribution probes.")
    shift_scale: float = Field(3.0, gt=0, description="The 'shift' probe adds this many standard deviations of "
                               "each feature (channel) to the test inputs.")
    n_ood: int = Field(500, ge=10, description="Rows of each generated probe.")
    n_boot: int = Field(200, ge=0, le=10000, description="Bootstrap resamples for the intervals (0 = off).")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Confidence level of the intervals.")
    per_group: bool = Field(True, description="Report uncertainty and referral rate per sensitive group.")
    min_group_size: int = Field(30, ge=1, description="Groups smaller than this are reported but not judged.")
    top_k: int = Field(12, ge=0, le=64, description="Most uncertain samples shown (gallery or table).")


@register
class MCDropout(Check[MCDropoutConfig]):
    """MC-dropout uncertainty (Gal and Ghahramani, 2016): when to refer a case to a person."""

    id: ClassVar[str] = "mc_dropout"
    title: ClassVar[str] = "MC-dropout uncertainty and referral"
    description: ClassVar[str] = (
        "Stochastic forward passes with only the dropout layers active give each case a predictive mean, "
        "entropy and mutual information; the check measures how well uncertainty finds errors, the referral "
        "rate to a person that reaches a target accuracy, whether out-of-distribution inputs look more "
        "uncertain, and whether one group is referred far more often.")
    config_model = MCDropoutConfig
    applies_to: ClassVar[Requires] = Requires(needs=frozenset({"torch", "dropout"}))
    obligations: ClassVar[tuple[str, ...]] = ("eu_ai_act.art14", "eu_ai_act.art15.1", "eu_ai_act.art15.4")
    metric_names: ClassVar[dict[str, str]] = MC_METRICS
    default_thresholds: ClassVar[dict[str, dict[str, float]]] = {
        "error_detection_auroc": {"min": 0.6, "warn_margin": 0.05},
        "ood_auroc": {"min": 0.6, "warn_margin": 0.05},
        "referral_rate_ratio": {"min": 0.8},
    }

    def run(self, ctx: AuditContext, config: MCDropoutConfig) -> CheckResult:
        """Sample, summarise, rank, refer, probe, break down by group, draw."""
        split = ctx.resolve_split(config.split)
        module = ctx.model.native
        X_all, y_all = ctx.X(split), ctx.y(split)
        rows = np.arange(len(y_all))
        if config.max_samples is not None and len(rows) > config.max_samples:
            rows = np.sort(ctx.rng("mc_dropout.subsample").choice(len(rows), config.max_samples, replace=False))
        X = X_all.iloc[rows] if isinstance(X_all, pd.DataFrame) else X_all[rows]
        y_idx = _label_index(y_all[rows], ctx.labels)
        x = ctx.model.to_tensor(X)
        seeds = ctx.rng("mc_dropout.passes").integers(0, 2**31 - 1, size=8)
        run_mc = functools.partial(U.mc_dropout_predict, module, passes=config.passes,
                                   memory_budget_mb=config.memory_budget_mb,
                                   to_proba=ctx.model.torch_model.probabilities)
        mc = run_mc(x, seed=int(seeds[0]))
        pred = ctx.proba(split)[rows].argmax(axis=1)
        correct = pred == y_idx
        u = mc.score(config.score)
        n = len(rows)
        rng = ctx.rng("mc_dropout.bootstrap")

        def ci(fn: Any) -> tuple[float | None, float | None]:
            return bootstrap_ci(fn, n, n_boot=config.n_boot, confidence=config.confidence, rng=rng)

        curve = U.coverage_curve(u, correct)
        k = curve.at_target(config.target_accuracy)
        referral = 1.0 if k is None else 1.0 - float(curve.coverage[k])
        threshold = None if k is None else float(curve.threshold[k])

        def referral_at(i: np.ndarray) -> float:
            c = U.coverage_curve(u[i], correct[i])
            j = c.at_target(config.target_accuracy)
            return 1.0 if j is None else 1.0 - float(c.coverage[j])

        d = MC_METRICS
        metrics = [
            _metric("accuracy", float(correct.mean()), descriptions=d),
            _metric("mc_accuracy", float((mc.mean.argmax(axis=1) == y_idx).mean()), descriptions=d),
            _metric("mean_entropy", float(mc.entropy.mean()), descriptions=d),
            _metric("mean_mutual_information", float(mc.mutual_information.mean()), descriptions=d),
            _metric("mean_std", float(mc.std.mean()), descriptions=d),
            _metric("error_detection_auroc", U.auroc(u, ~correct), ci(lambda i: U.auroc(u[i], ~correct[i])), d),
            _metric("accuracy_coverage_area", curve.area(), descriptions=d),
            _metric("referral_rate", referral, ci(referral_at), d),
            _metric("accuracy_after_referral", float("nan") if k is None else float(curve.accuracy[k]),
                    descriptions=d),
            _metric("referral_threshold", float("nan") if threshold is None else threshold, descriptions=d),
        ]
        findings: list[Finding] = []
        notes = [
            f"{config.passes} stochastic forward passes on {n} rows of the {split} split"
            + (f" (a seeded random subset of {len(y_all)})" if n < len(y_all) else "")
            + f"; only the {len(U.dropout_modules(module))} dropout layer(s) in train mode, every other layer "
            f"(batch norm included) in eval mode, the module's modes restored afterwards. Batched: "
            f"{mc.rows_per_call} rows per forward call (memory budget {config.memory_budget_mb:g} MB). "
            + ("The layers before the dropout ran once per sample, not once per pass (they give the same value "
               "in every pass; split with torch.fx and checked against the plain forward)." if mc.reused_prefix
               else "Every pass ran the whole forward (the module could not be split at its dropout layers "
               "with torch.fx)."),
            f"Right and wrong are the model's deterministic predictions; cases are ranked by {config.score}. "
            "The referral threshold is chosen on these same rows, so its accuracy is optimistic for new data.",
        ]
        if k is None:
            findings.append(Finding("warn", f"No referral threshold reaches the target accuracy "
                                    f"{config.target_accuracy:.3f}: even the least uncertain cases are not that "
                                    "accurate; every case would go to a person.", metric="referral_rate"))
        tables = [F.referral_table(curve, config.target_accuracy)]
        probes, probe_notes = _ood_probes(ctx, config, x, run_mc, int(seeds[1]), int(seeds[2]))
        notes += probe_notes
        ood_bound = config.thresholds.get("ood_auroc")
        for name, probe in probes.items():
            pu = probe.score(config.score)
            auc = U.auroc(np.r_[u, pu], np.r_[np.zeros(n, bool), np.ones(len(pu), bool)])
            metrics.append(_metric(f"ood_auroc_{name}", auc, descriptions=d))
            judged = judge_metric(metrics[-1], ood_bound) if ood_bound is not None else None
            if judged is not None and judged.status is not None and judged.status.value in ("warn", "fail"):
                top = np.bincount(probe.mean.argmax(axis=1), minlength=len(ctx.labels))
                findings.append(Finding(
                    "fail" if judged.status.value == "fail" else "warn",
                    f"OOD probe '{name}' is not clearly more uncertain than the test data: AUROC {auc:.3f}, "
                    f"ood_auroc must be {ood_bound.describe()}; mean {config.score} {pu.mean():.3f} against "
                    f"{u.mean():.3f} on test, and {top.max() / len(pu):.0%} of the probe inputs are predicted "
                    f"{ctx.labels[int(top.argmax())]!r} (mean top probability {probe.mean.max(axis=1).mean():.2f})",
                    metric="ood_auroc"))
        if probes:
            aucs = [m.value for m in metrics if m.name.startswith("ood_auroc_") and m.value is not None]
            metrics.append(_metric("ood_auroc", min(aucs, default=float("nan")), descriptions=d))
        tables.append(F.summary_table(mc, correct, probes))
        figures = [F.histogram_figure(u, correct, {name: p.score(config.score) for name, p in probes.items()},
                                     config.score, threshold),
                   F.coverage_figure(curve, config.target_accuracy, k)]
        if config.top_k:
            order = np.argsort(-u, kind="stable")[:config.top_k]
            if ctx.data_kind == "image":
                shown = ctx.images_for_display(split, rows[order])
                figures.append(F.gallery_figure(shown, order, ctx.labels, y_idx, pred, u, config.score))
            else:
                tables.append(F.uncertain_rows_table(X, order, ctx.labels, y_idx, pred, mc, config.score))
        if config.per_group and ctx.sensitive_features and len(ctx.sensitive(split).columns):
            sens = ctx.sensitive(split).iloc[rows].reset_index(drop=True)
            g_metrics, g_findings = _referral_by_group(ctx, sens, u, correct, threshold, config, rng)
            metrics += g_metrics
            findings += g_findings
        summary = (f"error-detection AUROC {metrics[5].value:.3f}; refer {referral:.0%} to reach accuracy "
                   f"{config.target_accuracy:.2f}" if metrics[5].value is not None else f"refer {referral:.0%}")
        return CheckResult(check_id=self.id, summary=summary + f" (n={n}, {config.passes} passes)",
                           metrics=metrics, findings=findings, figures=figures, tables=tables, notes=notes)


def _ood_probes(ctx: AuditContext, config: MCDropoutConfig, x: Any, run_mc: Callable[..., U.MCResult],
                seed_gen: int, seed_mc: int) -> tuple[dict[str, U.MCResult], list[str]]:
    """Run the generated probes and the given OOD data through the same MC passes."""
    import torch

    probes: dict[str, U.MCResult] = {}
    notes: list[str] = []
    rng = np.random.default_rng(seed_gen)
    xs = x.numpy()
    axes = (0, 2, 3) if xs.ndim == 4 else (0,)
    shape = [1] * xs.ndim
    shape[1] = xs.shape[1]
    mean = xs.mean(axis=axes).reshape(shape)
    std = np.maximum(xs.std(axis=axes).reshape(shape), 1e-6)
    for i, probe in enumerate(config.ood_probes):
        if probe == "noise":
            gen = mean + std * rng.standard_normal((config.n_ood, *xs.shape[1:]))
            what = (f"'noise': {config.n_ood} inputs drawn independently per "
                    f"{'pixel' if xs.ndim == 4 else 'feature'} from a normal with the test data's per-"
                    f"{'channel' if xs.ndim == 4 else 'feature'} mean and std")
        else:
            m = min(config.n_ood, len(xs))
            sub = xs[rng.choice(len(xs), m, replace=False)]
            gen = sub + config.shift_scale * std
            what = f"'shift': {m} test inputs moved by +{config.shift_scale:g} per-feature (per-channel) std"
        probes[probe] = run_mc(torch.from_numpy(gen.astype(np.float32)), seed=seed_mc + i + 1)
        notes.append(f"OOD probe {what}.")
    if config.ood:
        data = _load_ood(ctx, config.ood)
        probes["data"] = run_mc(data, seed=seed_mc)
        notes.append(f"OOD probe 'data': {len(data)} rows from {config.ood}.")
    return probes, notes


def _load_ood(ctx: AuditContext, relative: str) -> Any:
    """The ``ood`` file as the model's input tensor."""
    path = ctx.loaded_policy.resolve(relative)
    if not path.is_file():
        raise FileNotFoundError(f"checks.mc_dropout.ood: file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".parquet", ".pq"):
        frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
        missing = [c for c in ctx.features if c not in frame.columns]
        if missing:
            raise ValueError(f"checks.mc_dropout.ood: {path.name} lacks the model's feature columns {missing}")
        return ctx.model.to_tensor(frame[ctx.features])
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z.files:
                raise ValueError(f"checks.mc_dropout.ood: {path.name} has no array `x` (has {z.files})")
            x = z["x"]
        prep = ctx.preprocessing
        if prep is None:
            raise ValueError(f"checks.mc_dropout.ood: {path.name} is an npz image file but the audit's data are "
                             "not images; give a csv or parquet file with the model's feature columns")
        from audit.artifacts.images import split_from_arrays, standardise

        # read like the audit's own npz data (layout, 8-bit scaling, channels, size); labels are not needed
        raw = split_from_arrays(x, np.zeros(x.shape[:1]), {}, name=path.name,
                                where=ctx.loaded_policy.where("checks", "mc_dropout", "ood"),
                                key="checks.mc_dropout.ood", channels=prep.channels, size=tuple(prep.size),
                                layout="auto").raw
        return ctx.model.to_tensor(standardise(raw, prep))
    raise ValueError(f"checks.mc_dropout.ood: {path.name}: expected a .csv, .parquet or .npz file")


def _referral_by_group(ctx: AuditContext, sens: pd.DataFrame, u: np.ndarray, correct: np.ndarray,
                       threshold: float | None, config: MCDropoutConfig,
                       rng: np.random.Generator) -> tuple[list[Metric], list[Finding]]:
    """Mean uncertainty, referral rate and accuracy per group; the lowest-to-highest referral ratio."""
    referred = np.ones(len(u), bool) if threshold is None else u > threshold
    bound = config.thresholds.get("referral_rate_ratio")
    metrics: list[Metric] = []
    findings: list[Finding] = []
    worst: Metric | None = None
    for feature in ctx.sensitive_features:
        col = sens[feature].astype(str).to_numpy()
        values = sorted(np.unique(col))
        big = []
        for value in values:
            idx = np.flatnonzero(col == value)
            group = f"{feature}={value}"
            metrics += [Metric("count", float(len(idx)), group=group),
                        Metric("mean_uncertainty", float(u[idx].mean()), group=group),
                        Metric("referral_rate", float(referred[idx].mean()), group=group),
                        Metric("accuracy", float(correct[idx].mean()), group=group)]
            if len(idx) >= config.min_group_size:
                big.append(value)
        if len(big) < 2:
            continue
        codes = np.searchsorted(np.asarray(big), col)
        keep = np.isin(col, big)

        def ratio(i: np.ndarray, codes: np.ndarray = codes, keep: np.ndarray = keep, k: int = len(big)) -> float:
            i = i[keep[i]]
            cnt = np.bincount(codes[i], minlength=k)
            if (cnt == 0).any():
                return float("nan")
            rates = np.bincount(codes[i], weights=referred[i], minlength=k) / cnt
            return 1.0 if rates.max() == 0 else float(rates.min() / rates.max())

        value = ratio(np.arange(len(u)))
        lo, hi = bootstrap_ci(ratio, len(u), n_boot=config.n_boot, confidence=config.confidence, rng=rng)
        m = Metric("referral_rate_ratio", value, ci_low=lo, ci_high=hi,
                   description=MC_METRICS["referral_rate_ratio"] + f" Here: {feature}.")
        if worst is None or value < (worst.value or 0):
            worst = m
        rates = {v: float(referred[col == v].mean()) for v in big}
        hi_g, lo_g = max(rates, key=rates.__getitem__), min(rates, key=rates.__getitem__)
        judged = judge_metric(m, bound) if bound is not None else None
        if judged is not None and judged.status is not None and judged.status.value in ("warn", "fail"):
            findings.append(Finding(
                "fail" if judged.status.value == "fail" else "warn",
                f"{feature}={hi_g} is referred to a person in {rates[hi_g]:.1%} of cases, {feature}={lo_g} in "
                f"{rates[lo_g]:.1%}: ratio {value:.2f}; referral_rate_ratio must be {bound.describe()}"
                + (f" ({judged.note})" if judged.note else ""), metric="referral_rate_ratio",
                evidence=[{"group": f"{feature}={v}", "referral_rate": r, "n": int((col == v).sum())}
                          for v, r in rates.items()]))
    if worst is not None:
        metrics.append(worst)
    return metrics, findings
