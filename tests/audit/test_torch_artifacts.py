"""PyTorch models and image data in the audit context: loading, preprocessing, regions, errors."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from audit import run_audit
from audit.artifacts import load_artifacts
from audit.artifacts.torch_models import fingerprint, is_dropout
from audit.context import AuditContext
from audit.errors import ArtifactError, PolicyError
from audit.policy import load_policy
from tests.conftest import write_policy

torch.set_num_threads(1)

NET = textwrap.dedent('''
    import torch.nn as nn


    class Net(nn.Module):
        def __init__(self, n_classes=3, width=4):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                          nn.MaxPool2d(2))
            self.drop = nn.Dropout(0.2)
            self.head = nn.Linear(width * 4 * 4, n_classes)

        def forward(self, x):
            return self.head(self.drop(self.features(x).flatten(1)))


    class NoDrop(nn.Module):
        def __init__(self, n_in=3):
            super().__init__()
            self.lin = nn.Linear(n_in, 2)

        def forward(self, x):
            return self.lin(x)


    NOT_A_MODULE = 3
''')


def _net_class(folder: Path, name: str = "Net") -> Any:
    namespace: dict[str, Any] = {}
    exec(compile(NET, str(folder / "torchnet.py"), "exec"), namespace)  # noqa: S102 - the test's own code
    return namespace[name]


@pytest.fixture(scope="session")
def torch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with torchnet.py, a state dict (.pt and .safetensors), a TorchScript file and image data."""
    from PIL import Image
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("torch")
    (folder / "torchnet.py").write_text(NET, encoding="utf-8")
    torch.manual_seed(0)
    net = _net_class(folder)(n_classes=3).eval()
    torch.save(net.state_dict(), folder / "model.pt")
    torch.save({"epoch": 3, "state_dict": net.state_dict()}, folder / "checkpoint.pt")
    save_file(net.state_dict(), str(folder / "model.safetensors"))
    torch.jit.script(net).save(str(folder / "scripted.pt"))
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2)), folder / "pickled.pt")  # refused by weights_only
    rng = np.random.default_rng(0)
    x = (rng.random((30, 8, 8)) * 255).astype(np.uint8)
    y = rng.integers(0, 3, 30)
    np.savez(folder / "test.npz", x=x, y=y, site=rng.choice(["a", "b"], 30))
    np.savez(folder / "train.npz", x=np.moveaxis(np.repeat(x[:, None], 3, axis=1), 1, 1), y=y)
    for c in range(3):
        (folder / "images" / str(c)).mkdir(parents=True)
        for i in range(4):
            Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(folder / "images" / str(c) / f"{i}.png")
    return folder


def _policy(folder: Path, model: dict[str, Any] | None = None, data: dict[str, Any] | None = None) -> Path:
    policy = {
        "version": 1,
        "audit": {"name": "torch test"},
        "model": {"path": "model.pt", "architecture": "torchnet:Net", "init_kwargs": {"n_classes": 3},
                  "task": "multiclass_classification", **(model or {})},
        "data": data or {"test": "test.npz", "preprocess": {"size": 8, "mean": 0.5, "std": 0.25}},
        "checks": {"performance": {"n_boot": 20}},
        "report": {"formats": ["json"]},
    }
    return write_policy(folder, policy)


def _ctx(path: Path, **kw: Any) -> AuditContext:
    lp = load_policy(path)
    return AuditContext(lp, load_artifacts(lp, **kw))


def _at(path: Path, key: str, nth: int = 0) -> str:
    """``file:line:col`` of the ``nth`` line that starts (after indentation) with ``key``."""
    lines = [(i, line) for i, line in enumerate(path.read_text().splitlines(), start=1)
             if line.lstrip(" -").startswith(key)]
    i, line = lines[nth]
    return f"{path}:{i}:{len(line) - len(line.lstrip(' -')) + 1}"


def _errors(path: Path) -> list[str]:
    with pytest.raises(PolicyError) as info:
        _ctx(path)
    return [str(i) for i in info.value.issues]


