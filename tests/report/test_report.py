"""Tests of audit.report: view model, HTML (self-contained, escaped), PDF, JUnit, JSON and atomic writes."""

from __future__ import annotations

import io
import json
import logging
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from audit import report
from audit.io import atomic_write_bytes, atomic_write_text
from audit.results import (
    AuditResult,
    CheckResult,
    ErrorInfo,
    Figure,
    Finding,
    Metric,
    Status,
    Table,
    Threshold,
)

EVIL = "<script>alert(1)</script>"


def _svg_figure() -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(["F", "M", EVIL], [0.71, 0.88, 0.5], color="#4c72b0")
    ax.axhline(0.8, color="#b71c1c", linestyle="--", label="threshold")
    ax.set_ylabel("selection-rate ratio")
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    return Figure(id="ratio/by group", title="Selection-rate ratio by group", data=buf.getvalue(),
                  caption=f"Ratio of selection rates per group; caption with {EVIL}.",
                  alt="Bar chart of the selection-rate ratio per group")


def make_result() -> AuditResult:
    """A hand-built audit with every kind of content and every status."""
    fairness = CheckResult(
        check_id="fairness", title="Group fairness", status=Status.FAIL,
        summary="selection-rate ratio 0.71 < 0.80 for sex=F",
        metrics=[
            Metric("demographic_parity_ratio", 0.712345678, ci_low=0.65, ci_high=0.77,
                   threshold=Threshold(min=0.8), passed=False, status=Status.FAIL,
                   description="min/max selection rate across groups"),
            Metric("selection_rate", 0.31, group="sex=F"),
            Metric("selection_rate", 0.44, group=EVIL),
        ],
        findings=[
            Finding("fail", f"selection-rate ratio 0.71 < 0.80 for feature {EVIL}",
                    metric="demographic_parity_ratio",
                    evidence=[{"group": f"g{i}", "selection_rate": 0.3 + i / 100, "n": 100 + i}
                              for i in range(25)]),
            Finding("info", "groups smaller than 30 rows were merged"),
        ],
        figures=[_svg_figure()],
        tables=[Table(id="by_group", title="Metrics by group", columns=["group", "selection_rate", "n"],
                      rows=[["sex=F", 0.31, 412], ["sex=M", 0.44, 588], [EVIL, 0.5, 1]],
                      caption="Per-group selection rates.")],
        notes=["bootstrap CI with n_boot=200", "groups below 30 rows merged"],
        obligations=["eu_ai_act.art10.2.f", "gdpr.art22"],
        config={"sensitive_features": ["sex"], "thresholds": {"demographic_parity_ratio": {"min": 0.8}}},
        duration_s=1.234,
    )
    perf = CheckResult(
        check_id="performance", title="Predictive performance", status=Status.WARN,
        summary="roc_auc 0.81 within 0.02 of its bound",
        metrics=[Metric("roc_auc", 0.8123, ci_low=0.79, ci_high=0.83,
                        threshold=Threshold(min=0.8, warn_margin=0.02), passed=True, status=Status.WARN),
                 Metric("accuracy", 0.9)],
        findings=[Finding("warn", "roc_auc 0.812 is within 0.02 of the minimum 0.80")],
        obligations=["eu_ai_act.art15.1"], duration_s=0.5,
    )
    shap = CheckResult(check_id="shap", title="SHAP attributions", status=Status.PASS,
                       summary="top features stable",
                       metrics=[Metric("top_k_stability", 0.95, threshold=Threshold(min=0.7), passed=True,
                                       status=Status.PASS)], duration_s=12.5)
    lime = CheckResult(
        check_id="lime", title="LIME stability", status=Status.ERROR, summary="the check raised an exception",
        error=ErrorInfo("ValueError", "kernel width must be positive; got -1",
                        'Traceback (most recent call last):\n  File "checks/lime_check.py", line 42, in run\n'
                        "    raise ValueError('kernel width must be positive; got -1')\n"
                        "ValueError: kernel width must be positive; got -1\x1b[0m"),
        duration_s=0.01,
    )
    gradcam = CheckResult(check_id="gradcam", title="Grad-CAM", status=Status.SKIPPED,
                          summary="needs an image model with gradients; this model is tabular")
    return AuditResult(
        status=Status.ERROR, exit_code=3,
        meta={"name": "Credit scoring v2", "system": "credit-scoring", "owner": "Risk Analytics",
              "intended_purpose": "Rank consumer credit applications for manual review.",
              "risk_category": "high", "frameworks": ["eu_ai_act", "gdpr"], "policy_path": "policy.yaml"},
        checks=[shap, perf, lime, gradcam, fairness],
        provenance={
            "policy": {"path": "policies/examples/credit.yaml", "sha256": "ab" * 32},
            "model": {"path": "models/credit.skops", "format": "skops", "sha256": "cd" * 32},
            "data": {"test": {"path": "data/test.parquet", "sha256": "ef" * 32, "rows": 2000, "columns": 14}},
            "seed": 42, "python": "3.11.9", "platform": "Linux-6.1-x86_64",
            "libraries": {"numpy": "1.26.4", "scikit-learn": "1.5.0", "fairlearn": "0.10.0"},
            "started_at": "2024-05-01T12:00:00+00:00", "finished_at": "2024-05-01T12:00:14+00:00",
            "duration_s": 14.2, "command": "audit run policies/examples/credit.yaml", "custom_key": {"x": 1},
        },
        gate={"fail_on": "fail"},
    )


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(html: str) -> _Collector:
    p = _Collector()
    p.feed(html)
    return p


