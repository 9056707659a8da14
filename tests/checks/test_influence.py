"""The influence check: planted label noise on a real data set (scikit-learn's breast_cancer), its arithmetic.

Ten percent of the training labels are flipped (seeded); the scan must put well over half of them in its flagged
top 10%, a clean twin must get a far lower label-error estimate, cleansing must improve the test metric across
seeds, and result.json must name the flipped rows by their 0-based position in the training file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from audit import run_audit
from checks import _influence as inf
from tests.conftest import write_policy

torch.set_num_threads(1)

NOISE = 0.10


@pytest.fixture(scope="session")
def cancer() -> dict[str, Any]:
    """breast_cancer split 70/30 (seeded), with 10% of the training labels flipped and a clean twin."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer(as_frame=True)
    df = data.frame.rename(columns=lambda c: c.replace(" ", "_"))
    df["diagnosis"] = np.where(df.pop("target") == 1, "benign", "malignant")
    # a sensitive column for the gap: a coarse size group, which the model is not given
    df["size_group"] = np.where(df["mean_radius"] > df["mean_radius"].median(), "large", "small")
    train, test = train_test_split(df, test_size=0.3, random_state=0, stratify=df["diagnosis"])
    train, test = train.reset_index(drop=True), test.reset_index(drop=True)
    rng = np.random.default_rng(123)
    flipped = np.sort(rng.choice(len(train), int(NOISE * len(train)), replace=False))
    noisy = train.copy()
    noisy.loc[flipped, "diagnosis"] = np.where(train.loc[flipped, "diagnosis"] == "benign", "malignant", "benign")
    features = [c for c in df.columns if c not in ("diagnosis", "size_group")]
    return {"clean": train, "noisy": noisy, "test": test, "flipped": flipped, "features": features}


def _policy(**options: Any) -> dict[str, Any]:
    return {"version": 1, "audit": {"name": "influence"}, "seed": 3,
            "model": {"path": "model.skops", "task": "binary_classification"},
            "data": {"train": "train.csv", "test": "test.csv", "target": "diagnosis",
                     "positive_label": "malignant", "sensitive_features": ["size_group"]},
            "checks": {"influence": {"flag_fraction": NOISE, "cleanse_fraction": NOISE, "cleanse_seeds": 4,
                                     **options}},
            "report": {"formats": ["json"]}}


