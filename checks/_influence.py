"""Arithmetic of the ``influence`` check: surrogates, per-sample gradients, TracIn scores, canaries, cleansing.

Everything here works on plain arrays, tensors and ``torch.nn.Module`` objects; the check module owns the
audit context, options, metrics and figures.

Method (TracIn, Pruthi et al., NeurIPS 2020): the influence of a training sample ``z`` on a sample ``z'`` is
``sum_t lr_t * g_t(z) . g_t(z')`` over checkpoints ``t`` of the training run, ``g_t`` the gradient of the loss at
checkpoint ``t``; the self-influence ``sum_t lr_t * |g_t(z)|^2`` ranks mislabelled samples first. Gradients are
computed a batch at a time and reduced at once (to a score per row, or a dot product with one reference vector),
so memory is ``batch_size x n_params`` plus one number per row and checkpoint count never multiplies rows.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

Space = Literal["logits", "last_layer", "all"]
LogProba = Callable[[torch.Tensor], torch.Tensor]


def _log_softmax(out: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(out, dim=1)

_YES = {"yes", "y", "true", "t", "1"}
_NO = {"no", "n", "false", "f", "0"}


# -- features -----------------------------------------------------------------------------------------------
@dataclass
class Encoder:
    """Standardise numeric columns, map yes/no and boolean columns to 0/1, one-hot encode other categories.

    Fitted on the training data only; categories unseen there become all-zero columns, missing numbers the
    training mean (0 after standardising).
    """

    numeric: list[str]
    mean: np.ndarray
    std: np.ndarray
    binary: list[str]
    categories: dict[str, list[Any]]

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> Encoder:
        """Learn the encoding of each column from the training frame."""
        numeric, binary, categories = [], [], {}
        for col in frame.columns:
            s = frame[col]
            if pd.api.types.is_bool_dtype(s):
                binary.append(col)
            elif pd.api.types.is_numeric_dtype(s):
                numeric.append(col)
            else:
                values = {str(v).strip().lower() for v in s.dropna().unique()}
                if values and values <= (_YES | _NO):
                    binary.append(col)
                else:
                    categories[col] = sorted(s.dropna().unique(), key=str)
        x = frame[numeric].to_numpy(dtype=np.float64) if numeric else np.zeros((len(frame), 0))
        mean = np.nanmean(x, axis=0) if numeric else np.zeros(0)
        std = np.nanstd(x, axis=0) if numeric else np.zeros(0)
        std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        return cls(numeric, np.nan_to_num(mean), std, binary, categories)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """The float32 design matrix of a frame with the training frame's columns."""
        parts = []
        if self.numeric:
            x = frame[self.numeric].to_numpy(dtype=np.float64)
            x = np.where(np.isnan(x), self.mean, x)
            parts.append((x - self.mean) / self.std)
        for col in self.binary:
            s = frame[col]
            if pd.api.types.is_bool_dtype(s):
                parts.append(s.to_numpy(dtype=np.float64)[:, None])
            else:
                parts.append(s.astype(str).str.strip().str.lower().isin(_YES).to_numpy(dtype=np.float64)[:, None])
        for col, cats in self.categories.items():
            values = frame[col].to_numpy()
            parts.append(np.stack([values == c for c in cats], axis=1).astype(np.float64))
        if not parts:
            return np.zeros((len(frame), 0), dtype=np.float32)
        return np.concatenate(parts, axis=1).astype(np.float32)

    def describe(self) -> str:
        """One sentence on what was done to which columns."""
        parts = [f"{len(self.numeric)} numeric column(s) standardised"]
        if self.binary:
            parts.append(f"{len(self.binary)} yes/no column(s) as 0/1")
        if self.categories:
            parts.append(f"{len(self.categories)} categorical column(s) one-hot encoded")
        return ", ".join(parts)


# -- surrogates and checkpoints -----------------------------------------------------------------------------
@dataclass
class Checkpoint:
    """Parameters at one point of training and the learning rate in force there."""

    params: dict[str, torch.Tensor]
    lr: float


