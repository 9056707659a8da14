"""audit diff: metric deltas, status changes and the regression exit code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from audit.cli import app
from audit.diff import diff_results, load_result, render_markdown, render_text
from audit.results import AuditResult, CheckResult, Metric, Status, Threshold


def _result(perf: Status, auc: float, fairness: Status | None = Status.PASS) -> dict[str, Any]:
    checks = [CheckResult("performance", status=perf, metrics=[
        Metric("roc_auc", auc, threshold=Threshold(min=0.75), passed=perf is not Status.FAIL, status=perf),
        Metric("accuracy", auc + 0.05), Metric("accuracy", 0.5, group="sex=F")])]
    if fairness is not None:
        checks.append(CheckResult("fairness", status=fairness))
    r = AuditResult(status=Status.worst(c.status for c in checks), exit_code=0, meta={"name": "m"},
                    checks=checks, provenance={"started_at": "2026-01-01T00:00:00+00:00"},
                    compliance={"frameworks": [{"id": "t", "obligations": [
                        {"id": "t.o", "status": "not_met" if perf is Status.FAIL else "met"}]}]})
    return json.loads(r.to_json())


def test_deltas_and_worse_status() -> None:
    d = diff_results(_result(Status.PASS, 0.80), _result(Status.FAIL, 0.70))
    assert [c.check for c in d.regressed] == ["performance"]
    auc = next(m for m in d.metrics if m.metric == "roc_auc")
    assert auc.delta == pytest.approx(-0.10) and (auc.old_status, auc.new_status) == ("pass", "fail")
    assert auc.threshold == ">= 0.75"
    assert all(m.metric != "accuracy" or m.old == pytest.approx(0.85) for m in d.metrics)  # grouped ones left out
    assert d.obligations == [{"id": "t.o", "old": "met", "new": "not_met"}]
    text = render_text(d)
    assert "roc_auc" in text and "-0.1" in text and "1 check(s) got worse: performance" in text
    assert "| performance | roc_auc |" in render_markdown(d)


def test_threshold_described_as_the_report_does() -> None:
    advisory = Threshold(min=0.7, severity="warn")
    lime = CheckResult("lime", status=Status.WARN,
                       metrics=[Metric("stability", 0.6, threshold=advisory, passed=False, status=Status.WARN)])
    r = AuditResult(status=Status.WARN, exit_code=0, meta={"name": "m"}, provenance={}, checks=[lime])
    d = diff_results(json.loads(r.to_json()), json.loads(r.to_json()))
    assert next(m for m in d.metrics if m.metric == "stability").threshold == advisory.describe() == ">= 0.7 (advisory)"


def test_improvement_and_equal_are_not_regressions() -> None:
    assert diff_results(_result(Status.FAIL, 0.7), _result(Status.PASS, 0.8)).regressed == []
    same = diff_results(_result(Status.WARN, 0.76), _result(Status.WARN, 0.76))
    assert same.regressed == [] and all(m.delta in (0, None) for m in same.metrics)


def test_dropping_a_check_that_gave_evidence_is_worse() -> None:
    d = diff_results(_result(Status.PASS, 0.8), _result(Status.PASS, 0.8, fairness=None))
    assert [(c.check, c.old, c.new) for c in d.regressed] == [("fairness", "pass", None)]
    skipped = diff_results(_result(Status.PASS, 0.8), _result(Status.PASS, 0.8, fairness=Status.SKIPPED))
    assert [c.check for c in skipped.regressed] == ["fairness"]
    added = diff_results(_result(Status.PASS, 0.8, fairness=None), _result(Status.PASS, 0.8, fairness=Status.FAIL))
    assert added.regressed == []  # new checks are shown, not counted


def test_cli_exit_codes_and_formats(tmp_path: Path) -> None:
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(_result(Status.PASS, 0.8)), encoding="utf-8")
    new.write_text(json.dumps(_result(Status.FAIL, 0.7)), encoding="utf-8")
    runner = CliRunner()
    worse = runner.invoke(app, ["diff", str(old), str(new)])
    assert worse.exit_code == 1 and "got worse: performance" in worse.output
    better = runner.invoke(app, ["diff", str(new), str(old), "--format", "json"])
    assert better.exit_code == 0 and json.loads(better.output)["regressed"] == []
    md = runner.invoke(app, ["diff", str(old), str(new), "--format", "markdown"])
    assert md.exit_code == 1 and md.output.startswith("| check |")
    bad = runner.invoke(app, ["diff", str(old), str(tmp_path / "nope.json")])
    assert bad.exit_code == 2
    (tmp_path / "x.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match="not an audit result"):
        load_result(tmp_path / "x.json")
