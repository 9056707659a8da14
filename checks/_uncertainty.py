"""Arithmetic of the ``calibration`` and ``mc_dropout`` checks, as plain functions on arrays and modules.

Nothing here knows the audit context: the functions take numpy arrays (calibration) or a ``torch.nn.Module``
and a tensor (MC dropout), so they are tested directly on tiny hand-made inputs.

References
----------
Guo, Pleiss, Sun and Weinberger, "On calibration of modern neural networks", ICML 2017 (ECE, reliability
diagrams). Nixon et al., "Measuring calibration in deep learning", CVPR workshops 2019 (equal-mass bins,
class-wise ECE). Brier, "Verification of forecasts expressed in terms of probability", Monthly Weather Review
1950. Gal and Ghahramani, "Dropout as a Bayesian approximation", ICML 2016 (MC dropout). Depeweg et al.,
"Decomposition of uncertainty in Bayesian deep learning", ICML 2018 (mutual information as epistemic part).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from audit.artifacts.torch_models import is_dropout
from audit.stats import bootstrap_samples

if TYPE_CHECKING:
    import torch

BinStrategy = Literal["uniform", "quantile"]
_EPS = 1e-12


# -- calibration ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bins:
    """Rows assigned to calibration bins: ``index[i]`` is row i's bin, ``edges`` the bin boundaries."""

    index: np.ndarray
    edges: np.ndarray

    @property
    def n_bins(self) -> int:
        """Number of bins."""
        return len(self.edges) - 1


def assign_bins(score: np.ndarray, n_bins: int, strategy: BinStrategy) -> Bins:
    """Put each score in [0, 1] into one of ``n_bins`` bins.

    ``uniform``: equal-width bins ``(k/B, (k+1)/B]`` (a score of exactly 0 goes to the first bin), as in Guo et
    al. 2017. ``quantile``: equal-mass bins, the rows sorted by score (stable sort) and cut into ``n_bins``
    runs of sizes differing by at most one (``numpy.array_split``), so every bin holds about ``n / n_bins``
    rows even when scores tie.
    """
    score = np.asarray(score, dtype=float)
    n = len(score)
    if strategy == "uniform":
        idx = np.clip(np.ceil(score * n_bins).astype(int) - 1, 0, n_bins - 1)
        return Bins(idx, np.linspace(0.0, 1.0, n_bins + 1))
    if strategy != "quantile":
        raise ValueError(f"strategy must be 'uniform' or 'quantile'; got {strategy!r}")
    b = max(1, min(n_bins, n))
    order = np.argsort(score, kind="stable")
    idx = np.empty(n, dtype=int)
    edges = [0.0]
    for k, part in enumerate(np.array_split(order, b)):
        idx[part] = k
        edges.append(float(score[part].max()) if len(part) else edges[-1])
    edges[-1] = 1.0
    return Bins(idx, np.asarray(edges))


