"""The report's compliance parts: matrix with links, open items, Annex IV draft, sign-off, Japanese, JUnit."""

from __future__ import annotations

import io
import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from audit import report
from audit.compliance import assess, builtin_frameworks
from audit.i18n import catalog
from audit.results import AuditResult
from tests.report.test_report import make_result

TEMPLATES = Path(report.__file__).resolve().parent.parent / "report_templates"


def _with_matrix(result: AuditResult, language: str = "en", names: tuple[str, ...] = ("gdpr", "eu_ai_act"),
                 **meta: object) -> AuditResult:
    fws = [builtin_frameworks()[n] for n in names]
    return replace(result, compliance=assess(result.checks, fws, language),
                   meta={**result.meta, "language": language, **meta})


@pytest.fixture(scope="module")
def result() -> AuditResult:
    return _with_matrix(make_result())


def test_matrix_view(result: AuditResult) -> None:
    doc = report.build_sections(result)
    comp = doc["compliance"]
    rows = {r["id"]: r for fw in comp["frameworks"] for r in fw["rows"]}
    # fairness FAILs in the hand-built result: every obligation it serves is not met
    assert rows["eu_ai_act.art10.2.f"]["status"] == "not_met"
    assert rows["gdpr.art22"]["status"] == "not_met"
    # performance WARNs (passes its threshold); calibration did not run
    assert rows["eu_ai_act.art15.1"]["status"] == "partly" and rows["eu_ai_act.art15.1"]["missing"] == ["calibration"]
    # nothing ran for Art. 9: an open item with what to attach
    assert rows["eu_ai_act.art9"]["status"] == "human"
    open_ids = [r["id"] for r in comp["open_items"]]
    assert "eu_ai_act.art9" in open_ids and all(r["attach"] for r in comp["open_items"])
    assert "eu_ai_act.art10.2.f" not in open_ids
    # evidence links point at the check sections
    anchors = {c["id"]: c["anchor"] for c in doc["checks"]}
    ev = rows["eu_ai_act.art10.2.f"]["evidence"][0]
    assert (ev["id"], ev["anchor"], ev["status"]) == ("fairness", anchors["fairness"], "fail")
    # lime errored: no evidence, listed as not run
    assert "lime" in rows["gdpr.art13.2.f"]["missing"]
    assert {c["status"]: c["count"] for c in comp["counts"]}["met"] == 0
    assert sum(c["count"] for c in comp["counts"]) == len(rows)


def test_matrix_is_computed_for_results_without_one() -> None:
    doc = report.build_sections(make_result())  # e.g. an older result.json: built-in frameworks from meta
    assert {fw["id"] for fw in doc["compliance"]["frameworks"]} == {"gdpr", "eu_ai_act"}


def test_html_order_links_techdoc_and_signoff(result: AuditResult) -> None:
    html = report.render_html(result)
    order = [html.index(f'id="{x}"') for x in ("top", "contents", "summary", "compliance", "checks",
                                                "check-fairness", "check-performance", "check-lime", "techdoc",
                                                "provenance", "signoff")]
    assert order == sorted(order)
    ids = set(re.findall(r'id="([^"]+)"', html))
    assert [h for h in re.findall(r'href="#([^"]+)"', html) if h not in ids] == []
    assert 'href="#ob-eu_ai_act.art10.2.f"' in html  # check section -> its row in the matrix
    assert html.count("to be completed") >= 5  # Annex IV fields the policy does not give
    assert "Rank consumer credit applications for manual review." in html
    for word in ("Approve", "Approve with conditions", "Reject", "Reviewer", "Role", "Date", "Signature"):
        assert f"> {word}</span>" in html or f">{word}</th>" in html, word
    assert "<script" not in html and "<form" not in html and "<input" not in html


