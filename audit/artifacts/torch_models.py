"""PyTorch models: state dicts with their architecture, TorchScript archives and modules passed in memory.

Loading never unpickles arbitrary objects: state dicts are read with ``torch.load(..., weights_only=True)`` or
from ``.safetensors``; the architecture is a class named in the policy (``package.module:ClassName``),
imported from the policy's folder or the environment. Every loaded module is put in eval mode on the CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audit.errors import ArtifactError, Issue

TORCH_EXTENSIONS = {".pt", ".pth", ".safetensors"}
DROPOUT_TYPES = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout")
BATCH = 256


def is_module(obj: Any) -> bool:
    """Whether ``obj`` is a ``torch.nn.Module`` (without importing torch when nothing imported it yet)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def is_torchscript_file(path: Path) -> bool:
    """TorchScript archives are zip files with a ``code/`` folder (state dicts saved by torch.save have none)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any("/code/" in n or n.startswith("code/") for n in zf.namelist())


class TorchModel:
    """A ``torch.nn.Module`` seen as a classifier: arrays or DataFrames in, float64 probabilities out.

    Parameters
    ----------
    module : torch.nn.Module
        The network; put in eval mode on the CPU.
    output : {"logits", "probabilities", "log_probabilities"}
        What the module's forward returns. A single output column is read as the logit (or probability) of
        the second class of a binary task.
    scripted : bool
        Whether the module is TorchScript (its layers cannot be hooked: no Grad-CAM).
    """

    def __init__(self, module: Any, *, output: str = "logits", scripted: bool = False):
        import torch

        self.module = module.to("cpu").eval()
        self.output = output
        self.scripted = scripted
        self.torch = torch

    def to_tensor(self, X: Any) -> Any:
        """The float32 input tensor for ``X`` (images ``(N, C, H, W)``; a DataFrame ``(N, F)`` in its order)."""
        if isinstance(X, self.torch.Tensor):
            return X.detach().to(dtype=self.torch.float32, device="cpu")
        if isinstance(X, pd.DataFrame):
            X = X.to_numpy(dtype=np.float32)
        return self.torch.from_numpy(np.ascontiguousarray(np.asarray(X, dtype=np.float32)))

    def probabilities(self, out: Any) -> Any:
        """Turn the module's raw output tensor into class probabilities (a tensor, gradients kept)."""
        torch = self.torch
        if out.ndim == 1:
            out = out[:, None]
        if out.shape[1] == 1:  # binary with one output: the second class's logit or probability
            p = torch.sigmoid(out) if self.output == "logits" else (
                out.exp() if self.output == "log_probabilities" else out)
            return torch.cat([1 - p, p], dim=1)
        if self.output == "logits":
            return torch.softmax(out, dim=1)
        if self.output == "log_probabilities":
            return out.exp()
        return out

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, float64 ``(N, K)``, batched under ``torch.no_grad()``.

        ``ModelAdapter.predict_proba`` renormalises rows whose sum is 1 only up to rounding.
        """
        x = self.to_tensor(X)
        parts = []
        with self.torch.no_grad():
            for start in range(0, len(x), BATCH):
                parts.append(self.probabilities(self.module(x[start:start + BATCH])).double().numpy())
        return np.concatenate(parts) if parts else np.zeros((0, 0))

    def predict(self, X: Any) -> np.ndarray:
        """Index of the most probable class per row."""
        return self.predict_proba(X).argmax(axis=1)

    @property
    def has_dropout(self) -> bool:
        """Whether any layer is a dropout layer (MC dropout needs one)."""
        return any(is_dropout(m) for m in self.module.modules())


def is_dropout(module: Any) -> bool:
    """Whether ``module`` is a dropout layer: a ``torch.nn`` dropout class or subclass, or a scripted one."""
    import torch.nn as nn

    if isinstance(module, nn.modules.dropout._DropoutNd):
        return True
    return getattr(module, "original_name", None) in DROPOUT_TYPES


def fingerprint(module: Any) -> str:
    """sha256 over a module's parameters and buffers and its training flags: equal means untouched."""
    h = hashlib.sha256()
    for name, t in list(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(bytes(int(m.training) for m in module.modules()))
    return h.hexdigest()


@contextlib.contextmanager
def _policy_folder_on_path(folder: Path | None, module_name: str) -> Iterator[None]:
    """Put the policy's folder first on ``sys.path`` for one import, then take it off again.

    If the policy's folder provides the module but an import of the same name from elsewhere is cached,
    the cached one is dropped so that the policy's own file is imported.
    """
    if folder is None:
        yield
        return
    top = module_name.split(".")[0]
    local = (folder / f"{top}.py").is_file() or (folder / top).is_dir()
    if local:
        cached = sys.modules.get(top)
        origin = getattr(cached, "__file__", None) if cached is not None else None
        if cached is not None and (origin is None or not Path(origin).resolve().is_relative_to(folder.resolve())):
            for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
                del sys.modules[name]
    entry = str(folder.resolve())
    sys.path.insert(0, entry)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def import_architecture(spec: str, *, folder: Path | None, where: str) -> type:
    """The ``nn.Module`` subclass named ``package.module:ClassName``, from the policy's folder or the environment.

    Raises
    ------
    ArtifactError
        A malformed name, a module that cannot be imported, a missing class, or a class that is no module.
    """
    import torch

    key = "model.architecture"
    module_name, sep, cls_name = spec.partition(":")
    if not sep or not module_name or not cls_name.isidentifier():
        raise ArtifactError([Issue(where, key, f"must be 'package.module:ClassName'; got {spec!r}")])
    try:
        with _policy_folder_on_path(folder, module_name):
            mod = importlib.import_module(module_name)
    except Exception as exc:
        looked = f"the policy's folder ({folder}) and the environment" if folder else "the environment"
        raise ArtifactError([Issue(where, key, f"cannot import module {module_name!r} (looked in {looked}): "
                                   f"{type(exc).__name__}: {exc}")]) from None
    cls = getattr(mod, cls_name, None)
    if cls is None:
        found = sorted(n for n, v in vars(mod).items()
                       if isinstance(v, type) and issubclass(v, torch.nn.Module) and v.__module__ == mod.__name__)
        near = f"; it defines {', '.join(found)}" if found else "; it defines no nn.Module subclass"
        raise ArtifactError([Issue(where, key, f"module {module_name!r} has no class {cls_name!r}{near}")])
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ArtifactError([Issue(where, key, f"{spec} is not a torch.nn.Module subclass; got "
                                   f"{type(cls).__name__}")])
    return cls


def read_state_dict(path: Path, *, where: str, key: str = "model.path") -> tuple[dict[str, Any], list[str]]:
    """Tensors of a ``.pt``/``.pth`` (``weights_only=True``) or ``.safetensors`` file, and notes.

    ``where`` and ``key`` locate the policy entry that named the file, for the error messages.
    """
    import torch

    notes: list[str] = []
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path), device="cpu")), notes
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:240]
        raise ArtifactError([Issue(where, key, (
            f"cannot read {path.name} as a state dict (torch.load with weights_only=True, which never runs code "
            f"from the file): {type(exc).__name__}: {first}. Save the weights with "
            "torch.save(model.state_dict(), path) or safetensors, or export the model with torch.jit.script"))]
        ) from None
    if isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for k in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(k)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                notes.append(f"{path.name} is a checkpoint; its weights were read from the key {k!r}")
                return dict(inner), notes
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ArtifactError([Issue(where, key, f"{path.name} holds a {type(obj).__name__}, not a state "
                                   "dict of tensors; save model.state_dict()")])
    return dict(obj), notes


