"""Regulatory frameworks as data, and the compliance matrix that maps an audit's results onto them.

A framework file (``policies/frameworks/*.yaml``, or a user's own file named by ``audit.framework_files``)
lists obligations: a stable id, the article reference, a paraphrase in this project's words, the evidence
that serves it (check ids, or ``check_id.metric``) and whether a check can evidence it at all. Files are
validated like the policy, with ``file:line:col`` errors.

:func:`assess` turns check results into one row per obligation with a status that is never green by default:

- ``not_met``: a check (or metric) that serves the obligation failed;
- ``met``: the obligation can be evidenced automatically and every evidence it lists ran and passed;
- ``partly``: some evidence ran and passed, but the obligation needs more than a check can show, or some of
  its evidence did not run;
- ``human``: nothing ran that evidences it, or no check can evidence it: an open item for the reviewer, with
  what to attach.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from audit.errors import Issue, PolicyError
from audit.results import CheckResult, Status

_SOURCE_DIR = Path(__file__).resolve().parent.parent / "policies" / "frameworks"

ComplianceStatus = Literal["met", "not_met", "partly", "human"]
#: Display order of the matrix's statuses, most urgent first.
STATUS_ORDER: tuple[ComplianceStatus, ...] = ("not_met", "human", "partly", "met")
STATUS_LABELS: dict[str, str] = {"met": "Met by evidence", "not_met": "Not met", "partly": "Partly evidenced",
                                 "human": "Needs human assessment"}


def frameworks_dir() -> Path:
    """The folder of the built-in framework files.

    ``policies/frameworks/`` in a source checkout; in an installed wheel the same files ship as package data
    of ``policies.frameworks``.
    """
    if _SOURCE_DIR.is_dir():
        return _SOURCE_DIR
    return Path(str(files("policies.frameworks")))  # pragma: no cover - installed layout


class FrameworkError(PolicyError):
    """A framework file is invalid; holds every issue, each with ``file:line:col``."""

    def __init__(self, issues: list[Issue]):
        super().__init__(issues)
        n = len(self.issues)
        head = f"the framework file has {n} problem{'s' if n != 1 else ''}:"
        Exception.__init__(self, "\n".join([head, *(f"  {i}" for i in self.issues)]))


# --------------------------------------------------------------------------- the schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ObligationText(_Strict):
    """An obligation's texts in another language."""

    text: str = Field(..., min_length=1, description="The paraphrase, translated.")
    attach: str | None = Field(None, description="What to attach, translated.")
    ref: str | None = Field(None, description="The reference, translated (default: the English one).")


