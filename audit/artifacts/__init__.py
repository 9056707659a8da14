"""Load what a policy names (model and data), check that they fit together, and hash them.

Every problem found here is collected and raised as one ``ArtifactError`` before any check runs
(exit code 2): missing files, columns absent from the data, feature names the model does not know,
labels that do not fit the task.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from audit.artifacts.data import read_table, sha256_file, sha256_frame, sha256_object
from audit.artifacts.models import ModelAdapter, from_object, infer_format, load_model
from audit.errors import ArtifactError, Issue
from audit.policy import LoadedPolicy

__all__ = ["Artifacts", "ModelAdapter", "load_artifacts"]

SPLITS = ("train", "test")


@dataclass
class Artifacts:
    """The model and data of one audit, validated against each other.

    Attributes
    ----------
    model : ModelAdapter
    frames : dict
        Split name (``train``, ``test``) -> the whole table as read.
    features : list of str
        Model input columns, in the order the model expects.
    target : str
    sensitive_features : list of str
    labels : list
        Class labels in the order of the model's probability columns.
    positive_label : Any
        The positive class for binary tasks (``None`` for multiclass).
    provenance : dict
        Paths and sha256 hashes of the model and each data split.
    notes : list of str
        Assumptions made while loading (label order, column order), for the report.
    """

    model: ModelAdapter
    frames: dict[str, pd.DataFrame]
    features: list[str]
    target: str
    sensitive_features: list[str]
    labels: list[Any]
    positive_label: Any
    provenance: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def load_artifacts(
    lp: LoadedPolicy, *, model: Any = None, data: dict[str, pd.DataFrame] | None = None
) -> Artifacts:
    """Load and cross-check the policy's model and data (or the objects passed in memory).

    Raises
    ------
    ArtifactError
        With every problem found, each located at the policy key it concerns.
    """
    p = lp.policy
    issues: list[Issue] = []
    prov: dict[str, Any] = {"data": {}}
    data = dict(data or {})

    frames: dict[str, pd.DataFrame] = {}
    for split in SPLITS:
        rel = getattr(p.data, split)
        if split in data:
            frame = data[split]
            if not isinstance(frame, pd.DataFrame):
                issues.append(Issue("<run_audit>", f"data.{split}", "must be a pandas DataFrame; got "
                                    f"{type(frame).__name__}"))
                continue
            frames[split] = frame.reset_index(drop=True)
            prov["data"][split] = {"path": None, "sha256": sha256_frame(frame), "rows": len(frame),
                                   "columns": frame.shape[1], "source": "in memory"}
        elif rel:
            path = lp.resolve(rel)
            try:
                frames[split] = read_table(path, p.data.format, where=lp.where("data", split), key=f"data.{split}")
                prov["data"][split] = {"path": str(path), "sha256": sha256_file(path),
                                       "rows": len(frames[split]), "columns": frames[split].shape[1]}
            except ArtifactError as exc:
                issues.extend(exc.issues)
    unknown = sorted(set(data) - set(SPLITS))
    if unknown:
        issues.append(Issue("<run_audit>", "data", f"unknown split(s) {unknown}; expected 'train' and/or 'test'"))

    adapter: ModelAdapter | None = None
    if model is not None:
        try:
            adapter = from_object(model)
            prov["model"] = {"path": None, "format": adapter.kind, "sha256": sha256_object(model),
                             "source": "in memory", "class": f"{type(model).__module__}.{type(model).__name__}"}
        except ArtifactError as exc:
            issues.extend(exc.issues)
    elif not p.model.path:
        issues.append(Issue(lp.where("model"), "model.path", "missing; name the model file, or pass a model "
                            "object to run_audit(..., model=...)"))
    else:
        path = lp.resolve(p.model.path)
        fmt = p.model.format or infer_format(path)
        if fmt is None:
            issues.append(Issue(lp.where("model", "path"), "model.format", f"cannot tell the format of "
                                f"{path.name}; set `model.format` (xgboost, skops, onnx, pickle, joblib)"))
        else:
            try:
                adapter = load_model(path, fmt, where=lp.where("model", "path"), trust=p.model.trust,
                                     trusted_types=p.model.trusted_types)
                prov["model"] = {"path": str(path), "format": fmt, "sha256": sha256_file(path)}
            except ArtifactError as exc:
                issues.extend(exc.issues)

    if issues or adapter is None or not frames:
        raise ArtifactError(issues or [Issue(lp.where("data"), "data", "no data: give `data.test` (held-out "
                                             "data, what the checks judge the model on) and/or `data.train`")])

    notes = list(adapter.notes)
    features = _check_columns(lp, frames, adapter, issues)
    labels, positive = _check_labels(lp, frames, adapter, issues, notes)
    if not issues:
        _smoke_predict(lp, frames, adapter, features, labels, issues)
    if issues:
        raise ArtifactError(issues)
    return Artifacts(model=adapter, frames=frames, features=features, target=p.data.target,
                     sensitive_features=list(p.data.sensitive_features), labels=labels, positive_label=positive,
                     provenance=prov, notes=notes)


def _missing(names: list[str], columns: list[str]) -> list[str]:
    return [n for n in names if n not in columns]


def _near(name: str, columns: list[str]) -> str:
    near = difflib.get_close_matches(name, columns, n=1)
    return f"; did you mean {near[0]!r}?" if near else ""


def _check_columns(lp: LoadedPolicy, frames: dict[str, pd.DataFrame], adapter: ModelAdapter,
                   issues: list[Issue]) -> list[str]:
    d = lp.policy.data
    for split, frame in frames.items():
        cols = [str(c) for c in frame.columns]
        where_file = getattr(d, split) or f"data[{split!r}]"
        if d.target not in cols:
            issues.append(Issue(lp.where("data", "target"), "data.target", f"column {d.target!r} not found in "
                                f"{where_file}{_near(d.target, cols)} (columns: {', '.join(cols[:30])})"))
        for i, s in enumerate(d.sensitive_features):
            if s not in cols:
                issues.append(Issue(lp.where("data", "sensitive_features", i), "data.sensitive_features",
                                    f"column {s!r} not found in {where_file}{_near(s, cols)}"))
        for i, f in enumerate(d.features or []):
            if f not in cols:
                issues.append(Issue(lp.where("data", "features", i), "data.features",
                                    f"column {f!r} not found in {where_file}{_near(f, cols)}"))
    if issues:  # a missing target or sensitive column would make the feature comparison below misleading
        return []
    first = next(iter(frames.values()))
    excluded = {d.target, *d.sensitive_features}
    features = list(d.features) if d.features is not None else [str(c) for c in first.columns
                                                                 if str(c) not in excluded]
    if adapter.feature_names is not None:
        want = list(adapter.feature_names)
        if set(want) != set(features):
            unknown = [f for f in features if f not in want]
            absent = [f for f in want if f not in features]
            parts = []
            if absent:
                parts.append(f"the model expects {absent} which the data's features lack")
            if unknown:
                parts.append(f"the data's features include {unknown} which the model was not fitted on")
            issues.append(Issue(lp.where("data", "features") if d.features is not None else lp.where("model", "path"),
                                "data.features", "model and data do not match: " + "; ".join(parts) +
                                ". List the model's inputs under `data.features`, or mark protected columns "
                                "in `data.sensitive_features`"))
        else:
            features = want  # the model's own order
    return features


def _check_labels(lp: LoadedPolicy, frames: dict[str, pd.DataFrame], adapter: ModelAdapter,
                  issues: list[Issue], notes: list[str]) -> tuple[list[Any], Any]:
    p = lp.policy
    target = p.data.target
    if any(target not in f.columns for f in frames.values()):
        return [], None
    ys = pd.concat([f[target] for f in frames.values()], ignore_index=True)
    if ys.isna().any():
        issues.append(Issue(lp.where("data", "target"), "data.target",
                            f"column {target!r} has {int(ys.isna().sum())} missing labels; drop or fill them"))
        return [], None
    observed = sorted(pd.unique(ys).tolist(), key=_sort_key)
    if p.model.classes is not None:
        labels = list(p.model.classes)
    elif adapter.classes is not None:
        labels = list(adapter.classes)
    else:
        labels = observed
        if adapter.kind in ("xgboost", "onnx") and observed != list(range(len(observed))):
            notes.append(f"the model gives class indices; index i was read as the i-th sorted label {observed} "
                         "(set `model.classes` to state the order)")
    stray = [v for v in observed if v not in labels]
    if stray:
        issues.append(Issue(lp.where("data", "target"), "data.target",
                            f"labels {stray} in {target!r} are not among the model's classes {labels}"))
    if p.model.task == "binary_classification":
        if len(labels) != 2 or len(observed) > 2:
            issues.append(Issue(lp.where("model", "task"), "model.task",
                                f"binary_classification needs exactly two labels; {target!r} has {len(observed)} "
                                f"({observed[:10]}). Use `task: multiclass_classification` or recode the target"))
            return labels, None
        positive = p.data.positive_label
        if positive is None:
            positive = next((c for c in (1, "yes", True, "1", "Yes", "true") if c in labels), labels[-1])
            notes.append(f"positive label not given; took {positive!r}")
        elif positive not in labels:
            issues.append(Issue(lp.where("data", "positive_label"), "data.positive_label",
                                f"{positive!r} is not one of the labels {labels}"))
        return labels, positive
    if len(observed) < 2:
        issues.append(Issue(lp.where("data", "target"), "data.target", f"{target!r} has a single label"))
    return labels, None


def _sort_key(v: Any) -> tuple[int, Any]:
    return (0, v) if isinstance(v, int | float | np.integer | np.floating) else (1, str(v))


def _smoke_predict(lp: LoadedPolicy, frames: dict[str, pd.DataFrame], adapter: ModelAdapter, features: list[str],
                   labels: list[Any], issues: list[Issue]) -> None:
    """Predict on a few rows of each split, so that a model that cannot read the data fails here (exit 2)."""
    where = lp.where("model", "path") if lp.policy.model.path else "<run_audit>"
    for split, frame in frames.items():
        head = frame[features].head(8)
        try:
            if adapter.has_proba:
                proba = adapter.predict_proba(head)
                if proba.ndim != 2 or proba.shape[1] != len(labels):
                    issues.append(Issue(where, "model", f"the model gives {proba.shape[-1]} probability columns "
                                        f"but the target has {len(labels)} labels {labels}; check `model.task`, "
                                        "`model.classes` and the target column"))
                    return
            else:
                adapter.predict_raw(head)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            issues.append(Issue(where, "model", f"the model cannot predict on the {split} data: "
                                f"{type(exc).__name__}: {first}. Check the feature columns' types and "
                                "`data.features`"))
            return
