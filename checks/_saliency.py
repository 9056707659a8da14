"""Saliency maps for image models and the checks on the maps themselves (shared by gradcam and smoothgrad).

The attribution arithmetic is Captum's: ``LayerGradCam`` (Selvaraju et al., ICCV 2017) and
``NoiseTunnel(Saliency)`` (SmoothGrad, Smilkov et al., 2017). This module owns what surrounds it: which images,
which layer, batching, seeding, and the map-quality measures:

- faithfulness: deletion and insertion curves (Petsiuk et al., BMVC 2018) against a random pixel order;
- sanity: cascading model-parameter randomisation (Adebayo et al., NeurIPS 2018) on a deep copy of the model;
- agreement of Grad-CAM and SmoothGrad per image (Spearman rank correlation at a common size);
- region focus: attribution mass share and enrichment inside ``regions``/``forbidden_regions``, the pointing
  game (Zhang et al., ECCV 2016), and region occlusion (how often blanking a forbidden region flips the
  prediction: a model-side test that no attribution method can hide).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from audit.registry import CheckConfig

METHODS = ("gradcam", "smoothgrad")
TITLES = {"gradcam": "Grad-CAM", "smoothgrad": "SmoothGrad"}


# ------------------------------------------------------------------------------------------------------------
# parameters and the explained module
# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MapParams:
    """How one method's maps are computed (the key of the shared cache)."""

    method: str
    layer: str | None = None
    samples: int = 50
    noise: float = 0.15
    batch_size: int = 4096


def params_for(ctx: Any, method: str, config: Any | None = None) -> MapParams:
    """The method's parameters: from ``config``, else from the policy's options for that check, else defaults.

    Both checks compute both methods (for agreement and the combined region metrics); reading the other
    check's options from the policy makes them share one computation through the context cache.
    """
    if config is None:
        config = ctx.loaded_policy.configs.get(method)
    batch = getattr(config, "batch_size", MapParams.batch_size)
    if method == "gradcam":
        return MapParams("gradcam", layer=getattr(config, "layer", None), batch_size=batch)
    return MapParams("smoothgrad", samples=getattr(config, "samples", MapParams.samples),
                     noise=getattr(config, "noise", MapParams.noise), batch_size=batch)


