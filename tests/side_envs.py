"""Virtual environments of their own for programs that cannot install beside TensorFlow 2.21 (the app
frameworks: MediaPipe pins another protobuf's range, tflite-support protobuf < 4), built on first use and
kept in ``.test-envs/`` (or ``$RESNET_EDGE_TEST_ENVS``) for the next run. An environment counts as built
only when its ``ready`` file names exactly the requirements asked for, written after the install and an
import check succeeded: an interrupted install is built again, never used half-made."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    return Path(os.environ.get("RESNET_EDGE_TEST_ENVS") or ROOT / ".test-envs")


def side_python(name: str, requirements: list[str], check: str) -> str:
    """The python of environment ``name`` with ``requirements`` installed (``check``: a module it must
    import). Skips the test, with pip's last words, when the packages cannot be installed here."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    env = folder / name
    ready = env / "ready"
    want = "\n".join([sys.version.split()[0], *requirements]) + "\n"
    with open(folder / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once build it once
        if ready.is_file() and ready.read_text() == want:
            return str(env / "bin" / "python")
        shutil.rmtree(env, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        pip = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "-q", *requirements],
                             capture_output=True, text=True, timeout=900)
        if pip.returncode != 0:
            shutil.rmtree(env, ignore_errors=True)
            pytest.skip(f"{' '.join(requirements)} does not install here: {pip.stderr.strip()[-300:]}")
        imported = subprocess.run([str(env / "bin" / "python"), "-c", f"import {check}"], capture_output=True, text=True)
        assert imported.returncode == 0, f"{check} installed but does not import: {imported.stderr[-500:]}"
        ready.write_text(want)
        return str(env / "bin" / "python")
