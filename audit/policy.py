"""The audit policy (version 1): typed, validated, with every error located at its file and line.

Validation runs in two stages and collects every problem before reporting: first the policy's own shape
(``Policy``), then each listed check's options against that check's ``Config`` from the registry.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from audit.errors import Issue, PolicyError
from audit.registry import CheckConfig, Registry, default_registry
from audit.yamlpos import Located, load_located

RiskCategory = Literal["prohibited", "high", "limited", "minimal"]
ModelFormat = Literal["xgboost", "skops", "onnx", "pickle", "joblib", "torch", "torchscript"]
Task = Literal["binary_classification", "multiclass_classification"]
ReportFormat = Literal["html", "pdf", "json", "junit"]
REPORT_FORMATS: tuple[ReportFormat, ...] = typing.get_args(ReportFormat)


def _default_checks() -> dict[str, dict[str, Any] | None]:
    return {"performance": None}


def _checks_shorthand(value: Any) -> Any:
    """``checks: [performance, fairness]`` is short for a mapping of each id to its default options."""
    return {str(v): {} for v in value} if isinstance(value, list) else value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuditMeta(_Strict):
    """Who and what is audited: goes on the report's cover and into the technical documentation."""

    name: str = Field(..., min_length=1, description="Name of the audited model, e.g. 'Credit default model v3'.")
    system: str | None = Field(None, description="The AI system the model is part of.")
    owner: str | None = Field(None, description="Team or person accountable for the model.")
    intended_purpose: str | None = Field(None, description="What the system is for (EU AI Act Art. 13(3)(b)).")
    risk_category: RiskCategory | None = Field(None, description="EU AI Act risk class of the system.")
    frameworks: list[str] = Field(
        default_factory=lambda: ["gdpr", "eu_ai_act"],
        description="Regulatory frameworks whose obligations the results are mapped to.",
    )
    model_version: str | None = Field(None, description="Version of the audited model, for the record.")
    framework_files: list[str] = Field(
        default_factory=list,
        description="Your own framework files (same schema as policies/frameworks/*.yaml), relative to the policy; "
        "always included in the compliance matrix.",
    )
    provider: str | None = Field(None, description="Organisation placing the system on the market (Annex IV 1(a)).")
    system_version: str | None = Field(None, description="Version of the AI system (Annex IV 1(a)).")
    description: str | None = Field(None, description="General description of the system and how it is used.")
    development: str | None = Field(
        None, description="Methods and steps of development: training procedure, tools (Annex IV 2(a)).")
    data_provenance: str | None = Field(
        None, description="Where the data comes from, how it was collected, labelled and cleaned (Annex IV 2(d)).")
    human_oversight: str | None = Field(None, description="Human-oversight measures (Art. 14, Annex IV 2(e)).")
    limitations: str | None = Field(None, description="Known limitations and foreseeable misuse (Annex IV 3).")
    risk_management: str | None = Field(None, description="Reference to the risk-management system (Art. 9).")
    standards: str | None = Field(None, description="Harmonised standards or specifications applied (Annex IV 7).")
    monitoring: str | None = Field(None, description="Post-market monitoring plan (Art. 72, Annex IV 9).")
    reviewer: str | None = Field(None, description="Reviewer named on the sign-off page (signs the PDF).")
    reviewer_role: str | None = Field(None, description="The reviewer's role, for the sign-off page.")