@pytest.fixture(scope="module")
def result() -> AuditResult:
    return make_result()


def test_sections_order_and_formatting(result: AuditResult) -> None:
    doc = report.build_sections(result)
    assert [c["id"] for c in doc["checks"]] == ["fairness", "performance", "lime", "shap", "gradcam"]
    assert [r["id"] for r in doc["summary"]] == ["fairness", "performance", "lime", "shap", "gradcam"]
    assert doc["cover"]["name"] == "Credit scoring v2"
    assert doc["cover"]["status"]["label"] == "ERROR"
    fair = doc["checks"][0]
    m = fair["metrics"][0]
    assert (m["value"], m["ci"], m["threshold"], m["judged"]) == ("0.7123", "[0.65, 0.77]", ">= 0.8", True)
    assert len(fair["metrics"]) == 1  # grouped metrics go to the by-group table
    piv = fair["by_group"]
    assert piv["columns"] == ["selection_rate"] and [r["group"] for r in piv["rows"]][0] == "sex=F"
    assert piv["rows"][0]["cells"][0]["value"] == "0.31"
    perf = next(c for c in doc["checks"] if c["id"] == "performance")
    assert [m["judged"] for m in perf["metrics"]] == [True, False]
    ev = fair["findings"][0]["evidence"]
    assert len(ev["rows"]) == 20 and ev["more"] == 5
    keys = [r["key"] for r in doc["provenance"]]
    assert "SHA-256" in keys and "Custom key" in keys
    assert {"name": "numpy", "version": "1.26.4"} in doc["libraries"]
    json.dumps(doc)  # plain data only


def test_autoescape_applies_to_j2_templates() -> None:
    env = report._environment()
    assert env.autoescape("report.html.j2") is True
    assert env.autoescape("_check.html.j2") is True
    assert env.from_string("{{ x }}").render(x=EVIL) == "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.mark.parametrize("media", ["screen", "print"])
def test_html_is_self_contained_and_escaped(result: AuditResult, media: str) -> None:
    html = report.render_html(result, media=media)  # type: ignore[arg-type]
    parsed = _parse(html)
    names = [t for t, _ in parsed.tags]
    assert "script" not in names
    for tag, attrs in parsed.tags:
        for attr in ("src", "href", "srcset", "poster", "action", "data"):
            value = attrs.get(attr)
            if value is not None:
                assert value.startswith(("data:", "#")), (tag, attr, value[:60])
        if tag == "link":
            assert "stylesheet" not in (attrs.get("rel") or "")
    assert "@import" not in html and "url(" not in html.replace("url(data:", "")
    assert "http://" not in html and "https://" not in html
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    text = "".join(parsed.text)
    assert EVIL in text  # shown to the reader as text (metric group, finding, table, caption)
    imgs = [a for t, a in parsed.tags if t == "img"]
    assert len(imgs) == 1 and imgs[0]["src"].startswith("data:image/svg+xml;base64,") and imgs[0]["alt"]
    ids = {a["id"] for _, a in parsed.tags if a.get("id")}
    for _, a in parsed.tags:
        if (a.get("href") or "").startswith("#"):
            assert a["href"][1:] in ids
    for check in result.checks:
        assert f'id="check-{check.check_id}"' in html
    assert "kernel width must be positive" in html and "Traceback" in html
    assert "and 5 more rows" in html
    assert html.count("<style>") == 1


def test_html_rejects_unknown_media(result: AuditResult) -> None:
    with pytest.raises(ValueError, match="media must be"):
        report.render_html(result, media="tv")  # type: ignore[arg-type]


def test_pdf_contains_content_and_page_numbers(result: AuditResult, caplog: pytest.LogCaptureFixture) -> None:
    pypdf = pytest.importorskip("pypdf")
    pytest.importorskip("weasyprint")
    caplog.set_level(logging.WARNING, logger="weasyprint")
    pdf = report.render_pdf(result)
    # no missing glyphs, unsupported CSS or refused fetches
    assert [r.getMessage() for r in caplog.records if r.name.startswith("weasyprint")] == []
    assert pdf.startswith(b"%PDF")
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    n = len(reader.pages)
    assert n >= 3
    # pypdf interleaves NULs in text set in the subsetted monospace font (pdftotext reads it cleanly)
    pages = [p.extract_text().replace("\x00", "") for p in reader.pages]
    text = "\n".join(pages)
    assert "Credit scoring v2" in text
    for check in result.checks:
        assert check.check_id in text
    for word in ("PASS", "WARN", "FAIL", "ERROR", "SKIPPED"):
        assert word in text
    assert f"Page 1 of {n}" in pages[0] and f"Page 2 of {n}" in pages[1]
    assert "Credit scoring v2" not in pages[0].split("Page 1 of")[1]  # no running header on the cover
    assert EVIL in text  # escaped in HTML, so rendered as literal text


