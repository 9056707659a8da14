"""The Python entry point: ``run_audit(policy, *, model=None, data=None)``, for notebooks and pipelines.

The CLI is a thin layer over this module; everything it does is reachable from here.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from audit.artifacts import load_artifacts
from audit.compliance import assess, select_frameworks
from audit.context import AuditContext
from audit.policy import LoadedPolicy, load_policy
from audit.provenance import collect, now
from audit.registry import Registry, default_registry
from audit.results import AuditResult
from audit.runner import ProgressPrinter, overall, run_checks
from audit.techdoc import describe_data


def run_audit(
    policy: str | Path | dict[str, Any] | LoadedPolicy,
    *,
    model: Any = None,
    data: dict[str, pd.DataFrame | tuple[Any, Any]] | None = None,
    out: str | Path | None = None,
    formats: list[str] | None = None,
    progress: bool | ProgressPrinter = False,
    registry: Registry | None = None,
    base_dir: Path | None = None,
    command: list[str] | None = None,
    sign_key: str | Path | None = None,
) -> AuditResult:
    """Run an audit and return its result; optionally write the reports.

    Parameters
    ----------
    policy : path, dict or LoadedPolicy
        The policy file, or the policy as data.
    model : estimator or torch.nn.Module, optional
        A model object to audit instead of ``model.path``: anything with ``predict``/``predict_proba``, or a
        PyTorch module (put in eval mode on the CPU; its outputs are read as ``model.output`` says).
    data : dict, optional
        ``{"train": DataFrame, "test": DataFrame}`` to use instead of the policy's data files; for image data,
        ``{"test": (x, y)}`` arrays, preprocessed like an npz file.
    out : path, optional
        Write the reports into this folder (``report.html``, ``report.pdf``, ``result.json``, ``junit.xml``).
    formats : list of str, optional
        Report formats to write; default: the policy's ``report.formats``.
    progress : bool or ProgressPrinter
        Print one line per finished check on stderr.
    registry : Registry, optional
        Check registry; default: built-in checks and installed plug-ins.
    base_dir : Path, optional
        Folder that relative paths of a dict policy are resolved against.
    command : list of str, optional
        The command line, recorded in the provenance.
    sign_key : path, optional
        Ed25519 private key (PEM, PKCS8): with ``out``, write ``manifest.json`` (sha256 of the inputs and of
        every report file, installed versions, seed) and its detached signature ``manifest.sig``.

    Returns
    -------
    AuditResult
        The same result the CLI renders; ``result.exit_code`` is the CLI's exit code.

    Raises
    ------
    PolicyError
        The policy or its inputs are invalid (``ArtifactError`` for files and data); nothing ran.
    """
    registry = registry or default_registry()
    signer = None
    if sign_key is not None:
        from audit.bundle import load_private_key

        signer = load_private_key(sign_key)  # a bad key is an input error before any work
    printer = progress if isinstance(progress, ProgressPrinter) else (ProgressPrinter() if progress else None)
    lp = policy if isinstance(policy, LoadedPolicy) else load_policy(policy, registry=registry, base_dir=base_dir)
    started, t0 = now(), time.perf_counter()
    if printer:
        printer.message(f"audit: loading model and data for {lp.policy.audit.name!r}")
    artifacts = load_artifacts(lp, model=model, data=data)
    ctx = AuditContext(lp, artifacts)
    results = run_checks(ctx, lp, registry, on_start=printer.start if printer else None,
                         on_result=printer.result if printer else None)
    status, code = overall(results, lp.policy.gate.fail_on)
    meta = lp.policy.audit.model_dump(mode="json")
    meta.update(
        policy_path=str(lp.path) if lp.path else None,
        title=lp.policy.report.title or f"Model audit: {lp.policy.audit.name}",
        task=lp.policy.model.task,
        features=ctx.features,
        target=ctx.target,
        labels=ctx.labels,
        positive_label=ctx.positive_label,
        sensitive_features=ctx.sensitive_features,
        loading_notes=artifacts.notes,
        language=lp.policy.report.language,
        data_description=describe_data(ctx),
    )
    if signer is not None and out is not None:
        from audit.bundle import key_fingerprint

        meta["bundle"] = {"signed": True, "key_sha256": key_fingerprint(signer.public_key())}
    frameworks = select_frameworks(lp.policy.audit.frameworks, lp.policy.audit.framework_files, lp.base_dir)
    result = AuditResult(
        status=status,
        exit_code=code,
        meta=meta,
        checks=results,
        provenance=collect(lp, artifacts, started_at=started, finished_at=now(),
                           duration_s=time.perf_counter() - t0, command=command or list(sys.argv)),
        gate=lp.policy.gate.model_dump(mode="json"),
        compliance=assess(results, frameworks, lp.policy.report.language),
    )
    if out is not None:
        from audit.report import write_reports

        outcome = write_reports(result, Path(out), formats or list(lp.policy.report.formats))
        if printer:
            for fmt, path in outcome.paths.items():
                printer.message(f"audit: wrote {fmt:<5} {path}")
        for fmt, err in outcome.errors.items():  # even when quiet: a missing report must not go unnoticed
            sys.stderr.write(f"audit: could not write {fmt}: {err}\n")
        result = replace(result, report={"paths": {k: str(v) for k, v in outcome.paths.items()},
                                         "errors": dict(outcome.errors)})
        if signer is not None:
            from audit.bundle import write_signed_manifest

            manifest, signature = write_signed_manifest(result, Path(out), signer)
            result.report["paths"].update(manifest=str(manifest), signature=str(signature))
            if printer:
                printer.message(f"audit: signed {manifest} -> {signature}")
    return result


def default_out_dir(lp: LoadedPolicy) -> Path:
    """Where reports go when ``--out`` is not given: the policy's ``report.out``, else ``audit-report/``."""
    if lp.policy.report.out:
        return lp.resolve(lp.policy.report.out)
    return Path("audit-report")
