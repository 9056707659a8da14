"""xai-audit: pre-deployment audits of machine-learning models, driven by one policy file."""

from __future__ import annotations

from audit.api import run_audit
from audit.errors import ArtifactError, AuditError, CheckError, ExitCode, PolicyError
from audit.results import AuditResult, CheckResult, Status

__all__ = ["ArtifactError", "AuditError", "AuditResult", "CheckError", "CheckResult", "ExitCode",
           "PolicyError", "Status", "run_audit"]
__version__ = "0.1.0"
