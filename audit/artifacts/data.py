"""Data loaders (csv, parquet) and content hashes for provenance."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any

import pandas as pd

from audit.errors import ArtifactError, Issue

DATA_EXTENSIONS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def read_table(path: Path, fmt: str | None, *, where: str, key: str) -> pd.DataFrame:
    """Read a csv or parquet file; any problem becomes an ``ArtifactError`` located at the policy key."""
    if not path.is_file():
        raise ArtifactError([Issue(where, key, f"data file not found: {path}")])
    fmt = fmt or DATA_EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise ArtifactError([Issue(where, key, f"cannot tell the format of {path.name} from its extension; "
                                   "use .csv or .parquet, or set `data.format`")])
    try:
        frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    except Exception as exc:
        raise ArtifactError([Issue(where, key, f"cannot read {path.name} as {fmt}: "
                                   f"{type(exc).__name__}: {exc}")]) from exc
    if frame.empty:
        raise ArtifactError([Issue(where, key, f"{path.name} has no rows")])
    return frame


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_frame(frame: pd.DataFrame) -> str:
    """Hex sha256 of a DataFrame's content (values, index and column names), for data passed in memory."""
    h = hashlib.sha256()
    h.update("\x1f".join(map(str, frame.columns)).encode())
    h.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return h.hexdigest()


def sha256_object(obj: Any) -> str | None:
    """Hex sha256 of an in-memory object's pickled bytes (dumping only: nothing is ever unpickled)."""
    try:
        return hashlib.sha256(pickle.dumps(obj, protocol=4)).hexdigest()
    except Exception:
        return None
