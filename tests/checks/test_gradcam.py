"""gradcam: the planted shortcut fails the region checks, its clean twin passes; layer choice; model untouched."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from audit import run_audit
from audit.artifacts.torch_models import fingerprint
from tests.checks.image_fixtures import FAST, N_CLASSES, image_policy, metric, net_class

torch.set_num_threads(1)


def test_shortcut_fails_on_region_metrics(shortcut_result: Any) -> None:
    r = shortcut_result.check("gradcam")
    assert r.status.value == "fail", r.error
    for name in ("forbidden_enrichment_combined", "occlusion_flip_rate"):
        assert metric(shortcut_result, "gradcam", name).status.value == "fail", name
    assert metric(shortcut_result, "gradcam", "occlusion_flip_rate").value > 0.3
    assert any("Blanking the forbidden regions changed" in f.message for f in r.findings)


def test_clean_twin_passes(clean_result: Any) -> None:
    r = clean_result.check("gradcam")
    assert r.status.value == "pass", [f.message for f in r.findings]
    assert metric(clean_result, "gradcam", "forbidden_enrichment_combined").value < 1.5
    assert metric(clean_result, "gradcam", "occlusion_flip_rate").value < 0.1
    assert metric(clean_result, "gradcam", "pointing_game").value > 0.6


def test_shortcut_separated_from_twin_by_each_region_signal(shortcut_result: Any, clean_result: Any) -> None:
    for name in ("forbidden_mass_share", "forbidden_enrichment", "forbidden_peak_rate", "occlusion_flip_rate"):
        bad, good = metric(shortcut_result, "gradcam", name).value, metric(clean_result, "gradcam", name).value
        assert bad > 2 * good, (name, bad, good)


def test_combined_metric_is_the_larger_of_both_methods(shortcut_result: Any) -> None:
    own = metric(shortcut_result, "gradcam", "forbidden_enrichment").value
    other = metric(shortcut_result, "smoothgrad", "forbidden_enrichment").value
    combined = metric(shortcut_result, "gradcam", "forbidden_enrichment_combined")
    assert combined.value == pytest.approx(max(own, other))
    assert combined.note == f"from {'Grad-CAM' if own >= other else 'SmoothGrad'}"
    assert metric(shortcut_result, "smoothgrad", "forbidden_enrichment_combined").value == pytest.approx(combined.value)


def test_default_layer_named_and_faithfulness_beats_random(clean_result: Any) -> None:
    r = clean_result.check("gradcam")
    assert "layer 'features.4'" in r.summary
    assert any("at layer 'features.4' (Conv2d, the last Conv2d found (default))" in n for n in r.notes)
    assert metric(clean_result, "gradcam", "deletion_auc").value < metric(clean_result, "gradcam",
                                                                          "deletion_auc_random").value
    assert metric(clean_result, "gradcam", "insertion_auc").value > metric(clean_result, "gradcam",
                                                                           "insertion_auc_random").value


def test_gallery_is_an_overlay_png_with_right_and_wrong(shortcut_result: Any) -> None:
    from PIL import Image

    fig = next(f for f in shortcut_result.check("gradcam").figures if f.id == "gradcam_gallery")
    assert fig.media_type == "image/png"
    with Image.open(io.BytesIO(fig.data)) as im:
        assert im.width > 300 and im.height > 100
    assert "most confident right" in fig.caption and "blue: data.forbidden_regions" in fig.caption
    kinds = {f.id for f in shortcut_result.check("gradcam").figures}
    assert {"gradcam_deletion_insertion", "gradcam_randomisation"} <= kinds


def test_named_layer_unknown_layer_and_torchscript(image_dir: Path) -> None:
    checks = {"gradcam": {**FAST, "layer": "features.0", "combine": False, "randomisation_images": 0}}
    r = run_audit(image_policy(image_dir, "clean.pt", "test_clean.npz", checks=checks, name="layer.yaml"))
    assert "layer 'features.0'" in r.check("gradcam").summary
    assert "agreement_rank_corr" not in {m.name for m in r.check("gradcam").metrics}
    checks = {"gradcam": {**FAST, "layer": "features.9"}}
    r = run_audit(image_policy(image_dir, "clean.pt", "test_clean.npz", checks=checks, name="badlayer.yaml"))
    assert r.check("gradcam").status.value == "error"
    assert "layer 'features.9' is not a layer of the model; its convolution layers are ['features.0', " \
           "'features.4']" in r.check("gradcam").error.message

    net = net_class(image_dir)(n_classes=N_CLASSES)
    net.load_state_dict(torch.load(image_dir / "clean.pt", weights_only=True))
    torch.jit.script(net.eval()).save(str(image_dir / "clean_script.pt"))
    r = run_audit(image_policy(image_dir, "clean_script.pt", "test_clean.npz", name="script.yaml",
                               checks={"gradcam": dict(FAST)}, architecture=None, init_kwargs={}))
    skipped = r.check("gradcam")
    assert skipped.status.value == "skipped"
    assert "TorchScript" in skipped.summary and "model.architecture" in skipped.summary


def test_audited_module_untouched_and_same_seed_same_result(image_dir: Path) -> None:
    net = net_class(image_dir)(n_classes=N_CLASSES)
    net.load_state_dict(torch.load(image_dir / "shortcut.pt", weights_only=True))
    net.eval()
    before = fingerprint(net)
    grads = [p.requires_grad for p in net.parameters()]
    checks = {"gradcam": {**FAST, "n_images": 12, "gallery_per_class": 0},
              "smoothgrad": {**FAST, "n_images": 12, "samples": 8, "gallery_per_class": 0}}
    policy = image_policy(image_dir, "shortcut.pt", "test_patched.npz", checks=checks, name="memory.yaml")
    first = run_audit(policy, model=net)
    assert fingerprint(net) == before and not net.training
    assert [p.requires_grad for p in net.parameters()] == grads
    assert all(p.grad is None for p in net.parameters())
    second = run_audit(policy, model=net)
    for check_id in ("gradcam", "smoothgrad"):
        a, b = first.check(check_id).to_dict(), second.check(check_id).to_dict()
        a.pop("duration_s"), b.pop("duration_s")
        assert a == b, check_id
    assert np.isfinite(metric(first, "gradcam", "deletion_gain").value)