def _audit(folder: Path, cancer: dict[str, Any], which: str, **options: Any) -> dict[str, Any]:
    """Write data, a fitted scikit-learn model (skops) and a policy; audit; return the influence check's JSON."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folder.mkdir(parents=True, exist_ok=True)
    train = cancer[which]
    train.to_csv(folder / "train.csv", index=False)
    cancer["test"].to_csv(folder / "test.csv", index=False)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(train[cancer["features"]], train["diagnosis"])
    sio.dump(model, folder / "model.skops")
    result = run_audit(write_policy(folder, _policy(**options)))
    doc = json.loads(result.to_json())  # the result.json contract
    check = next(c for c in doc["checks"] if c["id"] == "influence")
    assert check["status"] in {"pass", "warn", "fail"}, check["error"]
    return {"json": check, "result": result.check("influence"), "folder": folder}


@pytest.fixture(scope="session")
def audits(tmp_path_factory: pytest.TempPathFactory, cancer: dict[str, Any]) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("influence")
    return {"noisy": _audit(base / "noisy", cancer, "noisy", retrain="model", method="confident_learning"),
            "clean": _audit(base / "clean", cancer, "clean")}


def _metric(check: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in check["metrics"] if m["name"] == name and m["group"] is None)


def _flagged_rows(check: dict[str, Any]) -> list[int]:
    finding = next(f for f in check["findings"] if f["evidence"] and "row" in f["evidence"][0])
    return [e["row"] for e in finding["evidence"]]


# -- the check on planted noise -----------------------------------------------------------------------------
def test_flagged_rows_are_file_positions_and_hold_most_flips(audits: dict[str, Any], cancer: dict[str, Any]) -> None:
    check = audits["noisy"]["json"]
    finding = next(f for f in check["findings"] if f["evidence"] and "row" in f["evidence"][0])
    rows = [e["row"] for e in finding["evidence"]]
    assert len(rows) == round(NOISE * len(cancer["noisy"]))
    # each row names its 0-based position in train.csv: the given label is the file's label there
    on_disk = pd.read_csv(audits["noisy"]["folder"] / "train.csv")
    for e in finding["evidence"]:
        assert on_disk["diagnosis"].iloc[e["row"]] == e["given_label"]
    recall = np.isin(cancer["flipped"], rows).mean()
    assert recall > 0.7, f"only {recall:.0%} of the flipped rows are in the flagged top 10%"


def test_clean_twin_has_far_fewer_suspected_errors(audits: dict[str, Any]) -> None:
    noisy = _metric(audits["noisy"]["json"], "suspected_label_error_rate")["value"]
    clean = _metric(audits["clean"]["json"], "suspected_label_error_rate")["value"]
    assert noisy > 0.06
    assert clean < noisy / 2
    # the default threshold flags the noisy training data, not the clean one
    assert _metric(audits["clean"]["json"], "suspected_label_error_rate")["status"] == "pass"


def test_canaries_are_found(audits: dict[str, Any]) -> None:
    for which in ("noisy", "clean"):
        canary = _metric(audits[which]["json"], "canary_recall")
        assert canary["value"] >= 0.6, which
        assert canary["ci_low"] <= canary["value"] <= canary["ci_high"]


def test_cleansing_gain_holds_across_seeds(audits: dict[str, Any]) -> None:
    gain = _metric(audits["noisy"]["json"], "cleansing_gain")
    control = _metric(audits["noisy"]["json"], "cleansing_gain_random")
    assert gain["ci_low"] > 0, gain
    assert gain["value"] > control["value"]
    text = next(f["message"] for f in audits["noisy"]["json"]["findings"] if f["metric"] == "cleansing_gain")
    assert "a gain that holds across seeds" in text and "Pipeline" in text  # the audited family was refitted


def test_report_names_surrogate_and_second_opinion(audits: dict[str, Any]) -> None:
    check = audits["noisy"]["json"]
    assert any(n.startswith("SURROGATE") for n in check["notes"])
    assert _metric(check, "surrogate_agreement")["value"] > 0.85
    assert _metric(check, "confident_learning_overlap")["value"] > 0.5
    tables = {t["id"]: t for t in check["tables"]}
    assert {"mislabel_candidates", "confident_learning", "harmful_rows", "gap_drivers"} <= set(tables)
    assert {f["id"] for f in check["figures"]} >= {"influence_distribution", "cleansing"}


def test_same_seed_same_rows(tmp_path: Path, audits: dict[str, Any], cancer: dict[str, Any]) -> None:
    again = _audit(tmp_path, cancer, "noisy", retrain="model", method="confident_learning")["json"]
    first = dict(audits["noisy"]["json"])
    for d in (first, again):
        d.pop("duration_s")
    assert _flagged_rows(first) == _flagged_rows(again)
    assert first["metrics"] == again["metrics"]


def test_detector_that_cannot_find_canaries_warns(tmp_path: Path, cancer: dict[str, Any]) -> None:
    # one epoch at a tiny learning rate: the surrogate learns nothing, so its ranking cannot find planted flips
    check = _audit(tmp_path, cancer, "noisy", epochs=1, learning_rate=1e-6, n_checkpoints=1, cleanse_fraction=0,
                   canary_min_recall=0.9)["json"]
    assert _metric(check, "canary_recall")["value"] < 0.9
    verdict = _metric(check, "suspected_label_error_rate")
    assert verdict["value"] is None and verdict["status"] == "warn"
    assert check["status"] == "warn"
    assert any("failed its self-validation" in f["message"] for f in check["findings"])


# -- the arithmetic -----------------------------------------------------------------------------------------
def _encoded(cancer: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    feats = cancer["features"]
    enc = inf.Encoder.fit(cancer["noisy"][feats])
    y = (cancer["noisy"]["diagnosis"] == "malignant").to_numpy(int)
    return enc.transform(cancer["noisy"][feats]), y, enc.transform(cancer["test"][feats])


def test_gradients_match_the_closed_form_of_logistic_regression() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2))
    params = dict(model.named_parameters())
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
    p = torch.softmax(model(x), dim=1).detach()
    resid = p - nn.functional.one_hot(y, 2)
    expected = torch.cat([(resid[:, :, None] * x[:, None, :]).reshape(5, -1), resid], dim=1)  # weight, then bias
    got = inf.GradientFn(model, "all")(params, x, y)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(inf.GradientFn(model, "logits")(params, x, y), resid)
    ck = [inf.Checkpoint({k: v.detach() for k, v in params.items()}, 0.5)]
    s = inf.self_influence(model, ck, x, y, space="all")
    np.testing.assert_allclose(s, 0.5 * expected.pow(2).sum(1).numpy(), rtol=1e-5)


def test_projection_keeps_the_ranking(cancer: dict[str, Any]) -> None:
    from scipy.stats import spearmanr

    X, y, _ = _encoded(cancer)
    model, cks = inf.train_surrogate(X, y, 2, inf.TrainSpec(kind="mlp", hidden=16, epochs=5), seed=0)
    xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    exact = inf.self_influence(model, cks, xt, yt, space="all")
    projected = inf.self_influence(model, cks, xt, yt, space="all", projection_dim=64, seed=1)
    assert inf.GradientFn(model, "all", projection_dim=64).dim == 64 < inf.GradientFn(model, "all").dim
    assert spearmanr(exact, projected).statistic > 0.9


def test_torch_model_tracin_with_checkpoints(cancer: dict[str, Any]) -> None:
    """A PyTorch MLP trained here on the noisy labels, scored with its own checkpoints and the last-layer space."""
    X, y, X_te = _encoded(cancer)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(X.shape[1], 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    states = []
    for epoch in range(30):
        net.train()
        for idx in torch.randperm(len(yt)).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
        if epoch % 10 == 9:
            states.append(({k: v.detach().clone() for k, v in net.state_dict().items()}, 0.05))
    net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    module = inf.frozen_copy(net)
    cks = inf.module_checkpoints(module, states)
    score = inf.self_influence(module, cks, xt, yt, space="last_layer")
    top = inf.top_k(score, len(cancer["flipped"]))
    assert np.isin(cancer["flipped"], top).mean() > 0.5
    final_only = inf.self_influence(module, inf.module_checkpoints(module, None), xt, yt, space="last_layer")
    assert np.isin(cancer["flipped"], inf.top_k(final_only, len(top))).mean() > 0.5
    # influence on a one-row "test set" that duplicates the training row with the largest gradient: that row is
    # its strongest proponent (Cauchy-Schwarz), and its influence equals its self-influence
    last = inf.module_checkpoints(module, None)
    i = int(np.argmax(final_only[:50]))
    infl = inf.cross_influence(module, last, xt[:50], yt[:50], inf.mean_loss_target(module, xt[i:i + 1], yt[i:i + 1]),
                               space="last_layer")
    assert int(np.argmax(infl)) == i
    assert infl[i] == pytest.approx(final_only[i], rel=1e-4)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the audited module is untouched


def test_scan_is_reproducible_and_out_of_fold_beats_plain_tracin(cancer: dict[str, Any]) -> None:
    X, y, _ = _encoded(cancer)
    spec = inf.TrainSpec(epochs=10)
    a = inf.scan(X, y, 2, spec, folds=5, seed=4)
    b = inf.scan(X, y, 2, spec, folds=5, seed=4)
    np.testing.assert_array_equal(a.score, b.score)
    plain = inf.scan(X, y, 2, spec, folds=1, space="all", seed=4)
    k = len(cancer["flipped"])

    def recall(s: np.ndarray) -> float:
        return float(np.isin(cancer["flipped"], inf.top_k(s, k)).mean())

    assert recall(a.score) >= recall(plain.score)


def test_encoder_handles_yes_no_and_categories() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, np.nan, 4.0], "flag": ["yes", "no", "yes", "no"],
                          "colour": ["red", "blue", "red", "green"], "ok": [True, False, True, True]})
    enc = inf.Encoder.fit(frame)
    out = enc.transform(pd.DataFrame({"x": [2.0], "flag": ["no"], "colour": ["purple"], "ok": [False]}))
    assert enc.numeric == ["x"] and set(enc.binary) == {"flag", "ok"} and list(enc.categories) == ["colour"]
    assert out.shape == (1, 1 + 2 + 3)
    np.testing.assert_allclose(out[0, 1:], [0, 0, 0, 0, 0])  # unseen colour: all zeros


# -- end to end on a PyTorch model (format torch, per the core's contract) ------------------------------------
TABNET = '''
import torch.nn as nn


class TabNet(nn.Module):
    def __init__(self, n_in=30, width=16):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_in, width), nn.ReLU())
        self.head = nn.Linear(width, 2)

    def forward(self, x):
        return self.head(self.body(x))
'''


def test_pytorch_model_end_to_end_with_policy_checkpoints(tmp_path: Path, cancer: dict[str, Any]) -> None:
    """A tabular MLP saved as a state dict, its training checkpoints listed in the policy with learning rates."""
    feats = cancer["features"]
    enc = inf.Encoder.fit(cancer["noisy"][feats])
    frames = {}
    for split, frame in (("train", cancer["noisy"]), ("test", cancer["test"])):
        std = pd.DataFrame(enc.transform(frame[feats]), columns=feats)  # the net takes standardised columns
        frames[split] = pd.concat([std, frame[["size_group", "diagnosis"]].reset_index(drop=True)], axis=1)
        frames[split].to_csv(tmp_path / f"{split}.csv", index=False)
    (tmp_path / "tabnet.py").write_text(TABNET, encoding="utf-8")
    namespace: dict[str, Any] = {}
    exec(compile(TABNET, str(tmp_path / "tabnet.py"), "exec"), namespace)  # noqa: S102 - the test's own code
    torch.manual_seed(0)
    net = namespace["TabNet"](n_in=len(feats))
    xt = torch.as_tensor(frames["train"][feats].to_numpy(np.float32))
    yt = torch.as_tensor((frames["train"]["diagnosis"] == "malignant").to_numpy(np.int64))  # labels sorted: b, m
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    checkpoints = []
    for epoch in range(30):
        for idx in torch.randperm(len(yt)).split(32):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
        if epoch % 10 == 9:
            torch.save(net.state_dict(), tmp_path / f"epoch{epoch + 1}.pt")
            checkpoints.append({"path": f"epoch{epoch + 1}.pt", "learning_rate": 0.05})
    torch.save(net.state_dict(), tmp_path / "model.pt")
    policy = _policy(flag_fraction=NOISE, cleanse_fraction=NOISE, checkpoints=checkpoints)
    policy["model"] = {"path": "model.pt", "format": "torch", "architecture": "tabnet:TabNet",
                       "init_kwargs": {"n_in": len(feats)}, "task": "binary_classification"}
    result = run_audit(write_policy(tmp_path, policy))
    check = json.loads(result.to_json())["checks"][0]
    assert check["id"] == "influence" and check["status"] in {"pass", "warn"}, check["error"]
    rows = _flagged_rows(check)
    assert np.isin(cancer["flipped"], rows).mean() > 0.5
    assert any("3 checkpoints from the policy" in n for n in check["notes"])
    assert _metric(check, "canary_recall")["value"] >= 0.5
    assert {"harmful_rows", "gap_drivers"} <= {t["id"] for t in check["tables"]}


def test_multiclass_in_memory_model_with_categories() -> None:
    """Three classes, a categorical input column, a scikit-learn model passed in memory, ROC AUC as the metric."""
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from tests.conftest import make_toy

    df = make_toy(500, seed=5, n_classes=3)
    df["region"] = np.random.default_rng(0).choice(["north", "south", "east"], len(df))
    train, test = df.iloc[:350].reset_index(drop=True), df.iloc[350:].reset_index(drop=True)
    feats = ["income", "debt", "noise", "region"]
    model = make_pipeline(make_column_transformer((OneHotEncoder(), ["region"]), remainder="passthrough"),
                          LogisticRegression(max_iter=500)).fit(train[feats], train["label"])
    policy = {"version": 1, "audit": {"name": "multiclass"}, "seed": 1,
              "model": {"task": "multiclass_classification"},
              "data": {"target": "label", "features": feats, "sensitive_features": ["sex"]},
              "checks": {"influence": {"cleanse_metric": "roc_auc", "cleanse_seeds": 2, "retrain": "model",
                                       "epochs": 5, "folds": 3}}}
    check = run_audit(policy, model=model, data={"train": train, "test": test}).check("influence")
    assert check.status.value in {"pass", "warn"}, check.error
    names = {m.name for m in check.metrics}
    assert {"canary_recall", "cleansing_gain", "surrogate_agreement"} <= names
    assert "surrogate_rank_correlation" not in names  # binary tasks only
    assert any("1 categorical column(s) one-hot encoded" in n for n in check.notes)


def test_xgboost_refit_reads_rounds_and_depth_from_the_trees() -> None:
    """The example's model file (150 rounds, depth 3, learning rate 0.08) keeps its trees, not its parameters."""
    import xgboost as xgb

    from tests.conftest import EXAMPLE_DIR

    clf = xgb.XGBClassifier()
    clf.load_model(EXAMPLE_DIR / "credit" / "model.ubj")
    notes: list[str] = []
    params = inf.xgb_params(clf, {"learning_rate": 0.08}, notes)
    assert params["n_estimators"] == 150 and params["max_depth"] == 3 and params["learning_rate"] == 0.08
    assert "subsample" in notes[0] and "learning_rate=0.08 from model_params" in notes[0]
