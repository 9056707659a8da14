"""Planted-shortcut image data and tiny CNNs for the gradcam and smoothgrad tests (session-scoped, seeded).

The fixtures are re-exported by tests/checks/conftest.py, so they are built once per session.

Images: scikit-learn's digits 0-3, upsampled to 16x16. The shortcut model is trained on images whose class is
given away by a corner patch (a 2x2 bright block at one of four places in the top-left 4x4 corner, one place
per class), while 40% of its training digits are swapped for digits of another class, so the patch is the only
cue that never lies. Its twin is trained the same way on the same images without the patch. Both are audited
with the top-left corner as a forbidden region; the shortcut model on patched test images (the shortcut is in
the deployment data, like a watermark), the twin on clean ones.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

torch.set_num_threads(1)

N_CLASSES = 4
SIZE = 16
CORNER = [0, 0, 4, 4]  # x0, y0, x1, y1: where the patch goes, the forbidden region
PATCH_AT = [(0, 0), (0, 2), (2, 0), (2, 2)]  # (row, col) of the 2x2 block for each class

NET = textwrap.dedent('''
    import torch.nn as nn


    class TinyCNN(nn.Module):
        def __init__(self, n_classes=4, width=8):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(2 * width * 16, n_classes))

        def forward(self, x):
            return self.classifier(self.features(x))
''')


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    from audit.artifacts.images import resize

    d = load_digits(n_class=N_CLASSES)
    raw = resize((d.images / 16.0).astype(np.float32)[..., None], (SIZE, SIZE))[..., 0]
    return np.clip(raw, 0, 1), d.target.astype(np.int64)


def _patch(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = x.copy()
    for i, c in enumerate(y):
        r, col = PATCH_AT[int(c)]
        out[i, r:r + 2, col:col + 2] = 1.0
    return out


def _train(x: np.ndarray, y: np.ndarray, net_cls: Any, seed: int, epochs: int = 25) -> Any:
    torch.manual_seed(seed)
    net = net_cls(n_classes=N_CLASSES)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt = torch.from_numpy(((x - 0.3) / 0.4)[:, None].astype(np.float32))
    yt = torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        for batch in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[batch]), yt[batch]).backward()
            opt.step()
    return net.eval()


def net_class(folder: Path) -> Any:
    """``TinyCNN`` as defined in ``folder/tinycnn.py``."""
    namespace: dict[str, Any] = {"__name__": "tinycnn"}
    exec(compile(NET, str(folder / "tinycnn.py"), "exec"), namespace)  # noqa: S102 - the tests' own code
    return namespace["TinyCNN"]


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with tinycnn.py, shortcut.pt, clean.pt, random.pt, test_patched.npz and test_clean.npz."""
    folder = tmp_path_factory.mktemp("images")
    (folder / "tinycnn.py").write_text(NET, encoding="utf-8")
    x, y = _digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    tr, te = order[:500], order[500:]
    # training digits: 40% swapped for a digit of another class (the label, and the patch, stay)
    x_tr, y_tr = x[tr].copy(), y[tr]
    swap = rng.random(len(tr)) < 0.4
    for i in np.flatnonzero(swap):
        others = np.flatnonzero(y_tr != y_tr[i])
        x_tr[i] = x[tr][rng.choice(others)]
    cls = net_class(folder)
    torch.save(_train(_patch(x_tr, y_tr), y_tr, cls, seed=1).state_dict(), folder / "shortcut.pt")
    torch.save(_train(x_tr, y_tr, cls, seed=1).state_dict(), folder / "clean.pt")
    torch.manual_seed(5)
    torch.save(cls(n_classes=N_CLASSES).state_dict(), folder / "random.pt")
    to8 = lambda a: np.round(a * 255).astype(np.uint8)  # noqa: E731
    np.savez(folder / "test_patched.npz", x=to8(_patch(x[te], y[te])), y=y[te])
    np.savez(folder / "test_clean.npz", x=to8(x[te]), y=y[te])
    return folder


FAST = {"n_images": 32, "randomisation_images": 8, "randomisation_stages": 4, "n_boot": 50,
        "gallery_per_class": 1, "steps": 8}


def image_policy(folder: Path, model: str, test: str, *, checks: dict[str, Any] | None = None,
                 name: str = "policy.yaml", **model_extra: Any) -> Path:
    """Write a policy auditing ``model`` (a state dict of TinyCNN) on ``test`` with the corner forbidden."""
    policy = {
        "version": 1,
        "audit": {"name": f"{model} on {test}"},
        "seed": 3,
        "model": {"path": model, "architecture": "tinycnn:TinyCNN", "init_kwargs": {"n_classes": N_CLASSES},
                  "task": "multiclass_classification", **model_extra},
        "data": {"test": test, "preprocess": {"mean": 0.3, "std": 0.4},
                 "regions": [{"box": [3, 0, 13, 16], "name": "digit"}],
                 "forbidden_regions": [{"box": CORNER, "name": "top-left corner"}]},
        "checks": checks if checks is not None else {"gradcam": dict(FAST), "smoothgrad": {**FAST, "samples": 16}},
        "report": {"formats": ["json"]},
    }
    path = folder / name
    path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def shortcut_result(image_dir: Path) -> Any:
    """The audit of the shortcut model on patched test images (gradcam and smoothgrad)."""
    from audit import run_audit

    return run_audit(image_policy(image_dir, "shortcut.pt", "test_patched.npz", name="shortcut.yaml"))


@pytest.fixture(scope="session")
def clean_result(image_dir: Path) -> Any:
    """The audit of the clean twin on clean test images (gradcam and smoothgrad)."""
    from audit import run_audit

    return run_audit(image_policy(image_dir, "clean.pt", "test_clean.npz", name="clean.yaml"))


def metric(result: Any, check_id: str, name: str) -> Any:
    """The metric ``name`` of a check's result."""
    return next(m for m in result.check(check_id).metrics if m.name == name)