def test_junit(result: AuditResult) -> None:
    xml = report.render_junit(result)
    root = ET.fromstring(xml.encode("utf-8"))
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == "xai-audit"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        "5", "1", "1", "1")
    assert float(suite.get("time") or 0) == pytest.approx(14.244, abs=1e-3)
    cases = {c.get("classname"): c for c in suite.findall("testcase")}
    assert set(cases) == {f"audit.{c.check_id}" for c in result.checks}
    failure = cases["audit.fairness"].find("failure")
    assert failure is not None and failure.get("message") == "selection-rate ratio 0.71 < 0.80 for sex=F"
    assert EVIL in (failure.text or "") and "demographic_parity_ratio" in (failure.text or "")
    error = cases["audit.lime"].find("error")
    assert error is not None and error.get("type") == "ValueError" and "Traceback" in (error.text or "")
    skipped = cases["audit.gradcam"].find("skipped")
    assert skipped is not None and "tabular" in (skipped.get("message") or "")
    warn = cases["audit.performance"]
    assert warn.find("failure") is None and "within 0.02" in (warn.findtext("system-out") or "")
    assert list(cases["audit.shap"]) == []


def _all_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_write_reports_all_formats(result: AuditResult, tmp_path: Path) -> None:
    out = tmp_path / "out" / "nested"
    outcome = report.write_reports(result, out, ["html", "pdf", "json", "junit"])
    assert outcome.errors == {}
    assert set(outcome.paths) == {"html", "pdf", "json", "junit"}
    files = _all_files(out)
    assert files == ["figures/fairness-ratio_by_group.svg", "junit.xml", "report.html", "report.pdf",
                     "result.json"]
    data = json.loads((out / "result.json").read_text(encoding="utf-8"))
    assert data["schema_version"] and data["status"] == "error"
    fair = next(c for c in data["checks"] if c["id"] == "fairness")
    m = fair["metrics"][0]
    assert {"name", "value", "threshold", "passed"} <= set(m)
    assert m["threshold"]["min"] == 0.8 and m["passed"] is False
    assert fair["figures"][0]["file"] == "figures/fairness-ratio_by_group.svg"
    assert (out / fair["figures"][0]["file"]).read_bytes() == result.check("fairness").figures[0].data


def test_write_reports_survives_a_failing_format(result: AuditResult, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(_result: AuditResult) -> bytes:
        raise RuntimeError("weasyprint exploded")

    monkeypatch.setattr(report, "render_pdf", boom)
    (tmp_path / "report.pdf").write_bytes(b"%PDF from an earlier audit")  # must not pass for this audit's
    outcome = report.write_reports(result, tmp_path, ["html", "pdf", "json", "junit"])
    assert outcome.errors == {"pdf": "RuntimeError: weasyprint exploded"}
    assert set(outcome.paths) == {"html", "json", "junit"}
    assert not (tmp_path / "report.pdf").exists()
    assert "report.html" in _all_files(tmp_path) and "junit.xml" in _all_files(tmp_path)
    assert not [f for f in _all_files(tmp_path) if f.endswith(".tmp") or f.startswith(".")]


def test_write_reports_subset_and_unknown(result: AuditResult, tmp_path: Path) -> None:
    outcome = report.write_reports(result, tmp_path, ["junit"])
    assert _all_files(tmp_path) == ["junit.xml"] and outcome.errors == {}
    with pytest.raises(ValueError, match="unknown report format"):
        report.write_reports(result, tmp_path, ["docx"])


def test_atomic_write_cleans_up_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a" / "b.txt"
    atomic_write_text(target, "old")
    import os

    def fail_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_text() == "old"
    assert _all_files(tmp_path) == ["a/b.txt"]


def test_empty_audit_and_png_figure_render(tmp_path: Path) -> None:
    png = Figure(id="p", title="A PNG", media_type="image/png", alt="one pixel",
                 data=bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"))
    minimal = AuditResult(status=Status.PASS, exit_code=0, meta={}, provenance={},
                          checks=[CheckResult(check_id="../odd id", figures=[png])])
    html = report.render_html(minimal)
    assert "Unnamed system" in html and "data:image/png;base64," in html
    outcome = report.write_reports(minimal, tmp_path, ["html", "json", "junit"])
    assert outcome.errors == {}
    assert _all_files(tmp_path) == ["figures/odd_id-p.png", "junit.xml", "report.html", "result.json"]
    empty = AuditResult(status=Status.PASS, exit_code=0, meta={}, checks=[], provenance={})
    assert "No checks ran." in report.render_html(empty)
    root = ET.fromstring(report.render_junit(empty).encode())
    assert root.find("testsuite").get("tests") == "0"  # type: ignore[union-attr]


def test_control_characters_are_dropped(result: AuditResult) -> None:
    html = report.render_html(result)
    assert "\x1b" not in html
    ET.fromstring(report.render_junit(result).encode("utf-8"))  # ESC in the traceback does not break the XML