class ModelSpec(_Strict):
    """The model under audit."""

    path: str | None = Field(
        None, description="Model file, relative to the policy file. Omit only when a model object is passed "
        "to run_audit()."
    )
    format: ModelFormat | None = Field(
        None, description="xgboost (.ubj/.json), skops (.skops), onnx (.onnx), pickle/joblib (only with "
        "trust: true), torch (a state dict .pt/.pth/.safetensors, with `architecture`), torchscript. Default: "
        "from the file extension."
    )
    task: Task = Field("binary_classification", description="What the model predicts.")
    trust: bool = Field(
        False, description="Allow pickle/joblib files, which run arbitrary code when loaded. Only for files "
        "you produced yourself."
    )
    trusted_types: list[str] = Field(
        default_factory=list,
        description="skops: extra types to trust when loading (audit validate lists the ones a file needs).",
    )
    classes: list[int | str] | None = Field(
        None, description="Labels in the order of the model's probability columns. Default: the model's own "
        "classes_, else the sorted labels of the training target."
    )
    architecture: str | None = Field(
        None, description="torch: the nn.Module class of the state dict, 'package.module:ClassName', importable "
        "from the policy's folder or the environment."
    )
    init_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="torch: keyword arguments for the architecture's constructor."
    )
    output: Literal["logits", "probabilities", "log_probabilities"] = Field(
        "logits", description="torch/torchscript: what the module's forward returns (softmax is applied to "
        "logits; one output column is the logit of the second class)."
    )

    @field_validator("architecture")
    @classmethod
    def _architecture_form(cls, value: str | None) -> str | None:
        if value is None:
            return value
        module, sep, name = value.partition(":")
        if not sep or not name.isidentifier() or not all(p.isidentifier() for p in module.split(".")):
            raise ValueError("must be 'package.module:ClassName' (a module importable from the policy's folder "
                             "or the environment, a colon, the class name)")
        return value


class Preprocess(_Strict):
    """How images become model inputs; the same steps for every split and every check."""

    size: int | tuple[int, int] | None = Field(
        None, description="Input size: one number for square images or [height, width]. Default: the size of "
        "the images (which must then all be the same)."
    )
    channels: Literal[1, 3] | None = Field(
        None, description="1 (grey) or 3 (RGB). Default: from the images."
    )
    mean: float | list[float] = Field(
        0.0, description="Subtracted per channel after 8-bit values are scaled to [0, 1] (one value or one per "
        "channel)."
    )
    std: float | list[float] = Field(1.0, description="Divided per channel after the mean is subtracted.")
    layout: Literal["auto", "nchw", "nhwc"] = Field(
        "auto", description="npz: axis order of 4-d `x` arrays. auto: channels-first when axis 1 has 1, 3 or 4 "
        "entries and the last axis does not."
    )

    @field_validator("size")
    @classmethod
    def _positive(cls, value: Any) -> Any:
        sizes = [value] if isinstance(value, int) else list(value or [])
        if any(v < 1 for v in sizes):
            raise ValueError("sizes must be positive")
        return value

    @field_validator("std")
    @classmethod
    def _nonzero(cls, value: Any) -> Any:
        if any(v <= 0 for v in ([value] if isinstance(value, int | float) else value)):
            raise ValueError("std must be positive")
        return value


