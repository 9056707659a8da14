from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from audit import run_audit
from audit.context import AuditContext
from audit.errors import ExitCode
from audit.judge import judge_metric
from audit.registry import Check, CheckConfig, Registry, Requires, default_registry
from audit.results import CheckResult, Metric, Status, Threshold
from tests.conftest import base_policy, write_policy


class Boom(Check[CheckConfig]):
    id: ClassVar[str] = "boom"
    title: ClassVar[str] = "Always raises"
    metric_names: ClassVar[dict[str, str]] = {"x": "nothing"}

    def run(self, ctx: AuditContext, config: CheckConfig) -> CheckResult:
        raise RuntimeError("deliberate failure inside a check")


class NeedsDropout(Check[CheckConfig]):
    id: ClassVar[str] = "needs_dropout"
    title: ClassVar[str] = "Needs a dropout network"
    applies_to: ClassVar[Requires] = Requires(needs=frozenset({"dropout", "probabilities"}))

    def run(self, ctx: AuditContext, config: CheckConfig) -> CheckResult:  # pragma: no cover - never runs
        raise AssertionError("a skipped check must not run")


class Constant(Check[CheckConfig]):
    id: ClassVar[str] = "constant"
    title: ClassVar[str] = "Reports a fixed number"
    metric_names: ClassVar[dict[str, str]] = {"score": "a number"}
    default_thresholds: ClassVar[dict[str, dict[str, float]]] = {"score": {"min": 0.5}}

    def run(self, ctx: AuditContext, config: CheckConfig) -> CheckResult:
        return CheckResult(self.id, metrics=[Metric("score", 0.7)])


def _registry() -> Registry:
    reg = Registry()
    for cls in (Boom, NeedsDropout, Constant, default_registry().get("performance")):
        reg.register(cls)
    return reg


def test_duplicate_id_raises() -> None:
    reg = _registry()

    class Other(Boom):
        pass

    with pytest.raises(ValueError, match="check id 'boom' is registered twice"):
        reg.register(Other)


def test_error_is_isolated_and_report_still_written(toy_dir: Path) -> None:
    policy = write_policy(toy_dir, base_policy(checks={"boom": {}, "performance": {"n_boot": 0},
                                                       "needs_dropout": {}}))
    result = run_audit(policy, registry=_registry(), out=toy_dir / "out", formats=["json", "junit"])
    statuses = {c.check_id: c.status for c in result.checks}
    assert statuses == {"boom": Status.ERROR, "performance": Status.PASS, "needs_dropout": Status.SKIPPED}
    boom = result.check("boom")
    assert boom.error is not None and boom.error.type == "RuntimeError"
    assert "deliberate failure inside a check" in boom.summary and "Traceback" in boom.error.traceback
    assert result.status is Status.ERROR and result.exit_code == ExitCode.ERROR == 3
    skipped = result.check("needs_dropout")
    assert skipped.summary == "not run: the model has no dropout layers"
    saved = json.loads((toy_dir / "out" / "result.json").read_text())
    assert [c["status"] for c in saved["checks"]] == ["error", "pass", "skipped"]
    assert (toy_dir / "out" / "junit.xml").is_file()


@pytest.mark.parametrize(("threshold", "fail_on", "status", "code"), [
    ({"min": 0.5}, "fail", Status.PASS, 0),
    ({"min": 0.9}, "fail", Status.FAIL, 1),
    ({"min": 0.65, "warn_margin": 0.1}, "fail", Status.WARN, 0),
    ({"min": 0.65, "warn_margin": 0.1}, "warn", Status.WARN, 1),
    (None, "fail", Status.PASS, 0),  # null drops the default threshold
])
def test_thresholds_statuses_and_exit_codes(toy_dir: Path, threshold: Any, fail_on: str, status: Status,
                                            code: int) -> None:
    policy = base_policy(checks={"constant": {"thresholds": {"score": threshold}}}, gate={"fail_on": fail_on})
    result = run_audit(write_policy(toy_dir, policy), registry=_registry())
    assert result.check("constant").status is status
    assert result.status is status and result.exit_code == code
    judged = result.check("constant").metrics[0]
    assert (judged.threshold is None) == (threshold is None)


