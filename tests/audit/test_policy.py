from __future__ import annotations

from pathlib import Path

import pytest

from audit.errors import PolicyError
from audit.policy import load_policy, schema
from audit.results import Threshold
from tests.conftest import EXAMPLE_DIR


def _errors(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    return [str(i).replace(str(tmp_path) + "/", "") for i in info.value.issues]


GOOD = """\
version: 1
audit:
  name: Toy
model:
  path: model.ubj
data:
  test: test.csv
  target: label
checks:
  performance: {}
"""


def test_example_policy_loads_with_defaults() -> None:
    lp = load_policy(EXAMPLE_DIR / "credit.yaml")
    assert lp.policy.audit.risk_category == "high"
    assert lp.policy.data.sensitive_features == ["afam", "single"]
    cfg = lp.configs["performance"]
    assert cfg.thresholds["roc_auc"] == Threshold(min=0.75, warn_margin=0.02)
    assert cfg.confidence == 0.95  # a default filled in


def test_unknown_key_names_line_and_suggests(tmp_path: Path) -> None:
    errs = _errors(tmp_path, GOOD.replace("  target: label", "  target: label\n  sensitve_features: [sex]"))
    assert errs == ["policy.yaml:9:3: data: unknown key 'sensitve_features'; did you mean 'sensitive_features'? "
                    "(allowed: train, test, format, target, positive_label, sensitive_features, features, preprocess, "
                    "regions, forbidden_regions)"]


def test_bad_threshold_value_is_located(tmp_path: Path) -> None:
    text = GOOD.replace("  performance: {}", "  performance:\n    thresholds:\n      roc_auc: {min: high}")
    errs = _errors(tmp_path, text)
    assert len(errs) == 1
    assert errs[0].startswith("policy.yaml:12:17: checks.performance.thresholds.roc_auc.min: input should be a "
                              "valid number")
    assert errs[0].endswith("got 'high'")


def test_threshold_without_bound_and_inverted_bounds(tmp_path: Path) -> None:
    text = GOOD.replace("  performance: {}", "  performance:\n    thresholds:\n      roc_auc: {warn_margin: 0.1}\n"
                        "      accuracy: {min: 0.9, max: 0.8}")
    errs = _errors(tmp_path, text)
    assert any("roc_auc: a threshold needs 'min' or 'max'" in e for e in errs)
    assert any("accuracy: 'min' (0.9) is greater than 'max' (0.8)" in e for e in errs)


def test_unknown_threshold_metric_and_unknown_check(tmp_path: Path) -> None:
    text = GOOD.replace("  performance: {}", "  performance:\n    thresholds:\n      rocauc: {min: 0.7}\n"
                        "  perfomance: {}")
    errs = _errors(tmp_path, text)
    assert errs[0].startswith("policy.yaml:12:7: checks.performance.thresholds.rocauc: check 'performance' "
                              "reports no metric 'rocauc'; did you mean 'roc_auc'?")
    assert errs[1].startswith("policy.yaml:13:3: checks.perfomance: unknown check 'perfomance'; did you mean "
                              "'performance'?")


def test_missing_required_key_points_at_parent(tmp_path: Path) -> None:
    errs = _errors(tmp_path, GOOD.replace("  target: label\n", ""))
    assert errs == ["policy.yaml:6:1: data.target: missing required key 'target' (Name of the label column.)"]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.replace("  name: Toy", "  name: Toy\n  risk_category: hihg").replace(
        "  performance: {}", "  performance:\n    n_boot: -1\n  nope: {}")
    errs = _errors(tmp_path, text)
    assert [e.split(": ")[1] for e in errs] == ["audit.risk_category", "checks.performance.n_boot", "checks.nope"]


def test_invalid_yaml_and_duplicate_keys(tmp_path: Path) -> None:
    errs = _errors(tmp_path, "version: 1\naudit: {name: [unclosed\n")
    assert errs[0].startswith("policy.yaml:3:1: not valid YAML")
    errs = _errors(tmp_path, GOOD + "seed: 1\nseed: 2\n")
    assert errs == ["policy.yaml:12:1: seed: key given twice; keep one"]


def test_version_must_be_1(tmp_path: Path) -> None:
    errs = _errors(tmp_path, GOOD.replace("version: 1", "version: 2"))
    assert errs == ["policy.yaml:1:1: version: input should be 1; got 2"]


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="policy file not found"):
        load_policy(tmp_path / "nope.yaml")


def test_dict_policy_and_checks_shorthand() -> None:
    lp = load_policy({"version": 1, "audit": {"name": "x"}, "data": {"test": "t.csv", "target": "y"},
                      "checks": ["performance"]})
    assert list(lp.configs) == ["performance"]
    assert lp.where("data", "target") == "<policy>"


def test_schema_lists_checks_and_their_metrics() -> None:
    s = schema()
    perf = s["properties"]["checks"]["properties"]["performance"]["anyOf"][0]
    assert "n_boot" in perf["properties"]
    assert "roc_auc" in perf["properties"]["thresholds"]["propertyNames"]["enum"]
    assert s["properties"]["checks"]["additionalProperties"] is False


def test_empty_file_and_missing_version(tmp_path: Path) -> None:
    assert _errors(tmp_path, "") == ["policy.yaml: a policy is a YAML mapping with keys version, audit, model, "
                                     "data, checks; got an empty file"]
    errs = _errors(tmp_path, GOOD.replace("version: 1\n", ""))
    assert errs == ["policy.yaml: version: missing required key 'version' (Policy format version: write "
                    "`version: 1` at the top.)"]
