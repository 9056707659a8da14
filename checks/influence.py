"""Which training data hurt the model: TracIn mislabel candidates, self-validation by canaries, verified cleansing.

Models without gradients (XGBoost, scikit-learn, ONNX) are studied through a differentiable surrogate (a
logistic regression or a small MLP in PyTorch) fitted to the training data; PyTorch models directly. The
arithmetic lives in ``checks/_influence.py``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats
from sklearn import metrics as skm

from audit.artifacts.torch_models import read_state_dict
from audit.context import AuditContext
from audit.plotting import PALETTE, figure, to_svg
from audit.registry import Check, CheckConfig, Requires, register
from audit.results import CheckResult, Figure, Finding, Metric, Table
from checks import _influence as inf

METRICS = {
    "suspected_label_error_rate": "Share of training rows whose out-of-fold probabilities put them confidently "
    "in another class (confident-joint rule). Withheld when the canary self-validation fails.",
    "canary_recall": "Share of planted label flips (canaries) that the scan flagged: the detector's own recall.",
    "surrogate_agreement": "Share of evaluation rows where the surrogate predicts the audited model's label.",
    "surrogate_rank_correlation": "Spearman correlation of the surrogate's and the audited model's P(positive) "
    "on the evaluation rows (binary tasks).",
    "cleansing_gain": "Mean change of the test metric over seeds from removing the flagged rows and retraining "
    "(positive = better).",
    "cleansing_gain_random": "The same change from removing as many random rows (the control).",
    "confident_learning_overlap": "Share of cleanlab's find_label_issues rows that the influence scan also flagged.",
}

CLEANSE_METRICS: dict[str, tuple[bool, str]] = {
    "accuracy": (True, "accuracy"), "balanced_accuracy": (True, "balanced accuracy"),
    "roc_auc": (True, "ROC AUC"), "log_loss": (False, "log loss"),
}


class TorchCheckpoint(BaseModel):
    """One saved training checkpoint of a PyTorch model, with the learning rate in force when it was saved."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(..., description="State dict (.pt, loaded with weights_only=True, or .safetensors), "
                      "relative to the policy's folder.")
    learning_rate: float = Field(..., gt=0, description="Learning rate used in the epoch that ended here.")


class InfluenceConfig(CheckConfig):
    """Options of the ``influence`` check."""

    surrogate: Literal["logistic", "mlp"] = Field(
        "logistic", description="Models without gradients: the differentiable surrogate fitted to the training "
        "data (logistic regression, or an MLP with one hidden layer).")
    hidden_units: int = Field(32, ge=2, le=4096, description="Hidden units of the MLP surrogate.")
    epochs: int = Field(20, ge=1, le=1000, description="Surrogate: epochs of minibatch SGD.")
    learning_rate: float = Field(0.1, gt=0, le=10, description="Surrogate: SGD learning rate (TracIn's lr_t).")
    batch_size: int = Field(64, ge=1, description="Surrogate: SGD minibatch size.")
    weight_decay: float = Field(1e-3, ge=0, description="Surrogate: L2 penalty.")
    n_checkpoints: int = Field(5, ge=1, le=100, description="Surrogate: checkpoints kept (evenly spaced epochs).")
    folds: int = Field(5, ge=1, le=20, description="Out-of-fold scan: each row is scored on checkpoints of "
                       "surrogates not trained on it (1 = classic in-sample TracIn).")
    repeats: int = Field(1, ge=1, le=10, description="Fold assignments averaged over.")
    gradient: Literal["logits", "last_layer", "all"] | None = Field(
        None, description="Gradient space of the self-influence: logits (output gradient; default for "
        "surrogates), last_layer (default for PyTorch models) or all parameters.")
    projection_dim: int = Field(512, ge=0, description="Randomly project gradients wider than this (0 = never).")
    scan_batch_size: int = Field(512, ge=1, description="Rows per batch of per-sample gradients (bounds memory).")
    flag_fraction: float = Field(0.05, gt=0, lt=1, description="Share of training rows flagged as mislabel "
                                 "candidates (the highest self-influence).")
    max_candidates: int = Field(20, ge=1, description="Candidates listed in the report table (result.json "
                                "lists every flagged row).")
    canary_fraction: float = Field(0.02, gt=0, lt=0.5, description="Share of rows whose labels are flipped in a "
                                   "copy of the data to test the detector (at least 5 rows).")
    canary_min_recall: float = Field(0.5, ge=0, le=1, description="Below this canary recall the detector is "
                                     "not trusted: its label-error verdict is withheld and the check warns.")
    cleanse_fraction: float = Field(0.05, ge=0, lt=0.5, description="Share of training rows removed (the most "
                                    "suspicious) before retraining (0 = no cleansing).")
    cleanse_seeds: int = Field(5, ge=2, le=50, description="Training seeds the cleansing is repeated over.")
    cleanse_metric: Literal["accuracy", "balanced_accuracy", "roc_auc", "log_loss"] = Field(
        "log_loss", description="Test metric compared before and after cleansing.")
    retrain: Literal["surrogate", "model"] = Field(
        "surrogate", description="What is retrained for cleansing: the surrogate, or the audited model's own "
        "family with its parameters (XGBoost, scikit-learn).")
    model_params: dict[str, Any] = Field(
        default_factory=dict, description="retrain: model: training parameters of the audited model to use in "
        "the refit (e.g. learning_rate, subsample for XGBoost, whose model file keeps its trees but not these).")
    method: Literal["tracin", "confident_learning"] = Field(
        "tracin", description="confident_learning: also cleanlab's find_label_issues on the same out-of-fold "
        "probabilities, shown beside the influence ranking.")
    fairness: bool = Field(True, description="Binary tasks with sensitive features: rank training rows by "
                           "their influence on the largest group gap in positive predictions.")
    min_group_size: int = Field(30, ge=1, description="Groups smaller than this are left out of the gap.")
    checkpoints: list[TorchCheckpoint] = Field(
        default_factory=list, description="PyTorch models: training checkpoints with learning rates (empty: the "
        "final weights only, TracIn's last-checkpoint variant).")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Confidence level of the intervals.")


