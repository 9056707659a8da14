"""SHAP attributions: which features drive the model, globally and for chosen rows; sensitive features' weight."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from audit.context import AuditContext
from audit.plotting import PALETTE, figure, to_svg
from audit.registry import Check, CheckConfig, Requires, register
from audit.results import CheckResult, Figure, Finding, Metric, Table
from checks._explain import OBLIGATIONS, Attributions, ShapParams, params_for, rank_of, shap_attributions

_D = ShapParams()
DEFAULT_PROXY_AUC = 0.7  # the fairness check's default: a feature flagged there counts here

METRICS = {
    "best_sensitive_rank": "Best (smallest) rank that any sensitive feature reaches among the model's features by "
    "mean |SHAP| (1 = most important); infinite when the model is given no sensitive feature.",
    "sensitive_share": "Share of the total mean |SHAP| carried by sensitive features and by their proxies "
    "(features whose proxy AUC is at least proxy_auc).",
    "additivity_error": "Largest |base value + sum of SHAP values - model output| over the explained rows.",
}


class ShapConfig(CheckConfig):
    """Options of the ``shap`` check."""

    split: Literal["test", "train"] | None = Field(
        None, description="Rows to explain. Default: test when given, else train.")
    explain_rows: int = Field(
        _D.explain_rows, ge=1, description="Rows explained (a seeded random sample of the split when it has more).")
    background_rows: int = Field(
        _D.background_rows, ge=1, description="Background rows from the training data (linear and model-agnostic "
        "explainers; k-means centres for Kernel SHAP). Tree SHAP needs none.")
    agnostic_explainer: Literal["kernel", "permutation"] = Field(
        _D.agnostic_explainer, description="Explainer for models without an exact SHAP algorithm (ONNX, others).")
    agnostic_rows: int = Field(
        _D.agnostic_rows, ge=1, description="Rows explained at most by the model-agnostic explainer (its cost is "
        "rows x nsamples x background model evaluations).")
    nsamples: int | None = Field(
        _D.nsamples, ge=1, description="Model-agnostic explainer: coalitions per row (Kernel; default shap's "
        "'auto', 2 x features + 2048) or max_evals (Permutation; default 10 x (2 x features + 1)).")
    rows: list[int] = Field(
        default_factory=list, description="Row positions in the split (0-based) to explain and draw as waterfall "
        "plots, besides the ones the check picks.")
    waterfalls: bool = Field(
        True, description="Draw waterfall plots for the rows the check picks: highest and lowest score and the "
        "most confident errors.")
    proxy_auc: float | None = Field(
        None, gt=0.5, le=1.0, description="A feature whose one-feature AUC for predicting a sensitive attribute "
        "(audit.proxies) is at least this counts as its proxy in sensitive_share. Default: the fairness check's "
        f"proxy_auc when the policy runs it (the proxies it flags), else {DEFAULT_PROXY_AUC}.")
    max_display: int = Field(12, ge=1, le=50, description="Features shown in the plots (the rest are summed).")


@register
class Shap(Check[ShapConfig]):
    """SHAP values with the exact explainer where one exists; global importance, waterfalls, sensitive features."""

    id: ClassVar[str] = "shap"
    title: ClassVar[str] = "Feature attributions (SHAP)"
    description: ClassVar[str] = (
        "Which features drive the model's scores, by SHAP values (exact Tree or Linear SHAP where possible, "
        "Kernel or Permutation SHAP otherwise): global importance, explanations of individual rows, and how much "
        "of the model's behaviour rests on sensitive features and their proxies.")
    config_model = ShapConfig
    applies_to: ClassVar[Requires] = Requires(needs=frozenset({"tabular", "probabilities"}))
    obligations: ClassVar[tuple[str, ...]] = OBLIGATIONS
    metric_names: ClassVar[dict[str, str]] = METRICS
    default_thresholds: ClassVar[dict[str, dict[str, float]]] = {
        "best_sensitive_rank": {"min": 6},
        "sensitive_share": {"max": 0.05},
        "additivity_error": {"max": 1e-3},
    }

    def run(self, ctx: AuditContext, config: ShapConfig) -> CheckResult:
        """Compute (or reuse) the SHAP values, then measure, rank and draw."""
        split = ctx.resolve_split(config.split)
        params = params_for(ctx, ShapParams, config)
        att = shap_attributions(ctx, params)
        features = list(ctx.features)
        importance = np.abs(att.values).mean(axis=0)
        total = float(importance.sum())
        ranks = rank_of(importance)
        sensitive = [f for f in ctx.sensitive_features if f in features]
        proxies, proxy_note = _proxies(ctx, config, sensitive)
        flagged = set(sensitive) | set(proxies)

        metrics, findings, notes = [], [], []
        if sensitive:
            best = min(sensitive, key=lambda f: ranks[features.index(f)])
            best_rank = int(ranks[features.index(best)])
            metrics.append(Metric("best_sensitive_rank", float(best_rank), description=METRICS["best_sensitive_rank"]))
            for f in sorted(sensitive, key=lambda f: ranks[features.index(f)]):
                j = features.index(f)
                share = importance[j] / total if total > 0 else 0.0
                findings.append(Finding("info", f"sensitive feature {f!r} is a model input: rank {ranks[j]} of "
                                        f"{len(features)} by mean |SHAP| ({share:.1%} of the total)",
                                        metric="best_sensitive_rank",
                                        evidence=[{"feature": f, "rank": int(ranks[j]), "share": share}]))
        else:
            # ranked after every feature, however few the features: +inf (JSON null), which passes any minimum
            metrics.append(Metric("best_sensitive_rank", float("inf"), description=METRICS["best_sensitive_rank"],
                                  note="no sensitive feature is a model input: ranked after all "
                                  f"{len(features)} features (infinite rank)"))
            notes.append("No sensitive feature is among the model's inputs: best_sensitive_rank is infinite (shown "
                         "as n/a, null in result.json, and passes any minimum); sensitive_share still counts their "
                         "proxies.")
        share = sum(importance[features.index(f)] for f in flagged) / total if total > 0 else None
        metrics.append(Metric("sensitive_share", None if share is None else float(share),
                              description=METRICS["sensitive_share"]))
        for f, (s_name, auc) in sorted(proxies.items(), key=lambda kv: ranks[features.index(kv[0])]):
            j = features.index(f)
            s = importance[j] / total if total > 0 else 0.0
            findings.append(Finding("info", f"{f!r} is a proxy of sensitive {s_name!r} (AUC {auc:.2f} >= proxy_auc "
                                    f"{proxy_auc(ctx, config)}): rank {ranks[j]}, {s:.1%} of the total mean |SHAP|",
                                    metric="sensitive_share",
                                    evidence=[{"feature": f, "sensitive": s_name, "auc": auc, "rank": int(ranks[j]),
                                               "share": s}]))
        err = np.abs(att.base + att.values.sum(axis=1) - att.output)
        metrics.append(Metric("additivity_error", float(err.max()) if len(err) else None,
                              description=METRICS["additivity_error"]))

        notes += [
            f"Explainer: {att.explainer}; why: {att.reason}.",
            f"Explained: the {att.output_label} (the model's own output scale for this explainer; LIME in this "
            "audit explains the same quantity).",
            f"Rows: {len(att.rows)} of the {len(ctx.X(split))} rows of the {split} split (a seeded random sample "
            f"when explain_rows={config.explain_rows} is smaller; plus the rows the policy names).",
            f"Additivity: base value + sum of SHAP values against the model's output; largest error {err.max():.2e}, "
            f"mean {err.mean():.2e}.",
            *att.notes,
        ]
        if att.background_rows:
            notes.append(f"Background: {att.background_rows} rows of the training data (seeded sample).")
        if proxy_note:
            notes.append(proxy_note)

        order = np.argsort(-importance, kind="stable")
        table = Table("shap_importance", "Global importance (mean |SHAP|)",
                      ["rank", "feature", "mean |SHAP|", "share", "flag"],
                      [[int(ranks[j]), features[j], float(importance[j]),
                        float(importance[j] / total) if total > 0 else 0.0, _flag(features[j], sensitive, proxies)]
                       for j in order])
        figures = [_bar(features, importance, flagged, att, config.max_display),
                   _beeswarm(ctx, att, importance, config.max_display)]
        for row, why in _waterfall_rows(ctx, att, config):
            figures.append(_waterfall(ctx, att, row, why, config.max_display))
        top = ", ".join(features[j] for j in order[:3])
        return CheckResult(check_id=self.id, summary=f"top features: {top} ({att.explainer.split(' ')[0]}, "
                           f"{len(att.rows)} rows)", metrics=metrics, findings=findings, figures=figures,
                           tables=[table], notes=notes)


def _proxies(ctx: AuditContext, config: ShapConfig, sensitive: list[str]) -> tuple[dict[str, tuple[str, float]], str]:
    """Model features that are proxies (AUC >= proxy_auc) of a sensitive attribute: feature -> (attribute, AUC)."""
    if not ctx.sensitive_features:
        return {}, ""
    from audit.proxies import proxy_scores

    bar = proxy_auc(ctx, config)
    scores = proxy_scores(ctx)
    found: dict[str, tuple[str, float]] = {}
    for rec in scores.itertuples(index=False):
        if rec.feature in sensitive or rec.feature not in ctx.features or not np.isfinite(rec.auc):
            continue
        if rec.auc >= bar and (rec.feature not in found or rec.auc > found[rec.feature][1]):
            found[rec.feature] = (rec.sensitive, float(rec.auc))
    method = scores.attrs.get("method", "")
    source = "shap.proxy_auc" if config.proxy_auc is not None else (
        "the fairness check's proxy_auc" if "fairness" in ctx.loaded_policy.configs else "the default")
    candidates = scores[scores["feature"].isin(ctx.features) & ~scores["feature"].isin(sensitive)]
    strongest = ""
    if len(candidates) and np.isfinite(candidates["auc"].iloc[0]):
        top = candidates.iloc[0]
        strongest = f" Strongest pair: {top['feature']!r} for {top['sensitive']!r}, AUC {top['auc']:.2f}."
    note = (f"Proxies: features with a one-feature AUC >= {bar} ({source}) for a sensitive attribute count "
            f"towards sensitive_share ({len(found)} found: {', '.join(found) or 'none'}).{strongest} {method}")
    return found, note


def proxy_auc(ctx: AuditContext, config: ShapConfig) -> float:
    """The proxy AUC bar: the option, else the fairness check's in this policy, else the default."""
    if config.proxy_auc is not None:
        return config.proxy_auc
    fairness = ctx.loaded_policy.configs.get("fairness")
    value = getattr(fairness, "proxy_auc", None)
    return float(value) if isinstance(value, int | float) else DEFAULT_PROXY_AUC


