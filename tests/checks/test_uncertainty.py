"""Calibration and MC dropout: known answers worked out by hand, the model left as found, OOD probes, skips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import brier_score_loss, roc_auc_score
from torch import nn

from audit import run_audit
from audit.registry import Requires
from checks import _uncertainty as U
from checks.uncertainty import Calibration, MCDropout
from tests.conftest import FEATURES, base_policy, make_toy, write_policy

torch.set_num_threads(1)


# -- calibration arithmetic, by hand ------------------------------------------------------------------
def test_ece_by_hand_equal_width_and_equal_mass() -> None:
    score = np.array([0.1, 0.2, 0.3, 0.9])
    outcome = np.array([0, 0, 1, 1])
    # equal width, 2 bins: (0, .5] holds .1 .2 .3 (mean .2, observed 1/3), (.5, 1] holds .9 (observed 1)
    # ECE = 3/4 * |1/3 - .2| + 1/4 * |1 - .9| = .1 + .025
    assert U.expected_calibration_error(score, outcome, n_bins=2, strategy="uniform") == pytest.approx(0.125)
    # equal mass, 2 bins: {.1 .2} (mean .15, observed 0) and {.3 .9} (mean .6, observed 1): .5*.15 + .5*.4
    assert U.expected_calibration_error(score, outcome, n_bins=2, strategy="quantile") == pytest.approx(0.275)
    table = U.bin_table(score, outcome, U.assign_bins(score, 2, "uniform"))
    assert U.mce_from_table(table) == pytest.approx(2 / 15)
    np.testing.assert_allclose(table[:, 0], [3, 1])


def test_uniform_bins_are_right_closed() -> None:
    bins = U.assign_bins(np.array([0.0, 0.5, 0.5000001, 1.0]), 2, "uniform")
    np.testing.assert_array_equal(bins.index, [0, 0, 1, 1])


def test_equal_mass_bins_with_ties_hold_equal_counts() -> None:
    bins = U.assign_bins(np.array([0.7] * 9 + [0.2]), 5, "quantile")
    np.testing.assert_array_equal(np.bincount(bins.index), [2, 2, 2, 2, 2])


def test_perfect_calibration_has_zero_ece() -> None:
    # in each bin the observed share equals the (constant) predicted probability
    score = np.repeat([0.25, 0.75], 4)
    outcome = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert U.expected_calibration_error(score, outcome, n_bins=4) == pytest.approx(0.0)


def test_brier_by_hand_binary_and_multiclass() -> None:
    proba = np.array([[0.9, 0.1], [0.3, 0.7], [0.7, 0.3], [0.1, 0.9]])
    y = np.array([0, 1, 1, 1])
    # (p1 - y)^2: .01 + .09 + .49 + .01 = .6, over 4 rows
    assert U.brier_score(proba, y, positive_index=1) == pytest.approx(0.15)
    assert U.brier_score(proba, y, positive_index=1) == pytest.approx(brier_score_loss(y, proba[:, 1]))
    proba3 = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]])
    # row 0 (true 0): .09 + .04 + .01 = .14; row 1 (true 2): .04 + .25 + .49 = .78
    assert U.brier_score(proba3, np.array([0, 2])) == pytest.approx(0.46)


def test_calibration_target_binary_is_positive_class_multiclass_is_top_label() -> None:
    proba = np.array([[0.8, 0.2], [0.4, 0.6]])
    s, o, kind = U.calibration_target(proba, np.array([1, 1]), positive_index=1)
    assert kind == "positive-class" and list(s) == [0.2, 0.6] and list(o) == [1, 1]
    p3 = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    s, o, kind = U.calibration_target(p3, np.array([1, 2]), positive_index=None)
    assert kind == "top-label" and list(s) == [0.5, 0.8] and list(o) == [0, 1]


def test_auroc_matches_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(0)
    score = rng.integers(0, 5, 200).astype(float)
    pos = rng.random(200) < 0.3 + 0.1 * score
    assert U.auroc(score, pos) == pytest.approx(roc_auc_score(pos, score))
    assert np.isnan(U.auroc(score, np.zeros(200, bool)))


def test_coverage_curve_by_hand() -> None:
    u = np.array([0.5, 0.1, 0.2, 0.2])
    correct = np.array([0, 1, 1, 0])
    c = U.coverage_curve(u, correct)
    # tied uncertainties move together: cuts after 1, 3 and 4 rows
    np.testing.assert_array_equal(c.kept, [1, 3, 4])
    np.testing.assert_allclose(c.accuracy, [1.0, 2 / 3, 0.5])
    np.testing.assert_allclose(c.threshold, [0.1, 0.2, 0.5])
    assert c.at_target(0.9) == 0 and c.at_target(0.6) == 1 and c.at_target(0.4) == 2


# -- MC dropout on modules ---------------------------------------------------------------------------
class TinyCNN(nn.Module):
    """Conv, batch norm, dropout: enough to see modes and running statistics."""

    def __init__(self, p: float = 0.3, n_classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Dropout2d(p / 2), nn.Flatten(), nn.Linear(8 * 16, 32), nn.ReLU(),
                                  nn.Dropout(p), nn.Linear(32, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits, standardised, (N, 1, 8, 8) float32."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = ((d.images / 16.0 - 0.3) / 0.4)[:, None].astype(np.float32)
    return x, d.target


@pytest.fixture(scope="session")
def trained_cnn(digits: tuple[np.ndarray, np.ndarray]) -> TinyCNN:
    """A TinyCNN trained for a few epochs on the first 1,200 digits (seeded; about a second)."""
    x, y = digits
    torch.manual_seed(0)
    net = TinyCNN()
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    xt, yt = torch.from_numpy(x[:1200]), torch.from_numpy(y[:1200])
    for _ in range(6):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            b = perm[i:i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[b]), yt[b]).backward()
            opt.step()
    return net.eval()


def _snapshot(net: nn.Module) -> tuple[dict[str, torch.Tensor], list[bool]]:
    return {k: v.clone() for k, v in net.state_dict().items()}, [m.training for m in net.modules()]


def _assert_same(net: nn.Module, snap: tuple[dict[str, torch.Tensor], list[bool]]) -> None:
    state, modes = snap
    now = net.state_dict()
    assert set(now) == set(state)
    for k, v in state.items():
        assert torch.equal(now[k], v), f"{k} changed"
    assert [m.training for m in net.modules()] == modes


def test_batch_norm_statistics_and_modes_unchanged(trained_cnn: TinyCNN, digits: Any) -> None:
    x = torch.from_numpy(digits[0][1200:1300])
    trained_cnn.body[2].train()  # an odd mix of modes must come back as it was, too
    try:
        snap = _snapshot(trained_cnn)
        seen: list[bool] = []
        hook = trained_cnn.body[1].register_forward_hook(lambda m, i, o: seen.append(m.training))
        U.mc_dropout_predict(trained_cnn, x, passes=20, seed=1)
        hook.remove()
        assert seen and not any(seen), "batch norm ran in train mode (its running statistics would move)"
        _assert_same(trained_cnn, snap)
    finally:
        trained_cnn.body[2].eval()


def test_modes_restored_when_the_forward_raises() -> None:
    class Boom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.drop = nn.Dropout(0.5)
            self.bn = nn.BatchNorm1d(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if len(x) > 4:
                raise RuntimeError("boom")
            return self.bn(self.drop(x))

    net = Boom().eval()
    with pytest.raises(RuntimeError, match="boom"):
        U.mc_dropout_predict(net, torch.randn(10, 3), passes=4, seed=0)
    assert not any(m.training for m in net.modules())


def test_only_dropout_layers_are_switched_on() -> None:
    net = TinyCNN().eval()
    with U.only_dropout_active(net):
        on = {type(m).__name__ for m in net.modules() if m.training}
    assert on == {"Dropout", "Dropout2d"}
    assert not any(m.training for m in net.modules())


def test_seed_reproducible_and_global_rng_untouched(trained_cnn: TinyCNN, digits: Any) -> None:
    x = torch.from_numpy(digits[0][1300:1400])
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = U.mc_dropout_predict(trained_cnn, x, passes=10, seed=5)
    assert torch.equal(torch.rand(3), expected_next), "the caller's torch random stream moved"
    b = U.mc_dropout_predict(trained_cnn, x, passes=10, seed=5)
    c = U.mc_dropout_predict(trained_cnn, x, passes=10, seed=6)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.mutual_information, b.mutual_information)
    assert not np.array_equal(a.mean, c.mean)


def test_batching_does_not_change_the_estimate(trained_cnn: TinyCNN, digits: Any) -> None:
    x = torch.from_numpy(digits[0][1400:1500])
    wide = U.mc_dropout_predict(trained_cnn, x, passes=200, seed=1)
    narrow = U.mc_dropout_predict(trained_cnn, x, passes=200, seed=2, max_rows_per_call=64)
    assert wide.rows_per_call > 64 >= narrow.rows_per_call
    assert np.abs(wide.mean - narrow.mean).max() < 0.08
    assert abs(wide.entropy.mean() - narrow.entropy.mean()) < 0.03


def test_prefix_reuse_gives_the_same_passes_bit_for_bit(trained_cnn: TinyCNN, digits: Any) -> None:
    x = torch.from_numpy(digits[0][1500:1600])
    split = U.mc_dropout_predict(trained_cnn, x, passes=12, seed=4, max_rows_per_call=128)
    whole = U.mc_dropout_predict(trained_cnn, x, passes=12, seed=4, max_rows_per_call=128, reuse_prefix=False)
    assert split.reused_prefix and not whole.reused_prefix
    np.testing.assert_array_equal(split.mean, whole.mean)
    np.testing.assert_array_equal(split.mutual_information, whole.mutual_information)


def test_module_that_cannot_be_split_falls_back_to_whole_passes() -> None:
    class SizeFromInput(nn.Module):
        """Reads the batch size off its input after the dropout: splitting would give wrong shapes."""

        def __init__(self) -> None:
            super().__init__()
            self.inp, self.drop, self.out = nn.Linear(4, 6), nn.Dropout(0.5), nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.drop(self.inp(x)).view(x.size(0), -1))

    torch.manual_seed(0)
    net = SizeFromInput().eval()
    x = torch.randn(30, 4)
    assert U.split_forward(net, x[:4]) is None
    r = U.mc_dropout_predict(net, x, passes=8, seed=0)
    assert not r.reused_prefix and r.mean.shape == (30, 3) and r.mutual_information.mean() > 0
    assert U.split_forward(torch.jit.script(TinyCNN().eval()), torch.zeros(4, 1, 8, 8)) is None


def test_decomposition_without_active_dropout_is_all_aleatoric() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.0)).eval()  # dropout with p=0: every pass the same
    r = U.mc_dropout_predict(net, torch.randn(20, 4), passes=5, seed=0)
    np.testing.assert_allclose(r.mutual_information, 0, atol=1e-9)
    np.testing.assert_allclose(r.std, 0, atol=1e-6)
    np.testing.assert_allclose(r.entropy, r.expected_entropy, atol=1e-9)


def test_mutual_information_of_disagreeing_passes_is_log_two() -> None:
    class Coin(nn.Module):
        """A 'network' whose dropout decides the class outright: p = [1, 0] or [0, 1]."""

        def __init__(self) -> None:
            super().__init__()
            self.drop = nn.Dropout(0.5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            kept = (self.drop(torch.ones(len(x), 1)) > 0).float()
            return torch.cat([kept, 1 - kept], dim=1)

    r = U.mc_dropout_predict(Coin().eval(), torch.zeros(400, 1), passes=200, seed=0, to_proba=lambda o: o)
    np.testing.assert_allclose(r.expected_entropy, 0, atol=1e-12)  # each pass is certain
    assert r.mutual_information.mean() == pytest.approx(np.log(2), abs=0.01)  # but they disagree
    assert r.std.mean() == pytest.approx(0.5, abs=0.02)


def test_noise_inputs_more_uncertain_than_test_images(trained_cnn: TinyCNN, digits: Any) -> None:
    x = torch.from_numpy(digits[0][1200:1500])
    rng = np.random.default_rng(0)
    noise = torch.from_numpy((x.mean().item() + x.std().item() * rng.standard_normal((300, 1, 8, 8)))
                             .astype(np.float32))
    test = U.mc_dropout_predict(trained_cnn, x, passes=30, seed=1)
    ood = U.mc_dropout_predict(trained_cnn, noise, passes=30, seed=2)
    labels = np.r_[np.zeros(300, bool), np.ones(300, bool)]
    assert U.auroc(np.r_[test.entropy, ood.entropy], labels) > 0.75
    assert U.auroc(np.r_[test.mutual_information, ood.mutual_information], labels) > 0.75


def test_uncertainty_finds_errors(trained_cnn: TinyCNN, digits: Any) -> None:
    x, y = digits
    r = U.mc_dropout_predict(trained_cnn, torch.from_numpy(x[1200:]), passes=30, seed=3)
    wrong = r.mean.argmax(axis=1) != y[1200:]
    assert wrong.any() and U.auroc(r.entropy, wrong) > 0.75


def test_dropout_detected_also_in_torchscript() -> None:
    net = TinyCNN().eval()
    assert len(U.dropout_modules(net)) == 2
    assert len(U.dropout_modules(torch.jit.script(net))) == 2
    assert U.dropout_modules(nn.Sequential(nn.Linear(2, 2), nn.ReLU())) == []


def test_dropout_free_model_is_skipped_with_its_reason() -> None:
    reasons = MCDropout.applies_to.missing("multiclass_classification", {"image", "torch", "probabilities"})
    assert reasons == ["the model has no dropout layers"]
    assert Calibration.applies_to.missing("binary_classification", {"tabular", "probabilities"}) == []
    assert isinstance(MCDropout.applies_to, Requires)


# -- calibration through the audit -------------------------------------------------------------------
class Shrunk:
    """A wrapped classifier whose probabilities are pulled towards 0.5 (grossly under-confident)."""

    def __init__(self, model: Any, factor: float = 0.3):
        self.model, self.factor = model, factor
        self.classes_ = model.classes_
        self.feature_names_in_ = model.feature_names_in_

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.model.predict(X)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        q = 0.5 + (self.model.predict_proba(X)[:, 1] - 0.5) * self.factor
        return np.column_stack([1 - q, q])


def _cal_policy(folder: Path, **check: Any) -> Path:
    return write_policy(folder, base_policy(checks={"calibration": {"n_boot": 50, **check}}))


def test_calibrated_model_passes_and_underconfident_one_fails(toy_dir: Path, fitted_logreg: Any) -> None:
    policy = _cal_policy(toy_dir)
    good = run_audit(policy, model=fitted_logreg).check("calibration")
    bad = run_audit(policy, model=Shrunk(fitted_logreg)).check("calibration")
    g = {m.name: m for m in good.metrics if m.group is None}
    b = {m.name: m for m in bad.metrics if m.group is None}
    assert g["ece"].value < 0.1 and g["ece"].status.value in {"pass", "warn"}
    assert b["ece"].value > 0.2 > g["ece"].value + 0.1
    assert b["mce"].value > 0.2
    assert b["brier"].value > g["brier"].value
    assert bad.status.value == "fail" and any("ece = " in f.message for f in bad.findings)
    assert g["ece"].ci_low <= g["ece"].value <= g["ece"].ci_high  # the bias-corrected interval covers it
    assert {f.id for f in good.figures} >= {"reliability_diagram", "reliability_by_sex", "reliability_by_age_group"}


def test_policy_threshold_overrides_the_default(toy_dir: Path, fitted_logreg: Any) -> None:
    strict = run_audit(_cal_policy(toy_dir, thresholds={"ece": {"max": 0.001}}), model=fitted_logreg)
    m = next(m for m in strict.check("calibration").metrics if m.name == "ece" and m.group is None)
    assert m.threshold.max == 0.001 and m.status.value in {"fail", "warn"}


def test_group_miscalibrated_while_overall_is_fine(toy_dir: Path, fitted_logreg: Any,
                                                   toy_frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, _ = toy_frames
    test = make_toy(1200, seed=5)
    women = np.flatnonzero(test["sex"].to_numpy() == "F")
    rng = np.random.default_rng(1)
    flip = rng.choice(women, size=len(women) * 2 // 5, replace=False)
    test.loc[flip, "label"] = 1 - test.loc[flip, "label"]
    result = run_audit(_cal_policy(toy_dir, thresholds={"ece": None}), model=fitted_logreg,
                       data={"train": train, "test": test}).check("calibration")
    by = {(m.name, m.group): m.value for m in result.metrics}
    assert by[("ece", "sex=F")] > by[("ece", "sex=M")] + 0.1
    assert by[("max_group_ece", None)] == by[("ece", "sex=F")]
    assert any("sex=F" in f.message and f.severity == "fail" for f in result.findings)
    assert not any("sex=M" in f.message for f in result.findings)


def test_multiclass_uses_top_label_and_reports_classwise(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    df = make_toy(600, seed=2, n_classes=3)
    train, test = df.iloc[:400], df.iloc[400:].reset_index(drop=True)
    model = LogisticRegression(max_iter=500).fit(train[FEATURES], train["label"])
    policy = base_policy(checks={"calibration": {"n_boot": 0}})
    policy["model"]["task"] = "multiclass_classification"
    policy["model"].pop("path")
    policy["data"].pop("positive_label")
    result = run_audit(policy, model=model, data={"train": train, "test": test}, base_dir=tmp_path)
    cal = result.check("calibration")
    names = {m.name for m in cal.metrics if m.group is None}
    assert "classwise_ece" in names and any("top-label" in n for n in cal.notes)
    brier = next(m.value for m in cal.metrics if m.name == "brier" and m.group is None)
    onehot = np.eye(3)[test["label"].to_numpy()]
    assert brier == pytest.approx(np.mean(np.sum((model.predict_proba(test[FEATURES]) - onehot) ** 2, axis=1)))


# -- MC dropout through the audit (PyTorch modules in memory) ------------------------------------------
def _image_policy(**checks: Any) -> dict[str, Any]:
    return {"version": 1, "audit": {"name": "digits"}, "seed": 11,
            "model": {"task": "multiclass_classification"},
            "data": {"format": "npz", "preprocess": {"mean": 0.3, "std": 0.4}},
            "checks": checks or {"mc_dropout": {"passes": 20, "n_boot": 50}}, "report": {"formats": ["json"]}}


@pytest.fixture(scope="session")
def digits_raw() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Raw digits in [0, 1], (N, 8, 8): the audit standardises them as the CNN was trained."""
    from sklearn.datasets import load_digits

    d = load_digits()
    raw = (d.images / 16.0).astype(np.float32)
    return {"train": (raw[:1200], d.target[:1200]), "test": (raw[1200:1500], d.target[1200:1500])}


