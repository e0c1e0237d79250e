"""``resnet-edge sweep``: every model x setting on every target, into the results store.

One worker thread per target runs that target's jobs one after another, and holds a lock file for the
target while it measures (``$XDG_CACHE_HOME/resnet-edge/locks``), so a device is never measured by two
jobs at once, even by two sweeps in different processes. Different targets run in parallel. Each job
is one model with one setting (``bench`` on that target); its rows go to the store in one transaction
as soon as it ends, so a killed sweep loses at most the jobs in flight, and the same command run again
skips what the store already holds (same model sha256, target and setting) unless ``again``.

A target that cannot be reached fails its remaining jobs with the same one-line reason; the other
targets go on. Edge side: no TensorFlow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import queue
import threading
from typing import Callable

from resnet_edge.errors import ResnetEdgeError
from resnet_edge.targets import TargetError, TargetURL, device_hold


def lock_path(target: TargetURL) -> str:
    from resnet_edge.io import user_path

    return user_path("cache", "locks", f"target-{hashlib.sha256(target.url.encode()).hexdigest()[:16]}")


@contextlib.contextmanager
def device_lock(target: TargetURL, waiting: Callable[[], None] | None = None):
    """Hold the target's lock (:func:`resnet_edge.io.exclusive`, as long as it takes; ``waiting`` is called
    once if another process has it), and the device's own where it has one
    (:func:`resnet_edge.targets.device_hold`: processes of other machines too)."""
    import math

    from resnet_edge.io import exclusive

    with exclusive(lock_path(target), wait=math.inf, waiting=(lambda holder: waiting()) if waiting else None), \
            device_hold(target, lambda text: waiting() if waiting else None):
        yield


@dataclasses.dataclass
class Job:
    target: TargetURL
    model: str
    sha256: str
    setting: object  # runtime.setting.Setting


def plan(models: dict[str, str], targets: list[TargetURL], settings: list) -> list[Job]:
    """Every model (path -> sha256) x setting on every target, target by target."""
    return [Job(t, m, sha, s) for t in targets for m, sha in models.items() for s in settings]


def run(jobs: list[Job], *, store_path: str | None, again: bool, runs: int, warmup: int, verify: bool,
        timeout: float | None, events: Callable[[str, Job, dict], None], benchmark_binary: str | None = None) -> dict:
    """Run ``jobs`` (one worker per target); ``events(kind, job, info)`` is called from the main thread
    for ``start``, ``skipped``, ``measured``, ``failed`` and ``waiting``. Returns the lists of each."""
    from resnet_edge.measure.results import Store

    by_target: dict[str, list[Job]] = {}
    for job in jobs:
        by_target.setdefault(job.target.url, []).append(job)
    inbox: queue.Queue = queue.Queue()

    def worker(todo: list[Job]) -> None:
        from resnet_edge.measure.bench import bench

        store = None
        down: str | None = None
        try:
            try:
                store = Store(store_path)
            except ResnetEdgeError as exc:  # every job of this target fails cleanly, with the reason
                for job in todo:
                    inbox.put(("failed", job, {"error": str(exc)}))
                return
            with device_lock(todo[0].target, waiting=lambda: inbox.put(("waiting", todo[0], {}))):
                for job in todo:
                    key = job.setting.as_job()
                    try:
                        stored = not again and store.has(job.sha256, job.target.name, key)
                    except ResnetEdgeError as exc:
                        inbox.put(("failed", job, {"error": str(exc)}))
                        continue
                    if stored:
                        inbox.put(("skipped", job, {}))
                        continue
                    if down:
                        inbox.put(("failed", job, {"error": down}))
                        continue
                    inbox.put(("start", job, {}))
                    try:
                        result = bench([job.model], [job.setting], runs=runs, warmup=warmup, verify=verify,
                                       target=job.target, timeout=timeout, benchmark_binary=benchmark_binary)
                        if result.get("incomplete") or not result["records"]:
                            raise TargetError(result.get("incomplete") or "no result")
                        store.add(result["records"], target=job.target.name, target_url=job.target.url,
                                  machine=result.get("machine"), models={job.model: job.sha256}, settings={0: key})
                        inbox.put(("measured", job, result["records"][0]))
                    except TargetError as exc:  # the device is gone: its other jobs would fail the same way
                        down = str(exc)
                        inbox.put(("failed", job, {"error": down}))
                    except ResnetEdgeError as exc:  # this model or setting failed; the next may not
                        inbox.put(("failed", job, {"error": str(exc)}))
        except BaseException as exc:  # noqa: BLE001 - reported, never lost in a thread
            inbox.put(("crashed", todo[0], {"error": f"{type(exc).__name__}: {exc}"}))
        finally:
            if store is not None:
                store.close()
            inbox.put(("done", todo[0], {}))

    threads = [threading.Thread(target=worker, args=(todo,), daemon=True) for todo in by_target.values()]
    for t in threads:
        t.start()
    out: dict[str, list] = {"measured": [], "skipped": [], "failed": []}
    running = len(threads)
    while running:
        kind, job, info = inbox.get()
        if kind == "done":
            running -= 1
            continue
        if kind == "crashed":
            raise RuntimeError(f"the sweep's worker for {job.target} failed: {info['error']}")
        if kind in out:
            out[kind].append({"model": job.model, "target": job.target.name, "setting": job.setting.label(), **info})
        events(kind, job, info)
    return out