def test_state_dict_npz_context(torch_dir: Path) -> None:
    ctx = _ctx(_policy(torch_dir))
    assert ctx.data_kind == "image" and ctx.model.kind == "torch"
    x = ctx.X("test")
    assert x.dtype == np.float32 and x.shape == (30, 1, 8, 8)
    raw = np.load(torch_dir / "test.npz")["x"]
    np.testing.assert_allclose(x[:, 0], (raw / 255.0 - 0.5) / 0.25, atol=1e-5)
    assert {"image", "torch", "gradients", "layer_hooks", "dropout", "probabilities"} <= ctx.capabilities()
    assert "tabular" not in ctx.capabilities()
    assert ctx.labels == [0, 1, 2]
    assert ctx.sensitive("test").shape == (30, 0)
    module = ctx.model.native
    assert isinstance(module, torch.nn.Module) and not module.training
    with torch.no_grad():
        want = torch.softmax(module(torch.from_numpy(x)), dim=1).double().numpy()
    proba = ctx.proba("test")
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba, want, rtol=1e-6)
    assert ctx.model.to_tensor(x).shape == (30, 1, 8, 8)
    assert list(ctx.predict("test")) == list(want.argmax(1))
    np.testing.assert_allclose(ctx.images_for_display("test", slice(0, 2))[..., 0], raw[:2] / 255.0, atol=1e-5)


def test_safetensors_checkpoint_and_torchscript_agree(torch_dir: Path) -> None:
    base = _ctx(_policy(torch_dir)).proba("test")
    ck = _ctx(_policy(torch_dir, {"path": "checkpoint.pt"}))
    assert any("checkpoint" in n for n in ck.artifacts.notes)
    np.testing.assert_allclose(ck.proba("test"), base)
    np.testing.assert_allclose(_ctx(_policy(torch_dir, {"path": "model.safetensors"})).proba("test"), base)
    ts = _ctx(_policy(torch_dir, {"path": "scripted.pt", "architecture": None, "init_kwargs": {}}))
    assert ts.model.kind == "torchscript"  # told apart from a state dict by its archive
    np.testing.assert_allclose(ts.proba("test"), base, rtol=1e-6)
    caps = ts.capabilities()
    assert {"torch", "dropout"} <= caps and "layer_hooks" not in caps


def test_image_folder_resized_and_hashed(torch_dir: Path) -> None:
    data = {"test": "images", "preprocess": {"size": 8, "channels": 1}}
    ctx = _ctx(_policy(torch_dir, {"classes": [0, 1, 2]}, data))
    assert ctx.X("test").shape == (12, 1, 8, 8)
    assert sorted(set(ctx.y("test").tolist())) == [0, 1, 2]
    assert ctx.frame("test")["file"].iloc[0] == "0/0.png"
    prov = ctx.artifacts.provenance["data"]["test"]
    assert len(prov["sha256"]) == 64 and prov["rows"] == 12
    again = _ctx(_policy(torch_dir, {"classes": [0, 1, 2]}, data)).artifacts.provenance["data"]["test"]["sha256"]
    assert again == prov["sha256"]


def test_channels_converted_and_layout(torch_dir: Path) -> None:
    # train.npz holds the same images as 3 identical channels, channels first; channels: 1 takes the luma
    data = {"train": "train.npz", "test": "test.npz", "preprocess": {"channels": 1}}
    ctx = _ctx(_policy(torch_dir, data=data))
    np.testing.assert_allclose(ctx.X("train"), ctx.X("test"), atol=1e-5)


def test_regions_become_masks(torch_dir: Path) -> None:
    data = {"test": "test.npz", "regions": [{"box": [2, 2, 6, 6]}],
            "forbidden_regions": [{"box": [0, 0, 2, 2], "class": 1, "name": "corner"}]}
    ctx = _ctx(_policy(torch_dir, data=data))
    inside = ctx.region_mask("test", "regions")
    assert inside.shape == (30, 8, 8) and inside[0, 2:6, 2:6].all() and inside[0].sum() == 16
    forbidden = ctx.region_mask("test", "forbidden_regions")
    is1 = ctx.y("test") == 1
    assert forbidden[is1].sum() == 4 * is1.sum() and forbidden[~is1].sum() == 0
    assert ctx.region_names("forbidden_regions") == ["corner"]


def test_mask_file_regions(torch_dir: Path) -> None:
    masks = np.zeros((30, 8, 8), dtype=bool)
    masks[:, 7, :] = True
    np.savez(torch_dir / "masks.npz", test=masks)
    ctx = _ctx(_policy(torch_dir, data={"test": "test.npz", "forbidden_regions": [{"mask": "masks.npz"}]}))
    assert ctx.region_mask("test", "forbidden_regions").sum() == 30 * 8
    np.savez(torch_dir / "bad_masks.npz", test=masks[:, :4])
    errs = _errors(_policy(torch_dir, data={"test": "test.npz", "forbidden_regions": [{"mask": "bad_masks.npz"}]}))
    assert len(errs) == 1 and "has shape (30, 4, 8); expected (8, 8) or (30, 8, 8)" in errs[0]


