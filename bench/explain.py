"""Benchmark of the explanation checks against the plain library calls they wrap, measured in one run.

Run: ``.venv/bin/python bench/explain.py [--rows 20000] [--repeat 3]``. Prints seconds and ratios; targets:

- SHAP: the ``shap`` check on 20,000 test rows of a 300-tree XGBoost model, as a ratio to calling
  ``shap.TreeExplainer(model).shap_values(X)`` directly: under 1.2 for the attributions (the check's SHAP values
  plus its additivity reference, through the context cache), and reported for the whole check, which also draws
  the bar chart, the beeswarm and four waterfall plots;
- LIME: the whole ``lime`` check's time per explained row (every row explained ``stability_runs`` times), next to
  one plain ``LimeTabularExplainer.explain_instance`` call on the same model.

Timings are the fastest of ``--repeat`` runs, each on a fresh audit context (no cache carried over).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import pandas as pd
from _common import best_of  # noqa: E402 - bench/ is on sys.path when a benchmark runs as a script

N_FEATURES = 12


def data(n_train: int, n_test: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded tabular problem with N_FEATURES numeric features."""
    rng = np.random.default_rng(0)
    X = rng.normal(0, 1, (n_train + n_test, N_FEATURES))
    w = np.linspace(2.0, 0.1, N_FEATURES)
    y = (X @ w + 0.8 * X[:, 0] * X[:, 1] + rng.normal(0, 1, len(X)) > 0).astype(int)
    df = pd.DataFrame(X, columns=[f"x{j}" for j in range(N_FEATURES)]).assign(label=y)
    return df.iloc[:n_train].reset_index(drop=True), df.iloc[n_train:].reset_index(drop=True)


def context(model: Any, train: pd.DataFrame, test: pd.DataFrame, checks: dict[str, Any]) -> Any:
    """A fresh audit context (empty cache) for the model and data."""
    from audit.artifacts import load_artifacts
    from audit.context import AuditContext
    from audit.policy import load_policy

    lp = load_policy({"version": 1, "audit": {"name": "bench"}, "seed": 0,
                      "model": {"task": "binary_classification"},
                      "data": {"target": "label", "positive_label": 1}, "checks": checks})
    return AuditContext(lp, load_artifacts(lp, model=model, data={"train": train, "test": test}))


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000, help="test rows SHAP explains")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import shap
    import xgboost as xgb

    from checks._explain import ShapParams, params_for, shap_attributions
    from checks.lime_check import Lime
    from checks.shap_check import Shap

    train, test = data(5_000, args.rows)
    features = [c for c in train.columns if c != "label"]
    model = xgb.XGBClassifier(n_estimators=300, max_depth=6, random_state=0, n_jobs=1)
    model.fit(train[features], train["label"])
    X = test[features]

    # -- SHAP -------------------------------------------------------------------------------------------------
    shap_checks = {"shap": {"explain_rows": args.rows}}
    plain = best_of(lambda: shap.TreeExplainer(model).shap_values(X), args.repeat)

    def attributions() -> None:
        ctx = context(model, train, test, shap_checks)
        shap_attributions(ctx, params_for(ctx, ShapParams, ctx.loaded_policy.configs["shap"]))

    def whole_check() -> None:
        ctx = context(model, train, test, shap_checks)
        Shap().run(ctx, ctx.loaded_policy.configs["shap"])

    ours = best_of(attributions, args.repeat)
    check = best_of(whole_check, args.repeat)
    print(f"SHAP, {args.rows} rows x {len(features)} features, 300-tree XGBoost (depth 6):")
    print(f"  shap.TreeExplainer(model).shap_values(X)   {plain:8.3f} s")
    print(f"  check's attributions (+ additivity ref.)   {ours:8.3f} s   ratio {ours / plain:5.2f}  (target < 1.2)")
    print(f"  whole shap check (+ figures, table)        {check:8.3f} s   ratio {check / plain:5.2f}")

    # -- LIME -------------------------------------------------------------------------------------------------
    from lime.lime_tabular import LimeTabularExplainer

    lime_checks = {"lime": {"explain_rows": 10, "stability_runs": 5}}
    ctx = context(model, train, test, lime_checks)
    config = ctx.loaded_policy.configs["lime"]
    explainer = LimeTabularExplainer(train[features].to_numpy(), mode="regression", feature_names=features,
                                     random_state=0)
    row = X.to_numpy()[0]

    def plain_lime() -> None:
        explainer.explain_instance(row, lambda d: model.predict_proba(pd.DataFrame(d, columns=features))[:, 1],
                                   num_features=len(features), num_samples=config.num_samples)

    one = best_of(plain_lime, args.repeat)

    def lime_check() -> None:
        c = context(model, train, test, lime_checks)
        Lime().run(c, c.loaded_policy.configs["lime"])

    whole = best_of(lime_check, args.repeat)
    n_expl = config.explain_rows * config.stability_runs
    print(f"LIME, {config.explain_rows} rows x {config.stability_runs} seeds, {config.num_samples} samples each:")
    print(f"  one plain explain_instance call            {one:8.3f} s")
    print(f"  whole lime check                           {whole:8.3f} s   = {whole / config.explain_rows:.3f} s per "
          f"explained row, {whole / n_expl:.3f} s per explanation (ratio {whole / n_expl / one:4.2f} to the plain "
          "call)")


if __name__ == "__main__":
    main()
