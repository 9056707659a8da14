"""Benchmark of the fairness check against plain fairlearn, measured in one run.

Run: .venv/bin/python bench/fairness.py [--rows 100000] [--n-boot 1000] [--fairlearn-boot 25]

On ``--rows`` rows with two sensitive features (sex: 2 values, age_group: 4 values; 8 intersections) it
prints:
- a plain ``fairlearn.metrics.MetricFrame`` with the check's seven default metrics, no intervals (the unit);
- the whole ``fairness`` check with ``n_boot`` resamples (per-group metrics for each feature and the
  intersection, gaps, Holm-corrected intervals, proxy screen, four SVG figures), as a ratio to the unit
  (target: under 20), and the same check without the proxy screen;
- fairlearn's own bootstrap, ``MetricFrame(n_boot=...)``: run with ``--fairlearn-boot`` resamples only (it
  recomputes the MetricFrame once per resample) and extrapolated linearly to ``n_boot`` (said so in the output);
- both sets of 95% intervals for each intersectional group, and whether they agree within Monte Carlo error:
  the standard error of an estimated 2.5% or 97.5% quantile from B resamples is about 2.67 sd / sqrt(B) (normal
  approximation, sqrt(q (1 - q)) / phi(z_q)); the bootstrap sd is read off the check's interval (width / 3.92).
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np
import pandas as pd
from _common import best_of  # bench/ is on sys.path when a benchmark runs as a script; _common adds the repository
from fairlearn.metrics import (
    MetricFrame,
    count,
    false_negative_rate,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, precision_score

from audit.artifacts import load_artifacts
from audit.context import AuditContext
from audit.policy import load_policy
from audit.registry import default_registry
from checks.fairness import DEFAULT_METRICS, Fairness

FEATURES = ["x1", "x2", "x3", "x4"]
Z = 2.67  # sqrt(0.025 * 0.975) / phi(1.96): quantile standard error in units of sd / sqrt(B)


def make_data(n: int, seed: int = 0) -> pd.DataFrame:
    """Synthetic credit-like data with a mild planted gap on sex and age."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(["F", "M"], n)
    age = rng.choice(["<25", "25-40", "40-60", ">60"], n, p=[0.15, 0.35, 0.35, 0.15])
    X = rng.normal(0, 1, (n, 4))
    X[:, 0] += 0.4 * (sex == "F")
    logit = X @ np.array([1.2, -0.8, 0.5, 0.0]) - 0.3 * (age == "<25")
    y = (logit + rng.logistic(0, 1, n) > 0).astype(int)
    df = pd.DataFrame(X, columns=FEATURES)
    df["sex"], df["age_group"], df["y"] = sex, age, y
    return df


def context(data: pd.DataFrame, model: LogisticRegression) -> AuditContext:
    """An audit context over the data, with the predictions already computed (shared work, not the check's)."""
    policy = {"version": 1, "audit": {"name": "bench"}, "seed": 0, "model": {"task": "binary_classification"},
              "data": {"target": "y", "positive_label": 1, "sensitive_features": ["sex", "age_group"],
                       "features": FEATURES}, "checks": {}}
    lp = load_policy(policy, registry=default_registry())
    ctx = AuditContext(lp, load_artifacts(lp, model=model, data={"test": data}))
    ctx.predict("test")
    return ctx