def test_default_threshold_applies_when_policy_gives_none(toy_dir: Path) -> None:
    result = run_audit(write_policy(toy_dir, base_policy(checks={"constant": {}})), registry=_registry())
    assert result.check("constant").metrics[0].threshold == Threshold(min=0.5)


@pytest.mark.parametrize(("metric", "status", "passed"), [
    (Metric("m", 0.80), Status.PASS, True),
    (Metric("m", 0.70), Status.FAIL, False),
    (Metric("m", 0.76), Status.WARN, True),  # within the 0.02 margin
    (Metric("m", 0.80, ci_low=0.72, ci_high=0.88), Status.WARN, True),  # interval crosses the bound
    (Metric("m", 0.74, ci_low=0.70, ci_high=0.78), Status.WARN, False),  # fails, but the interval reaches back
    (Metric("m", 0.70, ci_low=0.68, ci_high=0.73), Status.FAIL, False),
    (Metric("m", None), Status.WARN, None),  # not computable: never a silent pass
])
def test_judge_metric_known_answers(metric: Metric, status: Status, passed: bool | None) -> None:
    judged = judge_metric(metric, Threshold(min=0.75, warn_margin=0.02))
    assert judged.status is status and judged.passed is passed


def test_judge_max_bound() -> None:
    t = Threshold(max=0.1)
    assert judge_metric(Metric("gap", 0.05), t).status is Status.PASS
    assert judge_metric(Metric("gap", 0.15), t).status is Status.FAIL
    assert judge_metric(Metric("gap", 0.08, ci_low=0.02, ci_high=0.14), t).status is Status.WARN


def test_advisory_bound_warns_instead_of_failing() -> None:
    t = Threshold(min=0.7, severity="warn")
    missed = judge_metric(Metric("stability", 0.4), t)
    assert missed.status is Status.WARN and missed.passed is False and "advisory" in (missed.note or "")
    assert judge_metric(Metric("stability", 0.8), t).status is Status.PASS


def _stable(result_json: str) -> dict[str, Any]:
    d = json.loads(result_json)
    d.pop("provenance")
    for c in d["checks"]:
        c.pop("duration_s")
    return d


def test_same_seed_same_result(toy_dir: Path) -> None:
    policy = write_policy(toy_dir, base_policy(checks={"performance": {"n_boot": 100}}))
    a, b = run_audit(policy), run_audit(policy)
    assert _stable(a.to_json()) == _stable(b.to_json())
    other = write_policy(toy_dir, base_policy(seed=8, checks={"performance": {"n_boot": 100}}), "other.yaml")
    c = run_audit(other)
    ci = [(m["ci_low"], m["ci_high"]) for m in _stable(c.to_json())["checks"][0]["metrics"] if "ci_low" in m]
    ca = [(m["ci_low"], m["ci_high"]) for m in _stable(a.to_json())["checks"][0]["metrics"] if "ci_low" in m]
    assert ci != ca  # the seed really drives the bootstrap


def test_provenance_records_hashes_versions_and_seed(toy_dir: Path) -> None:
    result = run_audit(toy_dir / "policy.yaml")
    prov = result.provenance
    assert prov["seed"] == 7
    assert len(prov["policy"]["sha256"]) == 64 and len(prov["model"]["sha256"]) == 64
    assert set(prov["data"]) == {"train", "test"} and all(len(v["sha256"]) == 64 for v in prov["data"].values())
    assert {"numpy", "pandas", "scikit-learn", "xai-audit"} <= set(prov["libraries"])
    assert prov["python"] and prov["platform"] and prov["started_at"] <= prov["finished_at"]


def test_progress_lines_on_stderr(toy_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_audit(toy_dir / "policy.yaml", progress=True)
    err = capsys.readouterr().err
    assert "[1/1] performance" in err and "PASS" in err
