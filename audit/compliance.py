"""Regulatory frameworks as data: obligations read from ``policies/frameworks/*.yaml``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

FRAMEWORKS_DIR = Path(__file__).resolve().parent.parent / "policies" / "frameworks"


@lru_cache(maxsize=8)
def load_frameworks(folder: Path = FRAMEWORKS_DIR) -> dict[str, dict[str, Any]]:
    """Every obligation of every framework file in ``folder``, by obligation id."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for ob in doc.get("obligations", []):
            if ob["id"] in out:
                raise ValueError(f"{path}: obligation id {ob['id']!r} is defined twice")
            out[ob["id"]] = {**ob, "framework": doc.get("framework", path.stem)}
    return out
