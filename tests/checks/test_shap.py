"""The ``shap`` check: explainer choice, additivity, the sensitive-feature conditions and their proxies."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from audit import run_audit
from audit.artifacts import load_artifacts
from audit.context import AuditContext
from audit.policy import load_policy
from audit.results import Status
from checks._explain import ShapParams, params_for, shap_attributions
from tests.conftest import FEATURES


def make_credit(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    """Toy credit data where the label depends strongly on a numeric sensitive column ``sex`` (0/1).

    ``proxy`` is ``sex`` blurred by noise (a proxy with a one-feature AUC near 0.9); ``noise`` is unrelated.
    """
    rng = np.random.default_rng(seed)
    sex = rng.integers(0, 2, n)
    income, debt, noise = rng.normal(0, 1, n), rng.normal(0, 1, n), rng.normal(0, 1, n)
    proxy = sex + rng.normal(0, 0.45, n)
    logit = 1.5 * income - 1.0 * debt + 2.5 * (sex - 0.5) + rng.normal(0, 0.5, n)
    return pd.DataFrame({"income": income, "debt": debt, "noise": noise, "proxy": proxy, "sex": sex,
                         "label": (logit > 0).astype(int)})


@pytest.fixture(scope="session")
def credit() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) of :func:`make_credit`."""
    df = make_credit()
    return df.iloc[:900].reset_index(drop=True), df.iloc[900:].reset_index(drop=True)


def _xgb(train: pd.DataFrame, features: list[str]) -> Any:
    import xgboost as xgb

    return xgb.XGBClassifier(n_estimators=40, max_depth=3, random_state=0, n_jobs=1).fit(train[features],
                                                                                        train["label"])


def policy(features: list[str], checks: dict[str, Any], *, sensitive: tuple[str, ...] = ("sex",),
           seed: int = 3) -> dict[str, Any]:
    """An in-memory policy: the model and data are passed to run_audit."""
    return {"version": 1, "audit": {"name": "explain tests"}, "seed": seed,
            "model": {"task": "binary_classification"},
            "data": {"target": "label", "positive_label": 1, "sensitive_features": list(sensitive),
                     "features": features},
            "checks": checks}


def run_shap(model: Any, frames: tuple[pd.DataFrame, pd.DataFrame], features: list[str], **options: Any) -> Any:
    train, test = frames
    result = run_audit(policy(features, {"shap": options}), model=model, data={"train": train, "test": test})
    check = result.check("shap")
    assert check.error is None, check.error
    return check


def metric(check: Any, name: str) -> Any:
    return next(m for m in check.metrics if m.name == name)


@pytest.fixture(scope="session")
def with_sex(credit: tuple[pd.DataFrame, pd.DataFrame]) -> Any:
    """The shap check on an XGBoost model given the sensitive column ``sex`` directly."""
    return run_shap(_xgb(credit[0], ["income", "debt", "noise", "sex"]), credit, ["income", "debt", "noise", "sex"])


@pytest.fixture(scope="session")
def without_sex(credit: tuple[pd.DataFrame, pd.DataFrame]) -> Any:
    """Its twin: the same model without ``sex`` (and without its proxy)."""
    return run_shap(_xgb(credit[0], ["income", "debt", "noise"]), credit, ["income", "debt", "noise"])


def test_tree_explainer_for_xgboost_is_additive(without_sex: Any) -> None:
    assert any("shap.TreeExplainer" in n for n in without_sex.notes)
    err = metric(without_sex, "additivity_error")
    assert err.value is not None and err.value < 1e-4
    assert err.status is Status.PASS
    assert {"shap_bar", "shap_beeswarm"} <= {f.id for f in without_sex.figures}
    assert any(f.id.startswith("shap_waterfall_row") for f in without_sex.figures)
    assert all(f.data.startswith(b"<?xml") for f in without_sex.figures)


