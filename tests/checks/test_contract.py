"""One contract, run for every registered check (as scikit-learn's parametrize_with_checks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from audit import run_audit
from audit.compliance import load_frameworks
from audit.registry import Requires, default_registry
from tests.conftest import base_policy, write_policy

CHECKS = default_registry().items()
IDS = [check_id for check_id, _ in CHECKS]


@pytest.mark.parametrize(("check_id", "cls"), CHECKS, ids=IDS)
def test_config_forbids_unknown_keys_and_exports_schema(check_id: str, cls: Any) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        cls.parse_config({"no_such_option": 1})
    schema = cls.config_model.model_json_schema()
    assert schema["additionalProperties"] is False
    for name, field in cls.config_model.model_fields.items():
        assert field.description, f"{check_id}.{name} has no description"
    json.dumps(schema)


@pytest.mark.parametrize(("check_id", "cls"), CHECKS, ids=IDS)
def test_declarations(check_id: str, cls: Any) -> None:
    assert check_id.isidentifier() and check_id == check_id.lower()
    assert cls.title and cls.description
    assert cls.metric_names, "a check reports at least one metric"
    assert set(cls.default_thresholds) <= set(cls.metric_names)
    known = load_frameworks()
    assert cls.obligations and all(o in known for o in cls.obligations), \
        f"obligations not in policies/frameworks: {[o for o in cls.obligations if o not in known]}"
    cls.parse_config({})  # the defaults alone are a valid config


@pytest.mark.parametrize(("check_id", "cls"), CHECKS, ids=IDS)
def test_missing_capability_is_named(check_id: str, cls: Any) -> None:
    req: Requires = cls.applies_to
    reasons = req.missing("regression", set())
    assert any("regression" in r for r in reasons)
    assert len(reasons) == 1 + len(req.needs)


@pytest.mark.parametrize(("check_id", "cls"), CHECKS, ids=IDS)
def test_same_seed_same_result(check_id: str, cls: Any, toy_dir: Path) -> None:
    policy = write_policy(toy_dir, base_policy(checks={check_id: {}}))
    first, second = run_audit(policy).check(check_id), run_audit(policy).check(check_id)
    assert first.status.value in {"pass", "warn", "fail", "skipped"}, first.error
    a, b = first.to_dict(), second.to_dict()
    a.pop("duration_s"), b.pop("duration_s")
    assert a == b
