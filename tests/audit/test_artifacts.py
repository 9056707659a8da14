from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from audit.artifacts import load_artifacts
from audit.artifacts.data import sha256_frame
from audit.errors import ArtifactError
from audit.policy import load_policy
from tests.conftest import FEATURES, base_policy, write_policy


def _load(folder: Path, **overrides: Any) -> Any:
    return load_artifacts(load_policy(write_policy(folder, base_policy(**overrides))))


def _issues(folder: Path, **overrides: Any) -> list[str]:
    with pytest.raises(ArtifactError) as info:
        _load(folder, **overrides)
    return [str(i).replace(str(folder) + "/", "") for i in info.value.issues]


def test_xgboost_loads_and_matches_original(toy_dir: Path, toy_frames: Any, fitted_xgb: Any) -> None:
    art = _load(toy_dir)
    _, test = toy_frames
    assert art.model.kind == "xgboost"
    assert art.features == FEATURES
    assert art.labels == [0, 1] and art.positive_label == 1
    np.testing.assert_allclose(art.model.predict_proba(test[FEATURES]), fitted_xgb.predict_proba(test[FEATURES]),
                               rtol=1e-6)
    assert art.provenance["model"]["sha256"] == hashlib.sha256((toy_dir / "model.ubj").read_bytes()).hexdigest()
    assert art.provenance["data"]["test"]["rows"] == len(test)


def test_skops_loads(toy_dir: Path, toy_frames: Any, fitted_logreg: Any) -> None:
    import skops.io as sio

    sio.dump(fitted_logreg, toy_dir / "model.skops")
    art = _load(toy_dir, model={"path": "model.skops"})
    _, test = toy_frames
    assert art.model.kind == "sklearn" and art.model.classes == [0, 1]
    np.testing.assert_allclose(art.model.predict_proba(test[FEATURES]), fitted_logreg.predict_proba(test[FEATURES]))


def test_skops_refuses_untrusted_types(toy_dir: Path) -> None:
    import skops.io as sio

    sio.dump(CustomLogReg(), toy_dir / "model.skops")  # a class of this module: not trusted by default
    issues = _issues(toy_dir, model={"path": "model.skops"})
    assert "contains types that skops does not trust by default" in issues[0]
    assert "model.trusted_types" in issues[0]


def test_onnx_loads(toy_dir: Path, toy_frames: Any, fitted_logreg: Any) -> None:
    from skl2onnx import to_onnx

    train, test = toy_frames
    onx = to_onnx(fitted_logreg, train[FEATURES].to_numpy(dtype=np.float32)[:1], options={"zipmap": False})
    (toy_dir / "model.onnx").write_bytes(onx.SerializeToString())
    art = _load(toy_dir, model={"path": "model.onnx"})
    assert art.model.kind == "onnx" and art.model.feature_names is None
    np.testing.assert_allclose(art.model.predict_proba(test[FEATURES]), fitted_logreg.predict_proba(test[FEATURES]),
                               atol=1e-5)
    assert any("one matrix input" in n for n in art.notes)


class CustomLogReg(LogisticRegression):
    """A user-defined estimator class, which skops does not trust by default."""


class _WritesFile:
    """Unpickling this writes a marker file: the proof that loading ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.write_text, (self.marker, "pwned"))


@pytest.mark.parametrize("fmt", ["pickle", "joblib"])
def test_pickle_refused_without_trust_and_never_unpickled(toy_dir: Path, fmt: str) -> None:
    marker = toy_dir / "marker.txt"
    path = toy_dir / f"model.{'pkl' if fmt == 'pickle' else 'joblib'}"
    if fmt == "pickle":
        path.write_bytes(pickle.dumps(_WritesFile(marker)))
    else:
        joblib.dump(_WritesFile(marker), path)
    issues = _issues(toy_dir, model={"path": path.name, "format": fmt})
    assert f"refusing to load {path.name}: {fmt} files run arbitrary code when loaded" in issues[0]
    assert "`model.trust: true`" in issues[0]
    assert not marker.exists()


def test_pickle_loads_with_trust(toy_dir: Path, fitted_logreg: Any) -> None:
    (toy_dir / "model.pkl").write_bytes(pickle.dumps(fitted_logreg))
    art = _load(toy_dir, model={"path": "model.pkl", "trust": True})
    assert art.model.kind == "sklearn"


def test_missing_files_are_located(toy_dir: Path) -> None:
    os.remove(toy_dir / "test.csv")
    issues = _issues(toy_dir, model={"path": "nope.ubj", "format": "xgboost"})
    assert issues == [
        "policy.yaml:13:3: data.test: data file not found: test.csv",
        "policy.yaml:9:3: model.path: model file not found: nope.ubj",
    ]


def test_absent_columns_are_named_with_suggestions(toy_dir: Path) -> None:
    data = base_policy()["data"] | {"target": "lable", "sensitive_features": ["sex", "agegroup"]}
    issues = _issues(toy_dir, data=data)
    assert issues[0].startswith("policy.yaml:15:3: data.target: column 'lable' not found in train.csv; did you "
                                "mean 'label'?")
    assert "data.sensitive_features: column 'agegroup' not found in train.csv; did you mean 'age_group'?" in issues[1]


def test_feature_mismatch_with_the_model(toy_dir: Path) -> None:
    data = base_policy()["data"] | {"sensitive_features": ["sex"]}  # age_group becomes a model input
    issues = _issues(toy_dir, data=data)
    assert "model and data do not match: the data's features include ['age_group'] which the model was not " \
           "fitted on" in issues[0]


def test_non_binary_target_for_binary_task(toy_dir: Path, toy_frames: Any) -> None:
    train, test = toy_frames
    test = test.assign(label=np.arange(len(test)) % 3)
    test.to_csv(toy_dir / "test.csv", index=False)
    issues = _issues(toy_dir, model={"path": "model.ubj", "classes": [0, 1, 2]})
    assert any("binary_classification needs exactly two labels; 'label' has 3" in i for i in issues)


def test_positive_label_must_exist(toy_dir: Path) -> None:
    issues = _issues(toy_dir, data=base_policy()["data"] | {"positive_label": "yes"})
    assert issues == ["policy.yaml:16:3: data.positive_label: 'yes' is not one of the labels [0, 1]"]


def test_parquet_and_in_memory_data(toy_dir: Path, toy_frames: Any, fitted_xgb: Any) -> None:
    train, test = toy_frames
    train.to_parquet(toy_dir / "train.parquet")
    test.to_parquet(toy_dir / "test.parquet")
    art = _load(toy_dir, data=base_policy()["data"] | {"train": "train.parquet", "test": "test.parquet"})
    pd.testing.assert_frame_equal(art.frames["test"], test)
    lp = load_policy({**base_policy(), "model": {"task": "binary_classification"}}, base_dir=toy_dir)
    art2 = load_artifacts(lp, model=fitted_xgb, data={"train": train, "test": test})
    assert art2.provenance["data"]["test"]["sha256"] == sha256_frame(test)
    assert art2.provenance["model"]["source"] == "in memory"


def test_model_that_cannot_read_the_data_is_an_input_error(toy_dir: Path, toy_frames: Any) -> None:
    _, test = toy_frames
    test.assign(noise=["unknown"] * len(test)).to_csv(toy_dir / "test.csv", index=False)  # text where numbers were
    issues = _issues(toy_dir)
    assert issues[0].startswith("policy.yaml:9:3: model: the model cannot predict on the test data: ValueError")
    assert issues[0].endswith("Check the feature columns' types and `data.features`")
