"""Render an :class:`~audit.results.AuditResult` as HTML, PDF, JSON and JUnit XML.

Two stages: :func:`build_sections` turns the result into a plain view model (strings, lists and dicts,
already formatted and ordered), then jinja2 templates in ``report_templates/`` render it, one partial per
kind of content. The PDF is the same HTML with print CSS. Markup is never built in Python.
"""

from __future__ import annotations

import datetime as _dt
import functools
import logging
import math
import re
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from audit.compliance import STATUS_LABELS, STATUS_ORDER, assess_result
from audit.i18n import translator
from audit.io import atomic_write_bytes, atomic_write_text
from audit.policy import REPORT_FORMATS
from audit.results import AuditResult, CheckResult, Metric, Status
from audit.techdoc import annex_iv

log = logging.getLogger(__name__)

FORMATS = REPORT_FORMATS  # the policy's report.formats: one list of what can be written
FILE_NAMES = {"html": "report.html", "pdf": "report.pdf", "json": "result.json", "junit": "junit.xml"}
MAX_EVIDENCE_ROWS = 20
MAX_TABLE_ROWS = 50
_ORDER = (Status.FAIL, Status.WARN, Status.ERROR, Status.PASS, Status.SKIPPED)  # STYLE.md section 4
_ICONS = {Status.PASS: "\u2713", Status.WARN: "\u25b2", Status.FAIL: "\u2717", Status.ERROR: "\u26a0",
          Status.SKIPPED: "\u2298"}
_SEVERITY = {"info": "INFO", "warn": "WARNING", "fail": "FAIL"}
_BASIS = {
    "check_failed": "A check that serves it failed.",
    "not_automatable": "No check can evidence it; a person must assess it.",
    "no_evidence": "No check that serves it ran.",
    "evidence_incomplete": "Some of its evidence did not run.",
    "needs_review": "The checks ran and passed; a person must complete the evidence.",
    "all_evidence_passed": "Every check that serves it ran and passed.",
}
_MONO_KEYS = ("sha", "hash", "path", "command", "file", "commit")
_LABELS = {"sha256": "SHA-256", "python": "Python", "started_at": "Started", "finished_at": "Finished",
           "duration_s": "Duration"}
#: Texts the view model passes through the translator besides the literal t("...") calls: the catalogue of
#: every report language must hold them (tests/report/test_compliance_report.py).
FIXED_TEXTS = (*(s.value.upper() for s in Status), *_SEVERITY.values(), *_BASIS.values(), *STATUS_LABELS.values(),
               "System", "Owner", "Model version", "Intended purpose", "Risk category", "Task", "Target",
               "Sensitive features", "Frameworks", "Audit date", "Policy", "Gate", "Exit code", "prohibited", "high",
               "limited", "minimal", "binary_classification", "multiclass_classification", *_LABELS.values())
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass
class ReportOutcome:
    """What :func:`write_reports` wrote (format -> path) and which formats failed (format -> message)."""

    paths: dict[str, Path] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- stage 1: the view model


