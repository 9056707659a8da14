"""Attributions shared by the ``shap``, ``lime`` and ``explanation_agreement`` checks.

Each method's attributions are computed once per audit through the context cache, under
``("attributions", method, params)``; ``explanation_agreement`` asks for the same keys (built from the policy's
``shap``/``lime`` options, or their defaults when those checks are not in the policy), so it reuses what the two
checks computed or computes it itself through the same code.

What is explained, for every method alike: the score of one class per row (binary tasks: the positive class;
multiclass: the row's predicted class), on one scale per audit (``output_scale``): the log-odds, unless the
model is a tree ensemble whose trees hold probabilities (random forests, extra trees), where it is the
probability. Rows are a seeded random sample of the split, in one order shared by all methods, so that the
rows LIME explains are among the rows SHAP explains whenever LIME explains fewer.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from audit.context import AuditContext

_EPS = 1e-12
# what explanations evidence: meaningful information about the logic involved (GDPR), transparency and the
# documented design logic (AI Act); shared by the shap, lime and explanation_agreement checks
OBLIGATIONS = ("gdpr.art13.2.f", "gdpr.art14.2.g", "gdpr.art15.1.h", "gdpr.art22", "eu_ai_act.art13",
               "eu_ai_act.annex_iv.2.b")


# -- what is explained ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Output:
    """The explained quantity: ``scale`` (``log_odds`` or ``probability``) of class ``classes[i]`` for each row."""

    scale: str
    label: str  # for plots and notes, e.g. "log-odds of 'yes'"

    def apply(self, proba: np.ndarray) -> np.ndarray:
        """Probabilities ``(n, k)`` -> the explained scale, same shape."""
        if self.scale == "probability":
            return proba
        p = np.clip(proba, _EPS, 1 - _EPS)
        return np.log(p) - np.log1p(-p)


def output_scale(ctx: AuditContext) -> Output:
    """The scale every method explains in this audit (see the module docstring)."""

    def compute() -> Output:
        scale = "log_odds"
        tree = _tree_explainer(ctx)
        if tree is not None and getattr(tree.model, "tree_output", None) == "probability":
            scale = "probability"
        if ctx.task == "binary_classification":
            what = f"{'log-odds' if scale == 'log_odds' else 'probability'} of {ctx.positive_label!r}"
        else:
            what = f"{'log-odds' if scale == 'log_odds' else 'probability'} of the predicted class"
        return Output(scale, what)

    return ctx.cached(("explain_output",), compute)


def explained_classes(ctx: AuditContext, split: str, rows: np.ndarray) -> np.ndarray:
    """Column of ``ctx.proba`` explained for each row: the positive class, or (multiclass) the predicted one."""
    if ctx.task == "binary_classification" and ctx.positive_index is not None:
        return np.full(len(rows), ctx.positive_index, dtype=int)
    proba = ctx.proba(split)
    return np.asarray(proba)[rows].argmax(axis=1).astype(int)


def row_order(ctx: AuditContext, split: str) -> np.ndarray:
    """A seeded permutation of the split's rows; every method explains a prefix of it."""
    return ctx.cached(("explain_order", split), lambda: ctx.rng(f"explain.rows.{split}").permutation(len(ctx.X(split))))


def choose_rows(ctx: AuditContext, split: str, n: int, named: tuple[int, ...] = ()) -> np.ndarray:
    """Positions of the first ``n`` rows of ``row_order`` plus the ``named`` ones, sorted."""
    size = len(ctx.X(split))
    bad = [r for r in named if not 0 <= r < size]
    if bad:
        raise ValueError(f"rows {bad} are not positions in the {split} split (it has {size} rows, 0..{size - 1})")
    return np.unique(np.concatenate([row_order(ctx, split)[:n], np.asarray(named, dtype=int)])).astype(int)


def _model_frame(ctx: AuditContext, values: np.ndarray) -> pd.DataFrame:
    """A numeric matrix back into a frame the model reads (the features' names, numeric dtypes kept as float)."""
    return pd.DataFrame(np.asarray(values, dtype=float), columns=ctx.features)


