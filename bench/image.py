"""Benchmark: Grad-CAM and SmoothGrad maps through the audit against the same Captum calls written directly.

Run: python bench/image.py [--repeat N] [--samples 50]. On the image example's CNN (policies/examples/image.yaml,
16x16 digits) and a batch of 64 test images, one torch thread, it prints maps per second of

- the audit's path: ``checks._saliency.cached_maps`` on a fresh cache (inputs to a tensor, targets from the
  shared predictions, the layer lookup, Captum, upsampling or channel sum, back to numpy);
- the plain path: ``LayerGradCam(...).attribute`` + ``LayerAttribution.interpolate``, and
  ``NoiseTunnel(Saliency(net)).attribute(nt_samples=50)`` + abs/sum, on a tensor and targets prepared outside
  the timing;

and the ratio audit / plain for each (target: under 1.3). The best of ``--repeat`` runs is taken for both.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from _common import REPO, best_of  # bench/ is on sys.path when a benchmark runs as a script

POLICY = REPO / "policies" / "examples" / "image.yaml"


def main() -> None:
    """Time both paths for both methods and print maps per second and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--images", type=int, default=64)
    args = parser.parse_args()

    import numpy as np
    import torch
    from captum.attr import LayerAttribution, LayerGradCam, NoiseTunnel, Saliency

    from audit.artifacts import load_artifacts
    from audit.context import AuditContext
    from audit.policy import load_policy
    from checks import _saliency as S  # noqa: N812

    torch.set_num_threads(1)
    lp = load_policy(POLICY)
    ctx = AuditContext(lp, load_artifacts(lp))
    split = ctx.eval_split
    idx = np.arange(args.images)
    net = ctx.model.native
    x = torch.from_numpy(ctx.X(split)[idx])
    targets = torch.from_numpy(ctx.proba(split)[idx].argmax(axis=1))
    stdev = 0.15 * S.input_range(ctx, split)
    name, layer = S.resolve_layer(net, None)

    def plain_gradcam() -> np.ndarray:
        a = LayerGradCam(net, layer).attribute(x, target=targets, relu_attributions=True)
        return LayerAttribution.interpolate(a, tuple(x.shape[2:]), "bilinear")[:, 0].detach().numpy()

    seed = S._seed(ctx, f"smoothgrad.noise.{split}")  # the audit's noise seed, so both give the same maps

    def plain_smoothgrad() -> np.ndarray:
        torch.manual_seed(seed)
        a = NoiseTunnel(Saliency(net)).attribute(x, nt_type="smoothgrad", nt_samples=args.samples, stdevs=stdev,
                                                 target=targets, abs=True)
        return a.sum(dim=1).detach().numpy()

    def audit(params: S.MapParams) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            ctx._cache = {k: v for k, v in ctx._cache.items() if k[0] != "saliency_maps"}  # a fresh computation
            return S.cached_maps(ctx, params, split, idx, "predicted")
        return run

    rows = [("Grad-CAM", audit(S.MapParams("gradcam")), plain_gradcam),
            (f"SmoothGrad ({args.samples} samples)", audit(S.MapParams("smoothgrad", samples=args.samples)),
             plain_smoothgrad)]
    print(f"{args.images} images of {tuple(x.shape[1:])}, model {type(net).__name__}, Grad-CAM layer {name!r}, "
          f"torch threads 1, best of {args.repeat}")
    print(f"{'method':<26}{'audit maps/s':>14}{'plain maps/s':>14}{'ratio':>8}   target < 1.3")
    for label, ours, plain in rows:
        ours(), plain()  # warm-up
        np.testing.assert_allclose(ours(), plain(), rtol=1e-4, atol=1e-6)  # the same maps
        t_ours, t_plain = best_of(ours, args.repeat), best_of(plain, args.repeat)
        ratio = t_ours / t_plain
        print(f"{label:<26}{args.images / t_ours:>14.1f}{args.images / t_plain:>14.1f}{ratio:>8.2f}   "
              f"{'ok' if ratio < 1.3 else 'OVER'}")


if __name__ == "__main__":
    main()