def bin_table(score: np.ndarray, outcome: np.ndarray, bins: Bins, rows: np.ndarray | None = None) -> np.ndarray:
    """Per bin: row count, mean score (confidence) and mean outcome (accuracy), as a ``(n_bins, 3)`` array.

    ``rows`` restricts (or resamples, with repeats) the rows counted. Empty bins have count 0 and NaN means.
    """
    idx = bins.index if rows is None else bins.index[rows]
    s = score if rows is None else score[rows]
    o = outcome if rows is None else outcome[rows]
    count = np.bincount(idx, minlength=bins.n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(idx, weights=s, minlength=bins.n_bins) / count
        acc = np.bincount(idx, weights=o.astype(float), minlength=bins.n_bins) / count
    return np.column_stack([count, conf, acc])


def ece_from_table(table: np.ndarray) -> float:
    """Expected calibration error: the count-weighted mean of ``|accuracy - confidence|`` over bins."""
    count = table[:, 0]
    filled = count > 0
    if not filled.any():
        return float("nan")
    gap = np.abs(table[filled, 2] - table[filled, 1])
    return float(np.sum(count[filled] * gap) / np.sum(count[filled]))


def mce_from_table(table: np.ndarray) -> float:
    """Maximum calibration error: the largest ``|accuracy - confidence|`` over non-empty bins."""
    filled = table[:, 0] > 0
    return float(np.max(np.abs(table[filled, 2] - table[filled, 1]))) if filled.any() else float("nan")


def expected_calibration_error(score: np.ndarray, outcome: np.ndarray, *, n_bins: int = 15,
                               strategy: BinStrategy = "uniform") -> float:
    """ECE of scores against binary outcomes (1 = the event the score predicts happened)."""
    score = np.asarray(score, dtype=float)
    return ece_from_table(bin_table(score, np.asarray(outcome), assign_bins(score, n_bins, strategy)))


def calibration_target(proba: np.ndarray, y_index: np.ndarray, positive_index: int | None) -> tuple[
        np.ndarray, np.ndarray, str]:
    """The score and outcome that calibration is measured on, and a phrase saying which.

    Binary (``positive_index`` given): the positive class's probability against "the row is positive" (the
    usual reliability diagram). Otherwise top-label: the highest probability (confidence) against "the
    arg-max class is the true one" (Guo et al. 2017).
    """
    if positive_index is not None and proba.shape[1] == 2:
        return proba[:, positive_index], (y_index == positive_index).astype(float), "positive-class"
    return proba.max(axis=1), (proba.argmax(axis=1) == y_index).astype(float), "top-label"


def classwise_ece(proba: np.ndarray, y_index: np.ndarray, *, n_bins: int = 15,
                  strategy: BinStrategy = "uniform") -> float:
    """Class-wise ECE (Nixon et al. 2019): the mean over classes of the one-vs-rest ECE of each column."""
    return float(np.mean([expected_calibration_error(proba[:, k], y_index == k, n_bins=n_bins, strategy=strategy)
                          for k in range(proba.shape[1])]))


def brier_score(proba: np.ndarray, y_index: np.ndarray, positive_index: int | None = None) -> float:
    """Brier score of class probabilities.

    Binary (``positive_index`` given): ``mean((p_pos - y)^2)`` in [0, 1], as scikit-learn's
    ``brier_score_loss``. Multiclass: ``mean(sum_k (p_k - onehot_k)^2)`` in [0, 2] (Brier's original form).
    """
    proba = np.asarray(proba, dtype=float)
    if positive_index is not None and proba.shape[1] == 2:
        return float(np.mean((proba[:, positive_index] - (y_index == positive_index)) ** 2))
    onehot = np.zeros_like(proba)
    onehot[np.arange(len(y_index)), y_index] = 1.0
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def bias_corrected_ci(statistic: Callable[[np.ndarray], float], n: int, *, n_boot: int, confidence: float,
                      rng: np.random.Generator, floor: float = 0.0) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval shifted by the bootstrap estimate of the statistic's bias.

    For a statistic with a large small-sample bias such as the plug-in ECE, resamples (which repeat rows)
    scatter further off the diagonal than the sample itself, so the plain percentile interval can lie wholly
    above the estimate. Subtracting ``mean(resampled) - estimate`` from both ends corrects that to first
    order (Efron and Tibshirani 1993, ch. 10). Ends are floored at ``floor``. ``(None, None)`` when ``n_boot``
    is 0 or fewer than half the resamples gave a value.
    """
    if n_boot <= 0 or n == 0:
        return None, None
    estimate = statistic(np.arange(n))
    values = bootstrap_samples(statistic, n, n_boot=n_boot, rng=rng)
    values = values[np.isfinite(values)]
    if len(values) < n_boot / 2 or not np.isfinite(estimate):
        return None, None
    bias = float(values.mean() - estimate)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha]) - bias
    return float(max(lo, floor)), float(max(hi, floor))


# -- uncertainty summaries ----------------------------------------------------------------------------
def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats of probability vectors along ``axis`` (``0 log 0 = 0``)."""
    p = np.asarray(p, dtype=float)
    return -np.sum(np.where(p > 0, p * np.log(np.maximum(p, _EPS)), 0.0), axis=axis)


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for ``positive`` rows (ties counted half); NaN with one class.

    The Mann-Whitney form: the chance that a random positive row scores higher than a random negative one.
    """
    score = np.asarray(score, dtype=float)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass(frozen=True)
class Coverage:
    """Accuracy against coverage when the most uncertain rows are referred to a person.

    ``coverage[k]`` and ``accuracy[k]`` are the share kept and the accuracy on it when the ``kept[k]`` least
    uncertain rows are decided automatically; only cuts between distinct uncertainty values are listed, so
    every point is reachable with a threshold ``threshold[k]`` ("decide automatically when uncertainty <=").
    """

    coverage: np.ndarray
    accuracy: np.ndarray
    kept: np.ndarray
    threshold: np.ndarray

    def at_target(self, target: float, min_kept: int = 1) -> int | None:
        """Index of the largest coverage whose accuracy reaches ``target`` (None when none does)."""
        ok = np.flatnonzero((self.accuracy >= target - 1e-12) & (self.kept >= min_kept))
        return int(ok[-1]) if len(ok) else None

    def area(self) -> float:
        """Mean accuracy over the coverage levels (area under the accuracy-coverage curve, per row)."""
        return float(np.mean(self.accuracy)) if len(self.accuracy) else float("nan")


def coverage_curve(uncertainty: np.ndarray, correct: np.ndarray) -> Coverage:
    """Accuracy on the kept rows for each cut of the rows sorted by uncertainty (least uncertain first)."""
    u = np.asarray(uncertainty, dtype=float)
    order = np.argsort(u, kind="stable")
    us, cs = u[order], np.asarray(correct, dtype=float)[order]
    n = len(u)
    cum = np.cumsum(cs)
    # a cut after position k-1 is reachable only where the next value differs (ties move together)
    ends = np.flatnonzero(np.r_[us[1:] != us[:-1], True]) + 1
    return Coverage(coverage=ends / n, accuracy=cum[ends - 1] / ends, kept=ends, threshold=us[ends - 1])


# -- MC dropout ---------------------------------------------------------------------------------------
def dropout_modules(model: Any) -> list[Any]:
    """The dropout layers of a module, in ``modules()`` order."""
    return [m for m in model.modules() if is_dropout(m)]


@contextmanager
def only_dropout_active(model: Any, active: bool = True) -> Iterator[None]:
    """Within the block, every module is in eval mode except the dropout layers (in eval too if not ``active``).

    On exit (also on error) each module's ``training`` flag is put back exactly as it was found.
    """
    saved = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        for m in dropout_modules(model) if active else ():
            m.train(True)
        yield
    finally:
        for m, flag in saved:
            m.training = flag


def activation_bytes_per_row(model: Any, x: torch.Tensor) -> int:
    """Bytes of every module's output for one input row, measured with forward hooks on a probe batch.

    An upper bound on what one row costs in a forward pass without gradients (intermediate outputs are freed
    as the pass goes on), used to size the batches.
    """
    import torch

    total = [0]

    def hook(_m: Any, _inp: Any, out: Any) -> None:
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                total[0] += t.numel() * t.element_size()

    handles = []
    for m in model.modules():
        try:
            handles.append(m.register_forward_hook(hook))
        except (RuntimeError, AttributeError):  # TorchScript modules take no Python hooks
            pass
    probe = x[: min(len(x), 4)]
    try:
        with torch.no_grad():
            model(probe)
    finally:
        for h in handles:
            h.remove()
    per_row = total[0] // max(len(probe), 1)
    return int(per_row + x[0].numel() * x.element_size())


class SplitForward:
    """Run what comes before the dropout layers once per sample and only the rest once per pass.

    With dropout switched on only in the dropout layers, every layer that does not depend on a dropout output
    (batch norm in eval mode included) gives the same value in every pass, so the passes need only the part of
    the network after the first dropout. The module is traced with ``torch.fx``; nodes are split into the
    deterministic part, computed once on a chunk, and the stochastic part, run on the chunk's boundary values
    repeated ``r`` times along the batch axis.

    Raises ``ValueError`` (or whatever tracing raises) when the module cannot be split safely: not traceable,
    several inputs, a boundary value that is not a batch tensor. ``verify`` checks the split against the plain
    forward on a probe batch; callers fall back to repeating the whole forward when either fails.
    """

    def __init__(self, model: Any):
        import torch.fx as fx

        self.fx = fx
        self.gm = fx.symbolic_trace(model)  # shares model's submodules and parameters (no copy)
        nodes = list(self.gm.graph.nodes)
        if sum(n.op == "placeholder" for n in nodes) != 1:
            raise ValueError("the module takes more than one input")
        stochastic: set[Any] = set()
        batched: set[Any] = set()
        for node in nodes:
            inputs = node.all_input_nodes
            if node.op == "placeholder" or any(i in batched for i in inputs):
                batched.add(node)
            if (node.op == "call_module" and is_dropout(self.gm.get_submodule(node.target))) or any(
                    i in stochastic for i in inputs):
                stochastic.add(node)
        if not stochastic:
            raise ValueError("no dropout layer found in the traced graph")
        self.stochastic, self.batched = stochastic, batched
        self.deterministic = [n for n in nodes if n not in stochastic and n.op != "output"]
        self.boundary = {i for n in stochastic for i in n.all_input_nodes if i not in stochastic and i in batched}

    def prefix(self, x: Any) -> dict[Any, Any]:
        """Values entering the dropout part for the inputs ``x`` (other batch values are dropped as they go)."""
        stochastic, boundary = self.stochastic, self.boundary
        keep: dict[Any, Any] = {}

        class Partial(self.fx.Interpreter):  # type: ignore[name-defined,misc]
            def run_node(self, n: Any) -> Any:
                if n in stochastic or n.op == "output":
                    return None
                value = super().run_node(n)
                if n in boundary:
                    keep[n] = value
                return value

        Partial(self.gm).run(x)
        for n, v in keep.items():
            if not (hasattr(v, "shape") and v.dim() > 0 and v.shape[0] == len(x)):
                raise ValueError(f"the value of {n.name} entering the dropout part is not a batch tensor")
        return keep

    def suffix(self, env: dict[Any, Any], x: Any, r: int) -> Any:
        """The network's output for ``r`` copies of the chunk whose boundary values are ``env``.

        The other batch-dependent deterministic nodes are marked done (None: nothing in the dropout part reads
        them); nodes that depend on parameters only are recomputed, which is cheap.
        """
        start = {n: None for n in self.deterministic if n in self.batched}
        start.update({n: v.repeat(r, *([1] * (v.dim() - 1))) for n, v in env.items()})
        return self.fx.Interpreter(self.gm).run(x, initial_env=start)

    def verify(self, model: Any, probe: Any) -> None:
        """Raise ``ValueError`` unless the split gives the plain forward's output (dropout off) on ``probe``."""
        import torch

        with only_dropout_active(model, active=False), torch.no_grad():
            got = self.suffix(self.prefix(probe), probe, 2)
            want = model(probe.repeat(2, *([1] * (probe.dim() - 1))))
        if not (isinstance(got, torch.Tensor) and isinstance(want, torch.Tensor) and got.shape == want.shape
                and torch.allclose(got, want, rtol=1e-4, atol=1e-5)):
            raise ValueError("the split forward does not reproduce the module's output")


def split_forward(model: Any, probe: Any) -> SplitForward | None:
    """A verified ``SplitForward`` for the module, or None when it cannot be split safely."""
    try:
        split = SplitForward(model)
        split.verify(model, probe)
        return split
    except Exception:  # noqa: BLE001 - any failure to trace or split means: repeat the whole forward
        return None


@dataclass(frozen=True)
class MCResult:
    """Per-sample summaries of ``passes`` stochastic forward passes (K classes, N samples).

    Attributes
    ----------
    mean : (N, K) predictive mean of the softmax probabilities.
    std : (N,) standard deviation over passes of the probability of the predicted (arg-max mean) class.
    entropy : (N,) predictive entropy ``H[mean]`` in nats (total uncertainty).
    expected_entropy : (N,) mean over passes of each pass's entropy (aleatoric part).
    mutual_information : (N,) ``entropy - expected_entropy`` (epistemic part: disagreement between passes).
    passes : number of passes; rows_per_call : rows sent in one forward call.
    reused_prefix : whether the layers before the dropout ran once per sample rather than once per pass.
    """

    mean: np.ndarray
    std: np.ndarray
    entropy: np.ndarray
    expected_entropy: np.ndarray
    mutual_information: np.ndarray
    passes: int
    rows_per_call: int
    reused_prefix: bool = False

    def score(self, name: str) -> np.ndarray:
        """An uncertainty score by name: ``entropy``, ``mutual_information``, ``std`` or ``one_minus_max``."""
        if name == "one_minus_max":
            return 1.0 - self.mean.max(axis=1)
        return np.asarray(getattr(self, name))


def mc_dropout_predict(model: Any, x: torch.Tensor, *, passes: int, seed: int,
                       memory_budget_mb: float = 64.0, max_rows_per_call: int | None = None,
                       to_proba: Callable[[Any], Any] | None = None, reuse_prefix: bool = True) -> MCResult:
    """Run ``passes`` stochastic forward passes with only the dropout layers active and summarise them.

    Batched: a chunk of samples is repeated ``r`` times along the batch axis, so ``r`` passes go through one
    forward call (each copy draws its own dropout mask). The rows per call are bounded by
    ``memory_budget_mb`` divided by the measured activation bytes per row (and by ``max_rows_per_call``).
    Statistics are accumulated online in float64, so memory is O(N K), not O(passes N K).

    The torch random generator is forked and seeded with ``seed``: the caller's random state is untouched and
    the same seed gives the same result. The model is left exactly as found (see ``only_dropout_active``).
    ``to_proba`` turns the module's output into class probabilities (default: softmax over the last axis).
    ``reuse_prefix``: compute the layers before the dropout once per sample (``SplitForward``) when the module
    can be traced and the split reproduces its output; otherwise every pass runs the whole forward.
    """
    import torch

    if passes < 2:
        raise ValueError(f"passes must be at least 2 to measure spread; got {passes}")
    n = len(x)
    if n == 0:
        raise ValueError("no input rows to run MC dropout on")
    split = split_forward(model, x[: min(n, 4)]) if reuse_prefix else None
    with only_dropout_active(model), torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(int(seed))
        per_row = max(activation_bytes_per_row(model, x), 1)
        budget_rows = max(1, int(memory_budget_mb * 2**20 // per_row))
        if max_rows_per_call is not None:
            budget_rows = max(1, min(budget_rows, max_rows_per_call))
        chunk = max(1, min(n, budget_rows))
        reps = max(1, min(passes, budget_rows // chunk))
        sum_p: list[np.ndarray] = []
        sum_p2: list[np.ndarray] = []
        sum_h: list[np.ndarray] = []
        for start in range(0, n, chunk):
            xb = x[start:start + chunk]
            b = len(xb)
            env = split.prefix(xb) if split is not None else None
            acc_p: Any = 0.0
            acc_p2: Any = 0.0
            acc_h: Any = 0.0
            done = 0
            while done < passes:
                r = min(reps, passes - done)
                out = (split.suffix(env, xb, r) if split is not None and env is not None
                       else model(xb.repeat(r, *([1] * (xb.dim() - 1)))))
                p = (to_proba(out) if to_proba else torch.softmax(out, dim=-1)).double().reshape(r, b, -1)
                acc_p = acc_p + p.sum(0)
                acc_p2 = acc_p2 + (p * p).sum(0)
                acc_h = acc_h - torch.where(p > 0, p * torch.log(p.clamp_min(_EPS)), 0.0).sum((0, 2))
                done += r
            sum_p.append(acc_p.numpy())
            sum_p2.append(acc_p2.numpy())
            sum_h.append(acc_h.numpy())
    mean = np.concatenate(sum_p) / passes
    var = np.maximum(np.concatenate(sum_p2) / passes - mean**2, 0.0) * passes / (passes - 1)
    top = mean.argmax(axis=1)
    std = np.sqrt(var[np.arange(n), top])
    h = entropy(mean)
    eh = np.concatenate(sum_h) / passes
    mi = np.maximum(h - eh, 0.0)
    return MCResult(mean=mean, std=std, entropy=h, expected_entropy=eh, mutual_information=mi, passes=passes,
                    rows_per_call=chunk * reps, reused_prefix=split is not None)
