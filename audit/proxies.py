"""Proxy screen: how well each non-sensitive model feature, alone, predicts each sensitive attribute.

Dropping a sensitive column from a model's inputs does not remove the bias that other features carry on its
behalf (a postcode standing in for ethnicity). ``proxy_scores`` measures, for every pair (model feature,
sensitive attribute), two things:

- ``auc``: the cross-validated ROC AUC of a small seeded classifier (a shallow decision tree on that one
  feature) predicting the sensitive attribute; one-vs-rest, macro-averaged, for attributes with more than two
  values. It is oriented to be at least 0.5 (0.5 = no signal, 1.0 = the feature determines the attribute).
- ``mutual_info``: the mutual information between the feature and the attribute, *normalised* by the
  attribute's entropy (Theil's uncertainty coefficient, in [0, 1]): the share of the uncertainty about the
  attribute that knowing the feature removes.

It computes once per audit and split (through the context cache) and applies no threshold: each check decides
what counts as a proxy with its own policy options.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.feature_selection import mutual_info_classif
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.tree import DecisionTreeClassifier

if TYPE_CHECKING:
    from audit.context import AuditContext

__all__ = ["MAX_ROWS", "MISSING_LABEL", "proxy_scores", "score_proxies"]

MAX_ROWS = 10_000
"""Rows used at most (a seeded random subsample beyond this): enough for AUCs to two decimals."""
MISSING_LABEL = "(missing)"
"""Name of the group of rows whose sensitive value is missing (a group of its own, never dropped)."""
_N_FOLDS = 5
_MAX_DEPTH = 3
_MAX_CATEGORIES = 10  # a numeric sensitive column with more distinct values is cut into quintiles
_MIN_CLASS_ROWS = _N_FOLDS  # classes of the attribute rarer than this are left out of the AUC
_MI_NEIGHBOURS = 3


def proxy_scores(ctx: AuditContext, *, split: str | None = None) -> pd.DataFrame:
    """Proxy strength of every (non-sensitive model feature, sensitive attribute) pair.

    Parameters
    ----------
    ctx : AuditContext
        The audit; its model features, sensitive features, data and seeded RNG are used.
    split : str, optional
        Data to measure on. Default: ``train`` when the policy gives training data (more rows), else
        ``ctx.eval_split``.

    Returns
    -------
    pandas.DataFrame
        One row per (feature, sensitive attribute), columns ``feature``, ``sensitive``, ``auc`` (cross-validated
        ROC AUC of a depth-3 decision tree on that feature alone, one-vs-rest macro for multi-valued attributes,
        oriented so that it is >= 0.5; NaN when the attribute has fewer than two usable values) and
        ``mutual_info`` (normalised: mutual information over the attribute's entropy, in [0, 1]). Sorted by
        ``auc``, strongest first. ``DataFrame.attrs`` holds ``split``, ``n_rows``, ``n_rows_total`` and
        ``method`` (a sentence for method notes). Empty (with these columns) when there are no sensitive
        features or no other model features. Do not modify it: it is shared through the context cache.
    """
    split = ctx.resolve_split(split or ctx.reference_split)

    def compute() -> pd.DataFrame:
        sensitive = list(ctx.sensitive_features)
        features = [f for f in ctx.features if f not in set(sensitive)]
        frame = ctx.frame(split)
        out = score_proxies(frame[features], frame[sensitive], rng=ctx.rng("proxy_scores"))
        out.attrs["split"] = split
        return out

    return ctx.cached(("proxy_scores", split), compute)


def score_proxies(features: pd.DataFrame, sensitive: pd.DataFrame, *, rng: np.random.Generator,
                  max_rows: int = MAX_ROWS) -> pd.DataFrame:
    """The computation behind :func:`proxy_scores`, on plain frames (for use outside an audit).

    Parameters
    ----------
    features : pandas.DataFrame
        Candidate proxy columns (numeric or categorical; missing values allowed).
    sensitive : pandas.DataFrame
        Sensitive attributes, same rows. A missing value is its own group; a numeric column with more than
        10 distinct values is cut into quintiles.
    rng : numpy.random.Generator
        The only source of randomness (subsample, fold assignment, the estimator's jitter).
    max_rows : int, default 10000
        Rows used at most; a seeded random subsample beyond this.

    Returns
    -------
    pandas.DataFrame
        As :func:`proxy_scores`.
    """
    n_total = len(features)
    if n_total > max_rows:
        keep = np.sort(rng.choice(n_total, size=max_rows, replace=False))
        features, sensitive = features.iloc[keep], sensitive.iloc[keep]
    seed = int(rng.integers(0, 2**31 - 1))
    encoded = {name: _encode_feature(features[name]) for name in features.columns}
    rows: list[dict[str, Any]] = []
    binned: list[str] = []
    for s_name in sensitive.columns:
        codes, was_binned = _encode_sensitive(sensitive[s_name])
        if was_binned:
            binned.append(s_name)
        entropy = _entropy(codes)
        for f_name, (x, discrete) in encoded.items():
            rows.append({"feature": f_name, "sensitive": s_name, "auc": _cv_auc(x, codes, seed),
                         "mutual_info": _normalised_mi(x, discrete, codes, entropy, seed)})
    out = pd.DataFrame(rows, columns=["feature", "sensitive", "auc", "mutual_info"])
    out = out.sort_values(["auc", "mutual_info"], ascending=False, kind="stable", na_position="last")
    out = out.reset_index(drop=True)
    n = len(features)
    method = (f"Proxy screen on {n} rows" + (f" (a seeded random sample of {n_total})" if n < n_total else "")
              + f": for each feature alone, the {_N_FOLDS}-fold cross-validated ROC AUC of a depth-{_MAX_DEPTH} "
              "decision tree predicting the sensitive attribute (one-vs-rest macro average when it has more "
              "than two values; oriented >= 0.5), and the mutual information (k-nearest-neighbour estimate for "
              "numeric features, plug-in for categorical ones) divided by the attribute's entropy. Missing "
              "sensitive values form their own group.")
    if binned:
        method += f" Numeric sensitive columns cut into quintiles for the screen: {', '.join(binned)}."
    out.attrs.update({"n_rows": n, "n_rows_total": n_total, "method": method})
    return out


def _encode_feature(col: pd.Series) -> tuple[np.ndarray, bool]:
    """A float column for the tree (NaN kept) and whether it is discrete (categorical or few integers)."""
    if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
        codes = pd.Categorical(col).codes.astype(float)
        codes[codes < 0] = np.nan
        return codes, True
    x = col.to_numpy(dtype=float)
    finite = x[np.isfinite(x)]
    discrete = len(finite) > 0 and bool(np.all(finite == np.round(finite))) and len(np.unique(finite)) <= 20
    return x, discrete


def _encode_sensitive(col: pd.Series) -> tuple[np.ndarray, bool]:
    """Integer codes of a sensitive column: missing values a code of their own; many numbers cut in quintiles."""
    binned = False
    if (pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
            and col.nunique(dropna=True) > _MAX_CATEGORIES):
        col = pd.qcut(col, 5, duplicates="drop")
        binned = True
    labels = col.astype(object).where(col.notna(), MISSING_LABEL).astype(str)
    return pd.Categorical(labels).codes.astype(np.int64), binned


def _entropy(codes: np.ndarray) -> float:
    p = np.bincount(codes) / len(codes) if len(codes) else np.array([])
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _cv_auc(x: np.ndarray, codes: np.ndarray, seed: int) -> float:
    """Cross-validated, oriented ROC AUC of a shallow tree predicting ``codes`` from the single column ``x``."""
    counts = np.bincount(codes)
    usable = np.flatnonzero(counts >= _MIN_CLASS_ROWS)
    if len(usable) < 2:
        return float("nan")
    keep = np.isin(codes, usable)
    x, y = x[keep].reshape(-1, 1), np.searchsorted(usable, codes[keep])
    proba = np.zeros((len(y), len(usable)))
    leaf = max(5, len(y) // 100)
    folds = StratifiedKFold(n_splits=_N_FOLDS, shuffle=True, random_state=seed)
    for tr, te in folds.split(x, y):
        tree = DecisionTreeClassifier(max_depth=_MAX_DEPTH, min_samples_leaf=leaf, random_state=seed)
        tree.fit(x[tr], y[tr])
        proba[np.ix_(te, tree.classes_)] = tree.predict_proba(x[te])
    aucs = []
    for k in range(len(usable)):
        positive = y == k
        if positive.all() or not positive.any():
            continue
        a = roc_auc_score(positive, proba[:, k])
        aucs.append(max(a, 1.0 - a))
        if len(usable) == 2:
            break  # the two one-vs-rest AUCs of a binary attribute are the same number
    return float(np.mean(aucs)) if aucs else float("nan")


def _normalised_mi(x: np.ndarray, discrete: bool, codes: np.ndarray, entropy: float, seed: int) -> float:
    """Mutual information of ``x`` and ``codes`` over the entropy of ``codes`` (0 = independent, 1 = determines)."""
    if entropy <= 0:
        return float("nan")
    if discrete:
        x = np.where(np.isnan(x), -1.0, x)  # missing is a category of its own
        mask = np.ones(len(x), dtype=bool)
    else:
        mask = np.isfinite(x)
    if mask.sum() <= _MI_NEIGHBOURS + 1 or len(np.unique(x[mask])) < 2:
        return 0.0 if mask.sum() > 0 else float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mi = mutual_info_classif(x[mask].reshape(-1, 1), codes[mask], discrete_features=[discrete],
                                 n_neighbors=_MI_NEIGHBOURS, random_state=seed)[0]
    return float(np.clip(mi / entropy, 0.0, 1.0))
