"""Figures for checks: one house style, SVG output, no global state left behind."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402

STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "svg.fonttype": "path",  # text as outlines: renders the same in every browser and in the PDF
    "svg.hashsalt": "xai-audit",  # stable element ids: the same figure gives the same bytes
    "figure.dpi": 100,
}

PALETTE = ["#1f5fa8", "#d9822b", "#2e8b57", "#b03a48", "#6a5acd", "#8c8c8c"]


@contextmanager
def figure(width: float = 6.0, height: float = 3.6, **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """A matplotlib figure and axes in the house style, closed on exit."""
    with plt.rc_context(STYLE):  # type: ignore[arg-type]
        fig, ax = plt.subplots(figsize=(width, height), **subplots)
        try:
            yield fig, ax
        finally:
            plt.close(fig)


def to_svg(fig: Any) -> bytes:
    """Render a figure to SVG bytes (without the creation date, so output is reproducible)."""
    buf = io.BytesIO()
    with plt.rc_context(STYLE):  # type: ignore[arg-type]
        fig.tight_layout()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "xai-audit"})
    return buf.getvalue()


def figure_id(text: object) -> str:
    """A figure-id-safe form of a name (a feature, a group): letters and digits, the rest ``_``, lower case."""
    return "".join(c if c.isalnum() else "_" for c in str(text)).strip("_").lower() or "x"