def main() -> None:
    """Measure and print."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--fairlearn-boot", type=int, default=25)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    data = make_data(args.rows)
    model = LogisticRegression().fit(data[FEATURES].iloc[:5000], data["y"].iloc[:5000])
    y = data["y"].to_numpy()
    pred = model.predict(data[FEATURES])
    sens = data[["sex", "age_group"]]
    metrics = {"selection_rate": selection_rate, "true_positive_rate": true_positive_rate,  # the plain calls
               "false_positive_rate": false_positive_rate, "false_negative_rate": false_negative_rate,
               "precision": functools.partial(precision_score, zero_division=0), "accuracy": accuracy_score,
               "count": count}
    assert list(metrics) == DEFAULT_METRICS
    print(f"fairness bench: {args.rows} rows, sensitive sex x age_group (8 intersections), "
          f"{len(metrics)} metrics, {args.n_boot} resamples")

    t_plain = best_of(lambda: MetricFrame(metrics=metrics, y_true=y, y_pred=pred, sensitive_features=sens),
                      args.repeat)
    print(f"  plain MetricFrame, no intervals        {t_plain:8.3f} s   1.0x (unit)")

    config = Fairness.parse_config({"n_boot": args.n_boot})
    ctxs = [context(data, model) for _ in range(args.repeat)]
    results = []
    t_check = best_of(lambda: results.append(Fairness().run(ctxs.pop(), config)), args.repeat)
    result = results[-1]
    print(f"  fairness check, n_boot={args.n_boot:<5}          {t_check:8.3f} s {t_check / t_plain:6.1f}x "
          f"(target < 20x) {'OK' if t_check / t_plain < 20 else 'MISSED'}")
    no_proxy = Fairness.parse_config({"n_boot": args.n_boot, "proxy_screen": False})
    ctxs = [context(data, model) for _ in range(args.repeat)]
    t_np = best_of(lambda: Fairness().run(ctxs.pop(), no_proxy), args.repeat)
    print(f"  ... without the proxy screen           {t_np:8.3f} s {t_np / t_plain:6.1f}x")

    t0 = time.perf_counter()
    mf = MetricFrame(metrics=metrics, y_true=y, y_pred=pred, sensitive_features=sens,
                     n_boot=args.fairlearn_boot, ci_quantiles=[0.025, 0.975], random_state=0)
    t_fl = time.perf_counter() - t0
    t_fl_full = t_fl / args.fairlearn_boot * args.n_boot
    print(f"  fairlearn MetricFrame(n_boot={args.fairlearn_boot})      {t_fl:8.3f} s {t_fl / t_plain:6.1f}x "
          f"(measured)")
    print(f"  fairlearn MetricFrame(n_boot={args.n_boot}) ~{t_fl_full:7.1f} s {t_fl_full / t_plain:6.1f}x "
          f"(extrapolated linearly from {args.fairlearn_boot} resamples, not run)")
    print(f"  check / fairlearn bootstrap at {args.n_boot} resamples: {t_fl_full / t_check:.0f}x faster")

    ours = {(m.group, m.name): (m.ci_low, m.ci_high) for m in result.metrics if m.group and " & " in m.group}
    lo_fl, hi_fl = mf.by_group_ci
    print(f"\n  95% intervals per intersectional group: check ({args.n_boot} resamples) | fairlearn "
          f"({args.fairlearn_boot} resamples)")
    zs = []
    for (sex, age), _ in mf.by_group.iterrows():
        group = f"sex={sex} & age_group={age}"
        cells = []
        for m in DEFAULT_METRICS:
            a_lo, a_hi = ours[(group, m)]
            if a_lo is None or a_hi is None:  # count: the check gives a group's size no interval
                continue
            b_lo, b_hi = float(lo_fl.loc[(sex, age), m]), float(hi_fl.loc[(sex, age), m])
            sd = (a_hi - a_lo) / 3.92
            se = Z * sd * np.sqrt(1 / args.fairlearn_boot + 1 / args.n_boot)
            if se > 0:
                zs += [abs(a_lo - b_lo) / se, abs(a_hi - b_hi) / se]
            if m in ("selection_rate", "true_positive_rate", "false_positive_rate"):
                cells.append(f"{m[:3] if m != 'selection_rate' else 'sel'} [{a_lo:.4f}, {a_hi:.4f}] | "
                             f"[{b_lo:.4f}, {b_hi:.4f}]")
        print(f"  {group:<28} " + "   ".join(cells))
    zs_arr = np.array(zs)
    print(f"\n  interval ends compared: {len(zs_arr)}; |difference| / Monte Carlo s.e.: median "
          f"{np.median(zs_arr):.2f}, max {zs_arr.max():.2f}; within 2 s.e.: {np.mean(zs_arr <= 2):.0%}, "
          f"within 3 s.e.: {np.mean(zs_arr <= 3):.0%} (expected about 95% and 99.7%)")
    gap = next(r for r in result.tables[0].rows if r[0] == "sex x age_group" and r[1] == "demographic parity ratio")
    d_lo, d_hi = mf.ratio_ci(method="between_groups")
    print(f"  demographic parity ratio over the 8 intersections: check {gap[2]:.4f} {gap[3]} | fairlearn "
          f"ratio_ci [{float(d_lo['selection_rate']):.3f}, {float(d_hi['selection_rate']):.3f}]")
    agree = np.mean(zs_arr <= 3) >= 0.95
    print(f"  intervals agree within Monte Carlo error: {'yes' if agree else 'NO'}")


if __name__ == "__main__":
    main()
