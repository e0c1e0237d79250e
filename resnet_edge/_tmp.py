"""A private temporary folder per process, swept when its process is gone.

TensorFlow writes files to the temporary directory while it traces (autograph's
``__autograph_generated_file*.py``) and removes them at exit, which a killed process never reaches.
:func:`use_private_tempdir` points ``tempfile`` (and ``$TMPDIR`` for children) at
``$TMPDIR/resnet-edge-pidNNN-XXXX``, removes it at exit, and removes such folders left by processes
that no longer exist, so a ``kill -9`` leaves its files only until the next run. Pure standard library.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from pathlib import Path

_PATTERN = re.compile(r"^resnet-edge-pid(\d+)-")
_made: Path | None = None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (owned by anyone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(base: str | os.PathLike) -> list[str]:
    """Remove the private folders of processes that are gone; return their names."""
    removed = []
    try:
        entries = list(Path(base).iterdir())
    except OSError:
        return removed
    for path in entries:
        found = _PATTERN.match(path.name)
        if found and int(found.group(1)) != os.getpid() and not pid_alive(int(found.group(1))) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def use_private_tempdir() -> Path | None:
    """Make (once) and use this process's private temporary folder; sweep dead processes' folders."""
    global _made
    if _made is not None:
        return _made
    base = tempfile.gettempdir()
    if _PATTERN.match(Path(base).name):  # a child of ours: its parent's private folder is fine
        return None
    sweep(base)
    try:
        _made = Path(tempfile.mkdtemp(prefix=f"resnet-edge-pid{os.getpid()}-", dir=base))
    except OSError:
        return None
    tempfile.tempdir = str(_made)
    os.environ["TMPDIR"] = str(_made)
    atexit.register(shutil.rmtree, _made, True)
    return _made