def _flag(feature: str, sensitive: list[str], proxies: dict[str, tuple[str, float]]) -> str:
    if feature in sensitive:
        return "sensitive"
    if feature in proxies:
        return f"proxy of {proxies[feature][0]} (AUC {proxies[feature][1]:.2f})"
    return ""


def _bar(features: list[str], importance: np.ndarray, flagged: set[str], att: Attributions, k: int) -> Figure:
    order = np.argsort(-importance, kind="stable")
    shown = order[:k]
    names = [features[j] for j in shown][::-1]
    vals = importance[shown][::-1]
    colors = [PALETTE[3] if n in flagged else PALETTE[0] for n in names]
    rest = len(order) - len(shown)
    with figure(width=6.0, height=0.8 + 0.28 * (len(shown) + (1 if rest else 0))) as (fig, ax):
        if rest:
            names = [f"{rest} other features", *names]
            vals = np.concatenate([[importance[order[k:]].sum()], vals])
            colors = [PALETTE[5], *colors]
        ax.barh(range(len(names)), vals, color=colors, height=0.7)
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel(f"mean |SHAP value| ({att.output_label})")
        for i, v in enumerate(vals):
            ax.text(v, i, f" {v:.3g}", va="center", fontsize=7, color="#333")
        data = to_svg(fig)
    caption = (f"Mean absolute SHAP value per feature over {len(att.rows)} rows of the {att.split} split. "
               "Red bars: sensitive features and their proxies.")
    return Figure("shap_bar", "Global feature importance (mean |SHAP|)", data, caption=caption,
                  alt="Horizontal bar chart of mean absolute SHAP value per feature, largest at the top: "
                  + ", ".join(f"{features[j]} {importance[j]:.3g}" for j in order[:5]) + ".")