@pytest.fixture(scope="session")
def image_audit(trained_cnn: TinyCNN, digits_raw: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One audit of the trained CNN with both checks, and the module's state before it."""
    from audit.artifacts.torch_models import fingerprint

    before = fingerprint(trained_cnn)
    result = run_audit(_image_policy(mc_dropout={"passes": 20, "n_boot": 50, "top_k": 6},
                                     calibration={"n_boot": 50}),
                       model=trained_cnn, data=digits_raw, base_dir=tmp_path_factory.mktemp("img"))
    return result, before


def test_image_audit_runs_both_checks(image_audit: Any, trained_cnn: TinyCNN) -> None:
    from audit.artifacts.torch_models import fingerprint

    result, before = image_audit
    assert fingerprint(trained_cnn) == before, "the audit changed the module's weights, buffers or modes"
    mc = result.check("mc_dropout")
    assert mc.status.value in {"pass", "warn"}, (mc.summary, mc.error)
    m = {x.name: x.value for x in mc.metrics if x.group is None}
    assert m["ood_auroc_noise"] > 0.75  # noise comes out more uncertain than the test images
    assert m["error_detection_auroc"] > 0.7
    assert 0 <= m["referral_rate"] < 0.5 and m["accuracy_after_referral"] >= 0.95
    assert m["ood_auroc"] == min(m["ood_auroc_noise"], m["ood_auroc_shift"])
    assert {f.id for f in mc.figures} == {"uncertainty_histogram", "coverage_curve", "most_uncertain"}
    assert any("only the 2 dropout layer(s)" in n and "ran once per sample" in n for n in mc.notes)
    cal = result.check("calibration")
    assert cal.status.value in {"pass", "warn", "fail"} and any("top-label" in n for n in cal.notes)


def test_image_audit_same_seed_same_result(image_audit: Any, trained_cnn: TinyCNN, digits_raw: Any,
                                           tmp_path: Path) -> None:
    first = image_audit[0].check("mc_dropout").to_dict()
    again = run_audit(_image_policy(mc_dropout={"passes": 20, "n_boot": 50, "top_k": 6}, calibration={"n_boot": 50}),
                      model=trained_cnn, data=digits_raw, base_dir=tmp_path).check("mc_dropout").to_dict()
    first.pop("duration_s"), again.pop("duration_s")
    assert first == again


def test_ood_data_file_and_unknown_file(trained_cnn: TinyCNN, digits_raw: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "ood.npz", x=rng.random((60, 8, 8)).astype(np.float32))  # no labels needed
    policy = _image_policy(mc_dropout={"passes": 10, "n_boot": 0, "ood": "ood.npz", "ood_probes": [], "top_k": 0})
    mc = run_audit(policy, model=trained_cnn, data=digits_raw, base_dir=tmp_path).check("mc_dropout")
    got = {m.name: m.value for m in mc.metrics}
    assert "ood_auroc_noise" not in got and got["ood_auroc_data"] > 0.75, mc.error
    # "OOD" data drawn from the test distribution itself cannot be told apart: a finding, and the check fails
    np.savez(tmp_path / "same.npz", x=digits_raw["train"][0][:300])
    policy["checks"]["mc_dropout"]["ood"] = "same.npz"
    mc = run_audit(policy, model=trained_cnn, data=digits_raw, base_dir=tmp_path).check("mc_dropout")
    auc = next(m.value for m in mc.metrics if m.name == "ood_auroc")
    assert 0.35 < auc < 0.65 and mc.status.value in {"fail", "warn"}
    assert any(f.message.startswith("OOD probe 'data' is not clearly more uncertain") for f in mc.findings)
    policy["checks"]["mc_dropout"]["ood"] = "missing.npz"
    mc = run_audit(policy, model=trained_cnn, data=digits_raw, base_dir=tmp_path).check("mc_dropout")
    assert mc.status.value == "error" and "missing.npz" in mc.error.message


def test_dropout_free_module_skipped_through_the_audit(digits_raw: Any, tmp_path: Path) -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    result = run_audit(_image_policy(), model=net, data=digits_raw, base_dir=tmp_path)
    mc = result.check("mc_dropout")
    assert mc.status.value == "skipped" and mc.summary == "not run: the model has no dropout layers"


class MLP(nn.Module):
    """A tabular classifier with dropout and batch norm."""

    def __init__(self, n_in: int = 3):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3),
                                 nn.Linear(32, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_tabular_mlp_refers_one_group_far_more_often(toy_frames: Any, tmp_path: Path) -> None:
    train, _ = toy_frames
    torch.manual_seed(0)
    mlp = MLP()
    opt = torch.optim.Adam(mlp.parameters(), 1e-2)
    xt = torch.tensor(train[FEATURES].to_numpy(), dtype=torch.float32)
    yt = torch.tensor(train["label"].to_numpy())
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(mlp(xt), yt).backward()
        opt.step()
    mlp.eval()
    test = make_toy(600, seed=9)
    women = test["sex"] == "F"
    test.loc[women, ["income", "debt"]] *= 0.15  # women's cases sit near the decision boundary: less certain
    policy = base_policy(checks={"mc_dropout": {"passes": 20, "n_boot": 50, "target_accuracy": 0.97}})
    policy["model"].pop("path")
    policy["data"]["features"] = FEATURES
    result = run_audit(policy, model=mlp, data={"train": train, "test": test}, base_dir=tmp_path)
    mc = result.check("mc_dropout")
    g = {(m.name, m.group): m.value for m in mc.metrics}
    assert g[("referral_rate", "sex=F")] > 2 * g[("referral_rate", "sex=M")], g
    assert g[("mean_uncertainty", "sex=F")] > g[("mean_uncertainty", "sex=M")]
    assert g[("referral_rate_ratio", None)] < 0.5
    assert any(f.metric == "referral_rate_ratio" and "sex=F is referred" in f.message for f in mc.findings)
    assert mc.status.value == "fail"
    assert any(t.id == "most_uncertain" and t.columns[1:4] == FEATURES for t in mc.tables)
