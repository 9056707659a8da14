"""Model adapters: one small interface over XGBoost, scikit-learn (skops), ONNX, PyTorch and trusted pickles.

Every adapter answers ``predict_proba(X)`` (or says it cannot) and ``predict(X)`` on a pandas DataFrame of
the model's input columns, names the features it expects where the format records them, and keeps the
native object for checks that need it (e.g. SHAP's TreeExplainer on an XGBoost booster).

Loading never runs code from a file unless the policy says ``trust: true``: pickle and joblib are refused
by default, skops files are loaded with only the types skops trusts plus those the policy lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audit.errors import ArtifactError, Issue

EXTENSIONS = {".ubj": "xgboost", ".json": "xgboost", ".skops": "skops", ".onnx": "onnx", ".pkl": "pickle",
              ".pickle": "pickle", ".joblib": "joblib", ".pt": "torch", ".pth": "torch", ".safetensors": "torch"}


@dataclass
class ModelAdapter:
    """A loaded model behind one interface.

    Attributes
    ----------
    kind : str
        ``xgboost``, ``sklearn``, ``onnx``, ``torch`` or ``torchscript``.
    native : Any
        The underlying object (XGBClassifier, scikit-learn estimator, onnxruntime session, ``torch.nn.Module``
        in eval mode on the CPU...).
    feature_names : list of str or None
        Input columns the model was fitted on, in order, where the format records them.
    classes : list or None
        Labels of the probability columns, where the model records them (scikit-learn ``classes_``).
        ``None`` means the model only knows class indices (XGBoost, most ONNX graphs).
    """

    kind: str
    native: Any
    feature_names: list[str] | None = None
    classes: list[Any] | None = None
    notes: list[str] = field(default_factory=list)
    torch_model: Any = None  # TorchModel for kind torch/torchscript

    @property
    def is_torch(self) -> bool:
        """Whether the model is a PyTorch module (eager or TorchScript)."""
        return self.torch_model is not None

    def to_tensor(self, X: Any) -> Any:
        """PyTorch models: the float32 input tensor for ``X`` (images ``(N, C, H, W)``, tables ``(N, F)``)."""
        if self.torch_model is None:
            raise TypeError(f"a {self.kind} model takes no tensors")
        return self.torch_model.to_tensor(X)

    @property
    def has_proba(self) -> bool:
        """Whether the model gives class probabilities."""
        if self.torch_model is not None:
            return True
        if self.kind == "onnx":
            return self.native.proba_output is not None
        return hasattr(self.native, "predict_proba")

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Class probabilities, shape ``(n, n_classes)``, columns in the model's class order."""
        if self.torch_model is not None:
            proba = self.torch_model.predict_proba(X)
        elif self.kind == "onnx":
            proba = np.asarray(self.native.run(X)[1], dtype=np.float64)
        else:
            proba = np.asarray(self.native.predict_proba(X), dtype=np.float64)
        # float32 outputs (XGBoost, ONNX, PyTorch) sum to 1 only up to ~1e-7: renormalise what is a rounding error
        sums = proba.sum(axis=1, keepdims=True)
        if proba.ndim == 2 and np.all(np.abs(sums - 1) < 1e-4):
            proba = proba / sums
        return proba

    def predict_raw(self, X: pd.DataFrame) -> np.ndarray:
        """The model's own predictions (labels or class indices, as the model gives them)."""
        if self.torch_model is not None:
            return self.torch_model.predict(X)
        if self.kind == "onnx":
            return np.asarray(self.native.run(X)[0])
        return np.asarray(self.native.predict(X))


def infer_format(path: Path) -> str | None:
    """Model format from the file extension (``None`` when unknown)."""
    return EXTENSIONS.get(path.suffix.lower())


def load_model(
    path: Path, fmt: str, *, where: str, trust: bool = False, trusted_types: list[str] | None = None
) -> ModelAdapter:
    """Load a model file into an adapter.

    Parameters
    ----------
    path : Path
        The model file.
    fmt : str
        ``xgboost``, ``skops``, ``onnx``, ``pickle`` or ``joblib``.
    where : str
        ``file:line:col`` of ``model.path`` in the policy, for error messages.
    trust : bool
        Allow formats that execute code when loaded (pickle, joblib).
    trusted_types : list of str, optional
        skops: types to trust beyond skops' defaults.

    Raises
    ------
    ArtifactError
        Missing, unreadable or untrusted files, with what to do about it.
    """
    if not path.is_file():
        raise ArtifactError([Issue(where, "model.path", f"model file not found: {path}")])
    try:
        if fmt == "xgboost":
            return _load_xgboost(path)
        if fmt == "skops":
            return _load_skops(path, trusted_types or [], where)
        if fmt == "onnx":
            return _load_onnx(path, where)
        if fmt in ("pickle", "joblib"):
            if not trust:
                raise ArtifactError([Issue(where, "model.format", (
                    f"refusing to load {path.name}: {fmt} files run arbitrary code when loaded. Convert the model "
                    "to skops (skops.io.dump) or ONNX, or, only if you produced this file yourself, set "
                    "`model.trust: true`"))])
            return from_object(_load_pickle(path, fmt), where=where)
    except ArtifactError:
        raise
    except Exception as exc:  # a corrupt or mismatched file: say which and why
        raise ArtifactError([Issue(where, "model.path", f"cannot load {path.name} as {fmt}: "
                                   f"{type(exc).__name__}: {exc}")]) from exc
    raise ArtifactError([Issue(where, "model.format", f"unknown model format {fmt!r}")])