def build_sections(result: AuditResult) -> dict[str, Any]:
    """Turn an audit result into the plain view model the templates render.

    Parameters
    ----------
    result : AuditResult
        The audit to report.

    Returns
    -------
    dict
        ``title``, ``cover`` (name, fields, overall status, counts), ``summary`` (one row per check),
        ``compliance`` (the matrix), ``techdoc`` (the Annex IV draft), ``signoff``, ``checks`` (one section per
        check: failures, errors, warnings, passes, then skipped), ``provenance`` (key/value rows, nested dicts
        indented), ``libraries`` and ``loading_notes``. Every value is a plain str, number, bool, list or dict.
    """
    meta, prov = result.meta or {}, result.provenance or {}
    language = str(meta.get("language") or "en")
    t = translator(language)
    ordered = sorted(result.checks, key=lambda c: _ORDER.index(c.status))
    anchors = _unique([f"check-{_slug(c.check_id, '-')}" for c in ordered])
    checks = [_check_section(c, a, t) for c, a in zip(ordered, anchors, strict=True)]
    warn_gate = (result.gate or {}).get("fail_on") == "warn"
    fields = {
        "System": meta.get("system"), "Owner": meta.get("owner"), "Model version": meta.get("model_version"),
        "Intended purpose": meta.get("intended_purpose"),
        "Risk category": t(str(meta["risk_category"])) if meta.get("risk_category") else None,
        "Task": t(str(meta["task"])) if meta.get("task") else None, "Target": meta.get("target"),
        "Sensitive features": meta.get("sensitive_features"), "Frameworks": meta.get("frameworks"),
        "Audit date": _when(prov.get("started_at")),
        "Policy": meta.get("policy_path") or (prov.get("policy") or {}).get("path"),
        "Gate": t("fails on any FAIL or WARN") if warn_gate else t("fails on any FAIL; warnings allowed"),
        "Exit code": str(result.exit_code),
    }
    counts = result.counts()
    libraries = sorted((prov.get("libraries") or {}).items())
    by_check = {c["id"]: c for c in checks}
    compliance = _compliance(result, by_check, t, language)
    in_matrix = {r["id"]: r["anchor"] for fw in compliance["frameworks"] for r in fw["rows"]}
    for c in checks:
        c["obligation_links"] = [{"id": ob, "anchor": in_matrix.get(ob, "")} for ob in c["obligations"]]
    title = meta.get("title") or t("Model audit report")
    if language != "en" and not meta.get("report_title") and meta.get("name") and \
            title == f"Model audit: {meta.get('name')}":
        title = t("Model audit: {name}", name=meta["name"])
    return _clean({
        "language": language,
        "title": str(title),
        "cover": {"name": str(meta.get("name") or meta.get("system") or t("Unnamed system")),
                  "fields": [{"label": t(k), "value": _cell(v, 0)} for k, v in fields.items() if _cell(v)],
                  "status": _status(result.status, t), "n_checks": len(result.checks),
                  "counts": [{**_status(s, t), "count": counts[s.value]} for s in _ORDER]},
        "summary": [{k: c[k] for k in ("id", "anchor", "title", "status", "summary", "duration")}
                    for c in checks],
        "compliance": compliance,
        "techdoc": annex_iv(result, t, {c["id"]: c["anchor"] for c in checks}),
        "signoff": {"reviewer": str(meta.get("reviewer") or ""), "role": str(meta.get("reviewer_role") or ""),
                    "signed_bundle": bool((meta.get("bundle") or {}).get("signed"))},
        "checks": checks,
        "provenance": _kv_rows({k: v for k, v in prov.items() if k != "libraries"}, t=t),
        "libraries": [{"name": str(k), "version": _cell(v)} for k, v in libraries],
        "loading_notes": [str(n) for n in meta.get("loading_notes") or []],
    })


def _compliance(result: AuditResult, by_check: dict[str, dict[str, Any]], t: Callable[..., str],
                language: str) -> dict[str, Any]:
    """The compliance matrix view: rows per framework, evidence linked to check sections, open items."""
    matrix = result.compliance or assess_result(result.checks, result.meta or {}, language)
    frameworks, open_items, to_complete = [], [], []
    for fw in matrix.get("frameworks") or []:
        rows = []
        for ob in fw.get("obligations") or []:
            evidence = []
            for ev in ob.get("evidence") or []:
                sec = by_check.get(ev["check"])
                st = Status(ev["status"])
                evidence.append({"id": ev["check"] + (f".{ev['metric']}" if ev.get("metric") else ""),
                                 "anchor": sec["anchor"] if sec else "", **_status(st, t)})
            row = {"id": ob["id"], "ref": ob["ref"], "text": ob["text"], "status": ob["status"],
                   "label": t(STATUS_LABELS[ob["status"]]), "basis": t(_BASIS.get(ob.get("basis", ""), "")),
                   "evidence": evidence, "missing": list(ob.get("missing") or []),
                   "attach": ob.get("attach") or "", "anchor": f"ob-{_slug(ob['id'], '-')}"}
            rows.append(row)
            if ob["status"] == "human":
                open_items.append(row)
            elif ob["status"] == "partly":
                to_complete.append(row)
        frameworks.append({"id": fw["id"], "title": fw.get("title") or fw["id"], "rows": rows})
    counts = matrix.get("counts") or {}
    return {"frameworks": frameworks, "open_items": open_items, "to_complete": to_complete,
            "counts": [{"status": s, "label": t(STATUS_LABELS[s]), "count": int(counts.get(s, 0))}
                       for s in STATUS_ORDER]}


