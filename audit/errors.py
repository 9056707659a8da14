"""One error tree for the whole tool, and the exit codes the CLI returns."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of ``audit run`` (and of the other commands where they apply)."""

    OK = 0  # every check passed, or only warnings and the gate allows them
    FAILED = 1  # a check failed its thresholds (or warned, with ``gate.fail_on: warn``)
    INVALID = 2  # the policy or its inputs are invalid; nothing ran, no report was written
    ERROR = 3  # a check raised; the other checks and the report still completed


@dataclass(frozen=True)
class Issue:
    """One problem found in a policy or its inputs, with where it is.

    Attributes
    ----------
    where : str
        ``file:line:col`` of the offending key when known, else the file name or ``<policy>``.
    key : str
        Dotted path of the key (``checks.performance.thresholds.roc_auc.min``); empty for the whole policy.
    message : str
        What is wrong, what was expected and how to fix it.
    """

    where: str
    key: str
    message: str

    def __str__(self) -> str:
        key = f"{self.key}: " if self.key else ""
        return f"{self.where}: {key}{self.message}"


class AuditError(Exception):
    """Base of every error this tool raises on purpose."""


class PolicyError(AuditError, ValueError):
    """The policy is invalid. Holds every issue found, so that all can be fixed in one go."""

    def __init__(self, issues: list[Issue]):
        self.issues = list(issues)
        n = len(self.issues)
        head = f"the policy has {n} problem{'s' if n != 1 else ''}:"
        super().__init__("\n".join([head, *(f"  {i}" for i in self.issues)]))


class ArtifactError(PolicyError):
    """A model or data file named by the policy is missing, unreadable, unsafe or inconsistent."""


class CheckError(AuditError):
    """A check cannot do its work with what it was given (raised inside checks; becomes an ERROR result)."""
