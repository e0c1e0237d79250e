"""``adb://[SERIAL]``: measure on an Android device with LiteRT's ``benchmark_model`` binary.

One run: the device's state is checked (``adb get-state``: no device, unauthorized, offline and an
unknown serial each get their own line), a folder ``/data/local/tmp/resnet-edge-XXXXXXXX`` is made,
the model (as ``m0.tflite``: no local name reaches the device's shell) and, when given, the
``benchmark_model`` binary are pushed, ``benchmark_model`` runs once per setting with ``--graph``,
``--num_runs``, ``--warmup_runs``, ``--num_threads``, ``--use_xnnpack`` / ``--use_gpu`` /
``--use_nnapi`` and ``--report_peak_memory_footprint``, its text output (bounded at 1 MB) is parsed
into the fields ``bench`` prints, and the folder is removed. Every argument of ``adb shell`` is quoted.

benchmark_model reports avg/std/min/max of the timed runs (and, since TFLite 2.13 or so, p5/median/
p95); p90/p99 it does not report, so they are None in a phone's record; the median is p50 when
present. Pure standard library: edge side.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shlex
import subprocess
from typing import Callable

from resnet_edge import _child
from resnet_edge.errors import ConfigError, ResnetEdgeError
from resnet_edge.runtime.replies import clean_machine, clean_record
from resnet_edge.targets.url import TargetError, TargetURL
from resnet_edge.ui import safe_text

REMOTE_BASE = "/data/local/tmp"
#: Where a benchmark_model already on the device is looked for when --benchmark-binary is not given.
DEVICE_BINARY = f"{REMOTE_BASE}/benchmark_model"
_NUMBER = r"([0-9.]+(?:e[+-]?[0-9]+)?)"


class BenchmarkFailed(TargetError):
    """benchmark_model ran but measured nothing (a delegate failed, the model was refused)."""


def _num(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def parse_benchmark_output(text: str) -> dict:
    """benchmark_model's text -> bench's fields (ms, MB). Raises :class:`BenchmarkFailed` with its error
    line when it measured nothing."""
    text = text[:1 << 20].replace("\r", "")
    lines = [line.split("tflite  : ", 1)[-1].strip() for line in text.splitlines()]  # logcat's prefix, if any
    out: dict = {k: None for k in ("init_ms", "first_inference_ms", "warmup_avg_ms", "avg_ms", "std_ms", "min_ms",
                                   "max_ms", "p50_ms", "p90_ms", "p99_ms", "count", "throughput_per_s",
                                   "peak_rss_init_mb", "peak_rss_overall_mb", "memory_init_mb", "memory_overall_mb",
                                   "fully_accelerated", "model_mb")}
    runs = [line for line in lines if re.match(r"count=\d+ first=", line)]
    for line in lines:
        m = re.search(rf"Inference timings in us: Init: {_NUMBER}, First inference: {_NUMBER}, "
                      rf"Warmup \(avg\): {_NUMBER}, Inference \(avg\): {_NUMBER}", line)
        if m:
            init, first, warm, avg = (_num(g) for g in m.groups())
            out.update(init_ms=init and init / 1e3, first_inference_ms=first and first / 1e3,
                       warmup_avg_ms=warm and warm / 1e3, avg_ms=avg and avg / 1e3)
        m = re.search(rf"Peak memory footprint \(MB\): init={_NUMBER} overall={_NUMBER}", line)
        if m:
            out.update(peak_rss_init_mb=_num(m.group(1)), peak_rss_overall_mb=_num(m.group(2)))
        m = re.search(rf"Memory footprint delta from the start of the tool \(MB\): init={_NUMBER} overall={_NUMBER}", line)
        if m:
            out.update(memory_init_mb=_num(m.group(1)), memory_overall_mb=_num(m.group(2)))
        m = re.search(rf"Overall peak memory footprint \(MB\) via periodic monitoring: {_NUMBER}", line)
        if m and out["peak_rss_overall_mb"] is None:
            out["peak_rss_overall_mb"] = _num(m.group(1))
        m = re.search(r"Replacing (\d+) out of (\d+) node\(s\) with delegate", line)
        if m:
            out["fully_accelerated"] = m.group(1) == m.group(2)
        m = re.search(rf"The input model file size \(MB\): {_NUMBER}", line)
        if m:
            out["model_mb"] = _num(m.group(1))
    if "will not be executed by the delegate" in text:
        out["fully_accelerated"] = False
    if runs:  # the last "count=" line is the timed runs (the one before it, the warm-up)
        fields = dict(re.findall(rf"(\w+)={_NUMBER}", runs[-1]))
        us = {k: _num(v) for k, v in fields.items()}
        out["count"] = int(us["count"]) if us.get("count") is not None else None
        for key, name in (("min", "min_ms"), ("max", "max_ms"), ("std", "std_ms"), ("median", "p50_ms")):
            if us.get(key) is not None:
                out[name] = us[key] / 1e3
        if out["avg_ms"] is None and us.get("avg") is not None:
            out["avg_ms"] = us["avg"] / 1e3
    if out["avg_ms"] is None:
        errors = [line for line in lines if line.startswith("ERROR") or "failed" in line.lower()]
        why = errors[0] if errors else (lines[-1] if lines and lines[-1] else "no output")
        raise BenchmarkFailed(f"benchmark_model measured nothing: {safe_text(why, 200)}")
    if out["avg_ms"]:
        out["throughput_per_s"] = 1e3 / out["avg_ms"]
    return out


def flags_for(setting, graph: str, runs: int, warmup: int, memory: bool = True) -> list[str]:
    """benchmark_model's arguments for a :class:`~resnet_edge.runtime.setting.Setting`."""
    if setting.runtime == "tflite-runtime" or setting.delegate or setting.weight_cache:
        raise ConfigError("on adb:// targets benchmark_model runs the model: --runtime, --delegate and --weight-cache "
                          "do not apply")
    flags = [f"--graph={graph}", f"--num_runs={runs}", f"--warmup_runs={warmup}"]
    if setting.threads:
        flags.append(f"--num_threads={setting.threads}")
    accelerator = setting.accelerator
    if accelerator == "gpu":
        flags.append("--use_gpu=true")
    elif accelerator == "nnapi":
        flags.append("--use_nnapi=true")
    else:  # the Interpreter's CPU path: XNNPACK, or the built-in kernels
        flags.append(f"--use_xnnpack={'false' if setting.kernels == 'builtin' and not accelerator else 'true'}")
    if memory:
        flags.append("--report_peak_memory_footprint=true")
    return flags


