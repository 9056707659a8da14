"""What an audit produces: the only thing reports and other tools read.

``CheckResult`` is what one check returns (metrics, findings, figures, tables, notes); the core judges its
metrics against the policy's thresholds and fills in the status. ``AuditResult`` collects the check results,
the audit's metadata and the provenance, and serialises to ``result.json`` (a versioned contract).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = "1.0"


class Status(str, Enum):
    """Outcome of a check, a metric or the whole audit."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"
    SKIPPED = "skipped"

    @property
    def rank(self) -> int:
        """Severity order used to combine statuses: the worst wins."""
        return _RANK[self]

    @staticmethod
    def worst(statuses: Iterable[Status], default: Status | None = None) -> Status:
        """The most severe of ``statuses`` (``default``, else PASS, when empty)."""
        return max(statuses, key=lambda s: s.rank, default=default or Status.PASS)


_RANK = {Status.SKIPPED: 0, Status.PASS: 1, Status.WARN: 2, Status.FAIL: 3, Status.ERROR: 4}


class Threshold(BaseModel):
    """A bound on one metric, as written in the policy: ``{min: 0.8}``, ``{max: 0.1, warn_margin: 0.02}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: float | None = Field(None, description="The metric must be at least this.")
    max: float | None = Field(None, description="The metric must be at most this.")
    warn_margin: float = Field(
        0.0, ge=0, description="Within this distance of a bound, a pass becomes a warning."
    )
    severity: Literal["fail", "warn"] = Field(
        "fail", description="What missing the bound means: 'fail' (the default) or 'warn' (an advisory bound, "
        "e.g. on the stability of a random explanation method)."
    )

    @model_validator(mode="after")
    def _one_bound(self) -> Threshold:
        if self.min is None and self.max is None:
            raise ValueError("a threshold needs 'min' or 'max' (or both)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"'min' ({self.min}) is greater than 'max' ({self.max})")
        return self

    def describe(self) -> str:
        """Human-readable form, e.g. ``>= 0.8``, ``in [0.2, 0.4]`` or ``>= 0.7 (advisory)``."""
        return describe_bound(self.min, self.max, self.severity)


def describe_bound(low: float | None, high: float | None, severity: str = "fail") -> str:
    """A threshold's bounds in words (``>= 0.8``, ``in [0.2, 0.4]``, ``>= 0.7 (advisory)``; ``""`` for none).

    Shared by :meth:`Threshold.describe` and readers of ``result.json`` thresholds (``audit diff``).
    """
    if low is not None and high is not None:
        text = f"in [{_fmt(low)}, {_fmt(high)}]"
    elif low is not None:
        text = f">= {_fmt(low)}"
    elif high is not None:
        text = f"<= {_fmt(high)}"
    else:
        return ""
    return f"{text} (advisory)" if severity == "warn" else text


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


@dataclass(frozen=True)
class Metric:
    """One number a check measured.

    Checks fill ``name``, ``value`` and, where meaningful, ``ci_low``/``ci_high``, ``group`` and
    ``description``. The core fills ``threshold``, ``passed`` and ``status`` when it judges the metric.
    Only metrics without a ``group`` are judged against the policy's thresholds.
    """

    name: str
    value: float | None
    group: str | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    description: str = ""
    threshold: Threshold | None = None
    passed: bool | None = None
    status: Status | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``metrics[]`` entries of ``result.json``)."""
        d: dict[str, Any] = {
            "name": self.name,
            "value": _num(self.value),
            "group": self.group,
            "threshold": self.threshold.model_dump() if self.threshold else None,
            "passed": self.passed,
            "status": self.status.value if self.status else None,
        }
        if self.ci_low is not None or self.ci_high is not None:
            d["ci_low"], d["ci_high"] = _num(self.ci_low), _num(self.ci_high)
        if self.description:
            d["description"] = self.description
        if self.note:
            d["note"] = self.note
        return d


Severity = Literal["info", "warn", "fail"]


@dataclass(frozen=True)
class Finding:
    """Something a reviewer should read: the rule, its number, and the evidence (rows, samples, groups)."""

    severity: Severity
    message: str
    metric: str | None = None
    evidence: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"severity": self.severity, "message": self.message, "metric": self.metric,
                "evidence": _jsonable(self.evidence)}