def build_module(cls: type, init_kwargs: dict[str, Any], state: dict[str, Any], *, where: str) -> Any:
    """Instantiate the architecture and load the weights strictly; mismatches name the tensors and shapes."""
    try:
        module = cls(**init_kwargs)
    except Exception as exc:
        raise ArtifactError([Issue(where, "model.init_kwargs", f"{cls.__name__}(**{init_kwargs!r}) failed: "
                                   f"{type(exc).__name__}: {exc}")]) from None
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing from the file: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(f"not in the architecture: {', '.join(unexpected[:8])}"
                        f"{' ...' if len(unexpected) > 8 else ''}")
    if shapes:
        problems.append("shape mismatch: " + "; ".join(shapes[:6]))
    if problems:
        raise ArtifactError([Issue(where, "model.architecture", (
            f"the weights do not fit {cls.__name__}(**{init_kwargs!r}): " + ". ".join(problems)
            + ". Check model.architecture and model.init_kwargs against the code that trained the model"))])
    module.load_state_dict(state, strict=True)
    return module


def load_torch(path: Path, fmt: str, *, architecture: str | None, init_kwargs: dict[str, Any],
               output: str, folder: Path | None, where: dict[str, str]) -> tuple[TorchModel, list[str]]:
    """Load a state dict (``fmt="torch"``) or a TorchScript archive into a ``TorchModel``.

    ``where`` maps the policy keys ``path``, ``architecture`` and ``init_kwargs`` to their ``file:line:col``.
    """
    import torch

    if fmt == "torchscript":
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:240]
            raise ArtifactError([Issue(where["path"], "model.path", f"cannot load {path.name} as TorchScript: "
                                       f"{type(exc).__name__}: {first}")]) from None
        return TorchModel(module, output=output, scripted=True), []
    if not architecture:
        raise ArtifactError([Issue(where["path"], "model.architecture", (
            f"{path.name} is a state dict: name the class that holds it, `model.architecture: "
            "package.module:ClassName` (importable from the policy's folder), with `model.init_kwargs`"))])
    cls = import_architecture(architecture, folder=folder, where=where["architecture"])
    state, notes = read_state_dict(path, where=where["path"])
    module = build_module(cls, init_kwargs, state, where=where["architecture"])
    return TorchModel(module, output=output), notes