def test_model_using_the_sensitive_feature_fails_its_twin_passes(with_sex: Any, without_sex: Any) -> None:
    rank = metric(with_sex, "best_sensitive_rank")
    assert rank.value is not None and rank.value <= 2  # sex is one of the two main drivers
    assert rank.status is Status.FAIL and with_sex.status is Status.FAIL
    assert metric(with_sex, "sensitive_share").status is Status.FAIL
    assert any("'sex'" in f.message and "rank" in f.message for f in with_sex.findings)

    twin = metric(without_sex, "best_sensitive_rank")
    assert twin.value == float("inf")  # ranked after every feature: a number (not None) that passes any minimum
    assert twin.status is Status.PASS
    assert metric(without_sex, "sensitive_share").value == pytest.approx(0.0)
    assert without_sex.status is Status.PASS


def test_proxy_counts_towards_sensitive_share(credit: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    features = ["income", "debt", "proxy"]
    model = _xgb(credit[0], features)
    check = run_shap(model, credit, features)
    assert metric(check, "best_sensitive_rank").value == float("inf")  # sex itself is not an input
    share = metric(check, "sensitive_share")
    assert share.value > 0.05 and share.status is Status.FAIL
    assert any("'proxy' is a proxy of sensitive 'sex'" in f.message for f in check.findings)
    # the same model with a bar no one-feature proxy reaches: the proxy no longer counts
    strict = run_shap(model, credit, features, proxy_auc=1.0)
    assert metric(strict, "sensitive_share").value == pytest.approx(0.0)


def test_linear_explainer_for_logistic_regression(credit: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(credit[0][FEATURES], credit[0]["label"])
    check = run_shap(model, credit, FEATURES)
    assert any("shap.LinearExplainer" in n for n in check.notes)
    assert metric(check, "additivity_error").value < 1e-8


# The permutation explainer is left out: its first call in a process spends ~13 s compiling shap's numba code.
def test_model_agnostic_fallback(credit: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    explainer = "kernel"

    model = KNeighborsClassifier(15).fit(credit[0][FEATURES], credit[0]["label"])
    check = run_shap(model, credit, FEATURES, agnostic_explainer=explainer, agnostic_rows=8, background_rows=10,
                     nsamples=40)
    assert any(f"shap.{explainer.capitalize()}Explainer" in n for n in check.notes)
    assert any("model-agnostic" in n for n in check.notes)
    assert any("8 rows explained" in n for n in check.notes)
    assert metric(check, "additivity_error").value < 1e-6


def test_named_rows_get_waterfalls_and_bad_rows_are_refused(credit: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    model = _xgb(credit[0], FEATURES)
    check = run_shap(model, credit, FEATURES, explain_rows=5, rows=[7], waterfalls=False)
    assert [f.id for f in check.figures if "waterfall" in f.id] == ["shap_waterfall_row7"]
    train, test = credit
    result = run_audit(policy(FEATURES, {"shap": {"rows": [len(test)]}}), model=model,
                       data={"train": train, "test": test})
    bad = result.check("shap")
    assert bad.status is Status.ERROR
    assert f"rows [{len(test)}] are not positions in the test split" in bad.error.message


def test_same_options_compute_once(credit: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    model = _xgb(credit[0], FEATURES)
    lp = load_policy(policy(FEATURES, {"shap": {"explain_rows": 50}}))
    ctx = AuditContext(lp, load_artifacts(lp, model=model, data={"train": credit[0], "test": credit[1]}))
    first = shap_attributions(ctx, params_for(ctx, ShapParams, lp.configs["shap"]))
    again = shap_attributions(ctx, ShapParams(split="test", explain_rows=50))
    assert again is first and len(first.rows) == 50
    # a prefix property: fewer rows are the first rows of the same seeded order
    fewer = shap_attributions(ctx, ShapParams(split="test", explain_rows=20))
    assert set(fewer.rows) <= set(first.rows)
    np.testing.assert_allclose(first.values[first.subset(fewer.rows)], fewer.values)
