"""The ``lime`` check: stability across seeds is a real number that falls when LIME is made noisier."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from audit import run_audit
from audit.results import Status
from checks._explain import Attributions
from checks.lime_check import stability

WEIGHTS = [2.0, 1.5, 1.2, 1.0, 0.8, 0.5, 0.3, 0.1]
FEATURES = [f"x{j}" for j in range(len(WEIGHTS))]


@pytest.fixture(scope="session")
def graded() -> tuple[Any, pd.DataFrame, pd.DataFrame]:
    """Eight features of decreasing weight (so the top-3 is neither obvious nor arbitrary), and an XGBoost model."""
    import xgboost as xgb

    rng = np.random.default_rng(5)
    X = rng.normal(0, 1, (900, len(WEIGHTS)))
    y = (X @ np.array(WEIGHTS) + rng.normal(0, 0.8, len(X)) > 0).astype(int)
    df = pd.DataFrame(X, columns=FEATURES).assign(label=y)
    train, test = df.iloc[:700].reset_index(drop=True), df.iloc[700:].reset_index(drop=True)
    model = xgb.XGBClassifier(n_estimators=40, max_depth=3, random_state=0, n_jobs=1).fit(train[FEATURES],
                                                                                        train["label"])
    return model, train, test


def run_lime(graded: tuple[Any, pd.DataFrame, pd.DataFrame], seed: int = 11, **options: Any) -> Any:
    model, train, test = graded
    opts = {"explain_rows": 4, "stability_runs": 3, "top_k": 3, **options}
    policy = {"version": 1, "audit": {"name": "lime tests"}, "seed": seed,
              "model": {"task": "binary_classification"},
              "data": {"target": "label", "positive_label": 1}, "checks": {"lime": opts}}
    check = run_audit(policy, model=model, data={"train": train, "test": test}).check("lime")
    assert check.error is None, check.error
    return check


def value(check: Any, name: str) -> Any:
    return next(m.value for m in check.metrics if m.name == name)


@pytest.fixture(scope="session")
def default_run(graded: tuple[Any, pd.DataFrame, pd.DataFrame]) -> Any:
    """The check with LIME's default sampling (5000 samples, default kernel width)."""
    return run_lime(graded)


def test_stability_is_a_real_number_with_figures_and_notes(default_run: Any) -> None:
    s = value(default_run, "stability")
    assert isinstance(s, float) and 0.0 <= s <= 1.0
    assert 0.0 <= value(default_run, "weight_spread") < 1.0
    assert value(default_run, "local_fidelity") is not None
    assert next(m for m in default_run.metrics if m.name == "stability").threshold is not None
    assert {f.id for f in default_run.figures} == {"lime_global", "lime_least_stable"}
    assert any("LimeTabularExplainer" in n and "5000 samples" in n for n in default_run.notes)
    assert len(next(t for t in default_run.tables if t.id == "lime_rows").rows) == 4


@pytest.mark.parametrize("noisier", [{"num_samples": 60}, {"kernel_width": 0.3, "num_samples": 400}],
                         ids=["few_samples", "narrow_kernel"])
def test_stability_falls_when_lime_is_noisier(graded: Any, default_run: Any, noisier: dict[str, Any]) -> None:
    noisy = run_lime(graded, **noisier)
    assert value(noisy, "stability") < value(default_run, "stability") - 0.1
    assert value(noisy, "weight_spread") > value(default_run, "weight_spread")


def test_unstable_explanations_warn_by_default(graded: Any) -> None:
    noisy = run_lime(graded, num_samples=60)
    stab = next(m for m in noisy.metrics if m.name == "stability")
    assert stab.value < 0.7 and stab.passed is False
    assert stab.status is Status.WARN and noisy.status is Status.WARN  # an advisory bound: never a failure


def test_unstable_explanations_are_not_a_pass(graded: Any) -> None:
    noisy = run_lime(graded, num_samples=60, thresholds={"stability": {"min": 0.95}})
    assert noisy.status in (Status.WARN, Status.FAIL)
    assert any("stability" in f.message for f in noisy.findings)


def test_seeded_from_the_policy(graded: Any, default_run: Any) -> None:
    again = run_lime(graded)
    assert again.to_dict()["metrics"] == default_run.to_dict()["metrics"]
    assert again.tables[0].rows == default_run.tables[0].rows
    other = run_lime(graded, seed=12)
    assert other.tables[0].rows != default_run.tables[0].rows


def test_stability_known_answers() -> None:
    # two rows, two runs, four features; top-2 sets: row 0 {0, 1} both times; row 1 {0, 1} then {2, 3}
    runs = np.array([[[4.0, 3.0, 1.0, 0.0], [4.0, 3.0, 1.0, 0.0]],
                     [[4.0, 3.0, 1.0, 0.0], [0.0, 1.0, 3.0, 4.0]]])
    att = Attributions("lime", "test", np.array([0, 1]), np.array([1, 1]), runs.mean(axis=0), np.zeros(2),
                       np.zeros(2), "score", "x", "y", runs=runs)
    jac, spread = stability(att, 2)
    np.testing.assert_allclose(jac, [1.0, 0.0])
    assert spread[0] == 0.0 and spread[1] > 0.5