def _check_section(c: CheckResult, anchor: str, t: Callable[..., str]) -> dict[str, Any]:
    err = c.error
    return {
        "id": c.check_id, "anchor": anchor, "title": c.title or c.check_id, "status": _status(c.status, t),
        "summary": c.summary, "duration": _duration(c.duration_s),
        "metrics": [_metric_row(m, t) for m in c.metrics if m.group is None],
        "by_group": _group_pivot([m for m in c.metrics if m.group is not None]),
        "findings": [{"severity": f.severity,
                      "severity_label": t(_SEVERITY.get(f.severity, str(f.severity))),
                      "message": f.message, "metric": f.metric, "evidence": _rows_table(f.evidence)}
                     for f in c.findings],
        "figures": [{"id": f.id, "title": f.title, "caption": f.caption, "src": f.data_uri(),
                     "alt": f.alt or f.title or f.caption or f.id} for f in c.figures],
        "tables": [{"id": t.id, "title": t.title, "caption": t.caption,
                    "columns": [str(x) for x in t.columns],
                    "numeric": _numeric_columns(t.rows, len(t.columns)),
                    "rows": [[_cell(v) for v in r] for r in t.rows[:MAX_TABLE_ROWS]],
                    "more": max(0, len(t.rows) - MAX_TABLE_ROWS)} for t in c.tables],
        "notes": [str(n) for n in c.notes],
        "obligations": [str(o) for o in c.obligations],
        "config": _kv_rows(c.config, humanize=False),
        "error": {"type": err.type, "message": err.message, "traceback": err.traceback} if err else None,
    }


def _metric_status(m: Metric) -> Status | None:
    """The judged status, or one from ``passed`` where only that was set; None for an unjudged metric."""
    if m.status is None and m.passed is not None:
        return Status.PASS if m.passed else Status.FAIL
    return m.status


def _metric_row(m: Metric, t: Callable[..., str]) -> dict[str, Any]:
    status = _metric_status(m)
    has_ci = m.ci_low is not None or m.ci_high is not None
    return {"name": m.name, "group": m.group or "", "value": _num(m.value),
            "ci": f"[{_num(m.ci_low)}, {_num(m.ci_high)}]" if has_ci else None,
            "threshold": m.threshold.describe() if m.threshold else "",
            "judged": m.threshold is not None or status is not None,
            "status": _status(status, t) if status else None, "description": m.description, "note": m.note}


def _group_pivot(metrics: Sequence[Metric]) -> dict[str, Any] | None:
    """Per-group metrics as one table: a row per group, a column per metric (interval under the value)."""
    if not metrics:
        return None
    groups = list(dict.fromkeys(str(m.group) for m in metrics))
    names = list(dict.fromkeys(m.name for m in metrics))
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for m in metrics:
        has_ci = m.ci_low is not None or m.ci_high is not None
        cells[(str(m.group), m.name)] = {"value": _num(m.value),
                                         "ci": f"[{_num(m.ci_low)}, {_num(m.ci_high)}]" if has_ci else None}
    rows = [{"group": g, "cells": [cells.get((g, n), {"value": "", "ci": None}) for n in names]}
            for g in groups[:MAX_TABLE_ROWS]]
    return {"columns": names, "rows": rows, "more": max(0, len(groups) - MAX_TABLE_ROWS)}