def _beeswarm(ctx: AuditContext, att: Attributions, importance: np.ndarray, k: int) -> Figure:
    features = list(ctx.features)
    order = np.argsort(-importance, kind="stable")[:k]
    X = ctx.X(att.split).iloc[att.rows]
    rng = np.random.default_rng(0)  # jitter only: the same rows give the same picture
    n = len(att.rows)
    keep = np.sort(rng.choice(n, size=min(n, 2000), replace=False))
    with figure(width=6.4, height=0.9 + 0.32 * len(order)) as (fig, ax):
        for pos, j in enumerate(order[::-1]):
            v = att.values[keep, j]
            x = X.iloc[keep, j].to_numpy(dtype=float)
            lo, hi = np.nanpercentile(x, [5, 95]) if np.isfinite(x).any() else (0.0, 1.0)
            if hi <= lo and np.isfinite(x).any():  # a rare value (a 0/1 flag): colour by the full range
                lo, hi = np.nanmin(x), np.nanmax(x)
            c = np.clip((x - lo) / (hi - lo), 0, 1) if hi > lo else np.full(len(x), 0.5)
            y = pos + _swarm_offsets(v, rng)
            sc = ax.scatter(v, y, c=c, cmap="coolwarm", vmin=0, vmax=1, s=6, linewidths=0, rasterized=True)
        ax.axvline(0, color="#999", lw=0.8)
        ax.set_yticks(range(len(order)), [features[j] for j in order[::-1]])
        ax.set_xlabel(f"SHAP value ({att.output_label})")
        cb = fig.colorbar(sc, ax=ax, ticks=[0, 1], aspect=30, pad=0.01)
        cb.ax.set_yticklabels(["low", "high"])
        cb.set_label("feature value", fontsize=8)
        cb.outline.set_visible(False)
        data = to_svg(fig)
    return Figure("shap_beeswarm", "SHAP values per row (beeswarm)", data,
                  caption=f"Each dot is one of {len(keep)} rows: its SHAP value for the feature (x) coloured by the "
                  "feature's value (blue low, red high, 5th-95th percentile). Spread shows how differently the "
                  "feature acts across rows; colour shows the direction.",
                  alt="Beeswarm plot of SHAP values per feature, features ordered by importance.")