@dataclass(frozen=True)
class Figure:
    """A picture: SVG or PNG bytes with a title, a caption and alt text for screen readers."""

    id: str
    title: str
    data: bytes
    media_type: Literal["image/svg+xml", "image/png"] = "image/svg+xml"
    caption: str = ""
    alt: str = ""

    @property
    def extension(self) -> str:
        """File extension matching the media type."""
        return "svg" if self.media_type == "image/svg+xml" else "png"

    def data_uri(self) -> str:
        """The figure as a ``data:`` URI, for self-contained HTML."""
        return f"data:{self.media_type};base64,{base64.b64encode(self.data).decode('ascii')}"

    def to_dict(self, file: str | None = None) -> dict[str, Any]:
        """JSON-ready metadata; the bytes go to ``file`` next to ``result.json``."""
        return {"id": self.id, "title": self.title, "caption": self.caption, "alt": self.alt,
                "media_type": self.media_type, "file": file}


@dataclass(frozen=True)
class Table:
    """A small table (per-group metrics, a confusion matrix, candidate rows)."""

    id: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    caption: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"id": self.id, "title": self.title, "caption": self.caption, "columns": list(self.columns),
                "rows": _jsonable(self.rows)}


@dataclass(frozen=True)
class ErrorInfo:
    """What went wrong in a check that raised."""

    type: str
    message: str
    traceback: str = ""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check. Checks build it with their data; the runner adds status, timing, errors."""

    check_id: str
    title: str = ""
    status: Status = Status.PASS
    summary: str = ""
    metrics: list[Metric] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    obligations: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    error: ErrorInfo | None = None

    def with_(self, **changes: Any) -> CheckResult:
        """A copy with some fields changed (results are frozen)."""
        return replace(self, **changes)

    def to_dict(self, figure_files: dict[str, str] | None = None) -> dict[str, Any]:
        """JSON-ready form (the ``checks[]`` entries of ``result.json``)."""
        files = figure_files or {}
        return {
            "id": self.check_id,
            "title": self.title,
            "status": self.status.value,
            "summary": self.summary,
            "metrics": [m.to_dict() for m in self.metrics],
            "findings": [f.to_dict() for f in self.findings],
            "figures": [f.to_dict(files.get(f.id)) for f in self.figures],
            "tables": [t.to_dict() for t in self.tables],
            "notes": list(self.notes),
            "obligations": list(self.obligations),
            "config": _jsonable(self.config),
            "duration_s": round(self.duration_s, 4),
            "error": asdict(self.error) if self.error else None,
        }


@dataclass(frozen=True)
class AuditResult:
    """Everything one audit found. ``to_dict()`` is the ``result.json`` contract."""

    status: Status
    exit_code: int
    meta: dict[str, Any]
    checks: list[CheckResult]
    provenance: dict[str, Any]
    gate: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    #: The compliance matrix (``audit.compliance.assess``): frameworks -> obligations with a status each.
    compliance: dict[str, Any] = field(default_factory=dict)

    def check(self, check_id: str) -> CheckResult:
        """The result of the check with this id (``KeyError`` if it did not run)."""
        for c in self.checks:
            if c.check_id == check_id:
                return c
        raise KeyError(f"no check {check_id!r} in this audit; ran: {[c.check_id for c in self.checks]}")

    def counts(self) -> dict[str, int]:
        """How many checks ended in each status."""
        out = {s.value: 0 for s in Status}
        for c in self.checks:
            out[c.status.value] += 1
        return out

    def to_dict(self, figure_files: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
        """JSON-ready form; ``figure_files`` maps check id -> figure id -> relative file path."""
        files = figure_files or {}
        return {
            "schema_version": SCHEMA_VERSION,
            "status": self.status.value,
            "exit_code": int(self.exit_code),
            "audit": _jsonable(self.meta),
            "summary": self.counts(),
            "gate": _jsonable(self.gate),
            "checks": [c.to_dict(files.get(c.check_id)) for c in self.checks],
            "compliance": _jsonable(self.compliance),
            "provenance": _jsonable(self.provenance),
        }

    def to_json(self, figure_files: dict[str, dict[str, str]] | None = None) -> str:
        """``result.json`` text (strict JSON: NaN and infinities become null)."""
        return json.dumps(self.to_dict(figure_files), indent=2, ensure_ascii=False, allow_nan=False)


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _jsonable(obj: Any) -> Any:
    """Turn numpy scalars, tuples, sets, Enums and non-finite floats into plain JSON values."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, BaseModel):
        return _jsonable(obj.model_dump())
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return _num(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return _jsonable(obj.item())
    if hasattr(obj, "tolist"):  # numpy array
        return _jsonable(obj.tolist())
    return str(obj)
