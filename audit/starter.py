"""The commented starter policy that ``audit init`` prints."""

from __future__ import annotations

STARTER_POLICY = """\
# xai-audit policy, version 1. Validate with `audit validate policy.yaml`; run with `audit run policy.yaml`.
# Editors: `audit schema > policy.schema.json` and keep the next line for completion and checking.
# yaml-language-server: $schema=policy.schema.json
version: 1

audit:                          # who and what: goes on the report's cover
  name: My model v1             # required
  system: What the model is part of
  owner: Accountable team or person
  intended_purpose: What the system is used for, and what it must not be used for
  risk_category: high           # prohibited | high | limited | minimal (EU AI Act)
  frameworks: [gdpr, eu_ai_act]

seed: 42                        # every random choice derives from it: same seed, same results

model:
  path: model.ubj               # relative to this file
  format: xgboost               # xgboost | skops | onnx | pickle | joblib (pickle/joblib need trust: true)
  task: binary_classification   # or multiclass_classification
  # classes: [no, yes]          # labels of the probability columns, when the model only knows indices
  # trust: false                # true allows pickle/joblib, which run code when loaded: only your own files

data:
  train: train.csv              # csv or parquet
  test: test.csv                # held-out data: what the checks judge the model on
  target: label
  positive_label: 1
  sensitive_features: []        # protected attributes, e.g. [sex, age_group]
  features: null                # null: every column but the target and the sensitive ones

checks:                         # check id -> options; only listed checks run (`audit checks` lists them)
  performance:
    n_boot: 200                 # bootstrap resamples for confidence intervals (0 = off)
    thresholds:                 # metric -> {min: x} or {max: x}, optionally warn_margin
      roc_auc: {min: 0.75, warn_margin: 0.02}

report:
  formats: [html, pdf, json, junit]
  # out: audit-report           # default output folder (the CLI's --out wins)

gate:
  fail_on: fail                 # fail: exit 1 on failures only; warn: warnings fail the gate too
"""
