"""A draft of the technical documentation after EU AI Act Annex IV, from what one audit knows.

:func:`describe_data` records the data description (sizes, class balance, sensitive groups) in the result's
metadata while the data is at hand; :func:`annex_iv` builds the draft's sections from an
:class:`~audit.results.AuditResult` alone (the report reads nothing else). Points the policy does not give
are marked "to be completed": the draft is a start for the provider's documentation, not a substitute.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from audit.results import AuditResult, Status

log = logging.getLogger(__name__)

MAX_GROUPS = 20


def describe_data(ctx: Any) -> dict[str, Any]:
    """Sizes, class balance and sensitive-group sizes of each data split (for Annex IV 2(d)).

    Parameters
    ----------
    ctx : AuditContext
        The audit's context (its splits, target and sensitive features).

    Returns
    -------
    dict
        ``{"n_features": int, "splits": {split: {"rows", "class_counts", "sensitive"}}}``; empty parts where
        the data does not allow them (e.g. image data without a target column).
    """
    out: dict[str, Any] = {"n_features": len(getattr(ctx, "features", []) or []), "splits": {}}
    for split in getattr(ctx, "splits", []):
        entry: dict[str, Any] = {}
        try:
            y = np.asarray(ctx.y(split))
            entry["rows"] = int(len(y))
            labels, counts = np.unique(y.astype(str), return_counts=True)
            entry["class_counts"] = {str(k): int(n) for k, n in zip(labels, counts, strict=True)}
        except Exception as exc:  # noqa: BLE001 - a description must never break an audit
            log.debug("no class balance for %s: %s", split, exc)
        try:
            sens = ctx.sensitive(split)
            entry["sensitive"] = {
                str(col): {str(k): int(n) for k, n in sens[col].astype(str).value_counts().head(MAX_GROUPS).items()}
                for col in sens.columns}
        except Exception as exc:  # noqa: BLE001
            log.debug("no sensitive groups for %s: %s", split, exc)
        out["splits"][split] = entry
    return out


def annex_iv(result: AuditResult, t: Callable[..., str], anchors: dict[str, str]) -> list[dict[str, Any]]:
    """The Annex IV draft as report sections.

    Parameters
    ----------
    result : AuditResult
        The audit.
    t : callable
        The report's translator (``t("text")``).
    anchors : dict
        Check id -> the HTML anchor of its section, for links.

    Returns
    -------
    list of dict
        One section per Annex IV point: ``ref``, ``title``, ``fields`` (``label``, ``value``, ``todo``) and
        optional ``tables`` (``columns``, ``rows``) and ``links`` (check results).
    """
    meta, prov = result.meta or {}, result.provenance or {}
    todo = t("to be completed")

    def field(label: str, value: Any) -> dict[str, Any]:
        if isinstance(value, list | tuple):
            value = ", ".join(str(v) for v in value)
        text = "" if value is None else str(value).strip()
        return {"label": t(label), "value": text or todo, "todo": not text}

    model = prov.get("model") or {}
    data_desc = meta.get("data_description") or {}
    splits = data_desc.get("splits") or {}
    split_rows = [[s, _int(d.get("rows") or (prov.get("data") or {}).get(s, {}).get("rows")),
                   ", ".join(f"{k}: {v} ({_pct(v, d.get('rows'))})" for k, v in (d.get("class_counts") or {}).items())]
                  for s, d in splits.items()]
    sens_rows = [[s, col, ", ".join(f"{k}: {v}" for k, v in groups.items())]
                 for s, d in splits.items() for col, groups in (d.get("sensitive") or {}).items()]
    tables = []
    if split_rows:
        tables.append({"title": t("Data splits and class balance"),
                       "columns": [t("Split"), t("Rows"), t("Class balance")], "rows": split_rows})
    if sens_rows:
        tables.append({"title": t("Sensitive groups"),
                       "columns": [t("Split"), t("Feature"), t("Group sizes")], "rows": sens_rows})
    ran = [c for c in result.checks if c.status is not Status.SKIPPED]
    links = [{"id": c.check_id, "title": c.title or c.check_id, "anchor": anchors.get(c.check_id, ""),
              "status": c.status.value, "label": t(c.status.value.upper()),
              "metrics": ", ".join(f"{m.name} {_fmt(m.value)} ({m.threshold.describe()})"
                                   for m in c.metrics if m.group is None and m.threshold is not None)}
             for c in ran]
    bundle = meta.get("bundle") or {}
    sections = [
        {"ref": "1", "title": t("General description of the AI system"), "fields": [
            field("Intended purpose", meta.get("intended_purpose")),
            field("Provider", meta.get("provider")),
            field("Owner", meta.get("owner")),
            field("System", meta.get("system")),
            field("System version", meta.get("system_version")),
            field("Model", meta.get("name")),
            field("Model version", meta.get("model_version")),
            field("Risk category", t(str(meta["risk_category"])) if meta.get("risk_category") else None),
            field("Description", meta.get("description")),
        ]},
        {"ref": "2(a)", "title": t("Methods and steps of development"), "fields": [
            field("Development process", meta.get("development")),
            field("Model format", model.get("format") or model.get("kind")),
            field("Model file SHA-256", model.get("sha256")),
        ]},
        {"ref": "2(b)", "title": t("Design specifications and logic"), "fields": [
            field("Task", t(str(meta["task"])) if meta.get("task") else None),
            field("Target", meta.get("target")),
            field("Labels", meta.get("labels")),
            field("Model inputs", f"{len(meta.get('features') or [])}: " + ", ".join(meta.get("features") or [])
                  if meta.get("features") else None),
            field("Main design choices", None),
        ]},
        {"ref": "2(d)", "title": t("Data requirements and data description"), "fields": [
            field("Data provenance", meta.get("data_provenance")),
            field("Sensitive features", meta.get("sensitive_features")),
        ], "tables": tables},
        {"ref": "2(e)", "title": t("Human oversight measures"), "fields": [
            field("Human oversight", meta.get("human_oversight")),
        ]},
        {"ref": "2(g)", "title": t("Validation and testing"), "fields": [
            field("Audit date", (prov.get("started_at") or "")[:10]),
            field("Seed", prov.get("seed")),
            field("Signed bundle", t("manifest.json and manifest.sig (Ed25519)") if bundle.get("signed") else None),
        ], "links": links},
        {"ref": "3", "title": t("Monitoring, functioning and control"), "fields": [
            field("Known limitations", meta.get("limitations")),
        ]},
        {"ref": "5", "title": t("Risk management system"), "fields": [
            field("Risk management", meta.get("risk_management")),
        ]},
        {"ref": "7", "title": t("Standards applied"), "fields": [
            field("Standards", meta.get("standards")),
        ]},
        {"ref": "9", "title": t("Post-market monitoring"), "fields": [
            field("Monitoring plan", meta.get("monitoring")),
        ]},
    ]
    return [{"tables": [], "links": [], **sec} for sec in sections]


def _int(x: Any) -> str:
    return "" if x is None else str(int(x))


def _pct(n: Any, total: Any) -> str:
    try:
        return f"{100 * float(n) / float(total):.1f}%"
    except (TypeError, ValueError, ZeroDivisionError):
        return "n/a"


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):.4g}"