def _state_error(target: TargetURL, text: str) -> TargetError:
    serial = target.serial
    if "no devices/emulators found" in text:
        return TargetError(f"{target}: no Android device is attached: connect one with USB debugging on (`adb devices` "
                           "lists it), or `adb connect HOST:PORT` for one over the network")
    if "unauthorized" in text or "still authorizing" in text:
        return TargetError(f"{target}: the device has not authorized this computer: unlock it and accept the \"Allow "
                           "USB debugging\" prompt, then run again")
    if "offline" in text or "still connecting" in text:
        return TargetError(f"{target}: the device is offline: reconnect it (cable or `adb connect`), or run "
                           "`adb kill-server` and try again")
    if "not found" in text and serial:
        return TargetError(f"{target}: no device with serial {serial} is attached (`adb devices` lists the attached ones)")
    if "more than one device" in text:
        return TargetError(f"{target}: several devices are attached: choose one with adb://SERIAL (`adb devices`)")
    return TargetError(f"{target}: adb failed ({safe_text(text.strip().splitlines()[-1] if text.strip() else 'no message', 200)})")


class AdbTarget:
    """An Android device reached with the system's ``adb``; see the module text."""

    def __init__(self, target: TargetURL, *, benchmark_binary: str | None = None, timeout: float = 1800):
        self.target, self.timeout = target, timeout
        self.benchmark_binary = benchmark_binary or os.environ.get("RESNET_EDGE_BENCHMARK_BINARY") or None

    def __str__(self) -> str:
        return str(self.target)

    def _adb(self, *args: str) -> list[str]:
        return ["adb", *(["-s", self.target.serial] if self.target.serial else []), *args]

    def call(self, *args: str, timeout: float = 60, max_stdout: int = 1 << 20) -> tuple[int, str]:
        """Run ``adb ARGS``; its exit code and its output (stdout and stderr, bounded)."""
        try:
            proc = subprocess.Popen(self._adb(*args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
        except OSError as exc:
            raise TargetError(f"{self}: cannot run adb ({exc.strerror or exc}): install Android's platform tools "
                              "(apt install adb, or the SDK's platform-tools)") from None
        got = _child.collect(proc, timeout=timeout, max_stdout=max_stdout, keep_lines=200)
        if got.ended == "timeout":
            raise TargetError(f"{self}: adb {args[0]} did not finish within {timeout:g} s (a device that stopped "
                              "answering?)")
        if got.ended == "too_much":
            raise TargetError(f"{self}: adb {args[0]} wrote more than {max_stdout >> 10} kB, far more than it should: "
                              "refused")
        text = got.stdout.decode("utf-8", errors="replace") + "\n".join(got.err_lines)
        return proc.returncode, text

    def shell(self, argv: list[str], timeout: float = 60) -> tuple[int, str]:
        """``adb shell`` with every argument quoted for the device's shell."""
        return self.call("shell", " ".join(shlex.quote(a) for a in argv), timeout=timeout)

    def check_state(self) -> None:
        code, text = self.call("get-state", timeout=30)
        if code != 0 or text.strip().splitlines()[:1] != ["device"]:
            raise _state_error(self.target, text)

    def probe(self, timeout: float | None = None) -> dict:
        """What the device is: model, Android version, ABI, cores, memory, and whether benchmark_model is there."""
        self.check_state()
        facts = {}
        for key, prop in (("model", "ro.product.model"), ("android", "ro.build.version.release"),
                          ("abi", "ro.product.cpu.abi"), ("soc", "ro.soc.model")):
            code, text = self.shell(["getprop", prop])
            facts[key] = safe_text(text.strip(), 80) if code == 0 else None
        code, text = self.shell(["cat", "/proc/meminfo"])
        m = re.search(r"MemTotal:\s+(\d+)", text)
        facts["memory_mb"] = int(m.group(1)) // 1024 if m else None
        code, text = self.shell(["ls", "/sys/devices/system/cpu/"])
        facts["cores"] = len(re.findall(r"\bcpu\d+\b", text)) or None
        facts["benchmark_model"] = DEVICE_BINARY if self._present(DEVICE_BINARY) else None
        return facts

    def _present(self, path: str) -> bool:
        """Whether an executable ``path`` is on the device: read from the output, since a device without adb's
        shell protocol v2 reports no exit codes."""
        code, text = self.call("shell", f"test -x {shlex.quote(path)} && echo present || echo absent")
        return text.strip().splitlines()[:1] == ["present"]

    def bench(self, paths: list[str], checked: dict, settings: list, *, runs: int, warmup: int,
              measure_memory: bool = True, progress: Callable[[str], None] | None = None,
              timeout: float | None = None) -> dict:
        """``bench`` on the device: one benchmark_model run per model x setting, in bench's record form."""
        for s in settings:
            flags_for(s, "x", runs, warmup)  # unsupported settings fail before the device is touched
        if self.benchmark_binary and not os.path.isfile(self.benchmark_binary):
            raise ConfigError(f"--benchmark-binary {self.benchmark_binary}: no such file (LiteRT's benchmark_model "
                              "built for Android arm64)")
        self.check_state()
        self._heat_before = self.temperatures()
        folder = f"{REMOTE_BASE}/resnet-edge-{secrets.token_hex(4)}"
        records, incomplete = [], None
        code, text = self.call("shell", f"mkdir -p {shlex.quote(folder)} && echo made")
        if "made" not in text.split():
            raise TargetError(f"{self}: cannot make {folder} on the device ({safe_text(text.strip(), 200)})")
        try:
            binary = DEVICE_BINARY
            if self.benchmark_binary:
                binary = f"{folder}/benchmark_model"
                self._push(self.benchmark_binary, binary)
                self.shell(["chmod", "755", binary])
            elif not self._present(binary):
                raise TargetError(f"{self}: there is no benchmark_model on the device ({DEVICE_BINARY}): give "
                                  "--benchmark-binary PATH (LiteRT's benchmark_model for Android arm64), or push it "
                                  "there yourself")
            for i, path in enumerate(paths):
                graph = f"{folder}/m{i}.tflite"
                self._push(path, graph)
                for index, s in enumerate(settings):
                    if progress:
                        progress(f"{self}: {os.path.basename(path)} [{s.label()}]")
                    try:
                        code, text = self.shell([binary, *flags_for(s, graph, runs, warmup, measure_memory)],
                                                timeout=timeout or self.timeout)
                        figures = parse_benchmark_output(text)
                        # the device's figures checked as any device's (types and ranges; benchmark_model's count
                        # may differ from --num_runs: it also runs for at least --min_secs, at most --max_secs)
                        figures = {k: v for k, v in clean_record(figures, str(self)).items() if k in figures}
                    except ResnetEdgeError as exc:
                        if not records:
                            raise
                        incomplete = f"{exc} (after {len(records)} of {len(paths) * len(settings)} records)"
                        return self._result(records, incomplete)
                    records.append({"runtime_version": None, "kernels": s.kernels, "delegate": None,
                                    "delegate_options": {}, "weight_cache": None, "notes": [], "inputs": None,
                                    "weight_cache_init": None, "rss_start_mb": None,
                                    **{k: v for k, v in figures.items() if k != "model_mb"},
                                    "model": path, "setting": s.label(), "setting_index": index,
                                    "integrity": checked[path]["integrity"]["status"],
                                    "model_bytes": checked[path]["bytes"], "runtime": "benchmark_model",
                                    "api": "benchmark_model", "accelerator": s.accelerator or "cpu",
                                    "threads": s.threads, "input_source": "benchmark_model", "warmup_runs": warmup,
                                    "runs": runs, "rounds": 1})
        finally:
            self.shell(["rm", "-rf", folder])
        return self._result(records, incomplete)

    #: One shell line, the same for every device (no value of ours in it): each thermal zone's type and millidegrees.
    THERMAL = ("for z in /sys/class/thermal/thermal_zone*; do echo \"$(cat $z/type 2>/dev/null)"
               " $(cat $z/temp 2>/dev/null)\"; done")

    def temperatures(self) -> dict:
        """``{zone type: degrees C}`` of the phone's thermal zones (the first 16; {} where none can be read)."""
        try:
            code, text = self.call("shell", self.THERMAL, timeout=30)
        except ResnetEdgeError:
            return {}
        out: dict = {}
        for line in text.splitlines()[:16]:
            kind, _, milli = line.strip().rpartition(" ")
            if not re.fullmatch(r"-?\d{1,7}", milli) or not kind:
                continue
            c = int(milli) / 1000
            if -50 <= c <= 200:
                name = safe_text(kind, 60)
                out[f"{name} ({len(out)})" if name in out else name] = c
        return out

    def _result(self, records: list[dict], incomplete: str | None) -> dict:
        heat = {"before": getattr(self, "_heat_before", {}), "after": self.temperatures()}
        return {"machine": clean_machine({"cpu": None, "isa": [], "arch": "android", "cores": None,
                                          "system": "Android", "python": None, "temperature_c": heat}),
                "target": self.target.name, "target_url": self.target.url,
                "incomplete": incomplete, "records": records}

    def _push(self, local: str, remote: str) -> None:
        size = os.path.getsize(local)
        code, text = self.call("push", local, remote, timeout=60 + size / 1e6)
        if code != 0:
            raise TargetError(f"{self}: adb push failed ({safe_text(text.strip().splitlines()[-1] if text.strip() else '', 200)})")