@register
class Influence(Check[InfluenceConfig]):
    """TracIn influence: mislabel candidates, canary self-validation, cleansing verified by retraining."""

    id: ClassVar[str] = "influence"
    title: ClassVar[str] = "Training-data influence and label errors"
    description: ClassVar[str] = (
        "Ranks training rows by TracIn self-influence to find likely label errors, checks the ranking on planted "
        "label flips, retrains without the flagged rows over several seeds to see whether the model improves, "
        "and shows which rows drive the test loss and the largest group gap.")
    config_model = InfluenceConfig
    applies_to: ClassVar[Requires] = Requires(needs=frozenset({"train_data"}))
    obligations: ClassVar[tuple[str, ...]] = ("eu_ai_act.art10.2.f", "eu_ai_act.art10.2.g", "eu_ai_act.art10.2.h",
                                              "eu_ai_act.art10.3")
    metric_names: ClassVar[dict[str, str]] = METRICS
    default_thresholds: ClassVar[dict[str, dict[str, float]]] = {"suspected_label_error_rate": {"max": 0.1}}

    def run(self, ctx: AuditContext, config: InfluenceConfig) -> CheckResult:
        """Scan, validate on canaries, cleanse, and explain the test loss and the group gap."""
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny models: one thread is fastest and never oversubscribes a shared machine
        try:
            return self._run(ctx, config)
        finally:
            torch.set_num_threads(threads)

    def _run(self, ctx: AuditContext, config: InfluenceConfig) -> CheckResult:
        if getattr(ctx.model, "torch_model", None) is not None:
            study: _Study = _TorchStudy(ctx, config)
        elif getattr(ctx, "data_kind", "tabular") != "tabular":
            raise ValueError("influence on image data needs a PyTorch model (model.format: torch or torchscript)")
        else:
            study = _SurrogateStudy(ctx, config)
        return study.result(self.id)