@dataclass(frozen=True)
class TrainSpec:
    """How a surrogate is built and trained (plain minibatch SGD, so that TracIn's learning rates apply)."""

    kind: Literal["logistic", "mlp"] = "logistic"
    hidden: int = 32
    epochs: int = 30
    lr: float = 0.1
    batch_size: int = 64
    weight_decay: float = 1e-3
    n_checkpoints: int = 5


def make_surrogate(spec: TrainSpec, n_in: int, n_classes: int, seed: int) -> nn.Module:
    """A logistic regression (one linear layer) or a one-hidden-layer MLP, initialised from ``seed``."""
    torch.manual_seed(seed)
    if spec.kind == "logistic":
        return nn.Sequential(nn.Linear(n_in, n_classes))
    return nn.Sequential(nn.Linear(n_in, spec.hidden), nn.ReLU(), nn.Linear(spec.hidden, n_classes))


def train_surrogate(X: np.ndarray, y: np.ndarray, n_classes: int, spec: TrainSpec, *,
                    seed: int) -> tuple[nn.Module, list[Checkpoint]]:
    """Train a surrogate with minibatch SGD, keeping ``spec.n_checkpoints`` evenly spaced checkpoints in memory.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Encoded features.
    y : ndarray of shape (n,)
        Class indices.
    n_classes : int
        Number of classes (output width).
    spec : TrainSpec
        Surrogate kind and SGD settings.
    seed : int
        Seeds the initialisation and the minibatch order.
    """
    model = make_surrogate(spec, X.shape[1], n_classes, seed)
    xt, yt = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)
    opt = torch.optim.SGD(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    keep = set(np.unique(np.round(np.linspace(0, spec.epochs, spec.n_checkpoints + 1)[1:]).astype(int)))
    checkpoints: list[Checkpoint] = []
    for epoch in range(1, spec.epochs + 1):
        order = torch.randperm(len(yt), generator=gen)
        for start in range(0, len(yt), spec.batch_size):
            idx = order[start:start + spec.batch_size]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
        if epoch in keep:
            checkpoints.append(Checkpoint({k: v.detach().clone() for k, v in model.named_parameters()}, spec.lr))
    model.eval()
    return model, checkpoints


def predict_proba(model: nn.Module, params: dict[str, torch.Tensor] | None, X: np.ndarray | torch.Tensor,
                  batch_size: int = 4096) -> np.ndarray:
    """Softmax probabilities of ``model`` (at ``params`` when given), batched, as float64."""
    xt = torch.as_tensor(X, dtype=torch.float32)
    out = []
    with torch.no_grad():
        for start in range(0, len(xt), batch_size):
            xb = xt[start:start + batch_size]
            logits = functional_call(model, params, (xb,)) if params is not None else model(xb)
            p = torch.softmax(logits.double(), dim=1).numpy()
            out.append(p / p.sum(axis=1, keepdims=True))
    return np.concatenate(out) if out else np.zeros((0, 0))


# -- per-sample gradients -----------------------------------------------------------------------------------
def last_layer_names(model: nn.Module) -> list[str]:
    """Parameter names of the last module that has parameters (the output layer)."""
    last = None
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            last = name
    return [n for n, _ in model.named_parameters() if last is not None and n.rsplit(".", 1)[0] == last]


class Projector:
    """A seeded random projection ``R`` of shape (n_params, dim), Rademacher entries over ``sqrt(dim)``.

    Dot products are kept in expectation (Johnson-Lindenstrauss). ``R`` is generated chunk by chunk from the
    seed, and kept only when small, so projecting the gradients of a large model needs little memory.
    """

    def __init__(self, n_params: int, dim: int, seed: int, chunk: int = 1 << 16):
        self.n_params, self.dim, self.seed, self.chunk = n_params, dim, seed, chunk
        self._cache: list[torch.Tensor] | None = [] if n_params * dim <= (1 << 24) else None

    def _block(self, i: int, rows: int) -> torch.Tensor:
        if self._cache is not None and i < len(self._cache):
            return self._cache[i]
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        block = (torch.randint(0, 2, (rows, self.dim), generator=gen).float() * 2 - 1) / math.sqrt(self.dim)
        if self._cache is not None:
            self._cache.append(block)
        return block

    def __call__(self, g: torch.Tensor) -> torch.Tensor:
        """Project rows of ``g`` (shape (B, n_params)) to shape (B, dim)."""
        out = torch.zeros(g.shape[0], self.dim)
        for i, start in enumerate(range(0, self.n_params, self.chunk)):
            stop = min(start + self.chunk, self.n_params)
            out += g[:, start:stop] @ self._block(i, stop - start)
        return out


class GradientFn:
    """Per-sample loss gradients of a classifier in one gradient space, batched with ``torch.func.vmap``.

    Spaces: ``logits`` (gradient of the cross-entropy with respect to the output logits, ``softmax - onehot``:
    the output layer's bias gradient, cheapest and the least disturbed by input scale), ``last_layer`` (weights
    and bias of the output layer), ``all`` (every parameter). Gradients wider than ``projection_dim`` are
    randomly projected to it (0: never).
    """

    def __init__(self, model: nn.Module, space: Space, *, projection_dim: int = 0, seed: int = 0,
                 log_proba: LogProba | None = None):
        self.model, self.space = model, space
        self.log_proba = log_proba or _log_softmax
        all_names = [n for n, p in model.named_parameters()]
        self.names = last_layer_names(model) if space == "last_layer" else all_names
        shapes = dict(model.named_parameters())
        self.n_params = sum(shapes[n].numel() for n in self.names)
        self.projector = (Projector(self.n_params, projection_dim, seed)
                          if space != "logits" and 0 < projection_dim < self.n_params else None)

    @property
    def dim(self) -> int:
        """Width of the gradient vectors returned."""
        if self.space == "logits":
            return -1
        return self.projector.dim if self.projector else self.n_params

    def __call__(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample gradients, shape (B, dim)."""
        if self.space == "logits":
            with torch.no_grad():
                p = self.log_proba(functional_call(self.model, params, (x,))).exp()
                return p - nn.functional.one_hot(y, p.shape[1]).to(p.dtype)
        free = {n: params[n] for n in self.names}
        fixed = {n: v for n, v in params.items() if n not in free}

        def loss(f: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
            out = functional_call(self.model, {**fixed, **f}, (xi.unsqueeze(0),))
            return nn.functional.nll_loss(self.log_proba(out), yi.unsqueeze(0))

        g = vmap(grad(loss), in_dims=(None, 0, 0))(free, x, y)
        flat = torch.cat([g[n].reshape(len(x), -1) for n in self.names], dim=1).detach()
        return self.projector(flat) if self.projector else flat

    def mean_grad(self, params: dict[str, torch.Tensor], fn: Callable[[dict[str, torch.Tensor]], torch.Tensor]
                  ) -> torch.Tensor:
        """Gradient of a scalar function of the parameters (e.g. a mean test loss), in this space, flat."""
        free = {n: params[n].detach().clone().requires_grad_(True) for n in self.names}
        fixed = {n: v for n, v in params.items() if n not in free}
        value = fn({**fixed, **free})
        grads = torch.autograd.grad(value, [free[n] for n in self.names], allow_unused=True)
        flat = torch.cat([(g if g is not None else torch.zeros_like(free[n])).reshape(1, -1)
                          for n, g in zip(self.names, grads, strict=True)], dim=1).detach()
        return (self.projector(flat) if self.projector else flat)[0]


def self_influence(model: nn.Module, checkpoints: Sequence[Checkpoint], X: torch.Tensor, y: torch.Tensor, *,
                   space: Space, projection_dim: int = 0, batch_size: int = 512, seed: int = 0,
                   log_proba: LogProba | None = None) -> np.ndarray:
    """TracIn self-influence ``sum_t lr_t |g_t(z)|^2`` of each row, batch by batch (memory: one batch)."""
    gfn = GradientFn(model, space, projection_dim=projection_dim, seed=seed, log_proba=log_proba)
    out = torch.zeros(len(y), dtype=torch.float64)
    for ck in checkpoints:
        for start in range(0, len(y), batch_size):
            sl = slice(start, start + batch_size)
            out[sl] += ck.lr * gfn(ck.params, X[sl], y[sl]).double().pow(2).sum(dim=1)
    return out.numpy()


def cross_influence(model: nn.Module, checkpoints: Sequence[Checkpoint], X: torch.Tensor, y: torch.Tensor,
                    target: Callable[[dict[str, torch.Tensor]], torch.Tensor], *, space: Space,
                    projection_dim: int = 0, batch_size: int = 512, seed: int = 0,
                    log_proba: LogProba | None = None) -> np.ndarray:
    """TracIn influence ``sum_t lr_t g_t(z) . grad_t(target)`` of each training row on a scalar target.

    With ``target`` the mean test loss, a positive value means training on the row lowered the test loss
    (helpful, a proponent) and a negative one that it raised it (harmful). ``space`` must not be ``logits``
    (logit gradients of different rows live in different spaces).
    """
    return cross_influences(model, checkpoints, X, y, [target], space=space, projection_dim=projection_dim,
                            batch_size=batch_size, seed=seed, log_proba=log_proba)[0]


def cross_influences(model: nn.Module, checkpoints: Sequence[Checkpoint], X: torch.Tensor, y: torch.Tensor,
                     targets: Sequence[Callable[[dict[str, torch.Tensor]], torch.Tensor]], *, space: Space,
                     projection_dim: int = 0, batch_size: int = 512, seed: int = 0,
                     log_proba: LogProba | None = None) -> list[np.ndarray]:
    """:func:`cross_influence` on several targets at once: the training rows' gradients are computed once."""
    if space == "logits":
        raise ValueError("cross_influence needs parameter gradients: space 'last_layer' or 'all', not 'logits'")
    gfn = GradientFn(model, space, projection_dim=projection_dim, seed=seed, log_proba=log_proba)
    outs = [torch.zeros(len(y), dtype=torch.float64) for _ in targets]
    for ck in checkpoints:
        refs = [gfn.mean_grad(ck.params, target).double() for target in targets]
        for start in range(0, len(y), batch_size):
            sl = slice(start, start + batch_size)
            g = gfn(ck.params, X[sl], y[sl]).double()
            for out, ref in zip(outs, refs, strict=True):
                out[sl] += ck.lr * (g @ ref)
    return [out.numpy() for out in outs]


def mean_loss_target(model: nn.Module, X: torch.Tensor, y: torch.Tensor, log_proba: LogProba | None = None
                     ) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """The mean cross-entropy on (X, y) as a function of the parameters."""
    lp = log_proba or _log_softmax
    return lambda p: nn.functional.nll_loss(lp(functional_call(model, p, (X,))), y)


def gap_target(model: nn.Module, X: torch.Tensor, high: np.ndarray, low: np.ndarray, positive: int,
               log_proba: LogProba | None = None) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """Mean P(positive) in the rows ``high`` minus in the rows ``low``: a differentiable group gap."""
    hi, lo = torch.as_tensor(high), torch.as_tensor(low)
    lp = log_proba or _log_softmax

    def gap(p: dict[str, torch.Tensor]) -> torch.Tensor:
        prob = lp(functional_call(model, p, (X,))).exp()[:, positive]
        return prob[hi].mean() - prob[lo].mean()

    return gap


# -- out-of-fold scan ---------------------------------------------------------------------------------------
@dataclass
class Scan:
    """Result of a mislabel scan: a score per row (higher = more suspicious) and out-of-fold probabilities."""

    score: np.ndarray
    proba: np.ndarray


def fold_indices(y: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (train, held-out) index pairs; one pair (all, all) when ``folds`` is 1."""
    n = len(y)
    if folds <= 1:
        return [(np.arange(n), np.arange(n))]
    from sklearn.model_selection import KFold, StratifiedKFold

    counts = np.bincount(y)
    if counts[counts > 0].min() >= folds:
        return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(n), y))
    return list(KFold(folds, shuffle=True, random_state=seed).split(np.zeros(n)))


def scan(X: np.ndarray, y: np.ndarray, n_classes: int, spec: TrainSpec, *, folds: int = 5, repeats: int = 1,
         space: Space = "logits", projection_dim: int = 0, batch_size: int = 512, seed: int = 0) -> Scan:
    """Out-of-fold TracIn self-influence: each row is scored on the checkpoints of surrogates not trained on it.

    With ``folds=1`` this is classic in-sample TracIn. Scores and probabilities are averaged over ``repeats``
    fold assignments.
    """
    n = len(y)
    score = np.zeros(n)
    proba = np.zeros((n, n_classes))
    xt, yt = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)
    for r in range(repeats):
        for f, (tr, ho) in enumerate(fold_indices(y, folds, seed + r)):
            s = seed * 7919 + r * 101 + f
            model, cks = train_surrogate(X[tr], y[tr], n_classes, spec, seed=s)
            score[ho] += self_influence(model, cks, xt[ho], yt[ho], space=space, projection_dim=projection_dim,
                                        batch_size=batch_size, seed=s)
            proba[ho] += predict_proba(model, cks[-1].params, X[ho])
    return Scan(score / repeats, proba / repeats)


def top_k(score: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores (ties broken by row order, so results are reproducible)."""
    return np.argsort(-score, kind="stable")[:k]


def flip_labels(y: np.ndarray, n_classes: int, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``y`` in which each of ``rows`` gets a different class, drawn uniformly."""
    out = y.copy()
    shift = rng.integers(1, n_classes, size=len(rows)) if n_classes > 2 else np.ones(len(rows), dtype=int)
    out[rows] = (y[rows] + shift) % n_classes
    return out


def confident_errors(y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Rows the confident-joint rule (Northcutt et al., 2021) counts as label errors, from held-out probabilities.

    A row labelled ``i`` is counted when another class ``j`` has ``p_j >= t_j`` (``t_j`` the mean ``p_j`` over the
    rows labelled ``j``) and is the likeliest such class.
    """
    k = proba.shape[1]
    thresholds = np.array([proba[y == j, j].mean() if np.any(y == j) else np.inf for j in range(k)])
    above = proba >= thresholds
    masked = np.where(above, proba, -np.inf)
    best = masked.argmax(axis=1)
    return np.flatnonzero(above.any(axis=1) & (best != y))


# -- cleansing ----------------------------------------------------------------------------------------------
@dataclass
class Cleansing:
    """Test metric per seed: trained on everything, without the flagged rows, without as many random rows."""

    seeds: list[int]
    full: np.ndarray
    cleansed: np.ndarray
    random: np.ndarray
    higher_is_better: bool

    def gain(self, arm: np.ndarray) -> np.ndarray:
        """Per-seed improvement of ``arm`` over the full training set (positive = better)."""
        d = arm - self.full
        return d if self.higher_is_better else -d


def cleanse(fit_predict: Callable[[np.ndarray, int], np.ndarray], metric: Callable[[np.ndarray], float],
            n: int, remove: np.ndarray, seeds: Sequence[int], rng: np.random.Generator,
            higher_is_better: bool) -> Cleansing:
    """Retrain with and without the rows ``remove`` (and without as many random rows), once per seed.

    ``fit_predict(keep_mask, seed)`` trains on the kept training rows and returns test probabilities;
    ``metric(proba)`` scores them.
    """
    full, clean, rand = [], [], []
    for s in seeds:
        keep_all = np.ones(n, dtype=bool)
        keep_clean = keep_all.copy()
        keep_clean[remove] = False
        keep_rand = keep_all.copy()
        keep_rand[rng.choice(n, size=len(remove), replace=False)] = False
        full.append(metric(fit_predict(keep_all, s)))
        clean.append(metric(fit_predict(keep_clean, s)))
        rand.append(metric(fit_predict(keep_rand, s)))
    return Cleansing(list(seeds), np.array(full), np.array(clean), np.array(rand), higher_is_better)


def mean_interval(values: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """Mean and Student-t interval of the mean over seeds (degenerate when all values agree)."""
    from scipy import stats

    m = float(np.mean(values))
    if len(values) < 2 or np.allclose(values, m):
        return m, m, m
    half = float(stats.t.ppf((1 + confidence) / 2, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values)))
    return m, m - half, m + half


def wilson(k: int, n: int, confidence: float) -> tuple[float | None, float | None]:
    """Wilson score interval of a proportion ``k / n``."""
    from scipy import stats

    if n == 0:
        return None, None
    z = float(stats.norm.ppf((1 + confidence) / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


# -- refitting the audited model ----------------------------------------------------------------------------
def xgb_params(native: Any, given: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """Training parameters for refitting an XGBoost model: what its file records, then the policy's.

    A saved XGBoost model keeps its trees but not most training parameters: the number of rounds and the deepest
    tree are read from the trees; the rest are XGBoost's defaults unless ``model_params`` gives them.
    """
    params = {k: v for k, v in native.get_params().items() if v is not None and k not in ("base_score",)}
    booster = native.get_booster()
    depth = max((len(line) - len(line.lstrip("\t")) for tree in booster.get_dump() for line in tree.splitlines()
                 if "leaf=" in line), default=6)
    params.update({"n_estimators": booster.num_boosted_rounds(), "max_depth": max(depth, 1)})
    params.update(given)
    unread = sorted({"learning_rate", "subsample", "colsample_bytree", "min_child_weight", "reg_lambda"} - set(given))
    notes.append(f"XGBoost refit: {params['n_estimators']} rounds and max_depth {params['max_depth']} read from the "
                 f"model's trees; {', '.join(f'{k}={v}' for k, v in given.items()) or 'no parameters'} from "
                 f"model_params; {', '.join(unread) or 'nothing'} at XGBoost's defaults (a model file does not keep "
                 "them).")
    return params


def refit_model_family(ctx: Any, y: np.ndarray, given: dict[str, Any], notes: list[str]
                  ) -> tuple[Any, str] | None:
    """Refit the audited model's own family with its own parameters (XGBoost, scikit-learn), if possible.

    Returns ``(fit_predict, description)`` for :func:`cleanse`, or ``None`` for a model that cannot be refitted
    here (ONNX, PyTorch). ``ctx`` is the audit context; ``given`` the policy's ``model_params``.
    """
    native, kind = ctx.model.native, ctx.model.kind
    x_tr, x_te = ctx.X("train"), ctx.X("test")
    if kind == "xgboost":
        import xgboost as xgb

        params = xgb_params(native, given, notes)

        def refit_xgb(keep: np.ndarray, seed: int) -> np.ndarray:
            clf = xgb.XGBClassifier(**{**params, "random_state": seed, "n_jobs": 1})
            clf.fit(x_tr[keep], y[keep])
            proba = np.asarray(clf.predict_proba(x_te), dtype=np.float64)
            return proba / proba.sum(axis=1, keepdims=True)  # float32 outputs sum to 1 only up to rounding

        return refit_xgb, "the audited XGBoost model (its own parameters)"
    if kind == "sklearn":
        from sklearn.base import clone

        labels = list(ctx.labels)
        y_raw = np.asarray(labels, dtype=object)[y]

        def refit_sklearn(keep: np.ndarray, seed: int) -> np.ndarray:
            est = clone(native)
            if given:
                est.set_params(**given)
            if "random_state" in est.get_params():
                est.set_params(random_state=seed)
            est.fit(x_tr[keep], y_raw[keep].astype(ctx.y("train").dtype))
            proba = np.asarray(est.predict_proba(x_te), dtype=np.float64)
            order = [list(est.classes_).index(lab) for lab in labels]
            return proba[:, order]

        return refit_sklearn, f"the audited {type(native).__name__} (a clone with its parameters)"
    return None


# -- PyTorch models -----------------------------------------------------------------------------------------
def module_checkpoints(module: nn.Module, states: Sequence[tuple[dict[str, torch.Tensor], float]] | None
                       ) -> list[Checkpoint]:
    """Checkpoints of a PyTorch model: the given ``(state_dict, learning_rate)`` pairs, else its final weights.

    With only the final weights this is TracIn's last-checkpoint variant (learning rate 1: the ranking is what
    matters, not the scale).
    """
    names = {n for n, _ in module.named_parameters()}
    if not states:
        return [Checkpoint({n: p.detach().clone() for n, p in module.named_parameters()}, 1.0)]
    out = []
    for state, lr in states:
        missing = names - set(state)
        if missing:
            raise ValueError(f"checkpoint lacks parameters of the model: {sorted(missing)[:5]}")
        out.append(Checkpoint({n: torch.as_tensor(state[n]).detach().float() for n in names}, float(lr)))
    return out


def frozen_copy(module: nn.Module) -> nn.Module:
    """An eval-mode deep copy, so the audited module's mode and weights are never touched."""
    m = copy.deepcopy(module)
    m.eval()
    return m
