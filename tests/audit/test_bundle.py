"""Signed audit bundle: keygen, manifest.json + Ed25519 manifest.sig, verify naming what changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit.bundle import keygen, load_private_key, load_public_key, verify, write_signed_manifest
from audit.cli import app
from audit.errors import PolicyError
from audit.results import AuditResult, CheckResult, Status


@pytest.fixture()
def signed(tmp_path: Path) -> tuple[Path, Path]:
    keygen(tmp_path / "k.pem", tmp_path / "k.pub.pem")
    out = tmp_path / "report"
    (out / "figures").mkdir(parents=True)
    (out / "report.html").write_text("<html></html>", encoding="utf-8")
    (out / "figures" / "a.svg").write_text("<svg/>", encoding="utf-8")
    result = AuditResult(status=Status.PASS, exit_code=0, meta={"name": "m"},
                         checks=[CheckResult("performance")],
                         provenance={"policy": {"path": "p.yaml", "sha256": "ab" * 32}, "seed": 7,
                                     "model": {"sha256": "cd" * 32}, "data": {"test": {"sha256": "ef" * 32}}})
    write_signed_manifest(result, out, load_private_key(tmp_path / "k.pem"))
    return out, tmp_path / "k.pub.pem"


def test_manifest_contents(signed: tuple[Path, Path]) -> None:
    out, _ = signed
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert set(m["files"]) == {"report.html", "figures/a.svg"}
    assert m["inputs"]["policy"]["sha256"] == "ab" * 32 and m["inputs"]["model"]["sha256"] == "cd" * 32
    assert m["seed"] == 7 and "cryptography" in m["environment"]["packages"]
    assert len((out / "manifest.sig").read_bytes()) == 64


def test_verify_ok_then_names_changed_missing_added(signed: tuple[Path, Path]) -> None:
    out, pub = signed
    key = load_public_key(pub)
    assert verify(out, key).ok
    (out / "report.html").write_text("<html>edited</html>", encoding="utf-8")
    (out / "figures" / "a.svg").unlink()
    (out / "extra.txt").write_text("x", encoding="utf-8")
    v = verify(out, key)
    assert (v.ok, v.signature_ok, v.changed, v.missing, v.added) == (False, True, ["report.html"],
                                                                     ["figures/a.svg"], ["extra.txt"])


def test_edited_manifest_or_other_key_fails(signed: tuple[Path, Path], tmp_path: Path) -> None:
    out, pub = signed
    keygen(tmp_path / "other.pem", tmp_path / "other.pub.pem")
    assert not verify(out, load_public_key(tmp_path / "other.pub.pem")).signature_ok
    text = (out / "manifest.json").read_text(encoding="utf-8").replace('"seed": 7', '"seed": 8')
    (out / "manifest.json").write_text(text, encoding="utf-8")
    v = verify(out, load_public_key(pub))
    assert not v.signature_ok and "does not match" in v.problems[0]


def test_key_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="signing key not found"):
        load_private_key(tmp_path / "none.pem")
    (tmp_path / "junk.pem").write_text("not a key", encoding="utf-8")
    with pytest.raises(PolicyError, match="not an unencrypted PEM private key"):
        load_private_key(tmp_path / "junk.pem")
    keygen(tmp_path / "k.pem", tmp_path / "k.pub.pem")
    with pytest.raises(FileExistsError):
        keygen(tmp_path / "k.pem", tmp_path / "k2.pub.pem")


def test_cli_verify(signed: tuple[Path, Path]) -> None:
    out, pub = signed
    runner = CliRunner()
    ok = runner.invoke(app, ["verify", str(out), "--key", str(pub)])
    assert ok.exit_code == 0 and "signature valid" in ok.output
    (out / "report.html").write_text("tampered", encoding="utf-8")
    bad = runner.invoke(app, ["verify", str(out), "--key", str(pub)])
    assert bad.exit_code == 1 and f"changed: {out / 'report.html'}" in bad.output


def test_run_sign_end_to_end(toy_dir: Path, tmp_path: Path) -> None:
    from audit import run_audit

    keygen(tmp_path / "k.pem", tmp_path / "k.pub.pem")
    result = run_audit(toy_dir / "policy.yaml", out=tmp_path / "r", formats=["json", "junit"],
                       sign_key=tmp_path / "k.pem")
    files = json.loads((tmp_path / "r" / "manifest.json").read_text(encoding="utf-8"))["files"]
    assert {"result.json", "junit.xml"} <= set(files)
    assert result.meta["bundle"]["signed"] is True
    assert verify(tmp_path / "r", load_public_key(tmp_path / "k.pub.pem")).ok
