"""The proxy screen: finds a planted proxy, stays near 0.5 for noise, is seeded and cached."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from audit.artifacts import load_artifacts
from audit.context import AuditContext
from audit.policy import load_policy
from audit.proxies import proxy_scores, score_proxies
from audit.registry import default_registry


def _data(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b"], n)
    region = rng.choice(["r1", "r2", "r3"], n, p=[0.2, 0.5, 0.3])
    return pd.DataFrame({
        "zip_score": (group == "b") * 1.5 + rng.normal(0, 1, n),  # planted proxy of `group`
        "income": rng.normal(0, 1, n),                              # unrelated
        "region_code": np.where(region == "r1", 0, np.where(region == "r2", 1, 2)) + rng.normal(0, 0.3, n),
        "group": group, "region": region, "y": rng.integers(0, 2, n),
    })


def _ctx(train: pd.DataFrame, test: pd.DataFrame, seed: int = 3) -> AuditContext:
    features = ["zip_score", "income", "region_code"]
    model = LogisticRegression().fit(train[features], train["y"])
    policy: dict[str, Any] = {
        "version": 1, "audit": {"name": "proxies"}, "seed": seed, "model": {"task": "binary_classification"},
        "data": {"target": "y", "positive_label": 1, "sensitive_features": ["group", "region"],
                 "features": features},
        "checks": {},
    }
    lp = load_policy(policy, registry=default_registry())
    return AuditContext(lp, load_artifacts(lp, model=model, data={"train": train, "test": test}))


@pytest.fixture(scope="module")
def ctx() -> AuditContext:
    return _ctx(_data(800, 0), _data(300, 1))


def test_finds_planted_proxy_and_not_noise(ctx: AuditContext) -> None:
    df = proxy_scores(ctx)
    assert list(df.columns) == ["feature", "sensitive", "auc", "mutual_info"]
    assert len(df) == 3 * 2 and df.attrs["split"] == "train" and df.attrs["n_rows"] == 800
    score = df.set_index(["feature", "sensitive"])
    # a shift of 1.5 sd: the best classifier's AUC is Phi(1.5 / sqrt 2) ~ 0.86
    assert score.loc[("zip_score", "group"), "auc"] > 0.8
    assert score.loc[("income", "group"), "auc"] < 0.6
    assert score.loc[("zip_score", "group"), "mutual_info"] > 5 * score.loc[("income", "group"), "mutual_info"]
    # multi-valued attribute (one-vs-rest macro): region_code separates the three regions
    assert score.loc[("region_code", "region"), "auc"] > 0.9
    assert score.loc[("income", "region"), "auc"] < 0.6
    assert (df["auc"] >= 0.5).all() and df["mutual_info"].between(0, 1).all()
    assert df.iloc[0]["feature"] == "region_code"  # sorted strongest first


def test_cached_seeded_and_split(ctx: AuditContext) -> None:
    assert proxy_scores(ctx) is proxy_scores(ctx, split="train")  # one computation per audit and split
    other = _ctx(_data(800, 0), _data(300, 1))
    pd.testing.assert_frame_equal(proxy_scores(other), proxy_scores(ctx))
    test = proxy_scores(ctx, split="test")
    assert test.attrs["split"] == "test" and test.attrs["n_rows"] == 300
    with pytest.raises(ValueError, match="split 'valid' is not in the policy's data"):
        proxy_scores(ctx, split="valid")


def test_missing_sensitive_values_and_continuous_attribute() -> None:
    rng = np.random.default_rng(5)
    n = 600
    age = rng.uniform(18, 80, n)
    sens = pd.DataFrame({"age": age, "flag": np.where(rng.random(n) < 0.2, None, rng.choice(["x", "y"], n))})
    # `tenure` tracks age; `missing_marker` tracks whether `flag` is missing (missing is a group of its own)
    feats = pd.DataFrame({"tenure": age / 2 + rng.normal(0, 3, n),
                          "missing_marker": sens["flag"].isna().to_numpy() * 1.0 + rng.normal(0, 0.2, n)})
    df = score_proxies(feats, sens, rng=np.random.default_rng(0)).set_index(["feature", "sensitive"])
    assert df.loc[("tenure", "age"), "auc"] > 0.85
    assert df.loc[("missing_marker", "flag"), "auc"] > 0.7
    assert df.loc[("tenure", "flag"), "auc"] < 0.6


def test_subsample_cap() -> None:
    rng = np.random.default_rng(1)
    feats = pd.DataFrame({"x": rng.normal(0, 1, 3000)})
    sens = pd.DataFrame({"s": rng.choice(["a", "b"], 3000)})
    df = score_proxies(feats, sens, rng=np.random.default_rng(0), max_rows=1000)
    assert df.attrs["n_rows"] == 1000 and df.attrs["n_rows_total"] == 3000
    assert "a seeded random sample of 3000" in df.attrs["method"]
