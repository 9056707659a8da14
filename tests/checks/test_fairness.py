"""The fairness check: known answers, planted bias, small and missing groups, bootstrap, corrections, proxies."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
    equalized_odds_ratio,
    selection_rate,
)
from pydantic import ValidationError

from audit import run_audit
from audit.results import CheckResult, Status
from checks import _fairness_stats as fs
from checks.fairness import Fairness
from tests.conftest import ScoreModel


def _run(data: pd.DataFrame, sensitive: list[str], seed: int = 0, features: list[str] | None = None,
         **options: Any) -> CheckResult:
    policy = {"version": 1, "audit": {"name": "fairness"}, "seed": seed, "model": {"task": "binary_classification"},
              "data": {"target": "y", "positive_label": 1, "sensitive_features": sensitive,
                       "features": features or ["s"]},
              "checks": {"fairness": {"proxy_screen": False, **options}}}
    return run_audit(policy, model=ScoreModel(), data={"test": data}).check("fairness")


def _values(check: CheckResult) -> tuple[dict[str | None, dict[str, float | None]], dict[str, Any]]:
    out: dict[str | None, dict[str, float | None]] = {}
    for m in check.metrics:
        out.setdefault(m.group, {})[m.name] = m.value
    return out, {m.name: m for m in check.metrics if m.group is None}


# Ten rows worked out by hand. Predicted positive when s >= 0.5.
#   sex F: y 1 1 1 0 0 0   pred 1 1 0 1 0 0  -> TP 2, FN 1, FP 1, TN 2: selection 3/6, TPR 2/3, FPR 1/3
#   sex M: y 1 1 0 0       pred 1 0 0 0      -> TP 1, FN 1, FP 0, TN 2: selection 1/4, TPR 1/2, FPR 0
TINY = pd.DataFrame({
    "s": [0.9, 0.8, 0.2, 0.7, 0.1, 0.3, 0.6, 0.4, 0.2, 0.1],
    "y": [1, 1, 1, 0, 0, 0, 1, 1, 0, 0],
    "sex": ["F"] * 6 + ["M"] * 4,
})


def test_known_answers_by_hand() -> None:
    check = _run(TINY, ["sex"], n_boot=0, min_group_size=1)
    groups, head = _values(check)
    assert groups["sex=F"]["selection_rate"] == pytest.approx(3 / 6)
    assert groups["sex=M"]["selection_rate"] == pytest.approx(1 / 4)
    assert groups["sex=F"]["true_positive_rate"] == pytest.approx(2 / 3)
    assert groups["sex=M"]["false_positive_rate"] == 0
    assert groups["sex=F"]["precision"] == pytest.approx(2 / 3)
    assert groups["sex=M"]["count"] == 4
    assert head["demographic_parity_difference"].value == pytest.approx(1 / 2 - 1 / 4)
    assert head["demographic_parity_ratio"].value == pytest.approx((1 / 4) / (1 / 2))
    assert head["equal_opportunity_difference"].value == pytest.approx(2 / 3 - 1 / 2)
    assert head["equalized_odds_difference"].value == pytest.approx(max(2 / 3 - 1 / 2, 1 / 3 - 0))
    assert head["equalized_odds_ratio"].value == pytest.approx(min((1 / 2) / (2 / 3), 0 / (1 / 3)))
    # the core judged the defaults: 0.5 < 0.8 fails, 1/3 > 0.1 fails (no intervals: n_boot = 0)
    assert head["demographic_parity_ratio"].status is Status.FAIL
    assert head["equalized_odds_difference"].status is Status.FAIL
    assert check.status is Status.FAIL
    assert "sex=F (0.500)" in head["demographic_parity_ratio"].description  # best-treated named, with its rate
    assert any("sex: demographic_parity_ratio = 0.500, required >= 0.8" in f.message for f in check.findings)


def test_worst_treated_follows_which_outcome_is_favourable() -> None:
    low, high = "sex=M (0.250)", "sex=F (0.500)"
    for favourable, worst, best in [(True, low, high), (False, high, low)]:
        check = _run(TINY, ["sex"], n_boot=0, min_group_size=1, positive_is_favorable=favourable)
        treated = next(t for t in check.tables if t.id == "treated")
        assert treated.rows[0] == ["sex", "selection rate", worst, best]


def test_disparities_equal_fairlearn_functions() -> None:
    rng = np.random.default_rng(4)
    n = 600
    data = pd.DataFrame({"s": rng.uniform(0, 1, n), "y": rng.integers(0, 2, n),
                         "grp": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])})
    _, head = _values(_run(data, ["grp"], n_boot=0))
    kw = {"y_true": data["y"], "y_pred": (data["s"] >= 0.5).astype(int), "sensitive_features": data["grp"]}
    for name, fn in [("demographic_parity_difference", demographic_parity_difference),
                     ("demographic_parity_ratio", demographic_parity_ratio),
                     ("equalized_odds_difference", equalized_odds_difference),
                     ("equalized_odds_ratio", equalized_odds_ratio),
                     ("equal_opportunity_difference", equal_opportunity_difference)]:
        assert head[name].value == pytest.approx(fn(**kw)), name


def _population(n: int, seed: int, bias: float) -> pd.DataFrame:
    """Scores independent of the groups, except a planted shift against sex=F."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(["F", "M"], n)
    age = rng.choice(["young", "old"], n)
    merit = rng.normal(0, 1, n)
    y = (merit + rng.normal(0, 0.5, n) > 0).astype(int)
    s = 1 / (1 + np.exp(-(2 * merit - bias * (sex == "F"))))
    return pd.DataFrame({"s": s, "y": y, "sex": sex, "age": age, "zip": merit + 3 * (sex == "F")})