class Region(_Strict):
    """An image region: a box in pixels of the preprocessed input, or per-image masks from a file."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    box: tuple[int, int, int, int] | None = Field(
        None, description="[x0, y0, x1, y1] in pixels of the preprocessed input (x to the right, y down; the "
        "end is exclusive)."
    )
    mask: str | None = Field(
        None, description="npz file (relative to the policy) with boolean masks at the preprocessed size: an "
        "array per split (`train`, `test`) of shape (N, H, W), or one (H, W) array `mask` for every image."
    )
    class_: int | str | None = Field(
        None, alias="class", description="Apply to images of this true class only. Default: every image."
    )
    name: str | None = Field(None, description="A name for the report (e.g. 'watermark corner').")

    @model_validator(mode="after")
    def _one_kind(self) -> Region:
        if (self.box is None) == (self.mask is None):
            raise ValueError("a region is either {box: [x0, y0, x1, y1]} or {mask: file.npz}")
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if min(self.box) < 0 or x1 <= x0 or y1 <= y0:
                raise ValueError(f"box {list(self.box)} must have 0 <= x0 < x1 and 0 <= y0 < y1")
        return self

    def label(self, i: int) -> str:
        """Name shown in the report."""
        if self.name:
            return self.name
        what = f"box {list(self.box)}" if self.box is not None else f"mask {self.mask}"
        return what + (f" (class {self.class_})" if self.class_ is not None else "")


class DataSpec(_Strict):
    """The data the model is audited on."""

    train: str | None = Field(None, description="Training data file (csv or parquet), relative to the policy; "
                              "images: a folder with one sub-folder per class, or an npz file (x, y).")
    test: str | None = Field(None, description="Held-out test data file (csv or parquet), relative to the policy; "
                             "images: a folder with one sub-folder per class, or an npz file (x, y).")
    format: Literal["csv", "parquet", "image_folder", "npz"] | None = Field(
        None, description="Default: from the file extension (a folder is an image_folder)."
    )
    target: str | None = Field(None, min_length=1, description="Name of the label column.")
    positive_label: int | str | float | bool | None = Field(
        None, description="Label of the positive class for binary tasks. Default: 1, 'yes' or True when "
        "present, else the larger label."
    )
    sensitive_features: list[str] = Field(
        default_factory=list, description="Columns with protected attributes (not model inputs by default)."
    )
    features: list[str] | None = Field(
        None, description="Model input columns. Default: every column but the target and sensitive ones."
    )
    preprocess: Preprocess | None = Field(
        None, description="Images: size, channels, mean and std, applied the same way for every check."
    )
    regions: list[Region] = Field(
        default_factory=list, description="Images: where the evidence for the class should be."
    )
    forbidden_regions: list[Region] = Field(
        default_factory=list, description="Images: where the evidence must not be (a border, a watermark, a "
        "caption strip)."
    )

    @property
    def is_image(self) -> bool:
        """Whether the data are images (by format, or by paths that are folders or npz files)."""
        if self.format is not None:
            return self.format in ("image_folder", "npz")
        paths = [p for p in (self.train, self.test) if p]
        return bool(paths) and all(Path(p).suffix.lower() in ("", ".npz") for p in paths)


class ReportSpec(_Strict):
    """Which report files to write, and where."""

    formats: list[ReportFormat] = Field(
        default_factory=lambda: list(REPORT_FORMATS), description="Report files to write."
    )
    out: str | None = Field(None, description="Output folder, relative to the policy. Default: audit-report/.")
    title: str | None = Field(None, description="Report title. Default: 'Model audit: <audit.name>'.")
    language: Literal["en", "ja"] = Field(
        "en", description="Language of the report's fixed texts: en (English) or ja (Japanese)."
    )


class GateSpec(_Strict):
    """How the audit's outcome becomes an exit code."""

    fail_on: Literal["fail", "warn"] = Field(
        "fail", description="'fail': exit 1 only when a check fails; 'warn': warnings fail the gate too."
    )


class Policy(_Strict):
    """An audit policy, version 1."""

    version: Literal[1] = Field(..., description="Policy format version: write `version: 1` at the top.")
    audit: AuditMeta
    seed: int = Field(0, ge=0, description="Seed for every random choice: same seed, same results.")
    model: ModelSpec = Field(default_factory=ModelSpec)  # type: ignore[arg-type]
    data: DataSpec
    checks: dict[str, dict[str, Any] | None] = Field(
        default_factory=_default_checks, description="Check id -> its options; only listed checks run."
    )
    report: ReportSpec = Field(default_factory=ReportSpec)  # type: ignore[arg-type]
    gate: GateSpec = Field(default_factory=GateSpec)  # type: ignore[arg-type]

    @field_validator("checks", mode="before")
    @classmethod
    def _checks_mapping(cls, value: Any) -> Any:
        return _checks_shorthand(value)


