"""Load what a policy names (model and data), check that they fit together, and hash them.

Data are tables (csv, parquet) or images (a folder per class, or npz arrays), preprocessed once here.

Every problem found here is collected and raised as one ``ArtifactError`` before any check runs
(exit code 2): missing files, columns absent from the data, feature names the model does not know,
labels that do not fit the task.
"""

from __future__ import annotations

import difflib
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audit.artifacts.data import read_table, sha256_file, sha256_frame, sha256_object
from audit.artifacts.images import (
    IMAGE_FORMATS,
    ImageSplit,
    Preprocessing,
    channel_stats,
    convert_channels,
    frame_for,
    infer_image_format,
    read_image_split,
    region_masks,
    resize,
    split_from_arrays,
    standardise,
)
from audit.artifacts.models import ModelAdapter, from_object, from_torch, infer_format, load_model
from audit.artifacts.torch_models import is_torchscript_file, load_torch
from audit.errors import ArtifactError, Issue
from audit.policy import LoadedPolicy

__all__ = ["Artifacts", "ModelAdapter", "Preprocessing", "load_artifacts"]

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
    data_kind : str
        ``tabular`` or ``image``.
    images : dict
        Image data: split -> preprocessed model inputs, float32 ``(N, C, H, W)``.
    preprocessing : Preprocessing or None
        Image data: the size, channels, mean and std applied.
    regions : dict
        Image data: split -> {"regions": mask, "forbidden_regions": mask}, each ``(N, H, W)`` bool or None.
    region_names : dict
        ``regions``/``forbidden_regions`` -> the names of the regions, for the report.
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
    data_kind: str = "tabular"
    images: dict[str, np.ndarray] = field(default_factory=dict)
    preprocessing: Preprocessing | None = None
    regions: dict[str, dict[str, np.ndarray | None]] = field(default_factory=dict)
    region_names: dict[str, list[str]] = field(default_factory=dict)


def load_artifacts(
    lp: LoadedPolicy, *, model: Any = None, data: dict[str, Any] | None = None
) -> Artifacts:
    """Load and cross-check the policy's model and data (or the objects passed in memory).

    ``model`` replaces ``model.path`` (an estimator or a ``torch.nn.Module``); ``data`` maps a split to a
    DataFrame (tables) or to an ``(x, y)`` pair of arrays (images, preprocessed like npz files).

    Raises
    ------
    ArtifactError
        With every problem found, each located at the policy key it concerns.
    """
    p = lp.policy
    issues: list[Issue] = []
    prov: dict[str, Any] = {"data": {}}
    data = dict(data or {})
    image = p.data.is_image or any(isinstance(v, tuple | list) for v in data.values())

    frames: dict[str, pd.DataFrame] = {}
    images: dict[str, np.ndarray] = {}
    prep: Preprocessing | None = None
    if image:
        frames, images, prep = _load_images(lp, data, prov, issues)
    for split in SPLITS if not image else ():
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
            adapter = from_object(model, output=p.model.output)
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
        if fmt == "torch" and p.model.format is None and not p.model.architecture and path.is_file() \
                and is_torchscript_file(path):
            fmt = "torchscript"
        if fmt is None:
            issues.append(Issue(lp.where("model", "path"), "model.format", f"cannot tell the format of "
                                f"{path.name}; set `model.format` (xgboost, skops, onnx, pickle, joblib, torch, "
                                "torchscript)"))
        elif fmt in ("torch", "torchscript"):
            adapter = _load_torch_model(lp, path, fmt, prov, issues)
        else:
            if p.model.architecture:
                issues.append(Issue(lp.where("model", "architecture"), "model.architecture",
                                    f"only torch state dicts take an architecture; the model format is {fmt}"))
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
    target = _target(lp)
    if image:
        features: list[str] = []
        if not adapter.is_torch:
            issues.append(Issue(lp.where("model", "path") if p.model.path else "<run_audit>", "model",
                                f"image data needs a PyTorch model (format torch or torchscript); got {adapter.kind}"))
        sens = [s for s in p.data.sensitive_features if all(s in f.columns for f in frames.values())]
        for i, s in enumerate(p.data.sensitive_features):
            if s not in sens:
                issues.append(Issue(lp.where("data", "sensitive_features", i), "data.sensitive_features",
                                    f"{s!r} is not a per-image array in the npz data files"))
    else:
        features = _check_columns(lp, frames, adapter, issues)
    labels, positive = _check_labels(lp, frames, adapter, issues, notes)
    if not issues:
        if image:
            _smoke_predict_images(lp, images, adapter, labels, issues)
        else:
            _smoke_predict(lp, frames, adapter, features, labels, issues)
    regions: dict[str, dict[str, np.ndarray | None]] = {}
    if image and prep is not None and not issues:
        regions = _regions(lp, frames, target, prep, issues)
    if issues:
        raise ArtifactError(issues)
    if prep is not None:
        prov["preprocess"] = prep.to_dict()
    return Artifacts(model=adapter, frames=frames, features=features, target=target,
                     sensitive_features=list(p.data.sensitive_features), labels=labels, positive_label=positive,
                     provenance=prov, notes=notes, data_kind="image" if image else "tabular", images=images,
                     preprocessing=prep, regions=regions,
                     region_names={k: [r.label(i) for i, r in enumerate(getattr(p.data, k))]
                                   for k in ("regions", "forbidden_regions")})