def _rows_table(rows: Sequence[Any], limit: int = MAX_EVIDENCE_ROWS) -> dict[str, Any] | None:
    """Evidence (a list of dict rows) as columns and at most ``limit`` formatted rows."""
    if not rows:
        return None
    dicts = [{str(k): v for k, v in r.items()} if isinstance(r, Mapping) else {"value": r} for r in rows]
    columns = list(dict.fromkeys(k for d in dicts for k in d))
    raw = [[d.get(col) for col in columns] for d in dicts]
    return {"columns": columns, "numeric": _numeric_columns(raw, len(columns)),
            "rows": [[_cell(v) for v in r] for r in raw[:limit]], "more": max(0, len(rows) - limit)}


def _numeric_columns(rows: Sequence[Sequence[Any]], n: int) -> list[bool]:
    """Which columns hold only numbers (and blanks), to align them right."""
    cols = [[r[i] for r in rows if i < len(r) and r[i] is not None] for i in range(n)]
    return [bool(col) and all(_is_number(v) for v in col) for col in cols]


def _kv_rows(obj: Mapping[str, Any], depth: int = 0, *, humanize: bool = True,
             t: Callable[..., str] | None = None) -> list[dict[str, Any]]:
    """Flatten nested dicts (and lists of dicts) into indented key/value rows, so unknown keys still show.

    ``humanize=False`` keeps keys verbatim (policy options, which a reader may copy back into a policy).
    """
    rows: list[dict[str, Any]] = []
    for key, value in obj.items():
        k = str(key)
        label = _LABELS.get(k, k.replace("_", " ").capitalize()) if humanize else k
        label = t(label) if t else label
        head = {"key": label, "value": "", "depth": depth,
                "mono": any(m in k.lower() for m in _MONO_KEYS), "group": True}
        if isinstance(value, Mapping) and value:
            rows += [head, *_kv_rows(value, depth + 1, humanize=humanize, t=t)]
        elif isinstance(value, list | tuple) and value and all(isinstance(v, Mapping) for v in value):
            rows.append(head)
            for i, item in enumerate(value, 1):
                rows += [{**head, "key": f"#{i}", "depth": depth + 1},
                         *_kv_rows(item, depth + 2, humanize=humanize, t=t)]
        else:
            if k.endswith("_s") and _is_number(value):
                text = _duration(value)
            elif k == "command" and isinstance(value, list | tuple):
                text = shlex.join(str(v) for v in value)
            else:
                text = "\u2014" if value is None else _cell(value, 0)
            rows.append({**head, "value": text, "group": False})
    return rows


# --------------------------------------------------------------------------- formatting helpers


def _clean(obj: Any) -> Any:
    """Drop terminal colour codes and control characters from every string (HTML and fonts reject them)."""
    if isinstance(obj, str):
        return _CONTROL.sub("", _ANSI.sub("", obj))
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def _status(s: Status, t: Callable[..., str]) -> dict[str, str]:
    return {"status": s.value, "label": t(s.value.upper()), "icon": _ICONS[s]}


def _is_number(x: Any) -> bool:
    if hasattr(x, "item") and hasattr(x, "dtype"):  # numpy scalar
        x = x.item()
    return isinstance(x, int | float) and not isinstance(x, bool)


def _num(x: Any) -> str:
    """A number with 4 significant digits; ``n/a`` for missing or non-finite values."""
    if x is None:
        return "n/a"
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    return f"{f:.4g}" if math.isfinite(f) else "n/a"


