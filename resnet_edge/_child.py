"""Child processes that touch untrusted models: bounded in memory and time, and never outliving us.

Every child the toolkit starts to load a model (the readiness and load check of ``inspect``, the
probe before a foreign model is loaded in this process, the tflite-runtime 2.14 check, timing in
another Python) goes through :func:`run`:

* its address space is capped (``RLIMIT_AS``, default 2 GB + 6x the model size, or
  ``$RESNET_EDGE_CHILD_MEMORY_MB``): a damaged model that makes the runtime allocate without bound
  fails inside the child in a fraction of a second, instead of exhausting the machine;
* it gets ``SIGKILL`` when the process that started it dies (Linux ``PR_SET_PDEATHSIG``), so a killed
  ``inspect`` or ``convert`` leaves no child running under PID 1;
* the model goes in on standard input where the child can take it, so no temporary copy is left behind;
* a time limit ends it.

Pure standard library: edge side.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
import sys

MEMORY_ENV = "RESNET_EDGE_CHILD_MEMORY_MB"
PR_SET_PDEATHSIG = 1
#: What a child writes when it reaches its address-space limit (Python, C++, the loader, libc).
MEMORY_SIGNS = ("MemoryError", "bad_alloc", "Cannot allocate memory", "out of memory", "failed to map segment")


def memory_limit(model_bytes: int = 0) -> int:
    """Bytes of address space a child may use: ``$RESNET_EDGE_CHILD_MEMORY_MB`` or 2 GB + 6x the model."""
    env = os.environ.get(MEMORY_ENV, "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env) << 20
    return (2 << 30) + 6 * int(model_bytes)


def _limits(memory: int | None):
    def apply():
        if sys.platform.startswith("linux"):
            try:
                ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            except (OSError, AttributeError):  # pragma: no cover - no prctl in this libc
                pass
            if os.getppid() == 1:  # the parent died before prctl took effect
                os._exit(1)
        if memory:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash in the child leaves no core file

    return apply


def run(cmd: list[str], *, input: bytes | None = None, timeout: float = 120, memory: int | None = None,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` with the limits above; raises ``subprocess.TimeoutExpired`` (the child is killed first)."""
    return subprocess.run(cmd, input=input, capture_output=True, timeout=timeout, preexec_fn=_limits(memory), env=env)


def describe_failure(proc: subprocess.CompletedProcess, memory: int | None) -> str:
    """One line on why a child failed: its signal, or the last line it wrote to stderr."""
    err = proc.stderr.decode("utf-8", errors="replace") if isinstance(proc.stderr, bytes) else (proc.stderr or "")
    lines = [line for line in err.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit code {proc.returncode}"
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        last = f"{name}" + (f" ({lines[-1]})" if lines else "")
    if memory and any(sign in err for sign in MEMORY_SIGNS):
        last = f"it needed more than its memory limit of {memory >> 20} MB (set {MEMORY_ENV} to change it)"
    elif memory and "allocating its tensors failed" in err:
        last += f"; the child may use at most {memory >> 20} MB ({MEMORY_ENV})"
    from resnet_edge.ui import safe_text

    return safe_text(last, 240)