def scores(ctx: AuditContext, out: Output, X: pd.DataFrame) -> np.ndarray:
    """All classes' scores on the explained scale, ``(n, k)``, from the model's probabilities."""
    return out.apply(ctx.model.predict_proba(X))


def explained_scores(ctx: AuditContext, out: Output, split: str, rows: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The explained score of each of a split's ``rows``, from the probabilities the context already holds."""
    return out.apply(np.asarray(ctx.proba(split))[rows])[np.arange(len(rows)), classes]


# -- results ------------------------------------------------------------------------------------------------------
@dataclass
class Attributions:
    """Attributions of one method for some rows of one split.

    ``values[i, j]`` is feature ``j``'s contribution to row ``rows[i]``'s explained score; ``base`` and ``output``
    are the method's intercept and the explained score (SHAP: expected value and model output; LIME: the
    surrogate's intercept and the model's score). ``runs`` (LIME) holds each stability run's weights,
    ``(n_runs, n_rows, n_features)``; ``values`` is then their mean.
    """

    method: str
    split: str
    rows: np.ndarray
    classes: np.ndarray
    values: np.ndarray
    base: np.ndarray
    output: np.ndarray
    output_label: str
    explainer: str
    reason: str
    notes: list[str] = field(default_factory=list)
    runs: np.ndarray | None = None
    fidelity: np.ndarray | None = None
    background_rows: int = 0

    def subset(self, rows: np.ndarray) -> np.ndarray:
        """Indices into ``self.rows`` of the given row positions (which must all be present)."""
        pos = {int(r): i for i, r in enumerate(self.rows)}
        return np.array([pos[int(r)] for r in rows], dtype=int)


# -- SHAP ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShapParams:
    """What determines the SHAP attributions (the cache key); defaults are the ``shap`` check's defaults."""

    split: str | None = None
    explain_rows: int = 1000
    background_rows: int = 100
    agnostic_explainer: str = "kernel"
    agnostic_rows: int = 200
    nsamples: int | None = None
    rows: tuple[int, ...] = ()


@dataclass(frozen=True)
class LimeParams:
    """What determines the LIME attributions (the cache key); defaults are the ``lime`` check's defaults."""

    split: str | None = None
    explain_rows: int = 20
    stability_runs: int = 5
    num_samples: int = 5000
    kernel_width: float | None = None
    discretize_continuous: bool = True
    discretizer: str = "quartile"


def params_for(ctx: AuditContext, cls: type[Any], config: Any = None) -> Any:
    """``cls`` (ShapParams or LimeParams) from a check's config, or its defaults when ``config`` is None.

    The split is resolved (``None`` -> the evaluation split) so that the same options give the same cache key
    whichever check asks.
    """
    kwargs = {k: getattr(config, k) for k in cls.__dataclass_fields__ if hasattr(config, k)} if config else {}
    if "rows" in kwargs:
        kwargs["rows"] = tuple(int(r) for r in kwargs["rows"])
    kwargs["split"] = kwargs.get("split") or ctx.eval_split
    return cls(**kwargs)


def params_from_policy(ctx: AuditContext, check_id: str, cls: type[Any]) -> Any:
    """``cls`` from the policy's options for ``check_id`` (its defaults when the check is not in the policy)."""
    return params_for(ctx, cls, ctx.loaded_policy.configs.get(check_id))


def _tree_explainer(ctx: AuditContext) -> Any:
    """A shap TreeExplainer for XGBoost and scikit-learn tree ensembles (``None`` for other models)."""

    def compute() -> Any:
        if ctx.model.kind not in ("xgboost", "sklearn"):
            return None
        import shap

        native = ctx.model.native
        if ctx.model.kind == "sklearn" and not _is_sklearn_tree(native):
            return None
        try:
            return shap.TreeExplainer(native)
        except Exception:  # an ensemble shap does not parse: the model-agnostic route says so
            return None

    return ctx.cached(("shap_tree_explainer",), compute)


def _is_sklearn_tree(native: Any) -> bool:
    from sklearn.ensemble import BaseEnsemble, HistGradientBoostingClassifier
    from sklearn.tree import BaseDecisionTree

    return isinstance(native, BaseEnsemble | BaseDecisionTree | HistGradientBoostingClassifier)


def _is_sklearn_linear(native: Any) -> bool:
    from sklearn.linear_model._base import LinearClassifierMixin

    return isinstance(native, LinearClassifierMixin) and hasattr(native, "coef_")


def _pick(values: Any, classes: np.ndarray) -> np.ndarray:
    """Per-row class slice of shap's output: ``(n, m)`` stays; ``(n, m, k)`` or a list of k ``(n, m)`` is cut."""
    if isinstance(values, list):
        values = np.stack(values, axis=-1)
    values = np.asarray(values, dtype=float)
    if values.ndim == 2:
        return values
    return values[np.arange(len(classes)), :, classes]


def _pick_base(base: Any, classes: np.ndarray, *, per_row: bool = False) -> np.ndarray:
    """Per-row base value: a scalar, one per class ``(k,)``, one per row ``(n,)`` or per row and class ``(n, k)``."""
    base = np.asarray(base, dtype=float)
    if base.size == 1:
        return np.full(len(classes), float(base.reshape(-1)[0]))
    if base.ndim == 2:
        return base[np.arange(len(classes)), classes]
    return base if per_row else base[classes]


def _reference(ctx: AuditContext, out: Output, X: pd.DataFrame, split: str, rows: np.ndarray, classes: np.ndarray,
               route: str) -> np.ndarray:
    """The model's own output on the explained scale for ``X``, a split's ``rows``, to check additivity against."""
    native = ctx.model.native
    raw: np.ndarray | None = None
    if route in ("tree", "linear") and out.scale == "log_odds":
        if ctx.model.kind == "xgboost":
            raw = np.asarray(native.predict(X, output_margin=True), dtype=float)
        elif hasattr(native, "decision_function"):
            raw = np.asarray(native.decision_function(X), dtype=float)
    if raw is None:
        return explained_scores(ctx, out, split, rows, classes)
    if raw.ndim == 1:
        return raw
    return raw[np.arange(len(classes)), classes]


def shap_attributions(ctx: AuditContext, params: ShapParams) -> Attributions:
    """SHAP values for the params' rows, computed once per audit (cache key ``("attributions", "shap", params)``)."""
    return ctx.cached(("attributions", "shap", params), lambda: _compute_shap(ctx, params))


def _background(ctx: AuditContext, n: int, name: str) -> pd.DataFrame:
    source = ctx.reference_split
    X = ctx.X(source)
    if len(X) <= n:
        return X
    idx = np.sort(ctx.rng(name).choice(len(X), size=n, replace=False))
    return X.iloc[idx]


def _compute_shap(ctx: AuditContext, p: ShapParams) -> Attributions:
    import shap

    split = p.split or ctx.eval_split
    out = output_scale(ctx)
    native = ctx.model.native
    tree = _tree_explainer(ctx)
    notes: list[str] = []
    if tree is not None:
        route = "tree"
        rows = choose_rows(ctx, split, p.explain_rows, p.rows)
        X = ctx.X(split).iloc[rows]
        classes = explained_classes(ctx, split, rows)
        values = _pick(tree.shap_values(X), classes)
        base = _pick_base(tree.expected_value, classes)
        name = "shap.TreeExplainer (path-dependent)"
        reason = (f"exact Tree SHAP for the {type(native).__name__} tree ensemble: exact values in polynomial time, "
                  "no background sample needed (the trees' own training-data cover stands in for it)")
        n_background = 0
    elif ctx.model.kind == "sklearn" and _is_sklearn_linear(native):
        route = "linear"
        rows = choose_rows(ctx, split, p.explain_rows, p.rows)
        X = ctx.X(split).iloc[rows]
        classes = explained_classes(ctx, split, rows)
        bg = _background(ctx, p.background_rows, "shap.background")
        explainer = shap.LinearExplainer(native, shap.maskers.Independent(bg, max_samples=len(bg)))
        values = _pick(explainer.shap_values(X), classes)
        base = _pick_base(explainer.expected_value, classes)
        name = "shap.LinearExplainer (independent features)"
        reason = (f"exact SHAP for the linear {type(native).__name__}: coefficient times the feature's distance "
                  f"from its mean over {len(bg)} background rows, features treated as independent")
        n_background = len(bg)
    else:
        route = "agnostic"
        n_rows = min(p.explain_rows, p.agnostic_rows)
        rows = choose_rows(ctx, split, n_rows, p.rows)
        X = ctx.X(split).iloc[rows]
        classes = explained_classes(ctx, split, rows)
        why = (f"the model ({ctx.model.kind}: {type(native).__name__}) has no exact SHAP algorithm, so a "
               "model-agnostic estimate was used")
        values, base, name, n_background = _agnostic(ctx, p, X, classes, out)
        reason = why
        if n_rows < p.explain_rows:
            notes.append(f"Model-agnostic SHAP costs one model call per coalition and background row: "
                         f"{len(rows)} rows explained (agnostic_rows), not explain_rows={p.explain_rows}.")
    output = _reference(ctx, out, X, split, rows, classes, route)
    return Attributions("shap", split, rows, classes, values, base, output, out.label, name, reason,
                        notes=notes, background_rows=n_background)


def _agnostic(ctx: AuditContext, p: ShapParams, X: pd.DataFrame, classes: np.ndarray,
              out: Output) -> tuple[np.ndarray, np.ndarray, str, int]:
    """Kernel SHAP on a k-means summary of the background, or the permutation explainer on a background sample."""
    import shap

    m = len(ctx.features)

    def f(data: Any) -> np.ndarray:  # a plain function, not the bound method (see STACK.md: feature_names_in_)
        s = scores(ctx, out, _model_frame(ctx, data))
        return s[:, classes[0]] if ctx.task == "binary_classification" else s

    Xn = X.to_numpy(dtype=float)
    if p.agnostic_explainer == "kernel":
        bg = _background(ctx, max(10 * p.background_rows, 1000), "shap.background")
        k = min(p.background_rows, len(bg))
        with threadpool_limits(1):  # scikit-learn's KMeans under OpenMP is ~50x slower on a busy 2-core machine
            summary = shap.kmeans(bg.to_numpy(dtype=float), k)
        explainer = shap.KernelExplainer(f, summary)
        nsamples = p.nsamples or "auto"
        # Kernel SHAP samples coalitions from numpy's global generator: seed it from the policy seed, so the
        # values do not depend on which check (shap or explanation_agreement) computed them first
        np.random.seed(int(ctx.rng("shap.kernel").integers(0, 2**31 - 1)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = explainer.shap_values(Xn, nsamples=nsamples, silent=True)
        base = explainer.expected_value
        name = f"shap.KernelExplainer on a {k}-centre k-means summary of the background"
        used = k
    else:
        bg = _background(ctx, p.background_rows, "shap.background")
        seed = int(ctx.rng("shap.permutation").integers(0, 2**31 - 1))
        explainer = shap.PermutationExplainer(f, shap.maskers.Independent(bg.to_numpy(dtype=float),
                                                                          max_samples=len(bg)), seed=seed)
        max_evals = p.nsamples or 10 * (2 * m + 1)
        res = explainer(Xn, max_evals=max(max_evals, 2 * m + 1), silent=True)
        values, base = res.values, res.base_values
        name = f"shap.PermutationExplainer on {len(bg)} background rows"
        used = len(bg)
    return _pick(values, classes), _pick_base(base, classes, per_row=p.agnostic_explainer == "permutation"), name, used


# -- LIME ---------------------------------------------------------------------------------------------------------
def lime_attributions(ctx: AuditContext, params: LimeParams) -> Attributions:
    """LIME weights for the params' rows, each explained ``stability_runs`` times with different seeds (cached)."""
    return ctx.cached(("attributions", "lime", params), lambda: _compute_lime(ctx, params))


def lime_explainer(ctx: AuditContext, params: LimeParams) -> Any:
    """A LimeTabularExplainer (regression mode on the explained scale) built on the training data statistics."""
    from lime.lime_tabular import LimeTabularExplainer

    source = ctx.reference_split
    X = ctx.X(source)
    nonnum = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    if nonnum:
        raise ValueError(f"LIME needs numeric features; {nonnum} are not numeric. Encode them in the data the "
                         "model reads, or leave the lime check out of the policy")
    return LimeTabularExplainer(
        X.to_numpy(dtype=float), mode="regression", feature_names=list(ctx.features),
        kernel_width=params.kernel_width, discretize_continuous=params.discretize_continuous,
        discretizer=params.discretizer, random_state=0, verbose=False)


def _compute_lime(ctx: AuditContext, p: LimeParams) -> Attributions:
    split = p.split or ctx.eval_split
    out = output_scale(ctx)
    rows = choose_rows(ctx, split, p.explain_rows)
    X = ctx.X(split).iloc[rows]
    classes = explained_classes(ctx, split, rows)
    explainer = lime_explainer(ctx, p)
    seeds = ctx.rng("lime.seeds").integers(0, 2**31 - 1, size=p.stability_runs)
    m = len(ctx.features)
    runs = np.zeros((p.stability_runs, len(rows), m))
    intercepts = np.zeros((p.stability_runs, len(rows)))
    fidelity = np.zeros((p.stability_runs, len(rows)))
    Xn = X.to_numpy(dtype=float)
    for i, (row, k) in enumerate(zip(rows, classes, strict=True)):

        def f(data: np.ndarray, k: int = int(k)) -> np.ndarray:
            return scores(ctx, out, _model_frame(ctx, data))[:, k]

        for r, seed in enumerate(seeds):
            # one generator per (run, row): a row's explanation does not depend on which other rows are explained
            state = np.random.RandomState(np.random.SeedSequence([int(seed), int(row)]).generate_state(1)[0])
            explainer.random_state = state
            explainer.base.random_state = state
            if explainer.discretizer is not None:
                explainer.discretizer.random_state = state
            exp = explainer.explain_instance(Xn[i], f, num_features=m, num_samples=p.num_samples)
            for j, w in exp.as_map()[1]:
                runs[r, i, j] = w
            intercepts[r, i] = float(np.ravel(exp.intercept[1])[0])
            fidelity[r, i] = float(exp.score)
    output = explained_scores(ctx, out, split, rows, classes)
    width = p.kernel_width or 0.75 * np.sqrt(m)  # LIME's own default
    binning = f"{p.discretizer}-discretised" if p.discretize_continuous else "continuous"
    name = (f"lime.lime_tabular.LimeTabularExplainer ({binning} features, {p.num_samples} samples, "
            f"kernel width {width:.3g})")
    reason = ("a local weighted linear surrogate fitted on perturbed samples around each row, drawn from the "
              "training data's per-feature statistics")
    return Attributions("lime", split, rows, classes, runs.mean(axis=0), intercepts.mean(axis=0), output,
                        out.label, name, reason, runs=runs, fidelity=fidelity.mean(axis=0))


# -- comparing attributions ------------------------------------------------------------------------------------
def top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest ``|values|`` along the last axis (ties broken by feature order)."""
    order = np.argsort(-np.abs(values), axis=-1, kind="stable")
    return order[..., :k]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard overlap of two index sets."""
    sa, sb = set(map(int, a)), set(map(int, b))
    union = sa | sb
    return len(sa & sb) / len(union) if union else 1.0


def rank_of(values: np.ndarray) -> np.ndarray:
    """1-based importance rank of each feature by ``|values|`` (1 = most important; ties by feature order)."""
    order = np.argsort(-np.abs(values), kind="stable")
    ranks = np.empty(len(values), dtype=int)
    ranks[order] = np.arange(1, len(values) + 1)
    return ranks


def mean_finite(x: np.ndarray | None) -> float | None:
    """Mean of the finite entries of ``x``; ``None`` when there are none (or no ``x``)."""
    if x is None:
        return None
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else None
