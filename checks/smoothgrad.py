"""SmoothGrad for PyTorch image models: input-gradient saliency averaged over noisy copies, and its quality.

Captum's ``NoiseTunnel(Saliency)`` (Smilkov et al., 2017) gives the maps, all noisy copies of an image in one
batch; ``checks/_saliency.py`` measures them (faithfulness, parameter randomisation, agreement with Grad-CAM,
region focus and occlusion). Works on TorchScript models too: it needs input gradients only.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import AliasChoices, Field

from audit.context import AuditContext
from audit.registry import Check, Requires, register
from audit.results import CheckResult
from checks import _saliency as S  # noqa: N812


class SmoothGradConfig(S.SaliencyConfig):
    """Options of the ``smoothgrad`` check."""

    samples: int = Field(
        50, ge=1, le=1000, validation_alias=AliasChoices("samples", "nt_samples"),
        description="Noisy copies per image (captum's nt_samples; `nt_samples` is accepted too), drawn and "
        "differentiated in one batch.")
    noise: float = Field(
        0.15, gt=0, le=1, description="Standard deviation of the Gaussian noise as a fraction of the input range "
        "(max - min of the audited images); Smilkov et al. suggest 0.1-0.2.")


@register
class SmoothGrad(Check[SmoothGradConfig]):
    """SmoothGrad maps, their faithfulness and sanity, agreement with Grad-CAM, region focus and occlusion."""

    id: ClassVar[str] = "smoothgrad"
    title: ClassVar[str] = "SmoothGrad: which pixels move the prediction"
    description: ClassVar[str] = (
        "SmoothGrad saliency (input gradients averaged over noisy copies) for PyTorch image models, with checks "
        "on the maps: deletion and insertion against a random order, the model-parameter randomisation test, "
        "agreement with Grad-CAM, attribution mass in required and forbidden regions, and how often blanking a "
        "forbidden region flips the prediction.")
    config_model = SmoothGradConfig
    applies_to: ClassVar[Requires] = Requires(needs=frozenset({"image", "torch"}))
    obligations: ClassVar[tuple[str, ...]] = ("eu_ai_act.art13", "eu_ai_act.art15.1", "eu_ai_act.art15.4",
                                              "eu_ai_act.annex_iv.2.b", "gdpr.art15.1.h")
    metric_names: ClassVar[dict[str, str]] = S.METRICS
    default_thresholds: ClassVar[dict[str, dict[str, float]]] = S.DEFAULT_THRESHOLDS

    def run(self, ctx: AuditContext, config: SmoothGradConfig) -> CheckResult:
        """Compute and measure the maps."""
        result = S.run_map_check(ctx, config, "smoothgrad")
        spread = S.input_range(ctx, config.split or ctx.eval_split)
        notes = [f"SmoothGrad (captum {S.captum_version()} NoiseTunnel over Saliency): |gradient| of the explained "
                 f"class's score averaged over {config.samples} noisy copies per image, drawn in one batch, with "
                 f"noise sd {config.noise:g} x the input range {spread:.3g} = {config.noise * spread:.3g}; summed "
                 "over channels. Noise is seeded from the policy seed.", *result.notes]
        return result.with_(notes=notes)
