"""smoothgrad and the shared map-quality code: shortcut vs twin, the randomisation test, known answers."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from audit import run_audit
from audit.artifacts import load_artifacts
from audit.context import AuditContext
from audit.policy import load_policy
from checks import _saliency as S  # noqa: N812
from checks.smoothgrad import SmoothGradConfig
from tests.checks.image_fixtures import FAST, N_CLASSES, image_policy, metric, net_class

torch.set_num_threads(1)


def test_shortcut_fails_and_twin_passes(shortcut_result: Any, clean_result: Any) -> None:
    assert shortcut_result.check("smoothgrad").status.value == "fail"
    for name in ("forbidden_enrichment_combined", "occlusion_flip_rate"):
        assert metric(shortcut_result, "smoothgrad", name).status.value == "fail", name
    assert metric(shortcut_result, "smoothgrad", "forbidden_mass_share").value > \
        3 * metric(clean_result, "smoothgrad", "forbidden_mass_share").value
    good = clean_result.check("smoothgrad")
    assert good.status.value == "pass", [f.message for f in good.findings]


def _ctx(folder: Path, model: str, test: str) -> AuditContext:
    lp = load_policy(image_policy(folder, model, test, checks={}, name="ctx.yaml"))
    return AuditContext(lp, load_artifacts(lp))


@pytest.mark.parametrize("method", ["gradcam", "smoothgrad"])
def test_randomisation_separates_trained_from_randomised(image_dir: Path, method: str) -> None:
    ctx = _ctx(image_dir, "clean.pt", "test_clean.npz")
    idx = np.arange(10)
    params = S.MapParams(method, samples=16)
    x = ctx.model.to_tensor(ctx.X("test")[idx])
    t = S.targets_for(ctx, "test", idx, "predicted")
    trained = S.maps_of(S.explained_module(ctx), params, x, t, stdev=0.3, seed=1)
    # control: an untouched copy gives the same maps (the measure is not trivially low)
    again = S.maps_of(copy.deepcopy(S.explained_module(ctx)), params, x, t, stdev=0.3, seed=1)
    np.testing.assert_allclose(S.rank_corr(trained, again), 1.0)
    res = S.randomisation_test(ctx, params, x, t, trained, max_stages=3, seed=2, stdev=0.3)
    assert len(res["stages"]) == 3 and res["stages"][-1]["label"] == "all layers"
    assert res["stages"][-1]["rank_corr"].mean() < 0.5
    assert res["stages"][-1]["rank_corr"].mean() < res["stages"][0]["rank_corr"].mean() + 0.2


def test_maps_that_ignore_the_model_fail_the_sanity_check(image_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def edge_detector(module: Any, params: Any, x: Any, targets: Any, **_: Any) -> np.ndarray:
        return x.abs().sum(dim=1).numpy().astype(np.float64)  # the input's own structure, whatever the weights

    monkeypatch.setattr(S, "maps_of", edge_detector)
    checks = {"smoothgrad": {**FAST, "combine": False, "gallery_per_class": 0}}
    r = run_audit(image_policy(image_dir, "clean.pt", "test_clean.npz", checks=checks, name="edges.yaml"))
    m = metric(r, "smoothgrad", "randomisation_rank_corr")
    assert m.value == pytest.approx(1.0) and m.status.value == "fail"


def test_samples_in_one_batch_and_alias(image_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from captum.attr import NoiseTunnel

    assert SmoothGradConfig.model_validate({"nt_samples": 7}).samples == 7
    calls: list[dict[str, Any]] = []
    real = NoiseTunnel.attribute

    def spy(self: Any, inputs: Any, **kw: Any) -> Any:
        calls.append({"n": len(inputs), **kw})
        return real(self, inputs, **kw)

    monkeypatch.setattr(NoiseTunnel, "attribute", spy)
    ctx = _ctx(image_dir, "clean.pt", "test_clean.npz")
    idx = np.arange(10)
    S.cached_maps(ctx, S.MapParams("smoothgrad", samples=20, batch_size=100), "test", idx, "predicted")
    assert [c["n"] for c in calls] == [5, 5]  # 100 rows per pass: 5 images x 20 noisy copies
    assert all(c["nt_samples"] == 20 and c.get("nt_samples_batch_size") is None for c in calls)


def test_smoothgrad_runs_on_torchscript(image_dir: Path) -> None:
    net = net_class(image_dir)(n_classes=N_CLASSES)
    net.load_state_dict(torch.load(image_dir / "shortcut.pt", weights_only=True))
    torch.jit.script(net.eval()).save(str(image_dir / "shortcut_script.pt"))
    checks = {"smoothgrad": {**FAST, "samples": 8, "randomisation_images": 4, "gallery_per_class": 0}}
    r = run_audit(image_policy(image_dir, "shortcut_script.pt", "test_patched.npz", name="ts.yaml", checks=checks,
                               architecture=None, init_kwargs={}))
    sg = r.check("smoothgrad")
    assert sg.status.value == "fail", sg.error
    assert any("Grad-CAM maps could not be computed" in n for n in sg.notes)
    assert metric(r, "smoothgrad", "occlusion_flip_rate").status.value == "fail"


# -- known answers of the shared measures -----------------------------------------------------------------
def test_rank_corr_and_ssim_known_answers() -> None:
    a = np.arange(16, dtype=float).reshape(1, 4, 4)
    np.testing.assert_allclose(S.rank_corr(a, a * 3 + 1), [1.0])
    np.testing.assert_allclose(S.rank_corr(a, -a), [-1.0])
    np.testing.assert_allclose(S.rank_corr(a, np.zeros_like(a)), [0.0])
    np.testing.assert_allclose(S.ssim(a, a), [1.0])
    assert S.ssim(a, a[:, ::-1, ::-1].copy())[0] < 0


def test_region_focus_known_answer() -> None:
    maps = np.zeros((2, 4, 4))
    maps[0, 0, 0] = 3.0
    maps[0, 3, 3] = 1.0
    maps[1] = 1.0
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[:, :2, :2] = True
    rf = S.region_focus(maps, masks)
    np.testing.assert_allclose(rf["share"], [0.75, 0.25])
    np.testing.assert_allclose(rf["area"], [0.25, 0.25])
    assert rf["enrichment"] == pytest.approx(0.5 / 0.25)
    np.testing.assert_allclose(rf["hit"], [1.0, 1.0])  # the flat map's first peak pixel is (0, 0)
    assert S.region_focus(maps, np.zeros_like(masks)) is None


class _LeftHalf(torch.nn.Module):
    """Class 1's logit is the sum of the left half of the image; class 0's is constant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, 0, :, :2].sum(dim=(1, 2))
        return torch.stack([torch.zeros_like(s) + 2.0, s], dim=1)


