"""Child processes that touch untrusted models: bounded in memory and time, and never outliving us.

Every child the toolkit starts to load a model (the readiness and load check of ``inspect``, the
probe before a foreign model is loaded in this process, the tflite-runtime 2.14 check, timing in
another Python) goes through :func:`run`:

* its address space is capped (``RLIMIT_AS``, default 2 GB + 6x the model size, or
  ``$RESNET_EDGE_CHILD_MEMORY_MB``): a damaged model that makes the runtime allocate without bound
  fails inside the child in a fraction of a second, instead of exhausting the machine. A GPU driver
  reserves far more address space than it uses (NVIDIA's Vulkan driver cannot even start a thread under
  such a cap: seen on an H200), so a child that opens a GPU is watched instead (:class:`ResidentWatch`):
  it is killed when its resident memory passes the same limit;
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
import threading

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


class ResidentWatch:
    """Kill ``proc`` when its resident memory (``VmRSS``) passes ``limit`` bytes, polled every ``interval`` s
    in a daemon thread: the bound for a child that cannot run under an address-space cap. ``fired`` tells
    whether it killed. Linux only (``/proc``); elsewhere it watches nothing."""

    def __init__(self, proc: subprocess.Popen, limit: int, interval: float = 0.05):
        self.proc, self.limit, self.interval = proc, limit, interval
        self.fired = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        status = f"/proc/{self.proc.pid}/status"
        while not self._stop.is_set() and self.proc.poll() is None:
            if resident_bytes(status) > self.limit:
                self.fired = True
                self.proc.kill()
                return
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def resident_bytes(status_path: str) -> int:
    """``VmRSS`` of a ``/proc/PID/status`` file in bytes; 0 when it cannot be read."""
    try:
        with open(status_path, "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) << 10
    except (OSError, ValueError, IndexError):
        pass
    return 0


class Collected:
    """What :func:`collect` gathered: ``stdout`` (at most ``max_stdout`` bytes), the last ``err_lines``
    that were not progress, and why it ended: ``"exit"``, ``"timeout"`` or ``"too_much"`` (the child wrote
    more than ``max_stdout`` and was killed)."""

    def __init__(self):
        self.stdout = b""
        self.err_lines: list[str] = []
        self.ended = "exit"
        self.limit = 0


def collect(proc: subprocess.Popen, *, timeout: float, max_stdout: int = 64 << 20,
            on_progress=None, keep_lines: int = 50) -> Collected:
    """Read a child's stdout and stderr until it exits, bounded in time and size. Both pipes are read by
    threads, so a child that writes much on one while we wait on the other cannot deadlock, and a child
    that writes nothing cannot hang us past ``timeout``. Lines of stderr that start with ``progress `` go to
    ``on_progress`` (the rest of the line); other lines are kept (each cut at 2,000 characters)."""
    got = Collected()
    got.limit = max_stdout
    chunks: list[bytes] = []

    def read_out():
        size = 0
        while True:
            chunk = proc.stdout.read1(1 << 16) if hasattr(proc.stdout, "read1") else proc.stdout.read(1 << 16)
            if not chunk:
                return
            size += len(chunk)
            if size > max_stdout:
                got.ended = "too_much"
                proc.kill()
                return
            chunks.append(chunk)

    def read_err():
        while True:
            raw = proc.stderr.readline(2000)
            if not raw:
                return
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            if line.startswith("progress ") and on_progress:
                on_progress(line[9:])
            elif line.strip():
                got.err_lines = (got.err_lines + [line])[-keep_lines:]

    threads = [threading.Thread(target=f, daemon=True) for f in (read_out, read_err)]
    for t in threads:
        t.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        got.ended = "timeout"
        proc.kill()
        proc.wait()
    for t in threads:
        t.join(timeout=5)
    got.stdout = b"".join(chunks)
    return got


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
