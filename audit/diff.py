"""Compare two audits of the same system: metric deltas and status changes, a regression gate for CI.

``audit diff old/result.json new/result.json`` reads two ``result.json`` files (the versioned contract, not
Python objects), lines up checks by id and judged metrics by name, and says which statuses got worse. A check
got worse when its status is more severe (skipped < pass < warn < fail < error), or when a check that gave
evidence before (pass, warn or fail) no longer runs (skipped or removed): a gate must not turn green because
a failing check was dropped.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from audit.results import Status, describe_bound

_RANK = {s.value: s.rank for s in Status}
_EVIDENCE = {"pass", "warn", "fail"}


@dataclass
class MetricDelta:
    """One judged metric in both audits."""

    check: str
    metric: str
    old: float | None
    new: float | None
    delta: float | None
    old_status: str | None
    new_status: str | None
    threshold: str = ""


@dataclass
class CheckChange:
    """One check's status in both audits (``None``: absent from that audit)."""

    check: str
    old: str | None
    new: str | None
    worse: bool
    better: bool


@dataclass
class AuditDiff:
    """Everything that differs between two audits."""

    old: dict[str, Any]
    new: dict[str, Any]
    checks: list[CheckChange] = field(default_factory=list)
    metrics: list[MetricDelta] = field(default_factory=list)
    obligations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def regressed(self) -> list[CheckChange]:
        """Checks whose status got worse."""
        return [c for c in self.checks if c.worse]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"old": self.old, "new": self.new, "regressed": [c.check for c in self.regressed],
                "checks": [asdict(c) for c in self.checks], "metrics": [asdict(m) for m in self.metrics],
                "obligations": self.obligations}


def load_result(path: str | Path) -> dict[str, Any]:
    """Read a ``result.json``; ``ValueError`` naming the file when it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file; give the result.json of an audit") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or "checks" not in data or "schema_version" not in data:
        raise ValueError(f"{path}: not an audit result (no schema_version/checks); give an audit's result.json")
    return data


def _worse(old: str | None, new: str | None) -> bool:
    if old is None:
        return False  # a check new to this audit is shown, not counted
    if old == "skipped":
        return new in ("fail", "error")
    if new is None or new == "skipped":
        return old in _EVIDENCE
    return _RANK[new] > _RANK[old]


def _better(old: str | None, new: str | None) -> bool:
    if old in (None, "skipped") or new in (None, "skipped"):
        return False
    return _RANK[new] < _RANK[old]


def diff_results(old: dict[str, Any], new: dict[str, Any]) -> AuditDiff:
    """Compare two ``result.json`` documents (as loaded by :func:`load_result`)."""
    def head(d: dict[str, Any]) -> dict[str, Any]:
        return {"name": (d.get("audit") or {}).get("name"), "status": d.get("status"),
                "started_at": (d.get("provenance") or {}).get("started_at"),
                "model_sha256": ((d.get("provenance") or {}).get("model") or {}).get("sha256")}

    out = AuditDiff(old=head(old), new=head(new))
    old_checks = {c["id"]: c for c in old.get("checks", [])}
    new_checks = {c["id"]: c for c in new.get("checks", [])}
    for cid in list(dict.fromkeys([*old_checks, *new_checks])):
        o, n = old_checks.get(cid), new_checks.get(cid)
        os_, ns = (o or {}).get("status"), (n or {}).get("status")
        out.checks.append(CheckChange(cid, os_, ns, _worse(os_, ns), _better(os_, ns)))
        om = {m["name"]: m for m in (o or {}).get("metrics", []) if m.get("group") is None}
        nm = {m["name"]: m for m in (n or {}).get("metrics", []) if m.get("group") is None}
        for name in list(dict.fromkeys([*om, *nm])):
            a, b = om.get(name) or {}, nm.get(name) or {}
            av, bv = a.get("value"), b.get("value")
            delta = bv - av if isinstance(av, int | float) and isinstance(bv, int | float) else None
            if delta is not None and not math.isfinite(delta):
                delta = None
            th = b.get("threshold") or a.get("threshold") or {}
            out.metrics.append(MetricDelta(cid, name, av, bv, delta, a.get("status"), b.get("status"),
                                           describe_bound(th.get("min"), th.get("max"), th.get("severity", "fail"))))
    old_ob = _obligations(old)
    for ob_id, st in (_obligations(new) if old_ob else {}).items():  # an older result has no matrix
        if old_ob.get(ob_id) != st:
            out.obligations.append({"id": ob_id, "old": old_ob.get(ob_id), "new": st})
    return out


def _obligations(d: dict[str, Any]) -> dict[str, str]:
    return {ob["id"]: ob["status"] for fw in (d.get("compliance") or {}).get("frameworks", [])
            for ob in fw.get("obligations", [])}


def _n(x: Any, signed: bool = False) -> str:
    if not isinstance(x, int | float):
        return "-"
    return f"{x:+.4g}" if signed else f"{x:.4g}"


def _rows(d: AuditDiff) -> tuple[list[str], list[list[str]]]:
    cols = ["check", "metric", "old", "new", "delta", "threshold", "status"]
    rows: list[list[str]] = []
    for c in d.checks:
        mark = "WORSE" if c.worse else ("better" if c.better else ("" if c.old == c.new else "changed"))
        change = f"{c.old or 'absent'} -> {c.new or 'absent'} {mark}".strip()
        rows.append([c.check, "(check)", c.old or "absent", c.new or "absent", "", "",
                     change if c.old != c.new else c.new or ""])
    for m in d.metrics:
        st = m.new_status or ""
        if m.old_status != m.new_status:
            st = f"{m.old_status or '-'} -> {m.new_status or '-'}"
        rows.append([m.check, m.metric, _n(m.old), _n(m.new), _n(m.delta, True), m.threshold, st])
    return cols, rows


def render_text(d: AuditDiff) -> str:
    """A plain-text table for terminals."""
    cols, rows = _rows(d)
    widths = [max(len(str(x)) for x in [c, *(r[i] for r in rows)]) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))
    out = [f"old: {d.old['name']} {d.old['status']} ({d.old['started_at']})",
           f"new: {d.new['name']} {d.new['status']} ({d.new['started_at']})", "", line, "-" * len(line)]
    out += ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if d.obligations:
        out += ["", "obligations whose status changed:"]
        out += [f"  {o['id']}: {o['old'] or 'absent'} -> {o['new']}" for o in d.obligations]
    reg = d.regressed
    out += ["", f"{len(reg)} check(s) got worse: {', '.join(c.check for c in reg)}" if reg
            else "no check got worse"]
    return "\n".join(out) + "\n"


def render_markdown(d: AuditDiff) -> str:
    """A Markdown table (for a pull-request comment)."""
    cols, rows = _rows(d)
    esc = [[str(v).replace("|", "\\|") for v in r] for r in rows]
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in esc]
    reg = d.regressed
    out += ["", f"**{len(reg)} check(s) got worse:** {', '.join(c.check for c in reg)}" if reg
            else "No check got worse."]
    return "\n".join(out) + "\n"
