"""Figures of the saliency checks, in the house style of ``audit.plotting``.

Overlay galleries and the randomisation cascade are PNG (raster images either way); curves are SVG.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from audit.plotting import PALETTE, STYLE, figure, to_svg
from audit.results import Figure
from checks._saliency import TITLES

CMAP = "inferno"


def _png(fig: Any, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    with plt.rc_context(STYLE):  # type: ignore[arg-type]
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _unit(m: np.ndarray) -> np.ndarray:
    hi = float(m.max())
    lo = float(min(m.min(), 0.0))
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def _show(ax: Any, image: np.ndarray, heat: np.ndarray | None, outline: list[tuple[np.ndarray, str]],
          alpha: float = 0.8) -> Any:
    """One overlay: the image in grey or colour, the heat map over it, region outlines."""
    img = image[..., 0] if image.shape[-1] == 1 else image
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    im = None
    if heat is not None:
        u = _unit(heat)
        rgba = plt.get_cmap(CMAP)(u)
        rgba[..., 3] = 0.1 + alpha * u  # weak attribution stays see-through: the image shows where it is low
        ax.imshow(rgba, interpolation="bilinear")
        im = plt.cm.ScalarMappable(cmap=CMAP, norm=plt.Normalize(0, 1))
    for mask, colour in outline:
        if mask is not None and mask.any():
            ax.contour(mask.astype(float), levels=[0.5], colors=colour, linewidths=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    return im


def gallery(method: str, images: np.ndarray, maps: np.ndarray, titles: list[str], *, per_row: int,
            regions: np.ndarray | None, forbidden: np.ndarray | None, caption: str) -> Figure:
    """A grid of overlays with one colour bar (maps scaled per image to their maximum)."""
    n = len(images)
    cols = max(1, min(per_row, n))
    rows = max(1, -(-n // cols))
    cell = 1.25
    with figure(width=cell * cols + 0.9, height=cell * rows + 0.25, nrows=rows, ncols=cols, squeeze=False) as (
            fig, axes):
        im = None
        for i, ax in enumerate(axes.ravel()):
            if i >= n:
                ax.axis("off")
                continue
            outline = [(regions[i] if regions is not None else None, "#2e8b57"),
                       (forbidden[i] if forbidden is not None else None, "#00bfff")]
            im = _show(ax, images[i], maps[i], outline) or im
            ax.set_title(titles[i], fontsize=7, pad=2)
        fig.subplots_adjust(left=0.01, right=0.86, bottom=0.02, top=0.93, wspace=0.08, hspace=0.32)
        if im is not None:
            cax = fig.add_axes((0.89, 0.15, 0.018, 0.7))
            bar = fig.colorbar(im, cax=cax)
            bar.set_label("attribution, share of the image's maximum", fontsize=7)
            bar.ax.tick_params(labelsize=7)
        data = _png(fig)
    name = TITLES[method]
    return Figure(f"{method}_gallery", f"{name} overlays: most confident right and wrong per class", data,
                  media_type="image/png", caption=caption,
                  alt=f"Grid of {n} images with the {name} heat map over each; titles give the true and "
                      "predicted class and the model's confidence.")


def curves(method: str, dele: np.ndarray, dele_r: np.ndarray, ins: np.ndarray, ins_r: np.ndarray,
           aucs: dict[str, float]) -> Figure:
    """Mean deletion and insertion curves, the map's order against a random order."""
    f = np.linspace(0, 1, dele.shape[1])
    with figure(width=6.4, height=2.8, ncols=2) as (fig, axes):
        for ax, (name, a, r, ka, kr) in zip(axes, [("Deletion", dele, dele_r, "deletion_auc", "deletion_auc_random"),
                                                   ("Insertion", ins, ins_r, "insertion_auc", "insertion_auc_random")],
                                            strict=True):
            ax.plot(f, a.mean(0), color=PALETTE[0], lw=1.8, label=f"map order (AUC {aucs[ka]:.3f})")
            ax.plot(f, r.mean(0), color=PALETTE[5], lw=1.2, ls="--", label=f"random order (AUC {aucs[kr]:.3f})")
            ax.set_xlabel(f"share of pixels {'removed' if name == 'Deletion' else 'restored'}")
            ax.set_ylabel("P(explained class)")
            ax.set_ylim(0, 1.02)
            ax.set_xlim(0, 1)
            ax.set_title(name)
            ax.legend(loc="upper right" if name == "Deletion" else "lower right", frameon=False, fontsize=7)
        data = to_svg(fig)
    return Figure(f"{method}_deletion_insertion", "Faithfulness: deletion and insertion curves", data,
                  caption="Mean probability of the explained class as the most salient pixels are removed "
                          "(deletion: a faithful map makes it fall fast) or restored into a blank image "
                          "(insertion: it should rise fast), against a random pixel order.",
                  alt="Two line charts: probability against the share of pixels removed and restored, for the "
                      "map's order and a random order.")


def randomisation(method: str, stages: list[dict[str, Any]], image: np.ndarray, original: np.ndarray) -> Figure:
    """Similarity to the original maps as more layers are randomised, and one image's maps along the way."""
    k = len(stages)
    show = list(range(k)) if k <= 5 else [0, 1, 2, k // 2, k - 1][: min(5, k)]
    with plt.rc_context(STYLE):  # type: ignore[arg-type]
        panels = [(None, "trained")] + [(j, stages[j]["label"]) for j in show]
        fig = plt.figure(figsize=(7.0, 2.3))
        grid = fig.add_gridspec(1, 1 + len(panels), width_ratios=[2.6] + [1] * len(panels))
        ax = fig.add_subplot(grid[0, 0])
        xs = np.arange(k + 1)
        rc = [1.0] + [float(s["rank_corr"].mean()) for s in stages]
        ss = [1.0] + [float(s["ssim"].mean()) for s in stages]
        ax.plot(xs, rc, "o-", color=PALETTE[0], lw=1.6, ms=3, label="rank correlation")
        ax.plot(xs, ss, "s--", color=PALETTE[1], lw=1.2, ms=3, label="SSIM")
        ax.axhline(0, color="#999", lw=0.6)
        ax.set_xticks(xs, ["none"] + [str(i + 1) for i in range(k)], fontsize=7)
        ax.set_xlabel("stage (layers randomised, top down)", fontsize=7)
        ax.set_ylabel("similarity to trained maps", fontsize=7)
        ax.set_ylim(min(-0.2, min(rc + ss) - 0.05), 1.05)
        ax.legend(frameon=False, fontsize=6.5, loc="upper right")
        for col, (j, title) in enumerate(panels, start=1):
            a = fig.add_subplot(grid[0, col])
            _show(a, image, original if j is None else stages[j]["example"], [])
            label = title if j is None else f"stage {j + 1}\n{title.removeprefix('down to ')}"
            a.set_title(label, fontsize=6.5, pad=2)
        fig.subplots_adjust(left=0.09, right=0.99, bottom=0.2, top=0.9, wspace=0.15)
        data = _png(fig)
        plt.close(fig)
    name = TITLES[method]
    return Figure(f"{method}_randomisation", f"Sanity: {name} under cascading weight randomisation", data,
                  media_type="image/png",
                  caption="Model-parameter randomisation test (Adebayo et al., 2018): the layers are re-initialised "
                          "from the top down on a copy of the model. Maps that stay similar to the trained "
                          "model's do not depend on what the model learned.",
                  alt="Line chart of rank correlation and SSIM falling as layers are randomised, and one image's "
                      "maps at several stages.")