def from_object(model: Any, *, where: str = "<run_audit>", output: str = "logits") -> ModelAdapter:
    """Wrap an estimator (anything with ``predict``, ideally ``predict_proba``) or a ``torch.nn.Module``."""
    from audit.artifacts.torch_models import TorchModel, is_module

    if is_module(model):
        return from_torch(TorchModel(model, output=output, scripted=type(model).__module__.startswith("torch.jit")))
    if not hasattr(model, "predict"):
        raise ArtifactError([Issue(where, "model", f"a model needs a predict() method; got "
                                   f"{type(model).__name__}")])
    kind = "xgboost" if type(model).__module__.startswith("xgboost") else "sklearn"
    classes = getattr(model, "classes_", None)
    names = getattr(model, "feature_names_in_", None)
    if kind == "xgboost":
        booster_names = model.get_booster().feature_names
        names = booster_names if booster_names else None
        classes = None  # XGBoost's classes_ are indices 0..k-1, not the data's labels
    return ModelAdapter(kind=kind, native=model, feature_names=list(names) if names is not None else None,
                        classes=list(classes) if classes is not None else None)


def _load_xgboost(path: Path) -> ModelAdapter:
    import xgboost as xgb

    clf = xgb.XGBClassifier()
    clf.load_model(str(path))
    adapter = from_object(clf)
    adapter.kind = "xgboost"
    return adapter


def from_torch(tm: Any, notes: list[str] | None = None) -> ModelAdapter:
    """Wrap a ``TorchModel`` (kind ``torch``, or ``torchscript`` with a note that its layers cannot be hooked)."""
    notes = list(notes or [])
    if tm.scripted:
        notes.append("TorchScript model: its layers cannot be hooked, so layer methods (Grad-CAM) do not run on it")
    return ModelAdapter(kind="torchscript" if tm.scripted else "torch", native=tm.module, torch_model=tm,
                        notes=notes)


def _load_skops(path: Path, trusted: list[str], where: str) -> ModelAdapter:
    import skops.io as sio

    untrusted = [t for t in sio.get_untrusted_types(file=path) if t not in trusted]
    if untrusted:
        raise ArtifactError([Issue(where, "model.trusted_types", (
            f"{path.name} contains types that skops does not trust by default: {', '.join(untrusted)}. "
            "If you know them, list them under `model.trusted_types`"))])
    return from_object(sio.load(path, trusted=trusted or None), where=where)


def _load_pickle(path: Path, fmt: str) -> Any:
    if fmt == "joblib":
        import joblib

        return joblib.load(path)
    import pickle

    with path.open("rb") as fh:
        return pickle.load(fh)  # noqa: S301 - only reached with `model.trust: true`


class OnnxModel:
    """An onnxruntime session that takes a DataFrame and returns (labels, probabilities)."""

    def __init__(self, path: Path):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        self.label_output = outputs[0].name
        self.proba_output = outputs[1].name if len(outputs) > 1 else None
        self.classes: list[Any] | None = None

    @property
    def feature_names(self) -> list[str] | None:
        """Column names when the graph takes one input per column, else ``None`` (one matrix input)."""
        return [i.name for i in self.inputs] if len(self.inputs) > 1 else None

    def _feed(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        if len(self.inputs) == 1:
            return {self.inputs[0].name: X.to_numpy(dtype=np.float32)}
        feed = {}
        for inp in self.inputs:
            col = X[inp.name].to_numpy()
            dtype = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
                     "tensor(string)": object}.get(inp.type, np.float32)
            feed[inp.name] = col.astype(dtype).reshape(-1, 1)
        return feed

    def run(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels and probabilities (ZipMap outputs turned into a matrix in class order)."""
        names = [self.label_output] + ([self.proba_output] if self.proba_output else [])
        out = self.session.run(names, self._feed(X))
        labels = np.asarray(out[0]).ravel()
        proba = None
        if self.proba_output:
            raw = out[1]
            if isinstance(raw, list):  # ZipMap: one {class: probability} dict per row
                keys = sorted(raw[0].keys()) if raw else []
                self.classes = keys
                proba = np.array([[row[k] for k in keys] for row in raw], dtype=float)
            else:
                proba = np.asarray(raw, dtype=float)
        return labels, proba


def _load_onnx(path: Path, where: str) -> ModelAdapter:
    try:
        model = OnnxModel(path)
    except ImportError:
        raise ArtifactError([Issue(where, "model.format", "ONNX models need onnxruntime: "
                                   "pip install 'xai-audit[onnx]'")]) from None
    notes = []
    if model.feature_names is None:
        notes.append("the ONNX graph takes one matrix input: columns are fed in the order of data.features")
    return ModelAdapter(kind="onnx", native=model, feature_names=model.feature_names, notes=notes)
