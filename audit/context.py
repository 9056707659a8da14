"""AuditContext: what every check sees. Model, data, seeded randomness and a shared cache.

Predictions and probabilities are computed once per split and shared, so that checks never recompute each
other's work; anything else expensive goes through ``cached(key, fn)``.

Data are tabular (``X(split)`` a DataFrame) or images (``X(split)`` a float32 ``(N, C, H, W)`` array,
preprocessed once for every check); ``data_kind`` says which.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from audit.artifacts import Artifacts
from audit.policy import LoadedPolicy

T = TypeVar("T")


class AuditContext:
    """Read-only view of one audit's inputs for the checks.

    Parameters
    ----------
    policy : LoadedPolicy
        The validated policy.
    artifacts : Artifacts
        The loaded model and data.
    """

    def __init__(self, policy: LoadedPolicy, artifacts: Artifacts):
        self.loaded_policy = policy
        self.policy = policy.policy
        self.artifacts = artifacts
        self.model = artifacts.model
        self.task = self.policy.model.task
        self.seed = self.policy.seed
        self.features = list(artifacts.features)
        self.target = artifacts.target
        self.labels = list(artifacts.labels)
        self.positive_label = artifacts.positive_label
        self.sensitive_features = list(artifacts.sensitive_features)
        self.data_kind = artifacts.data_kind
        self.preprocessing = artifacts.preprocessing
        self._cache: dict[Any, Any] = {}

    # -- data -------------------------------------------------------------------------------------------
    @property
    def splits(self) -> list[str]:
        """Data splits present (``train``, ``test``)."""
        return list(self.artifacts.frames)

    @property
    def eval_split(self) -> str:
        """The split checks judge the model on: ``test`` when given, else ``train``."""
        return "test" if "test" in self.artifacts.frames else "train"

    @property
    def reference_split(self) -> str:
        """The split that describes the data's distribution: ``train`` when given, else ``eval_split``."""
        return "train" if "train" in self.artifacts.frames else self.eval_split

    def resolve_split(self, split: str | None) -> str:
        """The split a check was asked for (``None``: ``eval_split``); a ``ValueError`` names the splits there are."""
        split = split or self.eval_split
        if split not in self.artifacts.frames:
            raise ValueError(f"split {split!r} is not in the policy's data (have: {self.splits})")
        return split

    def frame(self, split: str) -> pd.DataFrame:
        """The whole table of a split, as read."""
        return self.artifacts.frames[split]

    def X(self, split: str) -> Any:  # noqa: N802 - the usual name for a design matrix
        """Model inputs of a split: a DataFrame, columns in the model's order; images: float32 ``(N, C, H, W)``."""
        if self.data_kind == "image":
            return self.artifacts.images[split]
        return self.cached(("X", split), lambda: self.frame(split)[self.features])

    def images_for_display(self, split: str, index: Any = slice(None)) -> np.ndarray:
        """Images of a split as displayable ``(n, H, W, C)`` values in [0, 1] (mean and std undone)."""
        from audit.artifacts.images import for_display

        if self.preprocessing is None:
            raise TypeError("the data are not images")
        return for_display(self.artifacts.images[split][index], self.preprocessing)

    def region_mask(self, split: str, kind: str = "regions") -> np.ndarray | None:
        """Boolean ``(N, H, W)`` union of ``data.regions`` (or ``forbidden_regions``) for each image, or None."""
        if kind not in ("regions", "forbidden_regions"):
            raise ValueError(f"kind must be 'regions' or 'forbidden_regions'; got {kind!r}")
        return self.artifacts.regions.get(split, {}).get(kind)

    def region_names(self, kind: str = "regions") -> list[str]:
        """Names of the policy's ``data.regions`` (or ``forbidden_regions``), for the report."""
        return list(self.artifacts.region_names.get(kind, []))

    def y(self, split: str) -> np.ndarray:
        """True labels of a split."""
        return self.cached(("y", split), lambda: self.frame(split)[self.target].to_numpy())

    def sensitive(self, split: str) -> pd.DataFrame:
        """Sensitive columns of a split (may be empty)."""
        return self.frame(split)[self.sensitive_features]

    @property
    def positive_index(self) -> int | None:
        """Column of the positive class in ``proba()`` (binary tasks)."""
        return None if self.positive_label is None else self.labels.index(self.positive_label)

    # -- predictions ------------------------------------------------------------------------------------
    def proba(self, split: str) -> np.ndarray | None:
        """Class probabilities of a split, columns in ``labels`` order (``None`` without probabilities)."""
        if not self.model.has_proba:
            return None
        return self.cached(("proba", split), lambda: self.model.predict_proba(self.X(split)))

    def predict(self, split: str) -> np.ndarray:
        """Predicted labels of a split (the class with the highest probability, or the model's own output)."""

        def compute() -> np.ndarray:
            p = self.proba(split)
            if p is not None:
                return np.asarray(self.labels, dtype=object)[p.argmax(axis=1)].astype(self.y(split).dtype)
            raw = self.model.predict_raw(self.X(split))
            if self.model.classes is None and np.issubdtype(raw.dtype, np.integer):
                return np.asarray(self.labels, dtype=object)[raw].astype(self.y(split).dtype)
            return raw

        return self.cached(("predict", split), compute)

    # -- capabilities, randomness, cache ------------------------------------------------------------
    def capabilities(self) -> set[str]:
        """What this audit offers, matched against each check's ``applies_to.needs``."""
        caps = {self.data_kind}
        torch_model = getattr(self.model, "torch_model", None)
        if torch_model is not None:
            caps.update({"torch", "gradients"})
            if not torch_model.scripted:
                caps.add("layer_hooks")
            if torch_model.has_dropout:
                caps.add("dropout")
        if self.model.has_proba:
            caps.add("probabilities")
        if self.sensitive_features:
            caps.add("sensitive_features")
        caps.update(f"{s}_data" for s in self.splits)
        return caps

    def rng(self, name: str) -> np.random.Generator:
        """A generator seeded by the policy seed and ``name``: independent streams, same run to run."""
        digest = hashlib.sha256(f"{self.seed}:{name}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little"))

    def cached(self, key: Any, fn: Callable[[], T]) -> T:
        """``fn()`` computed once per audit under ``key`` and shared between checks."""
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]
