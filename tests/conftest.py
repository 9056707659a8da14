"""Shared toy data, models and policies.

The toy data is generated here (numpy, seeded): two informative numeric features, one noise feature, a
binary label that depends on them, and two sensitive columns (``sex``, ``age_group``) that the models are
not given. Nothing is downloaded.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_DIR = REPO / "policies" / "examples"
FEATURES = ["income", "debt", "noise"]


def make_toy(n: int = 400, seed: int = 0, n_classes: int = 2) -> pd.DataFrame:
    """A small tabular classification problem with sensitive columns."""
    rng = np.random.default_rng(seed)
    income = rng.normal(0, 1, n)
    debt = rng.normal(0, 1, n)
    noise = rng.normal(0, 1, n)
    logit = 1.8 * income - 1.2 * debt + rng.normal(0, 0.7, n)
    if n_classes == 2:
        y = (logit > 0).astype(int)
    else:
        y = np.digitize(logit, np.quantile(logit, np.linspace(0, 1, n_classes + 1)[1:-1]))
    return pd.DataFrame({
        "income": income, "debt": debt, "noise": noise,
        "sex": rng.choice(["F", "M"], n), "age_group": rng.choice(["<30", "30-60", ">60"], n, p=[0.3, 0.6, 0.1]),
        "label": y,
    })


class ScoreModel:
    """An in-memory model whose P(class 1) is the input column ``s``: predictions known exactly (known-answer tests)."""

    classes_ = np.array([0, 1])

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        s = X["s"].to_numpy(dtype=float)
        return np.column_stack([1 - s, s])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (X["s"].to_numpy() >= 0.5).astype(int)


@pytest.fixture(scope="session")
def toy_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) toy frames."""
    df = make_toy(600, seed=1)
    return df.iloc[:400].reset_index(drop=True), df.iloc[400:].reset_index(drop=True)


@pytest.fixture(scope="session")
def fitted_xgb(toy_frames: tuple[pd.DataFrame, pd.DataFrame]) -> Any:
    """An XGBoost classifier fitted on the toy training data (DataFrame, so it records feature names)."""
    import xgboost as xgb

    train, _ = toy_frames
    model = xgb.XGBClassifier(n_estimators=30, max_depth=3, random_state=0, n_jobs=1)
    model.fit(train[FEATURES], train["label"])
    return model


@pytest.fixture(scope="session")
def fitted_logreg(toy_frames: tuple[pd.DataFrame, pd.DataFrame]) -> Any:
    """A scikit-learn logistic regression fitted on the toy training data."""
    from sklearn.linear_model import LogisticRegression

    train, _ = toy_frames
    return LogisticRegression().fit(train[FEATURES], train["label"])


def write_policy(folder: Path, policy: dict[str, Any], name: str = "policy.yaml") -> Path:
    """Write a policy dict as YAML into ``folder``."""
    path = folder / name
    path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    return path


def base_policy(**overrides: Any) -> dict[str, Any]:
    """A valid toy policy (files: model.ubj, train.csv, test.csv), with top-level overrides."""
    policy: dict[str, Any] = {
        "version": 1,
        "audit": {"name": "Toy model", "system": "Toy system", "owner": "Tests", "risk_category": "minimal"},
        "seed": 7,
        "model": {"path": "model.ubj", "format": "xgboost", "task": "binary_classification"},
        "data": {"train": "train.csv", "test": "test.csv", "target": "label", "positive_label": 1,
                 "sensitive_features": ["sex", "age_group"]},
        "checks": {"performance": {"n_boot": 50}},
        "report": {"formats": ["html", "json", "junit"]},
    }
    policy.update(overrides)
    return policy


@pytest.fixture()
def toy_dir(tmp_path: Path, toy_frames: tuple[pd.DataFrame, pd.DataFrame], fitted_xgb: Any) -> Path:
    """A folder with train.csv, test.csv, model.ubj and a valid policy.yaml."""
    train, test = toy_frames
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    fitted_xgb.save_model(tmp_path / "model.ubj")
    write_policy(tmp_path, base_policy())
    return tmp_path


@pytest.fixture()
def example_dir(tmp_path: Path) -> Path:
    """A copy of the embedded example (policy, model and data) in a temporary folder."""
    dst = tmp_path / "examples"
    shutil.copytree(EXAMPLE_DIR, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def audit_command() -> list[str]:
    """The installed ``audit`` console script, or ``python -m audit.cli`` when it is not installed."""
    script = Path(sys.executable).parent / "audit"
    return [str(script)] if script.exists() else [sys.executable, "-m", "audit.cli"]
