"""The check registry: built-in checks register by decorator, third-party ones by entry point.

A third-party package exposes its checks with an entry point in the group ``xai_audit.checks`` that names
a module (importing it registers its checks) or a ``Check`` subclass.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from audit.results import CheckResult, Threshold

if TYPE_CHECKING:
    from audit.context import AuditContext

ENTRY_POINT_GROUP = "xai_audit.checks"
BUILTIN_PACKAGE = "checks"


def builtin_modules() -> list[str]:
    """Every public module of the built-in ``checks`` package: each one registers its checks on import.

    Discovered rather than listed, so that adding a check is adding one module (``_private`` modules hold
    helpers shared inside the package and are skipped).
    """
    package = importlib.import_module(BUILTIN_PACKAGE)
    return sorted(f"{BUILTIN_PACKAGE}.{m.name}" for m in pkgutil.iter_modules(package.__path__)
                  if not m.name.startswith("_"))


class CheckConfig(BaseModel):
    """Base of every check's options. Subclasses add options; ``thresholds`` say what passes.

    Thresholds given in the policy are merged over the check's ``default_thresholds``: a metric set to
    ``null`` drops its default.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    thresholds: dict[str, Threshold] = Field(
        default_factory=dict,
        validate_default=True,
        description="Metric name -> {min: x} or {max: x} (optionally warn_margin). Merged over the defaults; "
        "null removes a default.",
    )

    @field_validator("thresholds", mode="before")
    @classmethod
    def _merge_defaults(cls, value: Any, info: Any) -> Any:
        defaults = (info.context or {}).get("default_thresholds", {}) if info.context else {}
        if value is None:
            value = {}
        if not isinstance(value, dict):
            return value  # pydantic reports the type error
        merged: dict[str, Any] = {k: v for k, v in defaults.items()}
        for k, v in value.items():
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = v
        return merged


@dataclass(frozen=True)
class Requires:
    """What a check needs from the audit; the runner skips it, naming what is missing, when absent.

    ``needs`` uses the capability names of ``AuditContext.capabilities()``: ``tabular``, ``image``,
    ``probabilities``, ``sensitive_features``, ``train_data``, ``test_data``, ``torch`` (a PyTorch module whose
    gradients can be taken; ``gradients`` is a synonym), ``layer_hooks`` (an eager module whose layers can be
    hooked, as Grad-CAM needs; not TorchScript), ``dropout`` (the module has dropout layers).
    """

    tasks: frozenset[str] = frozenset({"binary_classification", "multiclass_classification"})
    needs: frozenset[str] = field(default_factory=frozenset)

    def missing(self, task: str, capabilities: set[str]) -> list[str]:
        """Reasons this check cannot run here (empty when it can)."""
        reasons = []
        if task not in self.tasks:
            reasons.append(f"task {task!r} is not one of {sorted(self.tasks)}")
        for need in sorted(self.needs - capabilities):
            reasons.append(_NEED_TEXT.get(need, f"needs {need!r}"))
        return reasons


_NEED_TEXT = {
    "probabilities": "the model gives no class probabilities",
    "sensitive_features": "the policy names no sensitive features (data.sensitive_features)",
    "train_data": "the policy gives no training data (data.train)",
    "test_data": "the policy gives no test data (data.test)",
    "tabular": "the data is not tabular",
    "image": "the data is not images",
    "gradients": "the model gives no gradients (not a PyTorch model)",
    "torch": "the model is not a PyTorch module (model.format torch or torchscript)",
    "layer_hooks": "the model's layers cannot be hooked (a TorchScript model, or not PyTorch): give the state "
                   "dict with `model.architecture` instead",
    "dropout": "the model has no dropout layers",
}

C = TypeVar("C", bound=CheckConfig)


class Check(Generic[C]):
    """A registered check. Subclasses set the class attributes and implement ``run``.

    Attributes
    ----------
    id : str
        The policy key, stable forever (short snake_case noun).
    title : str
        Heading in the report.
    description : str
        One paragraph for ``audit checks`` and the report.
    config_model : type[CheckConfig]
        Pydantic model of the options (``extra="forbid"``).
    applies_to : Requires
        Tasks and capabilities the check needs.
    obligations : tuple[str, ...]
        Ids of the framework obligations its evidence serves (``policies/frameworks/*.yaml``).
    metric_names : dict[str, str]
        Every metric the check can report, with a description: thresholds may name only these.
    default_thresholds : dict[str, dict]
        Thresholds applied when the policy gives none for that metric.
    """

    id: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str] = ""
    config_model: ClassVar[type[CheckConfig]] = CheckConfig
    applies_to: ClassVar[Requires] = Requires()
    obligations: ClassVar[tuple[str, ...]] = ()
    metric_names: ClassVar[dict[str, str]] = {}
    default_thresholds: ClassVar[dict[str, dict[str, Any]]] = {}

    def run(self, ctx: AuditContext, config: C) -> CheckResult:
        """Do the work and return data: metrics, findings, figures, tables, notes. Never judge thresholds."""
        raise NotImplementedError

    @classmethod
    def parse_config(cls, options: dict[str, Any] | None) -> CheckConfig:
        """Validate the policy's options for this check (raises ``pydantic.ValidationError``)."""
        return cls.config_model.model_validate(
            options or {}, context={"default_thresholds": cls.default_thresholds}
        )


class Registry:
    """A set of checks by id. Registering an id twice raises; nothing is silently replaced."""

    def __init__(self) -> None:
        self._checks: dict[str, type[Check[Any]]] = {}

    def register(self, cls: type[Check[Any]]) -> type[Check[Any]]:
        """Add a check class (usable as a decorator)."""
        check_id = getattr(cls, "id", None)
        if not isinstance(check_id, str) or not check_id.isidentifier() or check_id != check_id.lower():
            raise ValueError(f"{cls.__qualname__}.id must be a snake_case identifier; got {check_id!r}")
        existing = self._checks.get(check_id)
        if existing is not None and existing is not cls:
            raise ValueError(
                f"check id {check_id!r} is registered twice: by {existing.__module__}.{existing.__qualname__} "
                f"and by {cls.__module__}.{cls.__qualname__}; ids must be unique"
            )
        self._checks[check_id] = cls
        return cls

    def get(self, check_id: str) -> type[Check[Any]]:
        """The check class for an id (``KeyError`` when unknown)."""
        return self._checks[check_id]

    def __contains__(self, check_id: object) -> bool:
        return check_id in self._checks

    def ids(self) -> list[str]:
        """Registered ids, sorted."""
        return sorted(self._checks)

    def items(self) -> list[tuple[str, type[Check[Any]]]]:
        """``(id, class)`` pairs, sorted by id."""
        return sorted(self._checks.items())


REGISTRY = Registry()
_loaded = False


def register(cls: type[Check[Any]]) -> type[Check[Any]]:
    """Decorator: register a built-in check in the default registry."""
    return REGISTRY.register(cls)


def default_registry() -> Registry:
    """The default registry with the built-in checks and every installed plug-in loaded."""
    global _loaded
    if not _loaded:
        _loaded = True
        for module in builtin_modules():
            importlib.import_module(module)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            obj = ep.load()
            if isinstance(obj, type) and issubclass(obj, Check):
                REGISTRY.register(obj)
    return REGISTRY