def test_reviewer_and_data_description(result: AuditResult) -> None:
    meta = {"reviewer": "A. Auditor", "reviewer_role": "Model risk officer", "provider": "Example Bank",
            "data_description": {"n_features": 3, "splits": {"test": {
                "rows": 200, "class_counts": {"0": 150, "1": 50}, "sensitive": {"sex": {"F": 90, "M": 110}}}}}}
    html = report.render_html(_with_matrix(make_result(), **meta))
    assert "A. Auditor" in html and "Model risk officer" in html and "Example Bank" in html
    assert "0: 150 (75.0%), 1: 50 (25.0%)" in html and "F: 90, M: 110" in html


def _template_texts() -> set[str]:
    texts = set()
    for f in TEMPLATES.glob("*.j2"):
        texts |= {m[1] for m in re.findall(r"""_\(\s*(["'])(.*?)\1""", f.read_text(encoding="utf-8"))}
    return texts


def _python_texts() -> set[str]:
    import ast

    texts = set(report.FIXED_TEXTS)
    for mod in ("report.py", "techdoc.py"):
        tree = ast.parse((Path(report.__file__).parent / mod).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("t", "field")
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                texts.add(node.args[0].value)
    return texts


def test_japanese_catalogue_is_complete() -> None:
    ja = catalog("ja")
    texts = _template_texts() | _python_texts()
    assert len(texts) > 100
    assert sorted(t for t in texts if t not in ja) == []
    for en, tr in ja.items():  # placeholders survive translation
        assert set(re.findall(r"{\w+}", en)) == set(re.findall(r"{\w+}", tr)), en


def test_japanese_html() -> None:
    ja = _with_matrix(make_result(), "ja", ("gdpr", "eu_ai_act", "japan_ai_guidelines"))
    html = report.render_html(ja)
    assert '<html lang="ja"' in html
    for text in ("コンプライアンス対応表", "レビューと承認", "条件付き承認", "要記入", "不合格", "人による評価が必要",
                 "本人の求めに応じて"):
        assert text in html, text
    for english in ("Compliance matrix", "Review and sign-off", "to be completed", "Executive summary"):
        assert english not in html, english


def test_japanese_pdf_uses_a_cjk_font(caplog: pytest.LogCaptureFixture) -> None:
    pypdf = pytest.importorskip("pypdf")
    import subprocess

    fonts = subprocess.run(["fc-list", ":lang=ja", "family"], capture_output=True, text=True).stdout
    if "Noto Sans CJK JP" not in fonts:
        pytest.skip("no CJK font (Debian fonts-noto-cjk; `make sysdeps` installs it)")
    caplog.set_level(logging.WARNING, logger="weasyprint")
    pdf = report.render_pdf(_with_matrix(make_result(), "ja", ("japan_ai_guidelines",)))
    assert [r.getMessage() for r in caplog.records if r.name.startswith("weasyprint")] == []
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    used = {str(f.get("/BaseFont")) for p in reader.pages for f in (p.get("/Resources") or {}).get("/Font", {})
            .values() for f in [f.get_object()]}
    assert any("Noto-Sans-CJK-JP" in f for f in used), used
    text = "".join(p.extract_text() for p in reader.pages)
    assert "コンプライアンス対応表" in text and "レビューと承認" in text and f"1 / {len(reader.pages)} ページ" in text


def test_junit_case_per_judged_threshold(result: AuditResult) -> None:
    root = ET.fromstring(report.render_junit(result).encode())
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["xai-audit", "xai-audit.thresholds"]
    cases = {c.get("name"): c for c in suites[1].findall("testcase")}
    assert set(cases) == {"fairness.demographic_parity_ratio", "performance.roc_auc", "shap.top_k_stability"}
    failure = cases["fairness.demographic_parity_ratio"].find("failure")
    assert failure is not None and "0.7123" in (failure.get("message") or "") and ">= 0.8" in failure.get("message")
    assert cases["performance.roc_auc"].find("failure") is None
    assert (suites[1].get("tests"), suites[1].get("failures")) == ("3", "1")
    assert (root.get("tests"), root.get("failures")) == ("8", "2")


def test_framework_translations_are_loadable() -> None:
    for path in (Path(report.__file__).resolve().parent / "locales").glob("*.yaml"):
        assert isinstance(yaml.safe_load(path.read_text(encoding="utf-8")), dict)