class Obligation(_Strict):
    """One obligation of a framework."""

    id: str = Field(..., pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)+$",
                    description="Stable id, '<framework>.<article...>', e.g. eu_ai_act.art10.2.f. Never reuse one.")
    ref: str = Field(..., min_length=1, description="Where it is in the legal text, e.g. 'Art. 10(2)(f)'.")
    text: str = Field(..., min_length=1, description="One-line paraphrase in the project's own words.")
    evidence: list[str] = Field(default_factory=list,
                                description="Check ids (or 'check_id.metric') whose results serve it.")
    automatable: Literal["yes", "partly", "no"] = Field(
        ..., description="'yes': a passing check is evidence enough; 'partly': checks help but a person must "
        "complete it; 'no': no check can evidence it (true/false are read as yes/no).")
    attach: str | None = Field(None, description="What a reviewer attaches where checks cannot evidence it.")
    translations: dict[str, ObligationText] = Field(default_factory=dict,
                                                    description="Language code -> translated texts.")

    @field_validator("automatable", mode="before")
    @classmethod
    def _bools(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return "yes" if value else "no"
        return value

    @field_validator("evidence")
    @classmethod
    def _evidence_ids(cls, value: list[str]) -> list[str]:
        for ev in value:
            parts = ev.split(".")
            if len(parts) > 2 or not all(p.isidentifier() for p in parts):
                raise ValueError(f"evidence entries are 'check_id' or 'check_id.metric'; got {ev!r}")
        return value

    def localized(self, language: str) -> tuple[str, str | None, str]:
        """``(text, attach, ref)`` in ``language``, falling back to English."""
        tr = self.translations.get(language)
        if tr is None:
            return self.text, self.attach, self.ref
        return tr.text, tr.attach or self.attach, tr.ref or self.ref


class Framework(_Strict):
    """A framework file: a regulation or an internal standard, as a list of obligations."""

    framework: str = Field(..., pattern=r"^[a-z0-9_]+$",
                           description="Framework id, the name `audit.frameworks` selects it by.")
    title: str = Field(..., min_length=1, description="Full title of the regulation or standard.")
    source: str | None = Field(None, description="The official citation of the text paraphrased here.")
    translations: dict[str, str] = Field(default_factory=dict, description="Language code -> translated title.")
    obligations: list[Obligation] = Field(..., min_length=1, description="The obligations, in reading order.")

    @model_validator(mode="after")
    def _ids(self) -> Framework:
        seen: set[str] = set()
        for ob in self.obligations:
            if not ob.id.startswith(self.framework + "."):
                raise ValueError(f"obligation id {ob.id!r} must start with the framework id "
                                 f"'{self.framework}.'")
            if ob.id in seen:
                raise ValueError(f"obligation id {ob.id!r} is defined twice")
            seen.add(ob.id)
        return self

    def localized_title(self, language: str) -> str:
        """The title in ``language``, falling back to English."""
        return self.translations.get(language, self.title)


# --------------------------------------------------------------------------- loading


def load_framework_file(path: str | Path) -> Framework:
    """Read and validate one framework file.

    Raises
    ------
    FrameworkError
        A ``PolicyError`` with one issue per problem, each naming ``file:line:col``.
    """
    from audit.policy import _issues_from_validation  # the policy's own error locator, reused
    from audit.yamlpos import load_located

    path = Path(path)
    if not path.is_file():
        raise FrameworkError([Issue(str(path), "", "framework file not found")])
    try:
        located = load_located(path.read_text(encoding="utf-8"), source=str(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise FrameworkError([Issue(where, "", f"not valid YAML: {getattr(exc, 'problem', None) or exc}")]) from None
    issues = [Issue(f"{located.source}:{line}:{col}", ".".join(map(str, p)), "key given twice; keep one")
              for p, (line, col) in located.duplicates]
    if not isinstance(located.data, dict):
        raise FrameworkError([Issue(str(path), "", "a framework file is a mapping with keys framework, title, "
                                 "obligations")])
    try:
        fw = Framework.model_validate(located.data)
    except ValidationError as exc:
        issues.extend(_issues_from_validation(exc, located, Framework, ()))
        raise FrameworkError(issues) from None
    if issues:
        raise FrameworkError(issues)
    return fw


@functools.lru_cache(maxsize=8)
def _builtin(folder: Path) -> dict[str, Framework]:
    out: dict[str, Framework] = {}
    for path in sorted(folder.glob("*.yaml")):
        fw = load_framework_file(path)
        if fw.framework in out:
            raise PolicyError([Issue(str(path), "framework", f"framework {fw.framework!r} is defined twice")])
        out[fw.framework] = fw
    return out


def builtin_frameworks(folder: Path | None = None) -> dict[str, Framework]:
    """The built-in frameworks by id (``gdpr``, ``eu_ai_act``, ``japan_ai_guidelines``)."""
    return dict(_builtin(Path(folder) if folder else frameworks_dir()))


def load_frameworks(folder: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every obligation of every built-in framework, by obligation id (plain dicts, with ``framework``)."""
    out: dict[str, dict[str, Any]] = {}
    for fw in builtin_frameworks(folder).values():
        for ob in fw.obligations:
            if ob.id in out:
                raise ValueError(f"obligation id {ob.id!r} is defined in two frameworks")
            out[ob.id] = {**ob.model_dump(), "framework": fw.framework}
    return out


def select_frameworks(names: Sequence[str], framework_files: Sequence[str | Path] = (),
                      base_dir: Path | None = None) -> list[Framework]:
    """The frameworks a policy selects: built-ins by name, plus the user's own files.

    A user's file is always included; its id may also be listed in ``names``. Unknown names raise.
    """
    available = builtin_frameworks()
    own: list[Framework] = []
    for f in framework_files:
        p = Path(f).expanduser()
        fw = load_framework_file(p if p.is_absolute() or base_dir is None else base_dir / p)
        own.append(fw)
        available[fw.framework] = fw
    chosen = [available[n] for n in names if n in available]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise PolicyError([Issue("<policy>", "audit.frameworks", f"unknown framework(s) {unknown}; "
                                 f"known: {', '.join(sorted(available))}")])
    return chosen + [fw for fw in own if fw.framework not in names]


def framework_issues(names: Sequence[str], framework_files: Sequence[str], located: Any,
                     base_dir: Path) -> list[Issue]:
    """Problems with ``audit.frameworks`` / ``audit.framework_files``, located in the policy file."""
    issues: list[Issue] = []
    known = set(builtin_frameworks())
    for i, f in enumerate(framework_files):
        p = Path(f).expanduser()
        p = p if p.is_absolute() else base_dir / p
        if not p.is_file():
            issues.append(Issue(located.where("audit", "framework_files", i), f"audit.framework_files.{i}",
                                f"framework file {str(p)!r} not found (paths are relative to the policy file)"))
            continue
        try:
            fw = load_framework_file(p)
        except PolicyError as exc:
            issues.extend(exc.issues)
            continue
        if fw.framework in known:
            issues.append(Issue(located.where("audit", "framework_files", i), f"audit.framework_files.{i}",
                                f"framework id {fw.framework!r} of {str(p)!r} is already taken; choose another"))
        known.add(fw.framework)
    for i, name in enumerate(names):
        if name not in known:
            import difflib

            near = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            issues.append(Issue(located.where("audit", "frameworks", i), f"audit.frameworks.{i}",
                                f"unknown framework {name!r}{hint} (known: {', '.join(sorted(known))}; add your "
                                "own with audit.framework_files)"))
    return issues


# --------------------------------------------------------------------------- the matrix


def _evidence_status(ev: str, by_id: dict[str, CheckResult]) -> tuple[str, str | None, Status | None]:
    """``(check_id, metric, status)`` of one evidence entry; status None when it did not run."""
    check_id, _, metric = ev.partition(".")
    c = by_id.get(check_id)
    if c is None:
        return check_id, metric or None, None
    if metric and c.status not in (Status.SKIPPED, Status.ERROR):
        judged = [m for m in c.metrics if m.name == metric and m.group is None]
        if not judged:
            return check_id, metric, None
        st = Status.worst(m.status or (Status.PASS if m.passed is not False else Status.FAIL) for m in judged)
        return check_id, metric, st
    return check_id, metric or None, c.status


def assess(checks: Iterable[CheckResult], frameworks: Sequence[Framework],
           language: str = "en") -> dict[str, Any]:
    """Map check results onto the frameworks' obligations: the compliance matrix.

    Parameters
    ----------
    checks : iterable of CheckResult
        The audit's check results.
    frameworks : sequence of Framework
        The frameworks the policy selects.
    language : str
        Language of the obligation texts copied into the matrix (``en`` or ``ja``).

    Returns
    -------
    dict
        ``{"frameworks": [{"id", "title", "obligations": [row, ...]}], "counts": {status: n}}``; each row has
        ``id, ref, text, automatable, attach, status, basis, evidence, missing``. ``basis`` says why the
        status was given (``check_failed``, ``no_evidence``, ``not_automatable``, ``evidence_incomplete``,
        ``needs_review``, ``all_evidence_passed``); ``evidence`` lists the results that served it
        (``check``, ``metric``, ``status``); ``missing`` the listed evidence that did not run.
    """
    checks = list(checks)
    by_id = {c.check_id: c for c in checks}
    out: list[dict[str, Any]] = []
    counts = dict.fromkeys(STATUS_ORDER, 0)
    for fw in frameworks:
        rows = []
        for ob in fw.obligations:
            entries = list(dict.fromkeys([*ob.evidence,
                                          *(c.check_id for c in checks if ob.id in c.obligations)]))
            found: list[dict[str, Any]] = []
            missing: list[str] = []
            for ev in entries:
                check_id, metric, st = _evidence_status(ev, by_id)
                ran = st is not None and st is not Status.SKIPPED and st is not Status.ERROR
                if not ran:
                    missing.append(ev)
                if st is not None:
                    found.append({"check": check_id, "metric": metric, "status": st.value, "usable": ran})
            usable = [f for f in found if f["usable"]]
            status: ComplianceStatus
            if any(f["status"] == Status.FAIL.value for f in usable):
                status, basis = "not_met", "check_failed"
            elif ob.automatable == "no":
                status, basis = "human", "not_automatable"
            elif not usable:
                status, basis = "human", "no_evidence"
            elif missing:
                status, basis = "partly", "evidence_incomplete"
            elif ob.automatable == "partly":
                status, basis = "partly", "needs_review"
            else:
                status, basis = "met", "all_evidence_passed"
            counts[status] += 1
            text, attach, ref = ob.localized(language)
            rows.append({"id": ob.id, "ref": ref, "text": text, "automatable": ob.automatable,
                         "attach": attach, "status": status, "basis": basis, "evidence": found,
                         "missing": missing})
        out.append({"id": fw.framework, "title": fw.localized_title(language), "obligations": rows})
    return {"frameworks": out, "counts": counts}


def assess_result(checks: Iterable[CheckResult], meta: dict[str, Any], language: str = "en") -> dict[str, Any]:
    """The matrix for a result that has none stored (an older ``result.json``): built-in frameworks only."""
    available = builtin_frameworks()
    names = [n for n in (meta.get("frameworks") or ["gdpr", "eu_ai_act"]) if n in available]
    return assess(checks, [available[n] for n in names], language)
