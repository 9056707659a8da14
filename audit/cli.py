"""``audit``: the command line. Thin: it parses arguments, calls ``audit.api``, prints, and exits."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from audit.errors import ExitCode, Issue, PolicyError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Pre-deployment audits of machine-learning models, driven by one policy file.")

PolicyArg = Annotated[Path, typer.Argument(help="The policy YAML file.", show_default=False)]


def _version(value: bool) -> None:
    if value:
        from audit import __version__

        typer.echo(f"xai-audit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Pre-deployment audits of machine-learning models, driven by one policy file."""


def _fail_invalid(exc: PolicyError) -> None:
    sys.stderr.write(f"audit: {exc}\n")
    raise typer.Exit(int(ExitCode.INVALID))


@app.command()
def run(
    policy: PolicyArg,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: the policy's "
                                             "report.out, else audit-report/).")] = None,
    formats: Annotated[str | None, typer.Option("--formats", help="Comma-separated report formats, e.g. "
                                                "html,json (default: the policy's report.formats).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines on stderr.")] = False,
    sign: Annotated[Path | None, typer.Option("--sign", help="Ed25519 private key (PEM, PKCS8): write "
                                              "manifest.json and its signature manifest.sig.")] = None,
) -> None:
    """Run the audit the policy describes and write its reports. Exit 0 pass, 1 fail, 2 invalid, 3 error."""
    from audit.api import default_out_dir, run_audit
    from audit.policy import REPORT_FORMATS, load_policy

    try:
        lp = load_policy(policy)
        fmts = [f.strip() for f in formats.split(",")] if formats else None
        bad = [f for f in fmts or [] if f not in REPORT_FORMATS]
        if bad:
            raise PolicyError([Issue("command line", "--formats", f"unknown format(s) {bad}; choose from "
                                     f"{', '.join(REPORT_FORMATS)}")])
        target = out or default_out_dir(lp)
        result = run_audit(lp, out=target, formats=fmts, progress=not quiet, command=sys.argv, sign_key=sign)
    except PolicyError as exc:
        _fail_invalid(exc)
        return
    if not quiet:
        counts = ", ".join(f"{n} {s}" for s, n in result.counts().items() if n)
        sys.stderr.write(f"audit: {result.status.value.upper()} ({counts}); exit code {result.exit_code}\n")
    raise typer.Exit(result.exit_code)


@app.command()
def validate(policy: PolicyArg) -> None:
    """Check the policy, its files and its data against each other; run no check. Exit 0 valid, 2 invalid."""
    from audit.artifacts import load_artifacts
    from audit.policy import load_policy

    try:
        lp = load_policy(policy)
        art = load_artifacts(lp)
    except PolicyError as exc:
        _fail_invalid(exc)
        return
    p = lp.policy
    splits = ", ".join(f"{k} {len(v)} rows" for k, v in art.frames.items())
    if art.data_kind == "image" and art.images:
        shape = "x".join(str(d) for d in next(iter(art.images.values())).shape[1:])
        inputs = f"images {shape} (channels x height x width, preprocessed)"
    else:
        inputs = f"{len(art.features)} features"
    typer.echo(f"{policy}: valid. Model {art.model.kind} ({p.model.task}, labels {art.labels}); data {splits}; "
               f"{inputs}; sensitive: {', '.join(art.sensitive_features) or 'none'}; "
               f"checks: {', '.join(lp.configs)}")
    for note in art.notes:
        typer.echo(f"  note: {note}")


@app.command()
def init() -> None:
    """Print a commented starter policy (audit init > policy.yaml)."""
    from audit.starter import STARTER_POLICY

    typer.echo(STARTER_POLICY, nl=False)


