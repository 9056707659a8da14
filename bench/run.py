"""Benchmarks: the audit pipeline's cost against the plain library calls it wraps, measured in one run.

Run: make bench (or: python bench/run.py [--repeat N]). Prints seconds and ratios; targets:
- the whole audit of the example (load, validate, predict, performance check with n_boot=0) within 10x the
  plain xgboost load + predict + scikit-learn metric calls it does; the audit also draws two SVG figures
  (confusion matrix, ROC curve), which the plain calls do not and which take most of the difference;
- the bootstrap (200 resamples) within 60x one pass of the metrics (it computes them 200 times; the rest of
  the gap is resampling);
- the HTML report under a second; the PDF noted as is (WeasyPrint layout dominates).
"""

from __future__ import annotations

import argparse
import sys

from _common import REPO, best_of  # bench/ is on sys.path when a benchmark runs as a script

POLICY = REPO / "policies" / "examples" / "credit.yaml"


def plain_calls() -> None:
    """What the audit does for the performance check, written directly against the libraries."""
    import pandas as pd
    import xgboost as xgb
    from sklearn import metrics as skm

    folder = POLICY.parent / "credit"
    model = xgb.XGBClassifier()
    model.load_model(folder / "model.ubj")
    pd.read_csv(folder / "train.csv")
    test = pd.read_csv(folder / "test.csv")
    X, y = test.drop(columns=["deny", "afam", "single"]), (test["deny"] == "yes").to_numpy()
    p = model.predict_proba(X)[:, 1]
    pred = p >= 0.5
    for fn in (skm.accuracy_score, skm.balanced_accuracy_score, skm.precision_score, skm.recall_score,
               skm.f1_score):
        fn(y, pred)
    skm.roc_auc_score(y, p)
    skm.log_loss(y, p)


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from audit import run_audit
    from audit.policy import load_policy
    from audit.report import render_html, render_pdf

    def audit(n_boot: int) -> object:
        lp = load_policy(POLICY)
        options = {"n_boot": n_boot, "per_group": False, "thresholds": lp.policy.checks["performance"]["thresholds"]}
        return run_audit({**lp.located.data, "checks": {"performance": options}}, base_dir=POLICY.parent)

    plain_calls(), audit(0)  # warm imports and caches
    t_plain = best_of(plain_calls, args.repeat)
    t_audit = best_of(lambda: audit(0), args.repeat)
    t_boot = best_of(lambda: audit(200), max(1, args.repeat // 2))
    result = audit(200)
    t_html = best_of(lambda: render_html(result), args.repeat)
    t_pdf = best_of(lambda: render_pdf(result), 1)

    rows = [
        ("plain xgboost + scikit-learn calls", t_plain, 1.0, ""),
        ("audit, performance, n_boot=0", t_audit, t_audit / t_plain, "target <= 10x plain (incl. 2 figures)"),
        ("audit, performance, n_boot=200", t_boot, t_boot / t_audit, "x the n_boot=0 audit; target <= 60x"),
        ("render HTML", t_html, t_html / t_plain, "target < 1 s"),
        ("render PDF (WeasyPrint)", t_pdf, t_pdf / t_plain, ""),
    ]
    print(f"{'what':<38} {'seconds':>9} {'ratio':>8}  note")
    for what, sec, ratio, note in rows:
        print(f"{what:<38} {sec:9.4f} {ratio:8.2f}  {note}")
    print(f"(best of {args.repeat} runs each; python {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