def _target(lp: LoadedPolicy) -> str:
    return lp.policy.data.target or "label"


def _load_torch_model(lp: LoadedPolicy, path: Path, fmt: str, prov: dict[str, Any],
                      issues: list[Issue]) -> ModelAdapter | None:
    """A state dict with its architecture, or a TorchScript archive, as an adapter (issues appended)."""
    m = lp.policy.model
    if not path.is_file():
        issues.append(Issue(lp.where("model", "path"), "model.path", f"model file not found: {path}"))
        return None
    where = {"path": lp.where("model", "path"),
             "architecture": lp.where("model", "architecture") if m.architecture else lp.where("model"),
             "init_kwargs": lp.where("model", "init_kwargs") if m.init_kwargs else lp.where("model")}
    try:
        tm, notes = load_torch(path, fmt, architecture=m.architecture, init_kwargs=dict(m.init_kwargs),
                               output=m.output, folder=lp.base_dir, where=where)
    except ArtifactError as exc:
        issues.extend(exc.issues)
        return None
    prov["model"] = {"path": str(path), "format": fmt, "sha256": sha256_file(path)}
    if m.architecture:
        prov["model"].update(architecture=m.architecture, init_kwargs=dict(m.init_kwargs))
    return from_torch(tm, notes)


def _load_images(lp: LoadedPolicy, data: dict[str, Any], prov: dict[str, Any],
                 issues: list[Issue]) -> tuple[dict[str, pd.DataFrame], dict[str, np.ndarray], Preprocessing | None]:
    """Read and preprocess every image split (files or in-memory ``(x, y)`` pairs) the same way."""
    d = lp.policy.data
    pre = d.preprocess
    size: tuple[int, int] | None = None
    if pre is not None and pre.size is not None:
        size = (pre.size, pre.size) if isinstance(pre.size, int) else (int(pre.size[0]), int(pre.size[1]))
    channels: int | None = None if pre is None else pre.channels
    layout = "auto" if pre is None else pre.layout
    target = _target(lp)
    raw: dict[str, ImageSplit] = {}
    for split in SPLITS:
        rel = getattr(d, split)
        if split in data:
            value = data[split]
            if not isinstance(value, tuple | list) or len(value) != 2:
                issues.append(Issue("<run_audit>", f"data.{split}", "image data in memory is an (x, y) pair of "
                                    f"arrays; got {type(value).__name__}"))
                continue
            x, y = np.asarray(value[0]), np.asarray(value[1]).ravel()
            raw[split] = _in_memory_split(x, y, channels, size, layout, split, issues)
            continue
        if not rel:
            continue
        path = lp.resolve(rel)
        fmt = d.format if d.format in IMAGE_FORMATS else infer_image_format(path)
        where = lp.where("data", split)
        if fmt is None:
            issues.append(Issue(where, f"data.{split}", f"cannot tell the image format of {path.name}: give a "
                                "folder with one sub-folder per class, or an .npz file, or set `data.format`"))
            continue
        try:
            got = read_image_split(path, fmt, where=where, key=f"data.{split}", channels=channels, size=size,
                                   layout=layout)
        except ArtifactError as exc:
            issues.extend(exc.issues)
            continue
        raw[split] = got
        # the first split fixes size and channels for the others when the policy does not
        size = size or (int(got.raw.shape[1]), int(got.raw.shape[2]))
        channels = channels or int(got.raw.shape[-1])
        prov["data"][split] = got.provenance
    unknown = sorted(set(data) - set(SPLITS))
    if unknown:
        issues.append(Issue("<run_audit>", "data", f"unknown split(s) {unknown}; expected 'train' and/or 'test'"))
    if not raw or issues:
        return {}, {}, None
    first = next(iter(raw.values()))
    size = size or (int(first.raw.shape[1]), int(first.raw.shape[2]))
    channels = channels or int(first.raw.shape[-1])
    for got in raw.values():  # splits read before size/channels were fixed
        if got.raw.shape[-1] != channels:
            got.raw = convert_channels(got.raw, channels)
        if got.raw.shape[1:3] != size:
            got.raw = resize(got.raw, size)
    try:
        where_pre = lp.where("data", "preprocess")
        prep = Preprocessing(
            size=(int(size[0]), int(size[1])), channels=int(channels),
            mean=channel_stats(pre.mean if pre else 0.0, channels, where=where_pre, key="data.preprocess.mean"),
            std=channel_stats(pre.std if pre else 1.0, channels, where=where_pre, key="data.preprocess.std"),
            scaled=all(g.eight_bit for g in raw.values()))
    except ArtifactError as exc:
        issues.extend(exc.issues)
        return {}, {}, None
    classes = lp.policy.model.classes
    by_text = {str(c): c for c in classes} if classes else {}
    frames, images = {}, {}
    for split, got in raw.items():
        if by_text and got.y.dtype == object:  # folder names are text: read them as the policy's class labels
            got.y = np.asarray([by_text.get(str(v), v) for v in got.y], dtype=object)
            if all(isinstance(v, int) for v in got.y):
                got.y = got.y.astype(np.int64)
        frames[split] = frame_for(got, target, list(d.sensitive_features))
        images[split] = standardise(got.raw, prep)
    return frames, images, prep


