from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from audit import run_audit
from tests.conftest import FEATURES, ScoreModel, make_toy

# Eight rows worked out by hand: the model's probability of class 1 is the column `s`.
Y = [1, 1, 1, 0, 0, 0, 1, 0]
S = [0.9, 0.8, 0.4, 0.3, 0.6, 0.1, 0.7, 0.2]
SEX = ["F", "F", "F", "F", "F", "M", "M", "M"]


def _policy(**perf: Any) -> dict[str, Any]:
    return {"version": 1, "audit": {"name": "known answers"}, "seed": 0,
            "model": {"task": "binary_classification"},
            "data": {"target": "y", "positive_label": 1, "sensitive_features": ["sex"]},
            "checks": {"performance": {"n_boot": 0, **perf}}}


def _metrics(**perf: Any) -> tuple[dict[str | None, dict[str, float]], Any]:
    data = pd.DataFrame({"s": S, "sex": SEX, "y": Y})
    result = run_audit(_policy(**perf), model=ScoreModel(), data={"test": data})
    check = result.check("performance")
    out: dict[str | None, dict[str, float]] = {}
    for m in check.metrics:
        out.setdefault(m.group, {})[m.name] = m.value
    return out, check


def test_known_answers_binary() -> None:
    m, check = _metrics()
    overall = m[None]
    # TP=3 (rows 0, 1, 6), FN=1 (row 2), FP=1 (row 4), TN=3
    assert overall["accuracy"] == pytest.approx(6 / 8)
    assert overall["precision"] == pytest.approx(3 / 4)
    assert overall["recall"] == pytest.approx(3 / 4)
    assert overall["f1"] == pytest.approx(3 / 4)
    assert overall["balanced_accuracy"] == pytest.approx(3 / 4)
    assert overall["roc_auc"] == pytest.approx(15 / 16)  # 15 of 16 (positive, negative) pairs ordered right
    expected_ll = -(math.log(0.9) + math.log(0.8) + math.log(0.4) + math.log(0.7)) / 4
    assert overall["log_loss"] == pytest.approx(expected_ll)
    assert m["sex=F"]["accuracy"] == pytest.approx(3 / 5) and m["sex=M"]["accuracy"] == pytest.approx(1.0)
    assert m["sex=F"]["count"] == 5
    cm = next(t for t in check.tables if t.id == "confusion_matrix")
    assert cm.rows == [["true 0", 3, 1], ["true 1", 1, 3]]
    assert {f.id for f in check.figures} == {"confusion_matrix", "roc_curve"}
    assert all(f.data.startswith(b"<?xml") and b"<svg" in f.data for f in check.figures)


def test_decision_threshold_changes_predictions() -> None:
    m, check = _metrics(decision_threshold=0.35)
    assert m[None]["accuracy"] == pytest.approx(7 / 8)  # row 2 (0.4) becomes a true positive
    assert m[None]["recall"] == pytest.approx(1.0)
    assert any("P(1) >= 0.35" in n for n in check.notes)


def test_bootstrap_interval_brackets_the_estimate() -> None:
    df = make_toy(300, seed=3)
    rng = np.random.default_rng(0)
    s = np.clip(df["label"] * 0.6 + rng.uniform(0, 0.4, len(df)), 0, 1)
    data = pd.DataFrame({"s": s, "sex": df["sex"], "y": df["label"]})
    result = run_audit(_policy(n_boot=300), model=ScoreModel(), data={"test": data})
    acc = next(x for x in result.check("performance").metrics if x.name == "accuracy" and x.group is None)
    assert acc.ci_low is not None and acc.ci_high is not None
    assert acc.ci_low <= acc.value <= acc.ci_high and acc.ci_high - acc.ci_low < 0.2


def test_multiclass(toy_frames: Any) -> None:
    import xgboost as xgb

    df = make_toy(600, seed=5, n_classes=3)
    model = xgb.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1).fit(df[FEATURES][:400], df["label"][:400])
    policy = {"version": 1, "audit": {"name": "three classes"},
              "model": {"task": "multiclass_classification"},
              "data": {"target": "label", "sensitive_features": ["sex", "age_group"]},
              "checks": {"performance": {"n_boot": 20, "thresholds": {"accuracy": {"min": 0.5}}}}}
    result = run_audit(policy, model=model, data={"test": df.iloc[400:]})
    check = result.check("performance")
    overall = {x.name: x.value for x in check.metrics if x.group is None}
    assert 0.5 < overall["roc_auc"] <= 1 and overall["accuracy"] > 0.5
    assert check.status.value == "pass"
    assert len(next(t for t in check.tables if t.id == "confusion_matrix").rows) == 3


def test_train_only_data_is_flagged() -> None:
    data = pd.DataFrame({"s": S, "sex": SEX, "y": Y})
    policy = _policy()
    result = run_audit(policy, model=ScoreModel(), data={"train": data})
    assert any("overstate" in n for n in result.check("performance").notes)