def _cell(x: Any, limit: int = 200) -> str:
    """Any value as display text, cut to ``limit`` characters (0: no limit)."""
    if hasattr(x, "item") and hasattr(x, "dtype"):  # numpy scalar
        x = x.item()
    if x is None:
        text = ""
    elif isinstance(x, bool):
        text = "yes" if x else "no"
    elif isinstance(x, int):
        text = str(x)
    elif isinstance(x, float):
        text = _num(x)
    elif isinstance(x, Mapping):
        text = ", ".join(f"{k}: {_cell(v, 0)}" for k, v in x.items())
    elif isinstance(x, list | tuple | set | frozenset):
        text = ", ".join(_cell(v, 0) for v in x)
    else:
        text = str(x.value if isinstance(x, Status) else x)
    return text if not limit or len(text) <= limit else text[: limit - 1] + "\u2026"


def _duration(seconds: Any) -> str:
    s = float(seconds or 0.0)
    if s < 60:
        return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"
    minutes, rest = divmod(int(round(s)), 60)
    return f"{minutes} min {rest} s"


def _when(value: Any) -> str | None:
    if not value:
        return None
    try:
        t = _dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    return t.strftime("%Y-%m-%d %H:%M") + (f" {t.tzname()}" if t.tzinfo else "")


def _slug(text: str, fill: str = "_") -> str:
    """A safe file-name / HTML-id fragment: letters, digits, ``_ . -`` only; never empty or ``..``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", fill, str(text)).strip("._-") or "item"


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        seen[n] = seen.get(n, 0) + 1
        names[i] = n if seen[n] == 1 else f"{n}-{seen[n]}"
    return names


# --------------------------------------------------------------------------- stage 2: rendering


def _template_dir() -> Path:
    here = Path(__file__).resolve().parent.parent / "report_templates"
    if here.is_dir():
        return here
    from importlib.resources import files  # installed layout: report_templates as package data

    return Path(str(files("report_templates")))


@functools.lru_cache(maxsize=1)
def _environment() -> Environment:
    # "j2" makes autoescape apply to the *.html.j2 templates (select_autoescape matches the last suffix)
    return Environment(loader=FileSystemLoader(_template_dir()),
                       autoescape=select_autoescape(["html", "xml", "j2"]),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(result: AuditResult, *, media: Literal["screen", "print"] = "screen") -> str:
    """Render the report as one self-contained HTML document.

    Parameters
    ----------
    result : AuditResult
        The audit to report.
    media : {"screen", "print"}, default "screen"
        ``"print"`` is the variant fed to the PDF renderer: it drops screen-only navigation links.

    Returns
    -------
    str
        HTML with the CSS inlined and figures as ``data:`` URIs; no external URL, no script.
    """
    if media not in ("screen", "print"):
        raise ValueError(f"media must be 'screen' or 'print'; got {media!r}")
    css = Markup((_template_dir() / "report.css").read_text(encoding="utf-8"))  # our own file, not user data
    template = _environment().get_template("report.html.j2")
    doc = build_sections(result)
    return template.render(doc=doc, css=css, media=media, _=translator(doc["language"]))


def _local_only_fetcher() -> Any:
    """A WeasyPrint URL fetcher that serves ``data:`` URIs and refuses everything else."""
    try:
        from weasyprint.urls import URLFetcher  # WeasyPrint >= 68
    except ImportError:
        from weasyprint import default_url_fetcher

        def fetch(url: str, *args: Any, **kwargs: Any) -> Any:
            if not url.startswith("data:"):
                raise ValueError(f"the report must be self-contained; refusing to fetch {url[:80]!r}")
            return default_url_fetcher(url, *args, **kwargs)

        return fetch
    return URLFetcher(allowed_protocols={"data"})


def render_pdf(result: AuditResult) -> bytes:
    """Render the report as PDF: the HTML of :func:`render_html` with its print CSS, via WeasyPrint.

    Parameters
    ----------
    result : AuditResult
        The audit to report.

    Returns
    -------
    bytes
        The PDF (A4, "Page X of Y" footers). Nothing is fetched from outside the document.
    """
    import weasyprint  # heavy import; only when a PDF is wanted

    html = render_html(result, media="print")
    return weasyprint.HTML(string=html, url_fetcher=_local_only_fetcher()).write_pdf()


_XML_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _x(text: Any) -> str:
    """Text XML 1.0 can hold (ElementTree escapes markup but not control characters)."""
    return _XML_BAD.sub("\ufffd", _ANSI.sub("", str(text)))


def render_junit(result: AuditResult) -> str:
    """Render the audit as JUnit XML: one test case per check, and one per threshold the policy judged.

    The first suite, ``xai-audit``, has a case per check; the second, ``xai-audit.thresholds``, a case per
    judged metric (``<check>.<metric>``), failed when the metric failed its threshold, so that CI systems list
    each broken threshold by name and track it across runs.

    Parameters
    ----------
    result : AuditResult
        The audit to report.

    Returns
    -------
    str
        The XML document. FAIL -> ``<failure>``, ERROR -> ``<error>``, SKIPPED -> ``<skipped>``; WARN passes
        with the warnings in ``<system-out>``.
    """
    counts, total = result.counts(), sum(c.duration_s for c in result.checks)
    attrs = {"name": "xai-audit", "tests": str(len(result.checks)), "failures": str(counts["fail"]),
             "errors": str(counts["error"]), "skipped": str(counts["skipped"]), "time": f"{total:.3f}"}
    judged = [(c, m) for c in result.checks for m in c.metrics if m.group is None and m.threshold is not None]
    failed = [(c, m) for c, m in judged if _metric_status(m) is Status.FAIL]
    failed_ids = {id(m) for _, m in failed}
    root = ET.Element("testsuites", {**attrs, "tests": str(len(result.checks) + len(judged)),
                                     "failures": str(counts["fail"] + len(failed))})
    suite = ET.SubElement(root, "testsuite", attrs)
    if (result.provenance or {}).get("started_at"):
        suite.set("timestamp", _x(result.provenance["started_at"]))
    props = ET.SubElement(suite, "properties")
    for key in ("name", "system", "owner", "risk_category", "policy_path"):
        if (result.meta or {}).get(key):
            ET.SubElement(props, "property", name=key, value=_x(result.meta[key]))
    ET.SubElement(props, "property", name="status", value=result.status.value)
    for c in result.checks:
        case = ET.SubElement(suite, "testcase", classname=_x(f"audit.{c.check_id}"), name=_x(c.check_id),
                             time=f"{c.duration_s:.3f}")
        if c.status is Status.FAIL:
            el = ET.SubElement(case, "failure", message=_x(c.summary or "thresholds not met"),
                               type="threshold")
            el.text = _x(_problems(c, Status.FAIL))
        elif c.status is Status.ERROR:
            err = c.error
            el = ET.SubElement(case, "error", message=_x(f"{err.type}: {err.message}" if err else c.summary),
                               type=_x(err.type if err else "error"))
            el.text = _x(err.traceback if err and err.traceback else c.summary)
        elif c.status is Status.SKIPPED:
            ET.SubElement(case, "skipped", message=_x(c.summary or "skipped"))
        elif c.status is Status.WARN:
            ET.SubElement(case, "system-out").text = _x(_problems(c, Status.WARN))
    if judged:
        th = ET.SubElement(root, "testsuite", {"name": "xai-audit.thresholds", "tests": str(len(judged)),
                                               "failures": str(len(failed)), "errors": "0", "skipped": "0",
                                               "time": "0.000"})
        for c, m in judged:
            case = ET.SubElement(th, "testcase", classname=_x(f"audit.{c.check_id}.thresholds"),
                                 name=_x(f"{c.check_id}.{m.name}"), time="0.000")
            line = f"{m.name} = {_num(m.value)}, threshold {m.threshold.describe() if m.threshold else ''}"
            if id(m) in failed_ids:
                el = ET.SubElement(case, "failure", message=_x(line), type="threshold")
                el.text = _x("\n".join([line, *(f.message for f in c.findings if f.metric == m.name)]))
            else:
                status = m.status.value if m.status else "pass"
                ET.SubElement(case, "system-out").text = _x(f"{line}: {status}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _problems(c: CheckResult, level: Status) -> str:
    """Plain-text list of the metrics at ``level`` and the findings that explain them."""
    lines = [c.summary] if c.summary else []
    for m in c.metrics:
        if _metric_status(m) is level:
            bound = f" (threshold {m.threshold.describe()})" if m.threshold else ""
            group = f" [{m.group}]" if m.group else ""
            lines.append(f"- metric {m.name}{group} = {_num(m.value)}{bound}: {level.value}")
    wanted = {"fail", "warn"} if level is Status.FAIL else {"warn"}
    lines += [f"- [{f.severity}] {f.message}" for f in c.findings if f.severity in wanted]
    return "\n".join(lines)


# --------------------------------------------------------------------------- writing files


def write_reports(result: AuditResult, out_dir: Path, formats: Sequence[str]) -> ReportOutcome:
    """Write the requested reports into ``out_dir``, each atomically.

    Parameters
    ----------
    result : AuditResult
        The audit to report.
    out_dir : pathlib.Path
        Destination folder (created if missing).
    formats : sequence of {"html", "pdf", "json", "junit"}
        Which files to write: ``report.html``, ``report.pdf``, ``result.json``, ``junit.xml``. With
        ``"json"``, figures go to ``figures/<check_id>-<figure_id>.<ext>`` and ``result.json`` names them.

    Returns
    -------
    ReportOutcome
        Paths written, and an error message per format that could not be written; a failure in one format
        never prevents the others.

    Raises
    ------
    ValueError
        If ``formats`` names an unknown format.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown report format(s) {unknown}; expected a subset of {list(FORMATS)}")
    out_dir, outcome = Path(out_dir), ReportOutcome()
    renderers: dict[str, Callable[[], str | bytes]] = {
        "html": lambda: render_html(result), "pdf": lambda: render_pdf(result),
        "json": lambda: result.to_json(_write_figures(result, out_dir, outcome)),
        "junit": lambda: render_junit(result),
    }
    for fmt in (f for f in FORMATS if f in formats):
        dest = out_dir / FILE_NAMES[fmt]
        try:
            data = renderers[fmt]()
            if isinstance(data, bytes):
                atomic_write_bytes(dest, data)
            else:
                atomic_write_text(dest, data)
        except Exception as exc:  # noqa: BLE001 - one format failing must not lose the others
            log.warning("could not write %s: %s: %s", dest, type(exc).__name__, exc, exc_info=True)
            outcome.errors[fmt] = f"{type(exc).__name__}: {exc}"
            # a report left by an earlier audit must not pass for this one's
            dest.unlink(missing_ok=True)
        else:
            outcome.paths[fmt] = dest
    return outcome


def _write_figures(result: AuditResult, out_dir: Path, outcome: ReportOutcome) -> dict[str, dict[str, str]]:
    """Write every figure under ``out_dir/figures``; return check id -> figure id -> relative path."""
    files: dict[str, dict[str, str]] = {}
    used: set[str] = set()
    for c in result.checks:
        for f in c.figures:
            stem = f"{_slug(c.check_id)}-{_slug(f.id)}"
            name, n = f"{stem}.{f.extension}", 1
            while name in used:
                n += 1
                name = f"{stem}-{n}.{f.extension}"
            used.add(name)
            try:
                atomic_write_bytes(out_dir / "figures" / name, f.data)
            except OSError as exc:
                outcome.errors[f"figure:{c.check_id}/{f.id}"] = f"{type(exc).__name__}: {exc}"
            else:
                files.setdefault(c.check_id, {})[f.id] = f"figures/{name}"
    return files