def test_sensitive_array_from_npz(torch_dir: Path) -> None:
    ctx = _ctx(_policy(torch_dir, data={"test": "test.npz", "sensitive_features": ["site"]}))
    assert list(ctx.sensitive("test").columns) == ["site"] and "sensitive_features" in ctx.capabilities()


def test_performance_runs_on_images(torch_dir: Path) -> None:
    result = run_audit(_policy(torch_dir))
    perf = result.check("performance")
    assert perf.status.value == "pass", perf.error
    acc = next(m.value for m in perf.metrics if m.name == "accuracy")
    ctx = _ctx(_policy(torch_dir))
    assert acc == pytest.approx(float(np.mean(ctx.predict("test") == ctx.y("test"))))


def test_in_memory_module_and_arrays(torch_dir: Path) -> None:
    net = _net_class(torch_dir)(n_classes=3)
    net.load_state_dict(torch.load(torch_dir / "model.pt", weights_only=True))
    z = np.load(torch_dir / "test.npz")
    policy = {"version": 1, "audit": {"name": "memory"}, "model": {"task": "multiclass_classification"},
              "data": {"format": "npz", "preprocess": {"mean": 0.5, "std": 0.25}}, "checks": ["performance"]}
    lp = load_policy(policy)
    ctx = AuditContext(lp, load_artifacts(lp, model=net, data={"test": (z["x"], z["y"])}))
    assert ctx.model.kind == "torch" and ctx.model.native is net and not net.training
    np.testing.assert_allclose(ctx.proba("test"), _ctx(_policy(torch_dir)).proba("test"))


def test_torch_mlp_on_tabular(tmp_path: Path) -> None:
    (tmp_path / "torchnet.py").write_text(NET, encoding="utf-8")
    torch.manual_seed(0)
    net = _net_class(tmp_path, "NoDrop")(n_in=3)
    torch.save(net.state_dict(), tmp_path / "mlp.pt")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(40, 3)), columns=["a", "b", "c"]).assign(label=rng.integers(0, 2, 40))
    frame.to_csv(tmp_path / "test.csv", index=False)
    ctx = _ctx(_policy(tmp_path, {"path": "mlp.pt", "architecture": "torchnet:NoDrop", "init_kwargs": {"n_in": 3},
                                  "task": "binary_classification"}, {"test": "test.csv", "target": "label"}))
    assert ctx.data_kind == "tabular" and "tabular" in ctx.capabilities() and "dropout" not in ctx.capabilities()
    assert ctx.model.to_tensor(ctx.X("test")).shape == (40, 3)
    with torch.no_grad():
        want = torch.softmax(net(torch.tensor(frame[["a", "b", "c"]].to_numpy(), dtype=torch.float32)), 1)
    np.testing.assert_allclose(ctx.proba("test"), want.double().numpy(), rtol=1e-6)


def test_fingerprint_sees_weights_and_mode(torch_dir: Path) -> None:
    net = _net_class(torch_dir)(n_classes=3).eval()
    before = fingerprint(net)
    assert fingerprint(copy.deepcopy(net)) == before
    net.train()
    assert fingerprint(net) != before
    net.eval()
    with torch.no_grad():
        net.head.bias[0] += 1
    assert fingerprint(net) != before


# -- errors: each names the policy line and what to do ----------------------------------------------------
def test_malformed_architecture_is_a_policy_error(torch_dir: Path) -> None:
    path = _policy(torch_dir, {"architecture": "torchnet.Net"})
    assert _errors(path) == [f"{_at(path, 'architecture:')}: model.architecture: must be 'package.module:ClassName' "
                             "(a module importable from the policy's folder or the environment, a colon, the class "
                             "name); got 'torchnet.Net'"]


def test_missing_module_class_and_not_a_module(torch_dir: Path) -> None:
    path = _policy(torch_dir, {"architecture": "no_such_pkg.net:Net"})
    errs = _errors(path)
    assert len(errs) == 1
    assert errs[0].startswith(f"{_at(path, 'architecture:')}: model.architecture: cannot import module "
                              "'no_such_pkg.net' (looked in the policy's folder")
    assert "ModuleNotFoundError" in errs[0]
    errs = _errors(_policy(torch_dir, {"architecture": "torchnet:Nett"}))
    assert errs[0].endswith("model.architecture: module 'torchnet' has no class 'Nett'; it defines Net, NoDrop")
    errs = _errors(_policy(torch_dir, {"architecture": "torchnet:NOT_A_MODULE"}))
    assert errs[0].endswith("torchnet:NOT_A_MODULE is not a torch.nn.Module subclass; got int")