def _in_memory_split(x: np.ndarray, y: np.ndarray, channels: int | None, size: tuple[int, int] | None,
                     layout: str, split: str, issues: list[Issue]) -> ImageSplit:
    """An ``(x, y)`` pair passed to run_audit, read like an npz file (and hashed as the npz it would be)."""
    try:
        got = split_from_arrays(x, y, {}, name=f"{split}.npz", where="<run_audit>", key=f"data.{split}",
                                channels=channels, size=size, layout=layout)
    except ArtifactError as exc:
        issues.extend(exc.issues)
        return ImageSplit(raw=np.zeros((0, 1, 1, 1), np.float32), y=np.zeros(0), files=[])
    npz = io.BytesIO()
    np.savez(npz, x=x, y=y)
    got.files = [f"{split}[{i}]" for i in range(len(y))]
    got.provenance = {"path": None, "sha256": hashlib.sha256(npz.getvalue()).hexdigest(), "rows": len(y),
                      "source": "in memory"}
    return got


def _regions(lp: LoadedPolicy, frames: dict[str, pd.DataFrame], target: str, prep: Preprocessing,
             issues: list[Issue]) -> dict[str, dict[str, np.ndarray | None]]:
    """Masks of ``data.regions`` and ``data.forbidden_regions`` per split."""
    out: dict[str, dict[str, np.ndarray | None]] = {}
    for split, frame in frames.items():
        out[split] = {}
        for key in ("regions", "forbidden_regions"):
            try:
                out[split][key] = region_masks(
                    list(getattr(lp.policy.data, key)), n=len(frame), size=prep.size,
                    y=frame[target].to_numpy(), split=split, resolve=lp.resolve,
                    where=lambda *k: lp.where("data", *k), key=key)
            except ArtifactError as exc:
                issues.extend(i for i in exc.issues if i not in issues)
    return out


def _smoke_predict_images(lp: LoadedPolicy, images: dict[str, np.ndarray], adapter: ModelAdapter,
                          labels: list[Any], issues: list[Issue]) -> None:
    """Predict on a few images of each split, so that a model that cannot take them fails here (exit 2)."""
    p = lp.policy
    where = lp.where("data", "preprocess") if p.data.preprocess else (
        lp.where("model", "path") if p.model.path else "<run_audit>")
    for split, x in images.items():
        head = x[:8]
        try:
            proba = adapter.predict_proba(head)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            issues.append(Issue(where, "data.preprocess", (
                f"the model cannot take the {split} images of shape {tuple(head.shape)} (N, C, H, W) after "
                f"preprocessing: {type(exc).__name__}: {first}. Set `data.preprocess` (size, channels) to the "
                "input the model was trained on")))
            return
        if proba.ndim != 2 or proba.shape[1] != len(labels):
            issues.append(Issue(lp.where("model", "path") if p.model.path else "<run_audit>", "model", (
                f"the model gives {proba.shape[-1]} outputs but the data has {len(labels)} classes {labels[:20]}; "
                "check `model.classes`, `model.task` and the class folders or labels")))
            return
        if not np.all(np.isfinite(proba)):
            issues.append(Issue(lp.where("model", "output"), "model.output", (
                "the model's outputs do not give finite probabilities; check `model.output` (logits, "
                "probabilities or log_probabilities)")))
            return


def _missing(names: list[str], columns: list[str]) -> list[str]:
    return [n for n in names if n not in columns]


def _near(name: str, columns: list[str]) -> str:
    near = difflib.get_close_matches(name, columns, n=1)
    return f"; did you mean {near[0]!r}?" if near else ""


def _check_columns(lp: LoadedPolicy, frames: dict[str, pd.DataFrame], adapter: ModelAdapter,
                   issues: list[Issue]) -> list[str]:
    d = lp.policy.data
    target = _target(lp)
    for split, frame in frames.items():
        cols = [str(c) for c in frame.columns]
        where_file = getattr(d, split) or f"data[{split!r}]"
        if target not in cols:
            issues.append(Issue(lp.where("data", "target"), "data.target", f"column {target!r} not found in "
                                f"{where_file}{_near(target, cols)} (columns: {', '.join(cols[:30])})"))
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
    target = _target(lp)
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
        if adapter.kind in ("xgboost", "onnx", "torch", "torchscript") and observed != list(range(len(observed))):
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