class _Study:
    """What both paths share: labels as indices, the scan's outputs, metrics, tables and figures."""

    def __init__(self, ctx: AuditContext, config: InfluenceConfig):
        self.ctx, self.config = ctx, config
        self.k = len(ctx.labels)
        self.index = {lab: i for i, lab in enumerate(ctx.labels)}
        self.y = self.encode(ctx.y("train"))
        self.n = len(self.y)
        self.seed = int(ctx.rng("influence.seed").integers(2**31 - 1))
        self.n_flag = max(1, int(round(config.flag_fraction * self.n)))
        self.notes: list[str] = []
        self.metrics: list[Metric] = []
        self.findings: list[Finding] = []
        self.figures: list[Figure] = []
        self.tables: list[Table] = []
        self.has_test = "test" in ctx.splits

    def encode(self, y: np.ndarray) -> np.ndarray:
        return np.array([self.index[v] for v in y], dtype=np.int64)

    # to be provided by a path
    def scan(self, y: np.ndarray) -> inf.Scan:
        raise NotImplementedError

    def full_model(self) -> tuple[torch.nn.Module, list[inf.Checkpoint], inf.LogProba | None]:
        raise NotImplementedError

    def design(self, split: str) -> torch.Tensor:
        raise NotImplementedError

    def fit_predict(self) -> tuple[Any, str] | None:
        return None

    def extra(self) -> None:
        """Path-specific evidence (agreement of a surrogate, image gallery)."""

    # the shared procedure
    def result(self, check_id: str) -> CheckResult:
        cfg = self.config
        main = self.scan(self.y)
        flagged = inf.top_k(main.score, self.n_flag)
        recall = self._canaries(flagged_count=self.n_flag)
        self._label_errors(main)
        self._candidates(main, flagged)
        if cfg.method == "confident_learning":
            self._confident_learning(main, flagged)
        self.extra()
        self._cross_influence()
        if self.has_test and cfg.cleanse_fraction > 0:
            self._cleanse(main)
        self.figures.insert(0, _distribution_figure(main.score, flagged))
        summary = (f"{self.n_flag} of {self.n} training rows flagged as label-error candidates; canary recall "
                   f"{recall:.2f}")
        return CheckResult(check_id=check_id, summary=summary, metrics=self.metrics, findings=self.findings,
                           figures=self.figures, tables=self.tables, notes=self.notes)

    def _canaries(self, flagged_count: int) -> float:
        cfg = self.config
        rng = self.ctx.rng("influence.canary")
        m = min(self.n, max(5, int(round(cfg.canary_fraction * self.n))))
        rows = rng.choice(self.n, size=m, replace=False)
        planted = inf.flip_labels(self.y, self.k, rows, rng)
        found = np.isin(rows, inf.top_k(self.scan(planted).score, flagged_count))
        recall = float(found.mean())
        lo, hi = inf.wilson(int(found.sum()), m, cfg.confidence)
        self.metrics.append(Metric("canary_recall", recall, ci_low=lo, ci_high=hi,
                                   description=METRICS["canary_recall"]))
        self.notes.append(f"Self-validation: {m} rows ({cfg.canary_fraction:.0%}, seeded) had their label flipped "
                          f"in a copy of the training data and the scan was rerun on it; {int(found.sum())} of them "
                          f"landed in the flagged top {flagged_count} (recall {recall:.2f}; "
                          f"{cfg.confidence:.0%} Wilson interval [{lo:.2f}, {hi:.2f}]).")
        self.trusted = recall >= cfg.canary_min_recall
        if not self.trusted:
            self.findings.append(Finding("warn", (
                f"The detector failed its self-validation: canary recall {recall:.2f} < canary_min_recall "
                f"{cfg.canary_min_recall:.2f} ({int(found.sum())} of {m} planted label flips found). Its ranking "
                "is shown but its label-error verdict is withheld."), metric="canary_recall"))
        return recall

    def _label_errors(self, main: inf.Scan) -> None:
        suspects = inf.confident_errors(self.y, main.proba)
        rate = len(suspects) / self.n
        note = "" if self.trusted else "withheld: the detector failed its canary self-validation"
        self.metrics.append(Metric("suspected_label_error_rate", rate if self.trusted else None,
                                   description=METRICS["suspected_label_error_rate"], note=note))
        source = ("the scan's out-of-fold surrogate probabilities" if isinstance(self, _SurrogateStudy) else
                  "the model's own probabilities on its training rows (in-sample: a model that memorised its "
                  "labels understates the rate)")
        self.notes.append(f"Suspected label-error rate: {len(suspects)} of {self.n} rows ({rate:.1%}) by the "
                          f"confident-joint rule (Northcutt et al., JAIR 2021) on {source}.")

    def _candidates(self, main: inf.Scan, flagged: np.ndarray) -> None:
        ctx, labels = self.ctx, self.ctx.labels
        pred_model = ctx.predict("train")
        evidence = []
        for r in flagged:
            evidence.append({"row": int(r), "given_label": labels[self.y[r]],
                             "predicted_label": labels[int(main.proba[r].argmax())],
                             "model_prediction": pred_model[r],
                             "p_given_label": round(float(main.proba[r, self.y[r]]), 4),
                             "self_influence": round(float(main.score[r]), 6)})
        self.evidence = evidence
        cut = float(main.score[flagged[-1]])
        self.findings.append(Finding("info", (
            f"{len(flagged)} training rows ({self.config.flag_fraction:.0%}) have self-influence >= {cut:.4g} and are "
            "flagged as label-error candidates: review their labels (rows are 0-based positions in the training "
            "file)."), evidence=evidence))
        cols = ["row", "given label", "predicted (out-of-fold)", "P(given label)", "model predicts",
                "self-influence"]
        rows = [[e["row"], e["given_label"], e["predicted_label"], e["p_given_label"], e["model_prediction"],
                 e["self_influence"]] for e in evidence[:self.config.max_candidates]]
        self.tables.append(Table("mislabel_candidates", "Label-error candidates (highest self-influence)", cols, rows,
                                 caption="Row: 0-based position in the training file. Predicted: the surrogate "
                                 "or model checkpoint that did not train on the row. Model predicts: the audited "
                                 "model on that row."))

    def _confident_learning(self, main: inf.Scan, flagged: np.ndarray) -> None:
        from cleanlab.filter import find_label_issues

        issues = np.asarray(find_label_issues(self.y, main.proba, return_indices_ranked_by="self_confidence"))
        overlap = float(np.isin(issues, flagged).mean()) if len(issues) else None
        self.metrics.append(Metric("confident_learning_overlap", overlap,
                                   description=METRICS["confident_learning_overlap"]))
        self.notes.append(f"Second opinion: cleanlab's find_label_issues (confident learning) on the same "
                          f"out-of-fold probabilities names {len(issues)} rows; "
                          + ("none" if overlap is None else f"{overlap:.0%}") + " of them are in the influence "
                          "top set.")
        labels = self.ctx.labels
        in_top = set(flagged.tolist())
        rows = [[int(r), labels[self.y[r]], labels[int(main.proba[r].argmax())],
                 round(float(main.proba[r, self.y[r]]), 4), "yes" if r in in_top else "no"]
                for r in issues[:self.config.max_candidates]]
        self.tables.append(Table("confident_learning", "Second opinion: cleanlab find_label_issues",
                                 ["row", "given label", "predicted", "P(given label)", "also flagged by influence"],
                                 rows, caption=f"{len(issues)} rows in all, most suspicious first."))

    def _cross_influence(self) -> None:
        """Influence on the test loss and on the largest group gap, from one pass over the training gradients."""
        ctx, cfg = self.ctx, self.config
        model, cks, log_proba = self.full_model()
        fair = cfg.fairness and ctx.task == "binary_classification" and bool(ctx.sensitive_features)
        gap = self._largest_gap() if fair else None
        targets = {}
        if self.has_test:
            y_te = torch.as_tensor(self.encode(ctx.y("test")))
            targets["test"] = inf.mean_loss_target(model, self.design("test"), y_te, log_proba)
        if gap is not None:
            _, _, (_, _, i_hi), (_, _, i_lo) = gap
            targets["gap"] = inf.gap_target(model, self.design(ctx.eval_split), i_hi, i_lo,
                                            self.index[ctx.positive_label], log_proba)
        infl = dict(zip(targets, inf.cross_influences(
            model, cks, self.design("train"), torch.as_tensor(self.y), list(targets.values()),
            space=self._cross_space(), projection_dim=cfg.projection_dim, batch_size=cfg.scan_batch_size,
            seed=self.seed, log_proba=log_proba), strict=True)) if targets else {}
        if "test" in infl:
            self._test_influence(infl["test"])
        if gap is not None:
            self._gap_drivers(gap, infl["gap"])
        elif fair:
            self.notes.append("Influence on the group gap: no sensitive feature has two groups of at least "
                              f"{cfg.min_group_size} rows.")

    def _test_influence(self, infl: np.ndarray) -> None:
        harmful = np.argsort(infl, kind="stable")[:self.config.max_candidates]
        labels = self.ctx.labels
        rows = [[int(r), labels[self.y[r]], round(float(infl[r]), 6)] for r in harmful if infl[r] < 0]
        self.tables.append(Table("harmful_rows", "Training rows that most raised the test loss", [
            "row", "given label", "influence on test loss"], rows,
            caption="TracIn influence on the mean test loss: negative = a training step on the row raised it."))
        self.notes.append(f"Influence on the test loss: {int((infl < 0).sum())} training rows raised it "
                          f"(harmful), {int((infl > 0).sum())} lowered it (helpful), with gradients of the "
                          f"{self._cross_space().replace('_', ' ')} parameters.")

    def _cross_space(self) -> inf.Space:
        g = self.config.gradient
        return "last_layer" if g in (None, "logits") else g

    def _largest_gap(self) -> tuple[Any, ...] | None:
        """``(gap, feature, (rate, group, rows) highest, ... lowest)`` of positive predictions, or None."""
        ctx, cfg = self.ctx, self.config
        split = ctx.eval_split
        pred = ctx.predict(split) == ctx.positive_label
        sens = ctx.sensitive(split)
        best = None
        for feature in ctx.sensitive_features:
            col = sens[feature].astype(str).to_numpy()
            groups = [(g, np.flatnonzero(col == g)) for g in np.unique(col)]
            groups = [(g, i) for g, i in groups if len(i) >= cfg.min_group_size]
            if len(groups) < 2:
                continue
            rates = sorted(((float(pred[i].mean()), g, i) for g, i in groups), key=lambda t: t[0])
            gap = rates[-1][0] - rates[0][0]
            if best is None or gap > best[0]:
                best = (gap, feature, rates[-1], rates[0])
        return best

    def _gap_drivers(self, best: tuple[Any, ...], infl: np.ndarray) -> None:
        ctx, cfg = self.ctx, self.config
        split = ctx.eval_split
        gap, feature, (r_hi, g_hi, _), (r_lo, g_lo, _) = best
        push = -infl
        top = np.argsort(-push, kind="stable")[:cfg.max_candidates]
        sens_tr = ctx.sensitive("train")
        rows = [[int(r), ctx.labels[self.y[r]], str(sens_tr[feature].iloc[r]), round(float(push[r]), 6)]
                for r in top if push[r] > 0]
        self.tables.append(Table("gap_drivers", f"Training rows that widen the gap in positive predictions by "
                                 f"{feature}", ["row", "given label", feature, "push on the gap"], rows,
                                 caption=f"The audited model predicts {ctx.positive_label!r} for {r_hi:.1%} of "
                                 f"{feature}={g_hi} and {r_lo:.1%} of {feature}={g_lo} on the {split} split (gap "
                                 f"{gap:.3f}, the largest over the sensitive features). Push: TracIn influence on "
                                 "the surrogate's gap in mean P(positive); positive = training on the row widened it."))
        self.notes.append(f"Influence on the group gap: {int((push > 0).sum())} training rows widen the gap between "
                          f"{feature}={g_hi} and {feature}={g_lo}, {int((push < 0).sum())} narrow it.")

    def _cleanse(self, main: inf.Scan) -> None:
        cfg = self.config
        fp = self.fit_predict()
        if fp is None:
            self.notes.append("Cleansing was not verified: retraining this model needs its training recipe, which "
                              "the policy does not give.")
            return
        fit_predict, what = fp
        higher, label = CLEANSE_METRICS[cfg.cleanse_metric]
        y_te = self.encode(self.ctx.y("test"))
        metric = _metric_fn(cfg.cleanse_metric, y_te, self.k)
        remove = inf.top_k(main.score, max(1, int(round(cfg.cleanse_fraction * self.n))))
        seeds = [int(s) for s in self.ctx.rng("influence.cleanse.seeds").integers(2**31 - 1, size=cfg.cleanse_seeds)]
        res = inf.cleanse(fit_predict, metric, self.n, remove, seeds, self.ctx.rng("influence.cleanse.random"), higher)
        gains = res.gain(res.cleansed)
        m, lo, hi = inf.mean_interval(gains, cfg.confidence)
        mr, lor, hir = inf.mean_interval(res.gain(res.random), cfg.confidence)
        self.metrics.append(Metric("cleansing_gain", m, ci_low=lo, ci_high=hi, description=METRICS["cleansing_gain"]))
        self.metrics.append(Metric("cleansing_gain_random", mr, ci_low=lor, ci_high=hir,
                                   description=METRICS["cleansing_gain_random"]))
        holds = lo > 0 and bool(np.all(gains > 0))
        verdict = ("a gain that holds across seeds" if holds else
                   "no gain that holds across seeds" if m > 0 else "no gain")
        self.findings.append(Finding("info", (
            f"Removing the {len(remove)} most suspicious training rows ({cfg.cleanse_fraction:.0%}) and retraining "
            f"{what} {'improves' if m > 0 else 'worsens'} test {label} by {abs(m):.4f} (gain {m:+.4f}, positive = "
            f"better; {cfg.confidence:.0%} interval [{lo:+.4f}, {hi:+.4f}] over "
            f"{len(seeds)} seeds; {int((gains > 0).sum())} of {len(seeds)} seeds better): {verdict}. Removing as "
            f"many random rows: gain {mr:+.4f}."), metric="cleansing_gain"))
        self.figures.append(_cleansing_figure(res, label))
        self.notes.append(f"Cleansing: {what} retrained {len(seeds)} times (seeded) on all rows, without the "
                          f"flagged rows and without as many random rows (control); a gain is called one only "
                          f"when its {cfg.confidence:.0%} Student-t interval over seeds is above 0 and every seed "
                          "improves.")


