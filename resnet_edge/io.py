"""Atomic file writes: an artifact is either whole or absent, never half-written.

Every writer goes through :func:`atomic_path`: the data goes to a temporary file in the destination's
own directory (so the final ``os.replace`` is atomic on the same file system), and the temporary file
is removed if anything fails, including a KeyboardInterrupt. A file that was already there stays
untouched until the new one is complete. Pure Python: safe on the edge side.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from resnet_edge.errors import ResnetEdgeError


def ensure_writable(path: str | os.PathLike) -> Path:
    """Create the parent directory of ``path`` if needed and check that it can be written.

    Raises :class:`ResnetEdgeError` (one line) when the directory cannot be created or written, or when
    ``path`` names an existing directory.
    """
    path = Path(path)
    if path.is_dir():
        raise ResnetEdgeError(f"cannot write {path}: it is a directory; give a file name such as {path / 'model.keras'}")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResnetEdgeError(f"cannot create the directory {parent}: {exc.strerror or exc}; choose another output path") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ResnetEdgeError(f"cannot write to {parent}: permission denied; choose another output path")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); move it over ``path`` only on success."""
    final = ensure_writable(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".tmp{final.suffix}", dir=final.parent)
    except OSError as exc:
        raise ResnetEdgeError(f"cannot write {final}: {exc.strerror or exc}; choose another output path") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def current_umask() -> int:
    """The process umask (read without changing it for good)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_path(artifact: str | os.PathLike) -> Path:
    """The sidecar manifest of an artifact: ``model.keras`` -> ``model.json``."""
    return Path(artifact).with_suffix(".json")