def test_deletion_insertion_known_answer() -> None:
    from audit.artifacts.torch_models import TorchModel

    class Ctx:
        class model:  # noqa: N801 - mimics ctx.model
            native = _LeftHalf()
            torch_model = TorchModel(native)

    x = np.ones((1, 1, 2, 4), dtype=np.float32) * 2  # left half sums to 8: P(class 1) = sigmoid(6)
    order_good = np.array([[0, 1, 4, 5, 2, 3, 6, 7]])  # the left-half pixels first
    order_bad = np.array([[2, 3, 6, 7, 0, 1, 4, 5]])
    fill = np.zeros(1, dtype=np.float32)
    t = np.array([1])
    good, ins_good = S.deletion_insertion(Ctx, x, order_good, t, fill, steps=2, batch_size=64)
    bad, ins_bad = S.deletion_insertion(Ctx, x, order_bad, t, fill, steps=2, batch_size=64)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    np.testing.assert_allclose(good[0], [sig(6), sig(-2), sig(-2)], rtol=1e-6)
    np.testing.assert_allclose(bad[0], [sig(6), sig(6), sig(-2)], rtol=1e-6)
    np.testing.assert_allclose(ins_good[0], [sig(-2), sig(6), sig(6)], rtol=1e-6)
    assert S.auc(good)[0] < S.auc(bad)[0] and S.auc(ins_good)[0] > S.auc(ins_bad)[0]
    np.testing.assert_allclose(S.auc(np.array([[1.0, 0.0, 0.0]])), [0.25])


def test_cascade_stages() -> None:
    assert S.cascade_stages(["a", "b", "c", "d"], 3) == [["d"], ["d", "c"], ["d", "c", "b", "a"]]
    assert S.cascade_stages(["a", "b"], 6) == [["b"], ["b", "a"]]
