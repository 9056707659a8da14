"""Provenance: what exactly was audited, with what, when. Hashes, versions, seeds, platform, timestamps."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from audit.artifacts import Artifacts
from audit.policy import LoadedPolicy

LIBRARIES = ("xai-audit", "numpy", "pandas", "scikit-learn", "xgboost-cpu", "xgboost", "onnxruntime", "skops",
             "torch", "pydantic", "jinja2", "matplotlib", "weasyprint", "shap", "lime", "fairlearn", "captum",
             "cleanlab")


def now() -> str:
    """Current UTC time, ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that can change an audit's numbers."""
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            if name == "xai-audit":  # running from a source tree that is not installed
                from audit import __version__

                out[name] = f"{__version__} (not installed)"
            continue
    return out


def policy_hash(lp: LoadedPolicy) -> str:
    """sha256 of the policy file's bytes, or of its canonical JSON when it was given as data."""
    if lp.text:
        return hashlib.sha256(lp.text.encode("utf-8")).hexdigest()
    canonical = json.dumps(lp.located.data, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def collect(lp: LoadedPolicy, art: Artifacts, *, started_at: str, finished_at: str, duration_s: float,
            command: list[str] | None = None) -> dict[str, Any]:
    """The provenance block of ``result.json``."""
    return {
        "policy": {"path": str(lp.path) if lp.path else None, "sha256": policy_hash(lp)},
        "model": art.provenance.get("model", {}),
        "data": art.provenance.get("data", {}),
        "seed": lp.policy.seed,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "libraries": library_versions(),
        "started_at": started_at,
        "finished_at": finished_at,
        "duration_s": round(duration_s, 3),
        "command": command or [],
    }
