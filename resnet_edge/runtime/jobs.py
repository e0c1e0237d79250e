"""Running the device harness in a child Python here, and reading its result line (bounded, never evaluated).
Edge side: stdlib and numpy.

The child is this Python, or for ``runtime="tflite-runtime"`` where this Python cannot import it, the side
environment of ``tools/make_tflite_runtime_env.sh`` (``$RESNET_EDGE_TFLITE_RUNTIME_PYTHON`` or
``.tflite-runtime-env/`` in the current folder).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from typing import Callable

from resnet_edge import _child, harness
from resnet_edge.errors import MissingDependencyError
from resnet_edge.runtime.replies import HarnessFailed
from resnet_edge.ui import safe_text

OLD_RUNTIME_ENV = "RESNET_EDGE_TFLITE_RUNTIME_PYTHON"
#: Where tools/make_tflite_runtime_env.sh puts the side environment by default.
OLD_RUNTIME_DIR = ".tflite-runtime-env"


def python_for(runtime: str) -> str:
    """The Python that runs ``runtime``: this one when it can import it, else tflite-runtime's side
    environment. Raises :class:`MissingDependencyError` naming what to install."""
    if runtime == harness.OPENVINO:
        if importlib.util.find_spec("openvino"):
            return sys.executable
        raise MissingDependencyError("OpenVINO is not installed here: pip install 'resnet-edge[openvino]' (or openvino)")
    wanted = list(harness.RUNTIMES) if runtime == "auto" else [runtime]
    if any(importlib.util.find_spec(harness.RUNTIMES[name]) for name in wanted):
        return sys.executable
    if runtime == "tflite-runtime":
        for python in (os.environ.get(OLD_RUNTIME_ENV), os.path.join(OLD_RUNTIME_DIR, "bin", "python")):
            if python and os.path.isfile(python) and os.access(python, os.X_OK):
                return os.path.abspath(python)  # a job may run in another folder
        raise MissingDependencyError(
            "tflite-runtime is not installed for this Python (its last release, 2.14, needs numpy < 2): run "
            f"`bash tools/make_tflite_runtime_env.sh` (makes {OLD_RUNTIME_DIR}/) or set {OLD_RUNTIME_ENV}")
    raise MissingDependencyError("no TFLite runtime here: pip install ai-edge-litert (or 'resnet-edge[edge]')")


def wants_gpu(job: dict) -> bool:
    """Whether a job opens a GPU: a GPU driver reserves address space far beyond what it uses, so such a
    child gets no address-space cap (here: a resident-memory watch instead)."""
    return any(s.get("accelerator") == "gpu" for s in job.get("settings", []))


def run_job(python: str, job: dict, *, memory: int, timeout: float = 3600,
            progress: Callable[[str], None] | None = None, cwd: str | None = None) -> dict:
    """Run the harness with ``job`` in a limited child ``python``; its result, or :class:`HarnessFailed`
    with the child's one-line reason. ``progress`` gets each progress line the harness writes; ``cwd``: the
    folder the job's file names are relative to."""
    cmd = [python, harness.__file__]
    gpu = wants_gpu(job)
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=_child._limits(None if gpu else memory), cwd=cwd)
    except OSError as exc:
        raise HarnessFailed(f"could not start {python}: {exc.strerror or exc}") from None
    watch = _child.ResidentWatch(proc, memory) if gpu else None
    try:
        proc.stdin.write(json.dumps(job).encode())
        proc.stdin.close()
    except OSError:  # it died at once: its stderr says why
        pass
    got = _child.collect(proc, timeout=timeout, on_progress=lambda t: progress and progress(safe_text(t, 200)))
    if watch:
        watch.stop()
    if got.ended == "timeout":
        raise HarnessFailed(f"the measurement did not finish within {timeout:g} s")
    if watch and watch.fired:
        raise HarnessFailed(f"the runtime failed: its resident memory passed its limit of {memory >> 20} MB "
                            f"(set {_child.MEMORY_ENV} to change it)")
    return parse_result(proc.returncode, got, lambda failed: f"the runtime failed: {_child.describe_failure(failed, memory)}")


def parse_result(returncode: int, got: "_child.Collected", crashed: Callable) -> dict:
    """The harness's result from what a child (here or on a device) printed: its ``error:`` line when it
    refused, ``crashed(CompletedProcess)`` when it died otherwise, else the one JSON result (bounded,
    never evaluated)."""
    err_lines = got.err_lines
    if got.ended == "too_much":
        raise HarnessFailed(f"the runner wrote more than {got.limit / 1e6:.1f} MB of results, more than the job asked "
                            "for; refused")
    if returncode != 0:
        errors = [line[7:] for line in err_lines if line.startswith("error: ")]
        if errors:
            raise HarnessFailed(safe_text(errors[-1], 400))
        raise HarnessFailed(crashed(subprocess.CompletedProcess([], returncode, b"", "\n".join(err_lines).encode())))
    try:
        result = json.loads(got.stdout.decode().strip().splitlines()[-1])["result"]
    except (ValueError, IndexError, KeyError, UnicodeDecodeError, TypeError, RecursionError):
        raise HarnessFailed("the measurement gave no result") from None
    if not isinstance(result, dict):
        raise HarnessFailed("the measurement gave no result")
    return result


def tflite_runtime_check(tflite_path: str | os.PathLike, python: str | None = None) -> dict:
    """Load and run the model in tflite-runtime 2.14 (the last release, common on Raspberry Pis), in a
    child process so that a crash there cannot take this process down.

    tflite-runtime 2.14 needs numpy < 2, which TensorFlow 2.21's environment does not have: the check
    runs with ``python`` or ``$RESNET_EDGE_TFLITE_RUNTIME_PYTHON`` (made by
    ``tools/make_tflite_runtime_env.sh``), else with this interpreter if tflite-runtime works in it.
    """
    python = python or os.environ.get(OLD_RUNTIME_ENV) or sys.executable
    code = (
        "import sys, numpy as np\n"
        "import tflite_runtime, tflite_runtime.interpreter as t\n"
        "i = t.Interpreter(model_path=sys.argv[1]); i.allocate_tensors()\n"
        "d = i.get_input_details()[0]\n"
        "i.set_tensor(d['index'], np.zeros(d['shape'], d['dtype'])); i.invoke()\n"
        "print(tflite_runtime.__version__)\n"
    )
    memory = _child.memory_limit(os.path.getsize(tflite_path))
    try:
        proc = _child.run([python, "-c", code, str(tflite_path)], timeout=300, memory=memory)
    except (subprocess.TimeoutExpired, OSError) as exc:
        return {"runtime": "tflite-runtime", "ok": False, "error": f"could not run {python}: {exc}"}
    if proc.returncode == 0:
        return {"runtime": "tflite-runtime", "version": proc.stdout.decode().strip().splitlines()[-1], "ok": True,
                "python": python}
    err = proc.stderr.decode("utf-8", errors="replace").strip()
    if "No module named 'tflite_runtime'" in err or "compiled using NumPy 1.x" in err:
        return {"runtime": "tflite-runtime", "ok": None,
                "error": f"not available with {python} (it needs numpy<2): run tools/make_tflite_runtime_env.sh "
                         f"and set {OLD_RUNTIME_ENV}"}
    return {"runtime": "tflite-runtime", "ok": False, "error": _child.describe_failure(proc, memory), "python": python}