def _metric_fn(name: str, y: np.ndarray, k: int) -> Any:
    if name == "accuracy":
        return lambda p: float(np.mean(p.argmax(axis=1) == y))
    if name == "balanced_accuracy":
        return lambda p: float(skm.balanced_accuracy_score(y, p.argmax(axis=1)))
    if name == "roc_auc":
        return lambda p: float(skm.roc_auc_score(y, p[:, 1]) if k == 2 else
                               skm.roc_auc_score(y, p, multi_class="ovr", labels=list(range(k))))
    return lambda p: float(skm.log_loss(y, np.clip(p, 1e-12, 1), labels=list(range(k))))


class _SurrogateStudy(_Study):
    """Models without gradients: everything is computed on a PyTorch surrogate fitted to the training data."""

    def __init__(self, ctx: AuditContext, config: InfluenceConfig):
        super().__init__(ctx, config)
        self.encoder = inf.Encoder.fit(ctx.X("train"))
        self.X = self.encoder.transform(ctx.X("train"))
        self.spec = inf.TrainSpec(kind=config.surrogate, hidden=config.hidden_units, epochs=config.epochs,
                                  lr=config.learning_rate, batch_size=config.batch_size,
                                  weight_decay=config.weight_decay, n_checkpoints=config.n_checkpoints)
        self.space: inf.Space = config.gradient or "logits"
        self._full: tuple[torch.nn.Module, list[inf.Checkpoint]] | None = None
        kind = "logistic regression" if config.surrogate == "logistic" else f"MLP ({config.hidden_units} hidden units)"
        self.notes.append(
            f"SURROGATE: the audited {ctx.model.kind} model gives no gradients, so influence is computed on a {kind} "
            f"in PyTorch fitted to the training labels ({self.encoder.describe()}), trained with minibatch SGD "
            f"(lr {config.learning_rate}, {config.epochs} epochs, batch {config.batch_size}) keeping "
            f"{config.n_checkpoints} checkpoints in memory. Its findings describe the data as this surrogate sees it.")
        folds = "in-sample (classic TracIn)" if config.folds == 1 else (
            f"out-of-fold: {config.folds} folds x {config.repeats} repeat(s), each row scored on the checkpoints of "
            "surrogates not trained on it")
        self.notes.append(f"Self-influence sum_t lr_t |g_t(z)|^2 (TracIn, Pruthi et al., NeurIPS 2020) with "
                          f"{self.space.replace('_', ' ')} gradients, {folds}.")

    def scan(self, y: np.ndarray) -> inf.Scan:
        cfg = self.config
        return inf.scan(self.X, y, self.k, self.spec, folds=cfg.folds, repeats=cfg.repeats, space=self.space,
                        projection_dim=cfg.projection_dim, batch_size=cfg.scan_batch_size, seed=self.seed)

    def full_model(self) -> tuple[torch.nn.Module, list[inf.Checkpoint], inf.LogProba | None]:
        if self._full is None:
            self._full = inf.train_surrogate(self.X, self.y, self.k, self.spec, seed=self.seed)
        return (*self._full, None)

    def design(self, split: str) -> torch.Tensor:
        x = self.X if split == "train" else self.encoder.transform(self.ctx.X(split))
        return torch.as_tensor(x)

    def extra(self) -> None:
        ctx = self.ctx
        split = ctx.eval_split
        model, cks, _ = self.full_model()
        p_sur = inf.predict_proba(model, cks[-1].params, self.design(split).numpy())
        agree = float(np.mean(self.encode(ctx.predict(split)) == p_sur.argmax(axis=1)))
        self.metrics.append(Metric("surrogate_agreement", agree, description=METRICS["surrogate_agreement"]))
        rho = None
        proba = ctx.proba(split)
        if proba is not None and ctx.task == "binary_classification":
            pos = self.index[ctx.positive_label]
            rho = float(stats.spearmanr(proba[:, ctx.positive_index], p_sur[:, pos]).statistic)
            self.metrics.append(Metric("surrogate_rank_correlation", rho if np.isfinite(rho) else None,
                                       description=METRICS["surrogate_rank_correlation"]))
        self.notes.append(f"Surrogate fidelity on the {split} split: it predicts the audited model's label on "
                          f"{agree:.1%} of rows" + ("" if rho is None else f"; Spearman correlation of P(positive) "
                                                    f"{rho:.2f}") + ".")

    def fit_predict(self) -> tuple[Any, str] | None:
        ctx, cfg = self.ctx, self.config
        x_te = self.encoder.transform(ctx.X("test"))
        if cfg.retrain == "model":
            fp = inf.refit_model_family(ctx, self.y, cfg.model_params, self.notes)
            if fp is not None:
                return fp
            self.notes.append(f"retrain: model was asked, but a {ctx.model.kind} model cannot be refitted here; "
                              "the surrogate was retrained instead.")

        def surrogate(keep: np.ndarray, seed: int) -> np.ndarray:
            model, cks = inf.train_surrogate(self.X[keep], self.y[keep], self.k, self.spec, seed=seed)
            return inf.predict_proba(model, cks[-1].params, x_te)

        return surrogate, "the surrogate"