def _swarm_offsets(v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Vertical offsets that widen where values are dense (a cheap beeswarm)."""
    if len(v) < 2 or np.ptp(v) == 0:
        return rng.uniform(-0.3, 0.3, len(v))
    bins = np.linspace(v.min(), v.max(), 60)
    idx = np.clip(np.digitize(v, bins), 0, len(bins))
    counts = np.bincount(idx, minlength=len(bins) + 1)
    width = 0.38 * counts[idx] / counts.max()
    return rng.uniform(-1, 1, len(v)) * width


def _waterfall_rows(ctx: AuditContext, att: Attributions, config: ShapConfig) -> list[tuple[int, str]]:
    """(index into att.rows, why) for the waterfall plots: named rows, then highest, lowest, worst errors."""
    picked = [(int(i), "named in the policy") for i in att.subset(np.asarray(config.rows, dtype=int))]
    if config.waterfalls and len(att.rows):
        out = att.output
        y = ctx.y(att.split)[att.rows]
        pred = ctx.predict(att.split)[att.rows]
        wrong = np.flatnonzero(y != pred)
        cands = [(int(np.argmax(out)), "highest score"), (int(np.argmin(out)), "lowest score")]
        if ctx.task == "binary_classification":
            fp = wrong[pred[wrong] == ctx.positive_label]
            fn = wrong[pred[wrong] != ctx.positive_label]
            if len(fp):
                cands.append((int(fp[np.argmax(out[fp])]), "most confident false positive"))
            if len(fn):
                cands.append((int(fn[np.argmin(out[fn])]), "most confident false negative"))
        elif len(wrong):
            cands.append((int(wrong[np.argmax(out[wrong])]), "most confident error"))
        picked += cands
    seen, unique = set(), []
    for i, why in picked:
        if i not in seen:
            seen.add(i)
            unique.append((i, why))
    return unique


def _waterfall(ctx: AuditContext, att: Attributions, i: int, why: str, k: int) -> Figure:
    features = list(ctx.features)
    row = int(att.rows[i])
    v = att.values[i]
    X = ctx.X(att.split).iloc[row]
    order = np.argsort(-np.abs(v), kind="stable")
    shown = list(order[: k - 1]) if len(order) > k else list(order)
    rest = [j for j in order if j not in shown]
    labels = [f"{features[j]} = {_fmt_value(X.iloc[j])}" for j in shown]
    contrib = [float(v[j]) for j in shown]
    if rest:
        labels.append(f"{len(rest)} other features")
        contrib.append(float(v[rest].sum()))
    labels, contrib = labels[::-1], contrib[::-1]  # smallest at the bottom: the bars build up to the output
    base = float(att.base[i])
    start = base + np.concatenate([[0], np.cumsum(contrib)[:-1]])
    with figure(width=6.4, height=1.0 + 0.3 * len(labels)) as (fig, ax):
        for y, (s, c) in enumerate(zip(start, contrib, strict=True)):
            ax.barh(y, c, left=s, color=PALETTE[3] if c > 0 else PALETTE[0], height=0.65)
            ax.text(s + c if c > 0 else s, y, f" {c:+.3g}", va="center", fontsize=7, color="#333")
        ax.axvline(base, color="#999", lw=0.8, ls="--")
        ax.axvline(att.output[i], color="#222", lw=0.8)
        ax.set_yticks(range(len(labels)), labels)
        ax.margins(x=0.12)  # room for the value labels
        ax.set_xlabel(f"{att.output_label}: base {base:.3g} -> output {att.output[i]:.3g}")
        data = to_svg(fig)
    y_true = ctx.y(att.split)[row]
    return Figure(f"shap_waterfall_row{row}", f"Row {row}, {why}: {att.output_label} {att.output[i]:.3g}", data,
                  caption=f"Row {row} of the {att.split} split (true label {y_true!r}): from the base value (dashed, "
                  "the average output) each feature's SHAP value moves the score up (red) or down (blue) to the "
                  "model's output (solid line).",
                  alt=f"Waterfall plot for row {row}: largest contributions "
                  + ", ".join(f"{features[j]} {v[j]:+.3g}" for j in order[:3]) + ".")


def _fmt_value(x: Any) -> str:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    return f"{f:.4g}"
