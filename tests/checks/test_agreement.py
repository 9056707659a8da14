"""The ``explanation_agreement`` check: known answers, reuse of the shap and lime checks' work, the report parts."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import pytest

from audit.artifacts import load_artifacts
from audit.context import AuditContext
from audit.policy import load_policy
from audit.registry import default_registry
from audit.results import Status
from audit.runner import run_checks
from checks._explain import LimeParams, ShapParams, params_for, shap_attributions
from checks.agreement import agreement

FEATURES = ["a", "b", "c", "d", "e", "f"]


def test_identical_attributions_agree_perfectly() -> None:
    x = np.random.default_rng(0).normal(size=(7, 6))
    for method in ("spearman", "kendall"):
        corr, overlap, signs = agreement(x, x.copy(), k=3, correlation=method)
        np.testing.assert_allclose(corr, 1.0)
        np.testing.assert_allclose(overlap, 1.0)
        np.testing.assert_allclose(signs, 1.0)


def test_known_disagreement() -> None:
    a = np.array([[4.0, 3.0, 2.0, 1.0]])
    b = np.array([[-1.0, 2.0, 3.0, -4.0]])  # importance order reversed
    corr, overlap, signs = agreement(a, b, k=2, correlation="spearman")
    assert corr[0] == pytest.approx(-1.0)
    assert overlap[0] == 0.0  # a's top-2 {0, 1}, b's top-2 {3, 2}
    assert signs[0] == pytest.approx(0.5)  # feature 0: + vs -, feature 1: + vs +
    corr_k, _, _ = agreement(a, b, k=2, correlation="kendall")
    assert corr_k[0] == pytest.approx(-1.0)
    const, _, _ = agreement(np.ones((1, 4)), b, k=2)
    assert np.isnan(const[0])  # no ranking to correlate


@pytest.fixture(scope="session")
def setup() -> tuple[Any, pd.DataFrame, pd.DataFrame]:
    import xgboost as xgb

    rng = np.random.default_rng(2)
    X = rng.normal(0, 1, (700, len(FEATURES)))
    y = (X @ np.array([2.0, -1.5, 1.0, 0.6, 0.3, 0.0]) + rng.normal(0, 0.7, len(X)) > 0).astype(int)
    df = pd.DataFrame(X, columns=FEATURES).assign(label=y)
    train, test = df.iloc[:500].reset_index(drop=True), df.iloc[500:].reset_index(drop=True)
    model = xgb.XGBClassifier(n_estimators=30, max_depth=3, random_state=0, n_jobs=1).fit(train[FEATURES],
                                                                                        train["label"])
    return model, train, test


def context(setup: Any, checks: dict[str, Any]) -> AuditContext:
    model, train, test = setup
    lp = load_policy({"version": 1, "audit": {"name": "agreement tests"}, "seed": 4,
                      "model": {"task": "binary_classification"},
                      "data": {"target": "label", "positive_label": 1}, "checks": checks})
    return AuditContext(lp, load_artifacts(lp, model=model, data={"train": train, "test": test}))


LIME = {"explain_rows": 6, "stability_runs": 2, "num_samples": 1500}


def test_reuses_what_shap_and_lime_computed(setup: Any) -> None:
    ctx = context(setup, {"shap": {"explain_rows": 60}, "lime": LIME, "explanation_agreement": {"show_rows": 2}})
    results = {r.check_id: r for r in run_checks(ctx, ctx.loaded_policy, default_registry())}
    assert all(r.error is None for r in results.values()), [r.error for r in results.values()]
    computed = [k for k in ctx._cache if isinstance(k, tuple) and k[0] == "attributions"]
    assert sorted(k[1] for k in computed) == ["lime", "shap"]  # once each: the agreement check added none
    check = results["explanation_agreement"]
    values = {m.name: m.value for m in check.metrics}
    assert -1.0 <= values["rank_correlation"] <= 1.0 and 0.0 <= values["top_k_overlap"] <= 1.0
    assert check.status in (Status.PASS, Status.WARN, Status.FAIL)
    assert len(next(t for t in check.tables if t.id == "agreement_rows").rows) == 6
    worst = next(t for t in check.tables if t.id == "agreement_worst")
    assert len({r[0] for r in worst.rows}) == 2
    assert [f.id for f in check.figures] == ["agreement_worst"]
    assert sum(f.metric == "rank_correlation" and "disagree most on row" in f.message for f in check.findings) == 2


def test_identical_attributions_end_to_end(setup: Any) -> None:
    """With LIME's cache entry replaced by SHAP's own values for the same rows, every agreement measure is 1."""
    ctx = context(setup, {"explanation_agreement": {}})
    sp, lp = params_for(ctx, ShapParams), params_for(ctx, LimeParams)
    shap_att = shap_attributions(ctx, sp)
    ctx._cache[("attributions", "lime", lp)] = dataclasses.replace(shap_att, method="lime", rows=shap_att.rows[:5],
                                                                   values=shap_att.values[:5])
    check = run_checks(ctx, ctx.loaded_policy, default_registry())[0]
    values = {m.name: m.value for m in check.metrics}
    assert values["rank_correlation"] == pytest.approx(1.0)
    assert values["top_k_overlap"] == pytest.approx(1.0)
    assert values["sign_agreement"] == pytest.approx(1.0)
    assert values["global_rank_correlation"] == pytest.approx(1.0)
    assert check.status is Status.PASS
    assert any("not in the policy" in n for n in check.notes)


def test_different_splits_are_refused(setup: Any) -> None:
    ctx = context(setup, {"shap": {"split": "train", "explain_rows": 20}, "explanation_agreement": {}})
    results = {r.check_id: r for r in run_checks(ctx, ctx.loaded_policy, default_registry())}
    assert results["shap"].error is None
    check = results["explanation_agreement"]
    assert check.status is Status.ERROR
    assert "shap explains the train split and lime the test split" in check.error.message
