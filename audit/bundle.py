"""A signed audit bundle: ``manifest.json`` and its detached Ed25519 signature ``manifest.sig``.

EU AI Act Annex IV 2(g) asks for test reports dated and signed. The manifest lists the sha256 of the policy,
model and data (from the provenance), of every file in the report folder, the seed and the installed package
versions (a lock of the environment); ``manifest.sig`` is the raw 64-byte Ed25519 signature of the manifest's
bytes, so that ``openssl pkeyutl -verify -pubin -inkey pub.pem -rawin -in manifest.json -sigfile manifest.sig``
checks it too. Keys are PEM files as the ``cryptography`` package writes them: PKCS8 private keys,
SubjectPublicKeyInfo public keys.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib.metadata import distributions
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.artifacts.data import sha256_file
from audit.errors import Issue, PolicyError
from audit.io import atomic_write_bytes
from audit.results import AuditResult

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
FORMAT = "xai-audit-manifest/1"


def _key_error(path: str | Path, message: str) -> PolicyError:
    return PolicyError([Issue(str(path), "", message)])


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM (PKCS8) file; ``PolicyError`` naming the file otherwise."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError:
        raise _key_error(path, "signing key not found (audit keygen writes a key pair)") from None
    except (ValueError, TypeError) as exc:
        raise _key_error(path, f"not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise _key_error(path, f"the signing key must be Ed25519; got {type(key).__name__}")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM (SubjectPublicKeyInfo) file; ``PolicyError`` otherwise."""
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except FileNotFoundError:
        raise _key_error(path, "public key not found") from None
    except ValueError as exc:
        raise _key_error(path, f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise _key_error(path, f"the public key must be Ed25519; got {type(key).__name__}")
    return key


def key_fingerprint(key: Ed25519PublicKey) -> str:
    """sha256 of the raw public key bytes (hex): names the key in the manifest and the report."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def keygen(private_path: str | Path, public_path: str | Path) -> str:
    """Write a new Ed25519 key pair (PEM: PKCS8 private, SubjectPublicKeyInfo public); return its fingerprint.

    Raises
    ------
    FileExistsError
        If either file exists (a key is never overwritten).
    """
    private_path, public_path = Path(private_path), Path(public_path)
    for p in (private_path, public_path):
        if p.exists():
            raise FileExistsError(f"{p} exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    private_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    private_path.chmod(0o600)
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_fingerprint(key.public_key())


def _report_paths(out_dir: Path) -> list[Path]:
    return [p for p in sorted(out_dir.rglob("*"))
            if p.is_file() and p.name not in (MANIFEST, SIGNATURE) and not p.name.startswith(".")]


def _report_files(out_dir: Path) -> dict[str, str]:
    return {p.relative_to(out_dir).as_posix(): sha256_file(p) for p in _report_paths(out_dir)}


def installed_versions() -> dict[str, str]:
    """Every installed distribution and its version (a lock of the environment)."""
    out: dict[str, str] = {}
    for d in distributions():
        name = d.metadata["Name"]
        if name:
            out[str(name).lower()] = d.version
    return dict(sorted(out.items()))


def build_manifest(result: AuditResult, out_dir: Path, key: Ed25519PrivateKey) -> dict[str, Any]:
    """The manifest of an audit folder (see the module docstring)."""
    prov = result.provenance or {}
    return {
        "format": FORMAT,
        "audit": {"name": (result.meta or {}).get("name"), "status": result.status.value,
                  "exit_code": int(result.exit_code), "started_at": prov.get("started_at"),
                  "finished_at": prov.get("finished_at")},
        "inputs": {"policy": prov.get("policy"), "model": prov.get("model"), "data": prov.get("data")},
        "seed": prov.get("seed"),
        "files": _report_files(out_dir),
        "environment": {"python": prov.get("python"), "platform": prov.get("platform"),
                        "packages": installed_versions()},
        "signature": {"algorithm": "Ed25519", "file": SIGNATURE, "key_sha256": key_fingerprint(key.public_key())},
    }


def write_signed_manifest(result: AuditResult, out_dir: Path, key: Ed25519PrivateKey) -> tuple[Path, Path]:
    """Write ``manifest.json`` and ``manifest.sig`` into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    data = json.dumps(build_manifest(result, out_dir, key), indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
    manifest = atomic_write_bytes(out_dir / MANIFEST, data)
    signature = atomic_write_bytes(out_dir / SIGNATURE, key.sign(data))
    return manifest, signature


@dataclass
class Verification:
    """Outcome of :func:`verify`: ``ok`` when the signature holds and every file matches."""

    signature_ok: bool = False
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return self.signature_ok and not (self.changed or self.missing or self.added or self.problems)


def verify(out_dir: str | Path, public_key: Ed25519PublicKey) -> Verification:
    """Check ``manifest.sig`` against ``manifest.json`` and every listed file against its sha256.

    Files in the folder that the manifest does not list are reported as ``added``.
    """
    out_dir = Path(out_dir)
    v = Verification()
    m_path, s_path = out_dir / MANIFEST, out_dir / SIGNATURE
    if not m_path.is_file() or not s_path.is_file():
        v.problems.append(f"{out_dir} has no {MANIFEST} and {SIGNATURE} (was the audit run with --sign?)")
        return v
    data = m_path.read_bytes()
    try:
        public_key.verify(s_path.read_bytes(), data)
        v.signature_ok = True
    except InvalidSignature:
        v.problems.append(f"{SIGNATURE} does not match {MANIFEST} under this key: the manifest was changed or "
                          "signed with another key")
    try:
        listed: dict[str, str] = json.loads(data)["files"]
    except (ValueError, KeyError, TypeError) as exc:
        v.problems.append(f"{MANIFEST} is not a valid manifest: {exc}")
        return v
    for name, digest in listed.items():
        if Path(name).is_absolute() or ".." in Path(name).parts:
            v.problems.append(f"{MANIFEST} lists a path outside the folder: {name!r}")
            continue
        p = out_dir / name
        if not p.is_file():
            v.missing.append(name)
        elif sha256_file(p) != digest:
            v.changed.append(name)
    v.added = sorted({p.relative_to(out_dir).as_posix() for p in _report_paths(out_dir)} - set(listed))
    return v
