"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically.

    The bytes go to a temporary file in the same folder, are flushed and fsynced, then the temporary
    file replaces ``path`` with :func:`os.replace` (atomic on POSIX and Windows). Parent folders are
    created. On any failure the temporary file is removed and ``path`` is left as it was.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    data : bytes
        Content to write.

    Returns
    -------
    pathlib.Path
        The destination path.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed explicitly below
        dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp", delete=False
    )
    try:
        with tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp.name, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)
        raise
    _fsync_dir(dest.parent)
    return dest


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`).

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    text : str
        Content to write; line endings are written as given.
    encoding : str, default "utf-8"
        Text encoding.

    Returns
    -------
    pathlib.Path
        The destination path.
    """
    return atomic_write_bytes(path, text.encode(encoding))


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself where the platform allows it (best effort)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