@dataclass
class LoadedPolicy:
    """A validated policy with its check configs, its source text and where each key was written."""

    policy: Policy
    configs: dict[str, CheckConfig]
    located: Located
    path: Path | None = None
    text: str = ""
    base_dir: Path = field(default_factory=Path.cwd)

    def where(self, *key: str | int) -> str:
        """``file:line:col`` of a key, for error messages."""
        return self.located.where(*key)

    def resolve(self, relative: str) -> Path:
        """A path from the policy, relative to the policy's folder."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)


def load_policy(
    source: str | Path | dict[str, Any], *, registry: Registry | None = None, base_dir: Path | None = None
) -> LoadedPolicy:
    """Read and validate a policy from a file path or a dict; collect every problem, then raise.

    Parameters
    ----------
    source : str, Path or dict
        A policy file, or the policy as data (e.g. built in a notebook).
    registry : Registry, optional
        Where check ids are looked up; default: the built-in checks and installed plug-ins.
    base_dir : Path, optional
        Folder that relative paths in a dict policy are resolved against (default: the working folder).

    Raises
    ------
    PolicyError
        With one ``Issue`` per problem, each naming file:line:col, the key and what was expected.
    """
    registry = registry or default_registry()
    path: Path | None = None
    text = ""
    if isinstance(source, dict):
        located = Located(data=source, source="<policy>")
    else:
        path = Path(source)
        if not path.is_file():
            raise PolicyError([Issue(str(path), "", "policy file not found; give the path of a policy YAML "
                                     "file (`audit init > policy.yaml` writes a starter)")])
        text = path.read_text(encoding="utf-8")
        try:
            located = load_located(text, source=str(path))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
            problem = getattr(exc, "problem", None) or str(exc)
            raise PolicyError([Issue(where, "", f"not valid YAML: {problem}")]) from None
    base = base_dir or (path.parent if path else Path.cwd())

    issues = [Issue(f"{located.source}:{line}:{col}", _dotted(p), "key given twice; keep one")
              for p, (line, col) in located.duplicates]
    data = located.data
    if not isinstance(data, dict):
        got = "an empty file" if data is None else type(data).__name__
        raise PolicyError([Issue(located.source, "", "a policy is a YAML mapping with keys version, audit, "
                                 f"model, data, checks; got {got}")])
    policy: Policy | None = None
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        issues.extend(_issues_from_validation(exc, located, Policy, ()))
    # stage 2 runs even when stage 1 failed, so that every problem is reported at once; options that are not
    # mappings were already reported by stage 1
    checks = policy.checks if policy else _checks_shorthand(data.get("checks"))
    checks = {k: v for k, v in checks.items() if v is None or isinstance(v, dict)} if isinstance(checks, dict) else {}
    configs = _check_configs(checks, located, registry, issues)
    if policy is None:
        raise PolicyError(issues)

    if policy.data.target is None and not policy.data.is_image:
        issues.append(Issue(located.where("data"), "data.target",
                            f"missing required key 'target' ({DataSpec.model_fields['target'].description})"))
    if policy.data.is_image and (policy.data.features is not None):
        issues.append(Issue(located.where("data", "features"), "data.features",
                            "image data has no feature columns; remove `data.features`"))
    if policy.data.target in policy.data.sensitive_features:
        issues.append(Issue(located.where("data", "sensitive_features"), "data.sensitive_features",
                            f"the target {policy.data.target!r} cannot also be a sensitive feature"))
    if policy.data.features is not None and policy.data.target in policy.data.features:
        issues.append(Issue(located.where("data", "features"), "data.features",
                            f"the target {policy.data.target!r} cannot be a model input"))
    from audit.compliance import framework_issues  # frameworks are data; validated with the policy

    issues.extend(framework_issues(policy.audit.frameworks, policy.audit.framework_files, located, base))
    if issues:
        raise PolicyError(issues)
    return LoadedPolicy(policy=policy, configs=configs, located=located, path=path, text=text, base_dir=base)


def _check_configs(checks: dict[str, Any], located: Located, registry: Registry,
                   issues: list[Issue]) -> dict[str, CheckConfig]:
    """Stage 2: each listed check's options against that check's Config (issues appended)."""
    configs: dict[str, CheckConfig] = {}
    for check_id, options in checks.items():
        if check_id not in registry:
            near = difflib.get_close_matches(check_id, registry.ids(), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            issues.append(Issue(located.where("checks", check_id), f"checks.{check_id}",
                                f"unknown check {check_id!r}{hint} (registered: {', '.join(registry.ids())}; "
                                "`audit checks` lists them with their options)"))
            continue
        check_cls = registry.get(check_id)
        prefix = ("checks", check_id)
        thresholds = (options or {}).get("thresholds")
        for metric in thresholds if isinstance(thresholds, dict) else {}:
            if metric not in check_cls.metric_names:
                near = difflib.get_close_matches(str(metric), list(check_cls.metric_names), n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                issues.append(Issue(located.where(*prefix, "thresholds", metric),
                                    f"checks.{check_id}.thresholds.{metric}",
                                    f"check {check_id!r} reports no metric {metric!r}{hint} "
                                    f"(its metrics: {', '.join(check_cls.metric_names)})"))
        try:
            configs[check_id] = check_cls.parse_config(options)
        except ValidationError as exc:
            issues.extend(_issues_from_validation(exc, located, check_cls.config_model, prefix))

    return configs


def _dotted(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path)


def _issues_from_validation(
    exc: ValidationError, located: Located, model: type[BaseModel], prefix: tuple[str, ...]
) -> list[Issue]:
    issues = []
    data = located.data
    for part in prefix:
        data = data.get(part) if isinstance(data, dict) else None
    for err in exc.errors(include_url=False):
        # pydantic adds union branch names ("int", "literal[...]") to loc; keep only the real keys
        loc = _data_path(data, tuple(err["loc"]), err["type"])
        full = (*prefix, *loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            allowed = list(parent.model_fields) if parent else []
            near = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            allowed_txt = f" (allowed: {', '.join(allowed)})" if allowed else ""
            where_ = located.where(*full)
            issues.append(Issue(where_, _dotted(full[:-1]),
                                f"unknown key {loc[-1]!r}{hint}{allowed_txt}"))
        elif kind == "missing":
            issues.append(Issue(located.where(*full[:-1]), _dotted(full),
                                f"missing required key {str(loc[-1])!r}{_expected(model, loc)}"))
        else:
            got = err.get("input")
            msg = err["msg"]
            msg = msg[0].lower() + msg[1:] if msg else msg
            if msg.startswith("value error, "):
                msg = msg[len("value error, "):]
            issues.append(Issue(located.where(*full), _dotted(full), f"{msg}; got {_short(got)}"))
    return issues


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _data_path(data: Any, loc: tuple[Any, ...], kind: str) -> tuple[Any, ...]:
    """Keep the parts of a pydantic error location that are keys of the data (drop union branch tags)."""
    out: list[Any] = []
    current = data
    for i, part in enumerate(loc):
        if isinstance(current, dict) and part in current:
            out.append(part)
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            out.append(part)
            current = current[part]
        elif i == len(loc) - 1 and kind == "missing":
            out.append(part)
    return tuple(out)


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        else:
            args = [a for a in typing.get_args(current) if a is not type(None)]
            current = args[-1] if args else None
        current = _unwrap(current)
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(tp) if isinstance(a, type) and issubclass(a, BaseModel)]
        if models:
            return models[0]
    return tp


def _expected(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    parent = _model_at(model, loc[:-1])
    if parent is None or not loc or loc[-1] not in parent.model_fields:
        return ""
    desc = parent.model_fields[loc[-1]].description
    return f" ({desc})" if desc else ""


def schema() -> dict[str, Any]:
    """JSON Schema of the policy with every registered check's options, for editors (yaml-language-server)."""
    registry = default_registry()
    base = Policy.model_json_schema()
    defs = base.setdefault("$defs", {})
    check_props: dict[str, Any] = {}
    for check_id, cls in registry.items():
        sub = cls.config_model.model_json_schema(ref_template="#/$defs/{model}")
        for name, d in sub.pop("$defs", {}).items():
            defs.setdefault(name, d)
        sub["description"] = f"{cls.title}. {cls.description}".strip()
        if "thresholds" in sub.get("properties", {}):
            sub["properties"]["thresholds"]["propertyNames"] = {"enum": list(cls.metric_names)}
        check_props[check_id] = {"anyOf": [sub, {"type": "null"}]}
    base["properties"]["checks"] = {
        "type": "object",
        "description": Policy.model_fields["checks"].description,
        "properties": check_props,
        "additionalProperties": False,
    }
    base["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    base["title"] = "xai-audit policy (version 1)"
    return base
