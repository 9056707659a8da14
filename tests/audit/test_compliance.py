"""Frameworks as data (schema, file:line errors, selection) and the compliance matrix's statuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.compliance import (
    Framework,
    assess,
    builtin_frameworks,
    frameworks_dir,
    load_framework_file,
    load_frameworks,
    select_frameworks,
)
from audit.errors import PolicyError
from audit.policy import load_policy
from audit.registry import default_registry
from audit.results import CheckResult, Metric, Status, Threshold
from tests.conftest import base_policy, write_policy

# ids that checks reference: they must never disappear
STABLE_IDS = ["gdpr.art13.2.f", "gdpr.art14.2.g", "gdpr.art15.1.h", "gdpr.art22", "eu_ai_act.art9",
              "eu_ai_act.art10.2.f", "eu_ai_act.art10.2.g", "eu_ai_act.art10.2.h", "eu_ai_act.art10.3",
              "eu_ai_act.art11", "eu_ai_act.annex_iv.2.b", "eu_ai_act.annex_iv.2.g", "eu_ai_act.art12",
              "eu_ai_act.art13", "eu_ai_act.art14", "eu_ai_act.art15.1", "eu_ai_act.art15.3", "eu_ai_act.art15.4"]


@pytest.mark.parametrize("path", sorted(frameworks_dir().glob("*.yaml")), ids=lambda p: p.stem)
def test_every_framework_file_validates(path: Path) -> None:
    fw = load_framework_file(path)
    assert fw.framework == path.stem
    for ob in fw.obligations:
        assert ob.translations.get("ja"), f"{ob.id} has no Japanese text"
        if ob.automatable != "yes":
            assert ob.attach, f"{ob.id}: a reviewer must be told what to attach"


def test_required_frameworks_and_stable_ids() -> None:
    assert {"gdpr", "eu_ai_act", "japan_ai_guidelines"} <= set(builtin_frameworks())
    known = load_frameworks()
    assert [i for i in STABLE_IDS if i not in known] == []
    refs = {o["ref"] for o in known.values()}
    for ref in ("Art. 9", "Art. 12", "Art. 14", "Art. 22", "Art. 11 and Annex IV"):
        assert ref in refs


def test_every_obligation_referenced_by_a_check_exists() -> None:
    known = load_frameworks()
    missing = {cid: [o for o in cls.obligations if o not in known] for cid, cls in default_registry().items()}
    assert {k: v for k, v in missing.items() if v} == {}


def test_framework_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "internal.yaml"
    bad.write_text("framework: internal\ntitle: Internal standard\nobligations:\n"
                   "  - id: internal.r1\n    ref: R1\n    text: Models are reviewed.\n    automatable: sometimes\n"
                   "  - id: other.r2\n    ref: R2\n    text: x\n    automatable: no\n    colour: red\n",
                   encoding="utf-8")
    with pytest.raises(PolicyError) as exc:
        load_framework_file(bad)
    text = str(exc.value)
    assert text.startswith("the framework file has 2 problems:")
    assert f"{bad}:7:5: obligations.0.automatable: input should be 'yes', 'partly' or 'no'; got 'sometimes'" in text
    assert f"{bad}:12:5: obligations.1: unknown key 'colour'" in text


def test_duplicate_ids_and_prefix_are_rejected() -> None:
    base = {"framework": "internal", "title": "T", "obligations": [
        {"id": "internal.a", "ref": "A", "text": "t", "automatable": "no"},
        {"id": "internal.a", "ref": "A", "text": "t", "automatable": "no"}]}
    with pytest.raises(ValueError, match="defined twice"):
        Framework.model_validate(base)
    base["obligations"] = [{"id": "gdpr.x", "ref": "A", "text": "t", "automatable": "no"}]
    with pytest.raises(ValueError, match="must start with the framework id 'internal.'"):
        Framework.model_validate(base)


def test_policy_selects_frameworks_and_own_files(toy_dir: Path) -> None:
    (toy_dir / "internal.yaml").write_text(
        "framework: internal\ntitle: Internal model standard\nobligations:\n"
        "  - id: internal.accuracy\n    ref: S-1\n    text: Accuracy is measured.\n"
        "    evidence: [performance.roc_auc]\n    automatable: yes\n", encoding="utf-8")
    policy = base_policy()
    policy["audit"].update(frameworks=["gdpr", "internal"], framework_files=["internal.yaml"])
    lp = load_policy(write_policy(toy_dir, policy, "own.yaml"))
    chosen = select_frameworks(lp.policy.audit.frameworks, lp.policy.audit.framework_files, lp.base_dir)
    assert [f.framework for f in chosen] == ["gdpr", "internal"]

    policy["audit"].update(frameworks=["gdrp"], framework_files=["missing.yaml"])
    with pytest.raises(PolicyError) as exc:
        load_policy(write_policy(toy_dir, policy, "bad.yaml"))
    text = str(exc.value)
    assert "bad.yaml:" in text and "unknown framework 'gdrp'; did you mean 'gdpr'?" in text
    assert "audit.framework_files.0: framework file" in text and "not found" in text


def _fw(automatable: str, evidence: list[str]) -> Framework:
    return Framework.model_validate({"framework": "t", "title": "T", "obligations": [
        {"id": "t.o", "ref": "O", "text": "o", "evidence": evidence, "automatable": automatable, "attach": "doc"}]})


def _check(cid: str, status: Status, obligations: tuple[str, ...] = (), metrics: list[Metric] | None = None
           ) -> CheckResult:
    return CheckResult(check_id=cid, status=status, obligations=list(obligations), metrics=metrics or [])


def _row(checks: list[CheckResult], fw: Framework) -> dict:
    return assess(checks, [fw])["frameworks"][0]["obligations"][0]


def test_failing_check_turns_its_obligations_to_not_met() -> None:
    fw = _fw("yes", ["performance", "fairness"])
    assert _row([_check("performance", Status.PASS), _check("fairness", Status.PASS)], fw)["status"] == "met"
    row = _row([_check("performance", Status.PASS), _check("fairness", Status.FAIL)], fw)
    assert (row["status"], row["basis"]) == ("not_met", "check_failed")
    # a check that declares the obligation itself counts, even when the framework does not list it
    declared = _row([_check("shap", Status.FAIL, ("t.o",))], _fw("partly", []))
    assert declared["status"] == "not_met" and declared["evidence"][0]["check"] == "shap"
    # a failing check turns even an obligation no check can complete to not met
    assert _row([_check("fairness", Status.FAIL)], _fw("no", ["fairness"]))["status"] == "not_met"


def test_no_evidence_needs_human_assessment_never_green() -> None:
    row = _row([], _fw("yes", ["fairness"]))
    assert (row["status"], row["basis"], row["missing"], row["attach"]) == ("human", "no_evidence", ["fairness"],
                                                                            "doc")
    assert _row([_check("fairness", Status.SKIPPED)], _fw("yes", ["fairness"]))["status"] == "human"
    assert _row([_check("fairness", Status.ERROR)], _fw("yes", ["fairness"]))["status"] == "human"
    assert _row([_check("fairness", Status.PASS)], _fw("no", ["fairness"]))["status"] == "human"
    assert _row([], _fw("no", []))["status"] == "human"


def test_partly_evidenced() -> None:
    assert _row([_check("fairness", Status.PASS)], _fw("partly", ["fairness"]))["basis"] == "needs_review"
    row = _row([_check("fairness", Status.WARN)], _fw("yes", ["fairness", "influence"]))
    assert (row["status"], row["basis"], row["missing"]) == ("partly", "evidence_incomplete", ["influence"])


def test_metric_level_evidence() -> None:
    fw = _fw("yes", ["performance.roc_auc"])
    ok = Metric("roc_auc", 0.9, threshold=Threshold(min=0.8), passed=True, status=Status.PASS)
    bad = Metric("roc_auc", 0.7, threshold=Threshold(min=0.8), passed=False, status=Status.FAIL)
    other_bad = Metric("f1", 0.1, threshold=Threshold(min=0.8), passed=False, status=Status.FAIL)
    assert _row([_check("performance", Status.FAIL, metrics=[ok, other_bad])], fw)["status"] == "met"
    assert _row([_check("performance", Status.FAIL, metrics=[bad])], fw)["status"] == "not_met"
    assert _row([_check("performance", Status.PASS, metrics=[])], fw)["status"] == "human"


def test_counts_and_language() -> None:
    fws = list(builtin_frameworks().values())
    m = assess([_check("performance", Status.PASS)], fws, "ja")
    assert sum(m["counts"].values()) == sum(len(f.obligations) for f in fws)
    assert m["counts"]["met"] >= 1  # japan_ai_guidelines.accuracy is evidenced by performance alone
    jp = next(f for f in m["frameworks"] if f["id"] == "japan_ai_guidelines")
    acc = next(o for o in jp["obligations"] if o["id"] == "japan_ai_guidelines.accuracy")
    assert acc["status"] == "met" and "正確性" in acc["text"]
