"""Grad-CAM for PyTorch image models: where the model looks, at a named layer, and whether the maps hold up.

Captum's ``LayerGradCam`` (Selvaraju et al., ICCV 2017) gives the maps; ``checks/_saliency.py`` measures them:
deletion/insertion faithfulness against a random order, the cascading parameter-randomisation sanity test,
agreement with SmoothGrad, region focus and region occlusion. Overlays of the most confident right and wrong
images per class go into the report.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from audit.context import AuditContext
from audit.registry import Check, Requires, register
from audit.results import CheckResult
from checks import _saliency as S  # noqa: N812


class GradCamConfig(S.SaliencyConfig):
    """Options of the ``gradcam`` check."""

    layer: str | None = Field(
        None, description="Layer whose activations Grad-CAM weighs, by its name in model.named_modules() (e.g. "
        "'features.6'). Default: the last Conv2d found (the report names it).")


@register
class GradCam(Check[GradCamConfig]):
    """Grad-CAM maps, their faithfulness and sanity, agreement with SmoothGrad, region focus and occlusion."""

    id: ClassVar[str] = "gradcam"
    title: ClassVar[str] = "Grad-CAM: where the model looks"
    description: ClassVar[str] = (
        "Grad-CAM heat maps at a convolution layer for PyTorch image models, with checks on the maps: deletion "
        "and insertion against a random order, the model-parameter randomisation test, agreement with "
        "SmoothGrad, attribution mass in required and forbidden regions, and how often blanking a forbidden "
        "region flips the prediction.")
    config_model = GradCamConfig
    applies_to: ClassVar[Requires] = Requires(needs=frozenset({"image", "torch", "layer_hooks"}))
    obligations: ClassVar[tuple[str, ...]] = ("eu_ai_act.art13", "eu_ai_act.art15.1", "eu_ai_act.art15.4",
                                              "eu_ai_act.annex_iv.2.b", "gdpr.art15.1.h")
    metric_names: ClassVar[dict[str, str]] = S.METRICS
    default_thresholds: ClassVar[dict[str, dict[str, float]]] = S.DEFAULT_THRESHOLDS

    def run(self, ctx: AuditContext, config: GradCamConfig) -> CheckResult:
        """Resolve the layer, then compute and measure the maps."""
        name, layer = S.resolve_layer(ctx.model.native, config.layer)
        result = S.run_map_check(ctx, config, "gradcam")
        chosen = "named in the policy" if config.layer else "the last Conv2d found (default)"
        notes = [f"Grad-CAM (captum {S.captum_version()} LayerGradCam) at layer {name!r} "
                 f"({type(layer).__name__}, {chosen}): the layer's activations weighted by the spatially averaged "
                 "gradient of the explained class's score (the model's output before softmax), ReLU, upsampled "
                 "bilinearly to the input size. "
                 "Its resolution is the layer's: coarse maps are expected at late layers.", *result.notes]
        return result.with_(notes=notes, summary=f"{result.summary}, layer {name!r}")