@pytest.fixture(scope="module")
def planted() -> tuple[CheckResult, CheckResult]:
    biased = _run(_population(4000, 0, bias=2.0), ["sex", "age"], n_boot=300, mitigation="threshold_optimizer")
    fair = _run(_population(4000, 0, bias=0.0), ["sex", "age"], n_boot=300)
    return biased, fair


def test_planted_bias_fails_and_its_unbiased_twin_passes(planted: tuple[CheckResult, CheckResult]) -> None:
    biased, fair = planted
    _, hb = _values(biased)
    _, hf = _values(fair)
    assert biased.status is Status.FAIL and hb["demographic_parity_ratio"].status is Status.FAIL
    assert hb["equal_opportunity_difference"].status is Status.FAIL
    assert "sex=F" in hb["demographic_parity_ratio"].description.split("worst-treated")[1]
    assert fair.status is Status.PASS, [f.message for f in fair.findings]
    for name in Fairness.default_thresholds:
        m = hf[name]
        assert m.status is Status.PASS and m.ci_low is not None and m.ci_low <= m.value <= m.ci_high
    gaps = next(t for t in fair.tables if t.id == "gaps")
    assert {r[0] for r in gaps.rows} == {"sex", "age", "sex x age"}
    assert any("Holm" in n for n in fair.notes)
    assert {f.id for f in fair.figures} == {"bars_sex", "bars_age", "bars_sex_x_age", "heatmap_sex_x_age"}
    assert all(f.data.startswith(b"<?xml") for f in fair.figures)


def test_mitigation_preview_reduces_the_gap(planted: tuple[CheckResult, CheckResult]) -> None:
    biased, _ = planted
    table = next(t for t in biased.tables if t.id == "mitigation")
    rows = {r[0]: dict(zip(table.columns, r, strict=True)) for r in table.rows}
    before, after = rows["current model"], rows["ThresholdOptimizer, equalized odds"]
    assert after["equalized odds difference"] < before["equalized odds difference"] / 2
    assert rows["ThresholdOptimizer, demographic parity"]["demographic parity ratio"] > \
        before["demographic parity ratio"]


def test_small_groups_flagged_and_left_out_of_the_verdict() -> None:
    data = _population(1000, 1, bias=0.0)
    tiny = data.iloc[:12].copy()
    tiny["sex"], tiny["s"] = "X", 0.99  # 12 rows, all selected: would wreck the ratio if judged
    check = _run(pd.concat([data.iloc[12:], tiny]), ["sex"], n_boot=0, min_group_size=30)
    groups, head = _values(check)
    assert groups["sex=X"]["selection_rate"] == 1.0 and groups["sex=X"]["count"] == 12  # shown
    sr = [groups[g]["selection_rate"] for g in ("sex=F", "sex=M")]
    assert head["demographic_parity_ratio"].value == pytest.approx(min(sr) / max(sr))  # not judged
    small = [f for f in check.findings if "min_group_size = 30" in f.message]
    assert small and "sex=X (n=12)" in small[0].message
    assert any("left out of the gaps: sex=X (n=12)" in n for n in check.notes)


def test_missing_sensitive_value_is_its_own_group() -> None:
    data = _population(600, 2, bias=0.0)
    data.loc[data.index[:40], "sex"] = None
    check = _run(data, ["sex"], n_boot=50)
    groups, _ = _values(check)
    assert groups["sex=(missing)"]["count"] == 40
    assert sum(groups[g]["count"] for g in groups if g) == 600  # no row dropped
    assert any("40 rows have no value for sex" in n for n in check.notes)