@app.command("checks")
def list_checks(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the registered checks with their options, defaults, metrics and obligations."""
    from audit.registry import default_registry

    entries: list[dict[str, Any]] = []
    for check_id, cls in default_registry().items():
        options = []
        for name, f in cls.config_model.model_fields.items():
            default = cls.default_thresholds if name == "thresholds" else (
                f.default_factory() if f.default_factory else f.default)  # type: ignore[call-arg]
            options.append({"name": name, "default": default, "description": f.description or ""})
        entries.append({"id": check_id, "title": cls.title, "description": cls.description,
                        "needs": sorted(cls.applies_to.needs), "tasks": sorted(cls.applies_to.tasks),
                        "options": options, "metrics": cls.metric_names, "obligations": list(cls.obligations)})
    if as_json:
        typer.echo(json.dumps(entries, indent=2, default=str))
        return
    for e in entries:
        typer.echo(f"{e['id']}: {e['title']}\n  {e['description']}")
        if e["needs"]:
            typer.echo(f"  needs: {', '.join(e['needs'])}")
        typer.echo("  options:")
        for o in e["options"]:
            typer.echo(f"    {o['name']} (default {json.dumps(o['default'], default=str)}): {o['description']}")
        typer.echo("  metrics (for thresholds): " + ", ".join(e["metrics"]))
        typer.echo("  obligations: " + ", ".join(e["obligations"]) + "\n")


@app.command()
def diff(
    old: Annotated[Path, typer.Argument(help="result.json of the earlier audit.", show_default=False)],
    new: Annotated[Path, typer.Argument(help="result.json of the later audit.", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", help="text, json or markdown.")] = "text",
) -> None:
    """Metric deltas and status changes between two audits. Exit 1 when any check's status got worse."""
    from audit.diff import diff_results, load_result, render_markdown, render_text

    if fmt not in ("text", "json", "markdown"):
        sys.stderr.write(f"audit: --format must be text, json or markdown; got {fmt!r}\n")
        raise typer.Exit(int(ExitCode.INVALID))
    try:
        d = diff_results(load_result(old), load_result(new))
    except ValueError as exc:
        sys.stderr.write(f"audit: {exc}\n")
        raise typer.Exit(int(ExitCode.INVALID)) from None
    if fmt == "json":
        typer.echo(json.dumps(d.to_dict(), indent=2))
    else:
        typer.echo(render_markdown(d) if fmt == "markdown" else render_text(d), nl=False)
    raise typer.Exit(int(ExitCode.FAILED) if d.regressed else int(ExitCode.OK))


@app.command()
def verify(
    folder: Annotated[Path, typer.Argument(help="The audit's report folder.", show_default=False)],
    key: Annotated[Path, typer.Option("--key", help="Ed25519 public key (PEM, SubjectPublicKeyInfo).")],
) -> None:
    """Check a signed audit folder: the signature and every file's sha256. Exit 1 naming what changed."""
    from audit.bundle import load_public_key
    from audit.bundle import verify as verify_bundle

    try:
        result = verify_bundle(folder, load_public_key(key))
    except PolicyError as exc:
        _fail_invalid(exc)
        return
    for label, names in (("changed", result.changed), ("missing", result.missing),
                         ("not in the manifest", result.added)):
        for name in names:
            sys.stderr.write(f"audit: {label}: {folder / name}\n")
    for problem in result.problems:
        sys.stderr.write(f"audit: {problem}\n")
    if not result.ok:
        raise typer.Exit(int(ExitCode.FAILED))
    typer.echo(f"{folder}: signature valid; every file matches manifest.json")


@app.command()
def keygen(
    private: Annotated[Path, typer.Argument(help="Where to write the private key (PEM, PKCS8).")] = Path(
        "audit-key.pem"),
    public: Annotated[Path, typer.Argument(help="Where to write the public key (PEM).")] = Path("audit-key.pub.pem"),
) -> None:
    """Write a new Ed25519 key pair for audit run --sign and audit verify --key."""
    from audit.bundle import keygen as make_keys

    try:
        fingerprint = make_keys(private, public)
    except FileExistsError as exc:
        sys.stderr.write(f"audit: {exc}\n")
        raise typer.Exit(int(ExitCode.INVALID)) from None
    typer.echo(f"wrote {private} (keep it secret) and {public}; key sha256 {fingerprint}")


@app.command()
def schema() -> None:
    """Print the JSON Schema of the policy, for editors (audit schema > policy.schema.json)."""
    from audit.policy import schema as policy_schema

    typer.echo(json.dumps(policy_schema(), indent=2))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