def test_weights_that_do_not_fit(torch_dir: Path) -> None:
    errs = _errors(_policy(torch_dir, {"init_kwargs": {"n_classes": 4}}))
    assert len(errs) == 1
    assert "the weights do not fit Net(**{'n_classes': 4}): shape mismatch: head.weight: file (3, 64) vs model " \
           "(4, 64); head.bias: file (3,) vs model (4,)" in errs[0]
    errs = _errors(_policy(torch_dir, {"init_kwargs": {"n_class": 3}}))
    assert "model.init_kwargs: Net(**{'n_class': 3}) failed: TypeError" in errs[0]


def test_state_dict_needs_architecture_and_pickles_are_refused(torch_dir: Path) -> None:
    errs = _errors(_policy(torch_dir, {"architecture": None}))
    assert "model.pt is a state dict: name the class that holds it" in errs[0]
    errs = _errors(_policy(torch_dir, {"path": "pickled.pt"}))
    assert "cannot read pickled.pt as a state dict (torch.load with weights_only=True" in errs[0]


def test_input_shape_mismatch_found_at_load(torch_dir: Path) -> None:
    path = _policy(torch_dir, data={"test": "test.npz", "preprocess": {"size": 10}})
    errs = _errors(path)
    assert len(errs) == 1
    assert errs[0].startswith(f"{_at(path, 'preprocess:')}: data.preprocess: the model cannot take the test images "
                              "of shape (8, 1, 10, 10)")
    assert "Set `data.preprocess` (size, channels)" in errs[0]


def test_class_count_mismatch_and_image_errors(torch_dir: Path) -> None:
    errs = _errors(_policy(torch_dir, {"classes": [0, 1, 2, 3]}))
    assert any("the model gives 3 outputs but the data has 4 classes" in e for e in errs)
    path = _policy(torch_dir, data={"test": "test.npz", "regions": [{"box": [0, 0, 9, 4]}]})
    errs = _errors(path)
    assert errs == [f"{_at(path, 'box:')}: data.regions[0].box: box [0, 0, 9, 4] reaches outside the "
                    "preprocessed image (8 wide, 8 high); boxes are [x0, y0, x1, y1] in pixels of the preprocessed "
                    "input, end exclusive"]
    errs = _errors(_policy(torch_dir, data={"test": "test.npz", "regions": [{"box": [4, 0, 2, 4]}]}))
    assert "box [4, 0, 2, 4] must have 0 <= x0 < x1 and 0 <= y0 < y1" in errs[0]
    np.savez(torch_dir / "nolabels.npz", x=np.zeros((3, 8, 8)))
    errs = _errors(_policy(torch_dir, data={"test": "nolabels.npz"}))
    assert "nolabels.npz lacks the array(s) ['y']" in errs[0]


def test_tabular_data_still_needs_a_target(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="data.target: missing required key 'target'"):
        load_policy({"version": 1, "audit": {"name": "x"}, "data": {"test": "t.csv"}})
    with pytest.raises(ArtifactError, match="image data needs a PyTorch model"):
        lp = load_policy({"version": 1, "audit": {"name": "x"}, "model": {"path": "m.ubj"},
                          "data": {"format": "npz"}})
        load_artifacts(lp, model=_SklearnLike(), data={"test": (np.zeros((4, 8, 8)), np.array([0, 1, 0, 1]))})


class _SklearnLike:
    def predict(self, X: Any) -> np.ndarray:
        return np.zeros(len(X))


def test_dropout_found_by_class_not_by_name() -> None:
    class MyDropout(torch.nn.Dropout):  # a custom subclass is still dropout: the mc_dropout check must run
        pass

    assert is_dropout(MyDropout(0.2)) and is_dropout(torch.nn.AlphaDropout(0.1))
    assert is_dropout(torch.jit.script(torch.nn.Sequential(torch.nn.Dropout(0.1)))[0])
    assert not is_dropout(torch.nn.Linear(2, 2)) and not is_dropout(torch.nn.BatchNorm1d(2))
