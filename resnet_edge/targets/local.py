"""This machine as a target, beside ``ssh://`` and ``adb://``: the device harness in a child Python here.

A run gets what a device gets: a private folder holding the job's files under the names the job gives them
(linked, not copied), the harness started there with the memory and time limits of
:mod:`resnet_edge._child`, and the files it writes read back. So :mod:`resnet_edge.measure` has one path for
every target; what differs is said by the runner's attributes (:attr:`LocalTarget.one_model_per_run`,
:meth:`LocalTarget.groups`).
"""

from __future__ import annotations

import os
import tempfile
from typing import Callable

from resnet_edge.runtime.jobs import python_for, run_job
from resnet_edge.runtime.replies import HarnessFailed
from resnet_edge.targets.url import TargetURL

#: A local run's output file may be this large (scores of a whole data set); a device's are held to 64 MB.
MAX_FILE = 1 << 32


class LocalTarget:
    """The harness in a child of this machine: this Python, or the one that runs the setting's runtime
    (tflite-runtime's side environment, :func:`~resnet_edge.runtime.jobs.python_for`)."""

    #: All models go in one run, so that ``rounds`` interleave them in one process (on a device each model
    #: has its own run, so that a dropped link keeps what was measured).
    one_model_per_run = False

    def __init__(self, target: TargetURL | None = None):
        self.target = target or TargetURL("local", "local", "local")

    def __str__(self) -> str:
        return str(self.target)

    def groups(self, settings: list) -> list[list[int]]:
        """The settings' indices, grouped by the Python that runs them (one run each)."""
        by_python: dict[str, list[int]] = {}
        for i, s in enumerate(settings):
            by_python.setdefault(python_for(s.runtime), []).append(i)
        return list(by_python.values())

    def run(self, job: dict, send: dict[str, str], fetch: tuple[str, ...] = (), *, memory: int,
            timeout: float | None = None, progress: Callable[[str], None] | None = None,
            reply_bytes: int | None = None) -> tuple[dict, dict[str, bytes]]:
        """Run the harness with ``job`` (its file names those of ``send``) in a private folder; its result and
        the ``fetch`` files' bytes. ``reply_bytes`` is a device's bound: a child of ours needs none."""
        runtimes = {s.get("runtime", "auto") for s in job.get("settings", [])} or {"auto"}
        pythons = {python_for(r) for r in runtimes}
        if len(pythons) != 1:
            raise HarnessFailed("one local run takes settings of one Python; split them with LocalTarget.groups")
        with tempfile.TemporaryDirectory(prefix="run-") as folder:
            for name, path in send.items():
                os.symlink(os.path.abspath(path), os.path.join(folder, name))
            result = run_job(pythons.pop(), job, memory=memory, timeout=timeout or 3600, progress=progress, cwd=folder)
            files = {}
            for name in fetch:
                try:
                    with open(os.path.join(folder, name), "rb") as f:
                        files[name] = f.read(MAX_FILE + 1)
                except OSError:
                    raise HarnessFailed(f"the runtime wrote no {name}") from None
                if len(files[name]) > MAX_FILE:
                    raise HarnessFailed(f"the runtime's {name} is larger than {MAX_FILE >> 30} GB: refused")
        return result, files

    def probe(self, timeout: float | None = None) -> dict:
        """What this machine runs (the harness's ``probe``): machine, Python, numpy, runtimes, memory."""
        result, _ = self.run({"op": "probe"}, {}, memory=1 << 30, timeout=timeout or 60)
        return result