def test_continuous_bins_and_validation() -> None:
    data = _population(500, 3, bias=0.0)
    data["age_years"] = np.random.default_rng(0).uniform(18, 90, len(data))
    check = _run(data, ["age_years"], n_boot=0, continuous_bins={"age_years": [0, 25, 40, 60, 80]})
    groups, _ = _values(check)
    assert {"age_years=[0, 25)", "age_years=[60, 80)", "age_years=outside [0, 80)"} <= set(groups)
    with pytest.raises(ValidationError, match="strictly increasing"):
        Fairness.parse_config({"continuous_bins": {"age": [10, 5]}})


def test_bootstrap_is_seeded_and_its_intervals_cover() -> None:
    data = _population(800, 5, bias=1.0)
    a, b = _run(data, ["sex"], seed=1, n_boot=200), _run(data, ["sex"], seed=1, n_boot=200)
    c = _run(data, ["sex"], seed=2, n_boot=200)
    ci = [[(m.ci_low, m.ci_high) for m in r.metrics] for r in (a, b, c)]
    assert ci[0] == ci[1] and ci[0] != ci[2]
    groups, _ = _values(a)
    sel = next(m for m in a.metrics if m.group == "sex=F" and m.name == "selection_rate")
    n_f = groups["sex=F"]["count"]
    # the interval of a proportion is about +-1.96 sd of a row bootstrap, sd = sqrt(p(1-p)/n)
    sd = np.sqrt(sel.value * (1 - sel.value) / n_f)
    assert (sel.ci_high - sel.ci_low) == pytest.approx(2 * 1.96 * sd, rel=0.25)


def test_multinomial_counts_match_a_row_bootstrap() -> None:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, 500)
    y, p = rng.random(500) < 0.4, rng.random(500) < 0.5
    counts = fs.confusion_counts(codes, 3, y, p)
    boot = fs.resample_counts(counts, 4000, np.random.default_rng(1))
    assert boot.shape == (4000, 3, 4) and (boot.sum(axis=(1, 2)) == 500).all()
    rows = np.random.default_rng(2).integers(0, 500, (4000, 500))
    row_counts = np.stack([fs.confusion_counts(codes[r], 3, y[r], p[r]) for r in rows[:4000]])
    sr_m, sr_r = fs.RATES["selection_rate"](boot), fs.RATES["selection_rate"](row_counts)
    np.testing.assert_allclose(sr_m.mean(0), sr_r.mean(0), atol=0.005)
    np.testing.assert_allclose(sr_m.std(0), sr_r.std(0), rtol=0.08)
    mf = MetricFrame(metrics=selection_rate, y_true=y, y_pred=p, sensitive_features=codes)
    np.testing.assert_allclose(fs.RATES["selection_rate"](counts), mf.by_group.to_numpy())


def test_pvalue_adjustments_by_hand() -> None:
    p = np.array([0.01, 0.04, 0.03])
    np.testing.assert_allclose(fs.adjust_pvalues(p, "holm"), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(fs.adjust_pvalues(p, "bh"), [0.03, 0.04, 0.04])
    np.testing.assert_allclose(fs.adjust_pvalues(p, "none"), p)
    # more attributes, wider judged interval: the correction can turn a miss into a "cannot tell" warning
    samples = np.random.default_rng(0).normal(0.7, 0.05, 2000)
    assert fs.crossing_pvalue(samples, 0.7, 0.8, None) == pytest.approx(0.025, abs=0.01)


def test_strong_proxy_is_a_finding() -> None:
    data = _population(1500, 6, bias=0.0)
    policy = {"version": 1, "audit": {"name": "proxy"}, "seed": 0, "model": {"task": "binary_classification"},
              "data": {"target": "y", "positive_label": 1, "sensitive_features": ["sex"], "features": ["s", "zip"]},
              "checks": {"fairness": {"n_boot": 0, "proxy_auc": 0.8}}}
    check = run_audit(policy, model=ScoreModel(), data={"train": data.iloc[:1000], "test": data.iloc[1000:]}
                      ).check("fairness")
    proxies = [f for f in check.findings if "strong proxy" in f.message]
    assert [f.evidence[0]["feature"] for f in proxies] == ["zip"] and proxies[0].severity == "warn"
    assert "zip predicts sex with cross-validated ROC AUC" in proxies[0].message