def explained_module(ctx: Any) -> Any:
    """The audited module, outputs with at least two columns (a single logit z becomes [-z, z])."""
    import torch

    module = ctx.model.native

    class _TwoColumns(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            out = self.inner(x)
            out = out[:, None] if out.ndim == 1 else out
            return torch.cat([-out, out], dim=1) if out.shape[1] == 1 else out

    return _TwoColumns(module)


def conv_layers(module: Any) -> list[tuple[str, Any]]:
    """``(name, layer)`` of every 2-d convolution, in registration order."""
    import torch

    return [(n, m) for n, m in module.named_modules() if isinstance(m, torch.nn.Conv2d)]


def resolve_layer(module: Any, name: str | None) -> tuple[str, Any]:
    """The named layer, or the last ``Conv2d`` found; ``ValueError`` naming the candidates otherwise."""
    layers = dict(module.named_modules())
    convs = [n for n, _ in conv_layers(module)]
    if name is not None:
        if name not in layers or name == "":
            raise ValueError(f"layer {name!r} is not a layer of the model; its convolution layers are "
                             f"{convs or 'none'} (names as in model.named_modules())")
        return name, layers[name]
    if not convs:
        raise ValueError("the model has no Conv2d layer for Grad-CAM; name a layer with a spatial output in "
                         "`layer` (names as in model.named_modules())")
    return convs[-1], layers[convs[-1]]


def targets_for(ctx: Any, split: str, idx: np.ndarray, target: str) -> np.ndarray:
    """Class index to explain per image: the predicted class, or the true one."""
    if target == "true":
        pos = {lab: i for i, lab in enumerate(ctx.labels)}
        return np.asarray([pos[v] for v in ctx.y(split)[idx]], dtype=np.int64)
    return ctx.proba(split)[idx].argmax(axis=1).astype(np.int64)


def captum_version() -> str:
    """The installed Captum's version, for the checks' notes."""
    from importlib.metadata import version

    return version("captum")


def _seed(ctx: Any, name: str) -> int:
    return int(ctx.rng(name).integers(0, 2**31 - 1))


# ------------------------------------------------------------------------------------------------------------
# maps
# ------------------------------------------------------------------------------------------------------------
def gradcam_maps(module: Any, layer: Any, x: Any, targets: np.ndarray, *, batch_size: int) -> np.ndarray:
    """Grad-CAM maps (ReLU of the gradient-weighted activations), upsampled to the input size: ``(N, H, W)``."""
    import torch
    from captum.attr import LayerAttribution, LayerGradCam

    gc = LayerGradCam(module, layer)
    out = []
    for s in range(0, len(x), batch_size):
        a = gc.attribute(x[s:s + batch_size], target=torch.as_tensor(targets[s:s + batch_size]),
                         relu_attributions=True)
        if a.ndim != 4:
            raise ValueError(f"the Grad-CAM layer's output has shape {tuple(a.shape)}; it needs a spatial (N, C, H, "
                             "W) output: name a convolution layer in `layer`")
        out.append(LayerAttribution.interpolate(a, tuple(x.shape[2:]), "bilinear").detach())
    return torch.cat(out)[:, 0].numpy().astype(np.float64)


def smoothgrad_maps(module: Any, x: Any, targets: np.ndarray, *, samples: int, stdev: float, batch_size: int,
                    seed: int) -> np.ndarray:
    """SmoothGrad maps: |gradient| averaged over ``samples`` noisy copies (one batch), summed over channels."""
    import torch
    from captum.attr import NoiseTunnel, Saliency

    nt = NoiseTunnel(Saliency(module))
    per = max(1, batch_size // samples)  # images per batch: all noisy copies of an image in one forward pass
    out = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for s in range(0, len(x), per):
            a = nt.attribute(x[s:s + per], nt_type="smoothgrad", nt_samples=samples, stdevs=float(stdev),
                             target=torch.as_tensor(targets[s:s + per]), abs=True)
            out.append(a.detach())
    return torch.cat(out).sum(dim=1).numpy().astype(np.float64)


def maps_of(module: Any, params: MapParams, x: Any, targets: np.ndarray, *, stdev: float, seed: int) -> np.ndarray:
    """The method's maps for a module (the audited one, or a randomised copy)."""
    if params.method == "gradcam":
        _, layer = resolve_layer(module.inner if hasattr(module, "inner") else module, params.layer)
        return gradcam_maps(module, layer, x, targets, batch_size=params.batch_size)
    return smoothgrad_maps(module, x, targets, samples=params.samples, stdev=stdev,
                           batch_size=params.batch_size, seed=seed)


def input_range(ctx: Any, split: str) -> float:
    """The spread (max - min) of a split's inputs (SmoothGrad's noise is a fraction of it), once per audit."""
    def compute() -> float:
        x = ctx.X(split)
        return float(np.max(x) - np.min(x)) or 1.0

    return ctx.cached(("input_range", split), compute)


def cached_maps(ctx: Any, params: MapParams, split: str, idx: np.ndarray, target: str) -> np.ndarray:
    """Maps of the images ``idx`` of a split, computed once per audit and shared by both checks."""
    digest = hashlib.sha256(np.asarray(idx, dtype=np.int64).tobytes()).hexdigest()[:16]

    def compute() -> np.ndarray:
        module = explained_module(ctx)
        x = ctx.model.to_tensor(ctx.X(split)[idx])
        t = targets_for(ctx, split, idx, target)
        stdev = params.noise * input_range(ctx, split)
        return maps_of(module, params, x, t, stdev=stdev, seed=_seed(ctx, f"smoothgrad.noise.{split}"))

    return ctx.cached(("saliency_maps", params, split, digest, target), compute)


def sample_indices(ctx: Any, split: str, n: int) -> np.ndarray:
    """A seeded sample of ``n`` images of a split, stratified by true class, in index order."""
    y = np.asarray(ctx.y(split)).astype(str)
    if n >= len(y):
        return np.arange(len(y))
    rng = ctx.rng(f"saliency.sample.{split}.{n}")
    classes, counts = np.unique(y, return_counts=True)
    quota = np.maximum(1, np.floor(counts / len(y) * n)).astype(int)
    while quota.sum() > n:
        quota[quota.argmax()] -= 1
    extra = n - quota.sum()
    for k in rng.permutation(len(classes))[:extra]:
        quota[k] = min(quota[k] + 1, counts[k])
    picked = [rng.choice(np.flatnonzero(y == c), size=min(q, cnt), replace=False)
              for c, q, cnt in zip(classes, quota, counts, strict=True)]
    return np.sort(np.concatenate(picked))


def fill_value(ctx: Any, split: str, fill: str) -> np.ndarray:
    """Per-channel value that 'blanks' pixels, in model-input space: the data's mean, or zero."""
    x = ctx.X(split)
    if fill == "zero":
        return np.zeros(x.shape[1], dtype=np.float32)
    return x.mean(axis=(0, 2, 3)).astype(np.float32)


# ------------------------------------------------------------------------------------------------------------
# comparing maps
# ------------------------------------------------------------------------------------------------------------
def rank_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation per image of two ``(N, ...)`` map stacks (0 where a map is constant)."""
    from scipy.stats import rankdata

    ra = rankdata(a.reshape(len(a), -1), axis=1)
    rb = rankdata(b.reshape(len(b), -1), axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (ra * rb).sum(axis=1) / den
    return np.where(den > 0, r, 0.0)


def _unit(m: np.ndarray) -> np.ndarray:
    lo = m.min(axis=(1, 2), keepdims=True)
    hi = m.max(axis=(1, 2), keepdims=True)
    return (m - lo) / np.where(hi > lo, hi - lo, 1.0)


def ssim(a: np.ndarray, b: np.ndarray, window: int = 7) -> np.ndarray:
    """Mean structural similarity per image (Wang et al., 2004) of maps scaled to [0, 1], uniform window."""
    from scipy.ndimage import uniform_filter

    a, b = _unit(a), _unit(b)
    w = max(3, min(window, a.shape[1], a.shape[2]) // 2 * 2 + 1 if min(a.shape[1:]) >= 3 else 1)
    size = (1, w, w)
    mu_a, mu_b = uniform_filter(a, size), uniform_filter(b, size)
    va = uniform_filter(a * a, size) - mu_a**2
    vb = uniform_filter(b * b, size) - mu_b**2
    cov = uniform_filter(a * b, size) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))
    return s.mean(axis=(1, 2))


def pool_to(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Average-pool ``(N, H, W)`` maps to ``size`` (the common size for comparing methods)."""
    import torch
    import torch.nn.functional as F  # noqa: N812 - the usual alias

    return F.adaptive_avg_pool2d(torch.from_numpy(maps)[:, None], size)[:, 0].numpy()


# ------------------------------------------------------------------------------------------------------------
# faithfulness: deletion and insertion
# ------------------------------------------------------------------------------------------------------------
def class_prob(ctx: Any, x: np.ndarray, targets: np.ndarray, batch_size: int) -> np.ndarray:
    """Probability of each row's target class under the audited model (no gradients, batched)."""
    import torch

    module, tm = ctx.model.native, ctx.model.torch_model
    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            p = tm.probabilities(module(torch.from_numpy(np.ascontiguousarray(x[s:s + batch_size]))))
            out.append(p[torch.arange(len(p)), torch.as_tensor(targets[s:s + batch_size])].double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def deletion_insertion(ctx: Any, x: np.ndarray, orders: np.ndarray, targets: np.ndarray, fill: np.ndarray, *,
                       steps: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Target-class probability as pixels are deleted (set to ``fill``) or inserted (into a ``fill`` image).

    ``orders`` ranks each image's pixels (most salient first), shape ``(N, H*W)``. Returns the deletion and
    insertion curves, each ``(N, steps + 1)``, at the fractions ``0, 1/steps, ..., 1`` of the pixels.
    """
    n, c, h, w = x.shape
    rank = np.empty_like(orders)
    np.put_along_axis(rank, orders, np.arange(h * w)[None, :].repeat(n, 0), axis=1)
    cuts = np.round(np.linspace(0, h * w, steps + 1)).astype(int)
    fill_img = np.broadcast_to(fill.reshape(1, c, 1, 1), (1, c, h, w)).astype(np.float32)
    dele = np.empty((n, steps + 1))
    ins = np.empty((n, steps + 1))
    per = max(1, batch_size // (2 * (steps + 1)))
    for s in range(0, n, per):
        xs, rs, ts = x[s:s + per], rank[s:s + per], targets[s:s + per]
        k = len(xs)
        masks = (rs[:, None, :] < cuts[None, :, None]).reshape(k, steps + 1, 1, h, w)  # True: removed/added
        xe = xs[:, None]
        deleted = np.where(masks, fill_img[:, None], xe).reshape(-1, c, h, w)
        inserted = np.where(masks, xe, fill_img[:, None]).reshape(-1, c, h, w)
        tt = np.repeat(ts, steps + 1)
        probs = class_prob(ctx, np.concatenate([deleted, inserted]), np.concatenate([tt, tt]), batch_size)
        dele[s:s + k] = probs[:k * (steps + 1)].reshape(k, steps + 1)
        ins[s:s + k] = probs[k * (steps + 1):].reshape(k, steps + 1)
    return dele, ins


def auc(curves: np.ndarray) -> np.ndarray:
    """Area under each curve sampled at equal steps over [0, 1] (trapezoid rule)."""
    return np.trapezoid(curves, dx=1.0 / (curves.shape[1] - 1), axis=1)


def saliency_order(maps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pixels of each map, most salient first (ties broken at random)."""
    flat = maps.reshape(len(maps), -1)
    jitter = rng.random(flat.shape) * 1e-9 * (np.abs(flat).max(axis=1, keepdims=True) + 1e-12)
    return np.argsort(-(flat + jitter), axis=1, kind="stable")


def random_order(n: int, pixels: int, rng: np.random.Generator) -> np.ndarray:
    """A random pixel order per image."""
    return np.argsort(rng.random((n, pixels)), axis=1)


# ------------------------------------------------------------------------------------------------------------
# sanity: cascading model-parameter randomisation (on a deep copy)
# ------------------------------------------------------------------------------------------------------------
def parameter_layers(module: Any) -> list[tuple[str, Any]]:
    """Layers that own parameters, in registration order (the usual proxy for forward order)."""
    return [(n, m) for n, m in module.named_modules() if n and any(True for _ in m.parameters(recurse=False))]


def _reinit(layer: Any) -> None:
    import torch

    if hasattr(layer, "reset_parameters"):
        layer.reset_parameters()  # the layer's own initialiser (batch norm: also its running statistics)
        return
    with torch.no_grad():  # TorchScript layers: PyTorch's default initialisers by shape
        for p in layer.parameters(recurse=False):
            if p.ndim >= 2:
                torch.nn.init.kaiming_uniform_(p, a=5**0.5)
            else:
                bound = 1 / max(1, p.numel()) ** 0.5
                torch.nn.init.uniform_(p, -bound, bound)


def cascade_stages(names: list[str], max_stages: int) -> list[list[str]]:
    """Cumulative sets of layers to randomise, top layer first; the last stage randomises every layer."""
    top_down = list(reversed(names))
    k = min(len(top_down), max_stages)
    stages = [top_down[:i] for i in range(1, k)]
    stages.append(top_down)
    return stages


def randomisation_test(ctx: Any, params: MapParams, x: Any, targets: np.ndarray, original: np.ndarray, *,
                       max_stages: int, seed: int, stdev: float) -> dict[str, Any]:
    """Rank correlation and SSIM of the maps before and after randomising the top layers, stage by stage.

    Works on a ``copy.deepcopy`` of the explained module: the audited model is never touched.
    """
    import torch

    wrapper = explained_module(ctx)
    names = [n for n, _ in parameter_layers(wrapper)]
    stages = cascade_stages(names, max_stages)
    work = copy.deepcopy(wrapper).eval()
    layers = dict(work.named_modules())
    done: set[str] = set()
    rows = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for stage in stages:
            for name in stage:
                if name not in done:
                    _reinit(layers[name])
                    done.add(name)
            work.eval()
            maps = maps_of(work, params, x, targets, stdev=stdev, seed=seed)
            rows.append({"randomised": list(stage), "label": _stage_label(stage, len(names)),
                         "rank_corr": rank_corr(original, maps), "ssim": ssim(original, maps), "example": maps[0]})
    return {"stages": rows, "layers": names}


def _stage_label(stage: list[str], total: int) -> str:
    short = stage[-1].removeprefix("inner.")
    return "all layers" if len(stage) == total else f"down to {short}"


# ------------------------------------------------------------------------------------------------------------
# region focus and occlusion
# ------------------------------------------------------------------------------------------------------------
def region_focus(maps: np.ndarray, masks: np.ndarray) -> dict[str, Any] | None:
    """Mass share, area share, enrichment and pointing-game hits inside per-image masks.

    Images whose mask is empty, or whose map has no mass, are left out. ``None`` when none remain.
    """
    has = masks.reshape(len(masks), -1).any(axis=1)
    total = maps.reshape(len(maps), -1).sum(axis=1)
    keep = has & (total > 0)
    if not keep.any():
        return None
    m, k = maps[keep], masks[keep]
    share = (m * k).reshape(len(m), -1).sum(axis=1) / total[keep]
    area = k.reshape(len(k), -1).mean(axis=1)
    peak = m.reshape(len(m), -1).argmax(axis=1)
    hit = k.reshape(len(k), -1)[np.arange(len(k)), peak]
    return {"share": share, "area": area, "hit": hit.astype(float), "n": int(keep.sum()),
            "enrichment": float(share.mean() / max(area.mean(), 1e-12))}


def occlusion(ctx: Any, split: str, masks: np.ndarray, fill: np.ndarray, *,
              rng: np.random.Generator) -> dict[str, Any] | None:
    """How often blanking the forbidden region changes the prediction.

    The baseline blanks the same mask rolled to a random place in the image (same shape and area).
    """
    idx = np.flatnonzero(masks.reshape(len(masks), -1).any(axis=1))
    if len(idx) == 0:
        return None
    x = ctx.X(split)[idx]
    pred = ctx.proba(split)[idx].argmax(axis=1)
    mk = masks[idx][:, None]
    h, w = masks.shape[1:]
    shifts = [(int(rng.integers(h // 4, h - h // 4 + 1)), int(rng.integers(w // 4, w - w // 4 + 1))) for _ in idx]
    shifted = np.stack([np.roll(m, s, axis=(0, 1)) for m, s in zip(masks[idx], shifts, strict=True)])[:, None]
    fill_img = fill.reshape(1, -1, 1, 1)
    blanked = np.where(mk, fill_img, x).astype(np.float32)
    control = np.where(shifted, fill_img, x).astype(np.float32)
    proba_b = ctx.model.predict_proba(blanked)
    proba_c = ctx.model.predict_proba(control)
    flips = proba_b.argmax(axis=1) != pred
    return {"idx": idx, "flips": flips.astype(float), "baseline_flips": (proba_c.argmax(axis=1) != pred).astype(float),
            "new_pred": proba_b.argmax(axis=1), "pred": pred}



class SaliencyConfig(CheckConfig):
    """Options shared by ``gradcam`` and ``smoothgrad``."""

    split: Literal["test", "train"] | None = Field(
        None, description="Images to explain. Default: test when given, else train.")
    target: Literal["predicted", "true"] = Field(
        "predicted", description="Class each map explains: the model's prediction or the true label.")
    n_images: int = Field(
        64, ge=2, le=5000, description="Images the map-quality metrics use (a seeded sample stratified by "
        "class).")
    steps: int = Field(16, ge=2, le=200, description="Deletion/insertion: steps from 0 to all pixels.")
    fill: Literal["mean", "zero"] = Field(
        "mean", description="Value of deleted or blanked pixels: the data's mean per channel, or zero in "
        "model-input space (the preprocessing mean).")
    randomisation_images: int = Field(
        16, ge=0, le=1000, description="Images for the model-parameter randomisation test (0: skip it).")
    randomisation_stages: int = Field(
        6, ge=1, le=100, description="At most this many cascade stages (top layers one by one, then all).")
    combine: bool = Field(
        True, description="Also compute the other method's maps (shared through the cache) for agreement and "
        "the combined forbidden-region metric.")
    agreement_size: int = Field(
        8, ge=2, le=64, description="Side of the common grid the two methods' maps are pooled to for agreement.")
    gallery_per_class: int = Field(
        1, ge=0, le=5, description="Overlays per class of the most confident right and of the most confident "
        "wrong predictions (0: no gallery).")
    gallery_max_classes: int = Field(10, ge=1, le=50, description="Classes shown in the gallery, in label order.")
    batch_size: int = Field(
        4096, ge=16, description="Most rows (images x noisy copies or steps) in one forward pass.")
    n_boot: int = Field(200, ge=0, le=10000, description="Bootstrap resamples over images for intervals.")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Confidence level of the intervals.")


# ------------------------------------------------------------------------------------------------------------
# what both checks report
# ------------------------------------------------------------------------------------------------------------
METRICS = {
    "deletion_auc": "Mean area under the deletion curve: P(explained class) as the most salient pixels are "
                    "blanked first (lower: the map found what the model uses).",
    "deletion_auc_random": "The same with a random pixel order (the baseline).",
    "deletion_gain": "Random-order deletion AUC minus the map's (> 0: the map beats chance).",
    "insertion_auc": "Mean area under the insertion curve: P(explained class) as the most salient pixels are "
                     "restored first into a blank image (higher is better).",
    "insertion_auc_random": "The same with a random pixel order (the baseline).",
    "insertion_gain": "The map's insertion AUC minus the random order's (> 0: the map beats chance).",
    "randomisation_rank_corr": "Mean Spearman correlation between the maps of the trained model and of the "
                               "fully randomised copy (Adebayo et al. 2018; high: the maps ignore the weights).",
    "randomisation_ssim": "Mean SSIM between the maps of the trained model and of the fully randomised copy.",
    "agreement_rank_corr": "Mean Spearman correlation per image between the Grad-CAM and SmoothGrad maps at a "
                           "common size.",
    "regions_mass_share": "Mean share of the attribution mass inside data.regions.",
    "regions_enrichment": "Mass share inside data.regions over their share of the image area (> 1: focused).",
    "pointing_game": "Share of images whose attribution peak lies inside data.regions.",
    "forbidden_mass_share": "Mean share of the attribution mass inside data.forbidden_regions.",
    "forbidden_enrichment": "Mass share inside data.forbidden_regions over their share of the image area.",
    "forbidden_peak_rate": "Share of images whose attribution peak lies inside data.forbidden_regions.",
    "forbidden_enrichment_combined": "The larger forbidden-region enrichment of Grad-CAM and SmoothGrad: "
                                     "either method may hide a shortcut the other shows.",
    "occlusion_flip_rate": "Share of images whose prediction changes when data.forbidden_regions are blanked "
                           "(model-side: no attribution method involved).",
    "occlusion_flip_rate_baseline": "The same when a region of the same shape elsewhere in the image is "
                                    "blanked (how fragile the model is to any blanking).",
}
DEFAULT_THRESHOLDS = {
    "deletion_gain": {"min": 0.0},
    "insertion_gain": {"min": 0.0},
    "randomisation_rank_corr": {"max": 0.5},
    "agreement_rank_corr": {"min": 0.0},
    "pointing_game": {"min": 0.5},
    "forbidden_enrichment_combined": {"max": 2.0},
    "occlusion_flip_rate": {"max": 0.1},
}


def run_map_check(ctx: Any, config: Any, method: str) -> Any:
    """The body of the gradcam and smoothgrad checks: maps, their quality, region focus, figures."""
    from audit.results import CheckResult, Finding, Metric, Table
    from audit.stats import bootstrap_ci
    from checks import _saliency_figures as F  # noqa: N812

    split = ctx.resolve_split(config.split)
    name = TITLES[method]
    params = params_for(ctx, method, config)
    idx = sample_indices(ctx, split, config.n_images)
    x = ctx.X(split)[idx]
    targets = targets_for(ctx, split, idx, config.target)
    maps = cached_maps(ctx, params, split, idx, config.target)
    notes: list[str] = []
    metrics: list[Metric] = []
    findings: list[Finding] = []
    figures = []
    tables = []

    def mean_ci(values: np.ndarray, metric: str) -> Metric:
        values = np.asarray(values, dtype=float)
        lo, hi = bootstrap_ci(lambda i: float(values[i].mean()), len(values), n_boot=config.n_boot,
                              confidence=config.confidence, rng=ctx.rng(f"{method}.{metric}.boot"))
        return Metric(metric, float(values.mean()) if len(values) else None, ci_low=lo, ci_high=hi,
                      description=METRICS[metric])

    # -- faithfulness -------------------------------------------------------------------------------------
    fill = fill_value(ctx, split, config.fill)
    rng = ctx.rng(f"{method}.faithfulness")
    h, w = x.shape[2:]
    dele, ins = deletion_insertion(ctx, x, saliency_order(maps, rng), targets, fill, steps=config.steps,
                                   batch_size=config.batch_size)
    dele_r, ins_r = deletion_insertion(ctx, x, random_order(len(x), h * w, rng), targets, fill,
                                       steps=config.steps, batch_size=config.batch_size)
    a = {"deletion_auc": auc(dele), "deletion_auc_random": auc(dele_r), "insertion_auc": auc(ins),
         "insertion_auc_random": auc(ins_r)}
    metrics += [Metric(k, float(v.mean()), description=METRICS[k]) for k, v in a.items()]
    metrics.append(mean_ci(a["deletion_auc_random"] - a["deletion_auc"], "deletion_gain"))
    metrics.append(mean_ci(a["insertion_auc"] - a["insertion_auc_random"], "insertion_gain"))
    figures.append(F.curves(method, dele, dele_r, ins, ins_r, {k: float(v.mean()) for k, v in a.items()}))
    fill_txt = "the data's mean per channel" if config.fill == "mean" else "zero (in model-input space)"
    notes.append(f"Faithfulness: deletion and insertion (Petsiuk et al., 2018) over {config.steps} steps on "
                 f"{len(idx)} images of the {split} split (a seeded sample stratified by class); removed pixels "
                 f"are set to {fill_txt}; the baseline is one random pixel order per image.")

    # -- sanity: parameter randomisation ------------------------------------------------------------------
    r = min(config.randomisation_images, len(idx))
    if r > 0:
        stdev = params.noise * input_range(ctx, split)
        res = randomisation_test(ctx, params, ctx.model.to_tensor(x[:r]), targets[:r], maps[:r],
                                 max_stages=config.randomisation_stages,
                                 seed=_seed(ctx, f"{method}.randomisation"), stdev=stdev)
        last = res["stages"][-1]
        metrics.append(mean_ci(last["rank_corr"], "randomisation_rank_corr"))
        metrics.append(mean_ci(last["ssim"], "randomisation_ssim"))
        figures.append(F.randomisation(method, res["stages"], ctx.images_for_display(split, idx[:1])[0], maps[0]))
        tables.append(Table(f"{method}_randomisation", "Cascading randomisation",
                            ["stage", "layers randomised", "rank correlation", "SSIM"],
                            [[i + 1, s["label"], round(float(s["rank_corr"].mean()), 3),
                              round(float(s["ssim"].mean()), 3)] for i, s in enumerate(res["stages"])]))
        notes.append(f"Sanity: cascading model-parameter randomisation (Adebayo et al., 2018) on a deep copy of the "
                     f"model ({len(res['layers'])} layers with parameters, re-initialised from the last registered "
                     f"to the first with each layer's own initialiser, in {len(res['stages'])} stages), on "
                     f"{r} images; the explained class is kept. Registration order stands in for forward order.")

    # -- the other method: agreement and combined region metrics --------------------------------------------
    other = "smoothgrad" if method == "gradcam" else "gradcam"
    both = {method: maps}
    if config.combine:
        try:
            both[other] = cached_maps(ctx, params_for(ctx, other), split, idx, config.target)
        except Exception as exc:  # e.g. Grad-CAM on TorchScript: the check still reports its own method
            notes.append(f"{TITLES[other]} maps could not be computed ({type(exc).__name__}: {exc}); agreement and "
                         "the combined region metrics use this method only.")
    if len(both) == 2:
        size = (min(config.agreement_size, h), min(config.agreement_size, w))
        agree = rank_corr(pool_to(both["gradcam"], size), pool_to(both["smoothgrad"], size))
        metrics.append(mean_ci(agree, "agreement_rank_corr"))
        notes.append(f"Agreement: Spearman correlation of the two methods' maps average-pooled to {size[0]}x{size[1]}.")

    # -- region focus and occlusion -----------------------------------------------------------------------
    focus_rows = []
    for kind, prefix in (("regions", "regions"), ("forbidden_regions", "forbidden")):
        full = ctx.region_mask(split, kind)
        if full is None:
            continue
        per_method = {m: region_focus(mp, full[idx]) for m, mp in both.items()}
        own = per_method[method]
        for m, rf in per_method.items():
            if rf is not None:
                focus_rows.append([TITLES[m], kind, rf["n"], round(float(rf["share"].mean()), 4),
                                   round(float(rf["area"].mean()), 4), round(rf["enrichment"], 3),
                                   round(float(rf["hit"].mean()), 3)])
        if own is None:
            notes.append(f"No sampled image has a non-empty {kind} mask (or every map was empty).")
            continue
        metrics.append(mean_ci(own["share"], f"{prefix}_mass_share"))
        metrics.append(Metric(f"{prefix}_enrichment", own["enrichment"], description=METRICS[f"{prefix}_enrichment"]))
        if prefix == "regions":
            metrics.append(mean_ci(own["hit"], "pointing_game"))
        else:
            metrics.append(mean_ci(own["hit"], "forbidden_peak_rate"))
            worst = max((rf["enrichment"], m) for m, rf in per_method.items() if rf is not None)
            metrics.append(Metric("forbidden_enrichment_combined", worst[0],
                                  description=METRICS["forbidden_enrichment_combined"],
                                  note=f"from {TITLES[worst[1]]}"))
            if len(per_method) == 2 and all(v is not None for v in per_method.values()):
                e = {m: rf["enrichment"] for m, rf in per_method.items() if rf is not None}
                findings.append(Finding("info", (
                    f"Forbidden regions hold {per_method['gradcam']['share'].mean():.1%} of the Grad-CAM mass "
                    f"(enrichment {e['gradcam']:.2f}) and {per_method['smoothgrad']['share'].mean():.1%} of the "
                    f"SmoothGrad mass (enrichment {e['smoothgrad']:.2f}) over {own['area'].mean():.1%} of the area; "
                    "the combined metric takes the larger."), metric="forbidden_enrichment_combined"))
    if focus_rows:
        tables.append(Table(f"{method}_region_focus", "Region focus by method",
                            ["method", "regions", "images", "mass share", "area share", "enrichment", "peak inside"],
                            focus_rows))
        names = {k: ctx.region_names(k) for k in ("regions", "forbidden_regions")}
        notes.append("Region focus on the sampled images with a non-empty mask: " + "; ".join(
            f"{k}: {', '.join(v)}" for k, v in names.items() if v) + ". Enrichment is the mean mass share over the "
            "mean area share; the pointing game (Zhang et al., 2016) counts the map's single peak pixel.")
    forbidden = ctx.region_mask(split, "forbidden_regions")
    if forbidden is not None:
        occ = ctx.cached(("saliency_occlusion", split, config.fill),
                         lambda: occlusion(ctx, split, forbidden, fill, rng=ctx.rng(f"occlusion.{split}")))
        if occ is not None:
            metrics.append(mean_ci(occ["flips"], "occlusion_flip_rate"))
            metrics.append(Metric("occlusion_flip_rate_baseline", float(occ["baseline_flips"].mean()),
                                  description=METRICS["occlusion_flip_rate_baseline"]))
            flipped = occ["idx"][occ["flips"] > 0]
            if len(flipped):
                labels = ctx.labels
                findings.append(Finding("info", (
                    f"Blanking the forbidden regions changed {len(flipped)} of {len(occ['idx'])} predictions "
                    f"({occ['flips'].mean():.1%}; a same-shaped region elsewhere: "
                    f"{occ['baseline_flips'].mean():.1%})."),
                    metric="occlusion_flip_rate", evidence=[
                        {"image": str(ctx.frame(split)["file"].iloc[i]) if "file" in ctx.frame(split) else int(i),
                         "prediction": labels[int(p)], "after_blanking": labels[int(q)]}
                        for i, p, q in zip(occ["idx"][occ["flips"] > 0][:10], occ["pred"][occ["flips"] > 0][:10],
                                           occ["new_pred"][occ["flips"] > 0][:10], strict=True)]))
            notes.append(f"Occlusion: every {split} image with a forbidden region ({len(occ['idx'])}) is predicted "
                         f"again with the region set to {fill_txt}; the baseline rolls the same mask to a random "
                         "place in the image.")

    # -- gallery -------------------------------------------------------------------------------------------
    if config.gallery_per_class > 0:
        figures.append(_gallery(ctx, config, method, params, split))
    return CheckResult(check_id=method, metrics=metrics, findings=findings, figures=figures, tables=tables,
                       notes=notes, summary=f"{name} on {len(idx)} {split} images")


def _gallery(ctx: Any, config: Any, method: str, params: MapParams, split: str) -> Any:
    """Per class, the most confident right and wrong predictions with their maps."""
    from checks import _saliency_figures as F  # noqa: N812

    proba = ctx.proba(split)
    pred = proba.argmax(axis=1)
    pos = {lab: i for i, lab in enumerate(ctx.labels)}
    true = np.asarray([pos.get(v, -1) for v in ctx.y(split)])
    conf = proba.max(axis=1)
    k = config.gallery_per_class
    picks: list[int] = []
    titles: list[str] = []
    for c in range(len(ctx.labels))[: config.gallery_max_classes]:
        for right in (True, False):
            cand = np.flatnonzero((true == c) & ((pred == c) if right else (pred != c)))
            for i in cand[np.argsort(-conf[cand], kind="stable")][:k]:
                picks.append(int(i))
                lab, got = ctx.labels[c], ctx.labels[pred[i]]
                titles.append(f"{lab} \u2713 {conf[i]:.2f}" if right else f"{lab}\u2192{got} \u2717 {conf[i]:.2f}")
    idx = np.asarray(picks, dtype=np.int64)
    maps = cached_maps(ctx, params, split, idx, config.target) if len(idx) else np.zeros((0, 1, 1))
    regions = ctx.region_mask(split, "regions")
    forbidden = ctx.region_mask(split, "forbidden_regions")
    caption = (f"Per class (up to {config.gallery_max_classes}), the {k} most confident right (\u2713) and wrong "
               f"(\u2717) predictions of the {split} split, titled true class, prediction and confidence. Each map "
               f"explains the {'predicted' if config.target == 'predicted' else 'true'} class and is scaled to its "
               "own maximum." + (" Green outlines: data.regions; blue: data.forbidden_regions."
                                 if regions is not None or forbidden is not None else ""))
    return F.gallery(method, ctx.images_for_display(split, idx) if len(idx) else np.zeros((0, 1, 1, 1)), maps,
                     titles, per_row=6,
                     regions=None if regions is None else regions[idx],
                     forbidden=None if forbidden is None else forbidden[idx], caption=caption)

