"""Figures and tables of the ``calibration`` and ``mc_dropout`` checks (house style, SVG)."""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.plotting import PALETTE, figure, figure_id, to_svg
from audit.results import Figure, Table
from checks import _uncertainty as U


# -- calibration ----------------------------------------------------------------------------------------
def bin_table(table: np.ndarray, edges: np.ndarray) -> Table:
    """The equal-width bins as rows: range, count, mean predicted, observed, difference."""
    rows = [[f"({edges[k]:.2f}, {edges[k + 1]:.2f}]", int(c), round(float(conf), 4), round(float(acc), 4),
             round(float(acc - conf), 4)] for k, (c, conf, acc) in enumerate(table) if c > 0]
    empty = int((table[:, 0] == 0).sum())
    return Table("reliability_bins", "Reliability bins (equal width)",
                 ["bin", "rows", "mean predicted", "observed", "observed - predicted"], rows,
                 caption=f"{empty} empty bin{'s' if empty != 1 else ''} left out." if empty else "")


def reliability_figure(table: np.ndarray, kind: str, positive: Any) -> Figure:
    """Reliability diagram with the gap per bin, and the rows per bin below."""
    filled = table[:, 0] > 0
    k = len(table)
    centers = (np.arange(k) + 0.5) / k
    with figure(width=4.6, height=4.6, nrows=2, sharex=True, gridspec_kw={"height_ratios": [3, 1]}) as (fig, ax):
        top, bottom = ax
        top.plot([0, 1], [0, 1], color=PALETTE[5], lw=1, ls="--", label="perfect calibration")
        top.bar(centers[filled], table[filled, 2] - table[filled, 1], bottom=table[filled, 1], width=1 / k,
                color=PALETTE[3], alpha=0.25, label="gap")
        top.plot(table[filled, 1], table[filled, 2], "-", color=PALETTE[0], lw=1.0, alpha=0.6)
        share = table[filled, 0] / max(float(table[:, 0].sum()), 1.0)
        top.scatter(table[filled, 1], table[filled, 2], s=12 + 220 * share, color=PALETTE[0], zorder=3,
                    label="model (marker area ~ rows)")
        top.set_ylabel("observed share" if kind == "positive-class" else "accuracy")
        top.set_xlim(0, 1)
        top.set_ylim(0, 1.02)
        top.legend(loc="upper left", frameon=False)
        bottom.bar(centers, table[:, 0], width=1 / k, color=PALETTE[0], alpha=0.6)
        bottom.set_ylabel("rows")
        bottom.set_xlabel(f"predicted P({positive!r})" if kind == "positive-class" else "confidence (top label)")
        data = to_svg(fig)
    return Figure("reliability_diagram", "Reliability diagram", data,
                  caption="Observed share against mean predicted probability per equal-width bin (marker area "
                          "proportional to its rows: bins of a few rows swing widely); on the diagonal the "
                          "probabilities mean what they say. Below: rows per bin.",
                  alt="Reliability diagram: model curve against the diagonal, with a histogram of rows per bin.")