class _TorchStudy(_Study):
    """PyTorch models: TracIn on the model itself, with the policy's checkpoints or its final weights."""

    def __init__(self, ctx: AuditContext, config: InfluenceConfig):
        super().__init__(ctx, config)
        tm = ctx.model.torch_model
        self.module = inf.frozen_copy(tm.module)
        self.log_proba: inf.LogProba = lambda out: torch.log(tm.probabilities(out).clamp_min(1e-12))
        self.tm = tm
        states = [(_checkpoint_state(ctx, i, c.path), c.learning_rate) for i, c in enumerate(config.checkpoints)]
        self.cks = inf.module_checkpoints(self.module, states)
        self.space: inf.Space = config.gradient or "last_layer"
        self.x = tm.to_tensor(ctx.X("train"))
        what = (f"{len(self.cks)} checkpoints from the policy with their learning rates" if config.checkpoints else
                "the final weights only (TracIn's last-checkpoint variant: no training history was given)")
        self.notes.append(f"TracIn on the PyTorch model itself with {what}; {self.space.replace('_', ' ')} "
                          f"gradients batched with torch.func.vmap, randomly projected to {config.projection_dim} "
                          "dimensions when wider. Rows are scored in-sample: the model has seen every row.")
        self.notes.append("Canaries for a PyTorch model are scored with the same checkpoints (the model is not "
                          "retrained on the flipped copy), which tests the ranking, not retraining.")

    def scan(self, y: np.ndarray) -> inf.Scan:
        cfg = self.config
        yt = torch.as_tensor(y)
        score = inf.self_influence(self.module, self.cks, self.x, yt, space=self.space,
                                   projection_dim=cfg.projection_dim, batch_size=cfg.scan_batch_size, seed=self.seed,
                                   log_proba=self.log_proba)
        # the context's probabilities (a PyTorch model always has them): computed once, shared with ctx.predict
        return inf.Scan(score, self.ctx.proba("train"))

    def full_model(self) -> tuple[torch.nn.Module, list[inf.Checkpoint], inf.LogProba | None]:
        return self.module, self.cks, self.log_proba

    def design(self, split: str) -> torch.Tensor:
        return self.x if split == "train" else self.tm.to_tensor(self.ctx.X(split))

    def extra(self) -> None:
        if getattr(self.ctx, "data_kind", "tabular") == "image":
            idx = np.array([e["row"] for e in self.evidence[:min(16, len(self.evidence))]])
            self.figures.append(_gallery(self.ctx.images_for_display("train", idx), self.evidence[:len(idx)]))