def group_reliability_figure(feature: str, curves: list[tuple[str, np.ndarray, int]]) -> Figure:
    """One reliability curve per group of a sensitive feature."""
    with figure(width=4.6, height=3.8) as (fig, ax):
        ax.plot([0, 1], [0, 1], color=PALETTE[5], lw=1, ls="--")
        for i, (value, tab, n) in enumerate(curves[:len(PALETTE) - 1]):
            f = tab[:, 0] > 0
            ax.plot(tab[f, 1], tab[f, 2], "o-", color=PALETTE[i], lw=1.4, ms=3, label=f"{value} (n={n})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("mean predicted probability")
        ax.set_ylabel("observed share")
        ax.legend(title=feature, loc="upper left", frameon=False)
        data = to_svg(fig)
    shown = "" if len(curves) < len(PALETTE) else f" (the first {len(PALETTE) - 1} groups)"
    return Figure(f"reliability_by_{figure_id(feature)}", f"Reliability by {feature}", data,
                  caption=f"Reliability curve of each {feature} group{shown}, equal-mass bins.",
                  alt=f"One reliability curve per {feature} group against the diagonal.")


# -- MC dropout -----------------------------------------------------------------------------------------
def referral_table(curve: U.Coverage, target: float) -> Table:
    """Referral rate, threshold and accuracy on the rest, for a few accuracy targets and the policy's."""
    rows = []
    for t in sorted({0.8, 0.9, 0.95, 0.99, round(target, 6)}):
        k = curve.at_target(t)
        mark = " (policy)" if abs(t - target) < 1e-9 else ""
        if k is None:
            rows.append([f"{t:.3g}{mark}", "100%", None, None, "not reachable"])
        else:
            rows.append([f"{t:.3g}{mark}", f"{1 - curve.coverage[k]:.1%}", round(float(curve.threshold[k]), 5),
                         round(float(curve.accuracy[k]), 4), int(curve.kept[k])])
    return Table("referral", "Referral to a person by target accuracy",
                 ["target accuracy", "referred", "threshold (uncertainty <=)", "accuracy on the rest",
                  "decided automatically"], rows,
                 caption="Cases above the threshold go to a person; chosen on the measured rows (optimistic).")


def summary_table(mc: U.MCResult, correct: np.ndarray, probes: dict[str, U.MCResult]) -> Table:
    """Mean uncertainty of right and wrong test predictions and of each OOD probe."""
    sets = [("test, right", mc, correct), ("test, wrong", mc, ~correct)]
    sets += [(f"OOD probe: {name}", p, np.ones(len(p.entropy), bool)) for name, p in probes.items()]
    rows = []
    for name, r, mask in sets:
        if mask.any():
            rows.append([name, int(mask.sum()), round(float(r.entropy[mask].mean()), 4),
                         round(float(r.mutual_information[mask].mean()), 4), round(float(r.std[mask].mean()), 4),
                         round(float(r.mean[mask].max(axis=1).mean()), 4)])
    return Table("uncertainty_summary", "Mean uncertainty by kind of input",
                 ["inputs", "rows", "entropy", "mutual information", "std", "mean top probability"], rows)


def histogram_figure(u: np.ndarray, correct: np.ndarray, probes: dict[str, np.ndarray], score: str,
                     threshold: float | None) -> Figure:
    """Histograms of the uncertainty score: right, wrong, and each probe."""
    allv = np.concatenate([u, *probes.values()]) if probes else u
    hi = float(allv.max()) if len(allv) and allv.max() > 0 else 1.0
    bins = np.linspace(0, hi, 31)
    with figure(width=5.4, height=3.4) as (fig, ax):
        ax.hist(u[correct], bins=bins, density=True, color=PALETTE[2], alpha=0.55, label=f"right (n={correct.sum()})")
        if (~correct).any():
            ax.hist(u[~correct], bins=bins, density=True, color=PALETTE[3], alpha=0.55,
                    label=f"wrong (n={(~correct).sum()})")
        for i, (name, pu) in enumerate(probes.items()):
            ax.hist(pu, bins=bins, density=True, histtype="step", lw=1.5, color=PALETTE[[0, 4, 1][i % 3]],
                    label=f"OOD {name} (n={len(pu)})")
        if threshold is not None:
            ax.axvline(threshold, color="#222", lw=1, ls="--", label="referral threshold")
        ax.set_xlabel(score.replace("_", " "))
        ax.set_ylabel("density")
        ax.legend(frameon=False, fontsize=8)
        data = to_svg(fig)
    return Figure("uncertainty_histogram", "Uncertainty of right and wrong predictions", data,
                  caption=f"Distribution of {score.replace('_', ' ')} for right and wrong predictions and the "
                          "out-of-distribution probes; cases right of the dashed line are referred.",
                  alt="Overlaid histograms of uncertainty for right, wrong and out-of-distribution inputs.")


def coverage_figure(curve: U.Coverage, target: float, k: int | None) -> Figure:
    """Accuracy on the automatically decided cases against the share decided automatically."""
    with figure(width=4.6, height=3.4) as (fig, ax):
        ax.plot(np.r_[0, curve.coverage], np.r_[curve.accuracy[0] if len(curve.accuracy) else 1, curve.accuracy],
                color=PALETTE[0], lw=1.6, label="model")
        ax.axhline(target, color=PALETTE[5], lw=1, ls="--", label=f"target accuracy {target:.3g}")
        if k is not None:
            ax.plot([curve.coverage[k]], [curve.accuracy[k]], "o", color=PALETTE[3],
                    label=f"refer {1 - curve.coverage[k]:.0%}")
        ax.set_xlim(0, 1)
        ax.set_xlabel("coverage (share decided automatically)")
        ax.set_ylabel("accuracy on those")
        ax.legend(frameon=False, loc="lower left")
        data = to_svg(fig)
    return Figure("coverage_curve", "Accuracy against coverage", data,
                  caption="When the most uncertain cases are referred to a person, the accuracy on the rest.",
                  alt="Accuracy falling as coverage grows from the least to the most uncertain cases.")


def gallery_figure(images: np.ndarray, order: np.ndarray, labels: list[Any], y_idx: np.ndarray, pred: np.ndarray,
                   u: np.ndarray, score: str) -> Figure:
    """The most uncertain images (``images[j]`` is row ``order[j]``, displayable ``(H, W, C)`` in [0, 1])."""
    cols = min(6, len(order))
    rows = int(np.ceil(len(order) / max(cols, 1)))
    with figure(width=1.45 * cols, height=1.9 * rows, nrows=rows, ncols=cols, squeeze=False) as (fig, ax):
        for j, a in enumerate(ax.ravel()):
            a.axis("off")
            if j >= len(order):
                continue
            i = order[j]
            img = np.clip(np.asarray(images[j], dtype=float), 0, 1)
            a.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                     vmin=0, vmax=1, interpolation="nearest")
            wrong = y_idx[i] != pred[i]
            a.set_title(f"true {labels[y_idx[i]]} / pred {labels[pred[i]]}\n{u[i]:.3f}", fontsize=7,
                        color=PALETTE[3] if wrong else "#222")
        data = to_svg(fig)
    return Figure("most_uncertain", "Most uncertain samples", data,
                  caption=f"The {len(order)} most uncertain inputs by {score.replace('_', ' ')} (title: true / "
                          "predicted label, then the score); red titles are wrong predictions.",
                  alt="A gallery of the most uncertain input images with true and predicted labels.")


def uncertain_rows_table(X: Any, order: np.ndarray, labels: list[Any], y_idx: np.ndarray, pred: np.ndarray,
                         mc: U.MCResult, score: str, max_features: int = 8) -> Table:
    """The most uncertain rows: their first feature values, labels and uncertainty."""
    cols = list(X.columns[:max_features])
    rows = []
    for i in order:
        rec = X.iloc[int(i)]
        rows.append([int(X.index[int(i)]), *[_short(rec[c]) for c in cols], labels[y_idx[i]], labels[pred[i]],
                     round(float(mc.mean[i].max()), 4), round(float(mc.entropy[i]), 4),
                     round(float(mc.mutual_information[i]), 4)])
    more = "" if len(X.columns) <= max_features else f" (first {max_features} of {len(X.columns)} features)"
    return Table("most_uncertain", "Most uncertain rows",
                 ["row", *cols, "true", "predicted", "mean top probability", "entropy", "mutual information"],
                 rows, caption=f"Ranked by {score.replace('_', ' ')}{more}.")


def _short(v: Any) -> Any:
    return round(float(v), 4) if isinstance(v, float | np.floating) else v