def _checkpoint_state(ctx: AuditContext, i: int, path: str) -> dict[str, torch.Tensor]:
    """The tensors of the policy's ``i``-th checkpoint, read like the model's own weights (never running code)."""
    key = ("checks", "influence", "checkpoints", i, "path")
    state, _ = read_state_dict(ctx.loaded_policy.resolve(path), where=ctx.loaded_policy.where(*key),
                               key=f"checks.influence.checkpoints[{i}].path")
    return state


# -- figures ------------------------------------------------------------------------------------------------
def _distribution_figure(score: np.ndarray, flagged: np.ndarray) -> Figure:
    s = np.maximum(score, np.finfo(float).tiny)
    cut = float(s[flagged].min())
    bins = np.geomspace(max(s.min(), s.max() * 1e-6), s.max() * 1.0001, 50)
    with figure(width=6.0, height=3.0) as (fig, ax):
        mask = np.zeros(len(s), dtype=bool)
        mask[flagged] = True
        ax.hist(s[~mask], bins=bins, color=PALETTE[0], alpha=0.85, label="not flagged")
        ax.hist(s[mask], bins=bins, color=PALETTE[3], alpha=0.9, label=f"flagged ({mask.sum()})")
        ax.axvline(cut, color=PALETTE[3], lw=1, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("TracIn self-influence (log scale)")
        ax.set_ylabel("training rows")
        ax.legend(frameon=False)
        data = to_svg(fig)
    return Figure("influence_distribution", "Self-influence of the training rows", data,
                  caption=f"Histogram of self-influence; the {mask.sum()} rows right of the dashed line (>= {cut:.3g}) "
                  "are flagged as label-error candidates.",
                  alt=f"Log-log histogram of self-influence with {mask.sum()} flagged rows in red at the high end.")


def _cleansing_figure(res: inf.Cleansing, label: str) -> Figure:
    arms = [("all rows", res.full), ("flagged removed", res.cleansed), ("random removed", res.random)]
    with figure(width=5.0, height=3.2) as (fig, ax):
        for j in range(len(res.seeds)):
            ax.plot([0, 1], [res.full[j], res.cleansed[j]], color=PALETTE[5], lw=0.8, alpha=0.7)
        for i, (_name, vals) in enumerate(arms):
            ax.scatter(np.full(len(vals), i), vals, color=PALETTE[i], s=22, zorder=3)
            ax.hlines(vals.mean(), i - 0.25, i + 0.25, color=PALETTE[i], lw=2)
        ax.set_xticks(range(3), [a for a, _ in arms])
        ax.set_xlim(-0.5, 2.5)
        ax.set_ylabel(f"test {label}")
        data = to_svg(fig)
    better = "higher" if res.higher_is_better else "lower"
    return Figure("cleansing", "Test metric before and after cleansing", data,
                  caption=f"Test {label} ({better} is better) per training seed: trained on all rows, without the "
                  "flagged rows (grey lines pair the seeds), and without as many random rows; bars are means.",
                  alt=f"Dot plot of test {label} over {len(res.seeds)} seeds for the three training sets.")


def _gallery(images: np.ndarray, evidence: list[dict[str, Any]]) -> Figure:
    n = len(images)
    cols = min(8, max(n, 1))
    rows = max(1, int(np.ceil(n / cols)))
    with figure(width=1.1 * cols, height=1.35 * rows, nrows=rows, ncols=cols, squeeze=False) as (fig, axes):
        for ax in axes.ravel():
            ax.axis("off")
        for ax, img, e in zip(axes.ravel(), images, evidence, strict=False):
            ax.imshow(img.squeeze(), cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=1)
            ax.set_title(f"#{e['row']} {e['given_label']}->{e['predicted_label']}", fontsize=7)
        data = to_svg(fig)
    return Figure("candidate_gallery", "Label-error candidates", data,
                  caption="The training images with the highest self-influence: row, given label -> predicted.",
                  alt=f"Grid of {n} training images flagged as likely mislabelled.")
