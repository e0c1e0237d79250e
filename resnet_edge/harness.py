"""Run and time ``.tflite`` models where they run: stdlib, numpy and a TFLite runtime, nothing else.

This file imports nothing from ``resnet_edge``, so that the very same code measures on this machine,
in the ``tflite-runtime`` 2.14 side environment (numpy < 2, made by ``tools/make_tflite_runtime_env.sh``)
and on a device that has only Python, numpy and a runtime (a Raspberry Pi reached over SSH). It runs as
a plain script that reads one job (JSON) on standard input and prints one JSON result on standard
output; progress goes to standard error as lines starting with ``progress``::

    python harness.py < job.json

A job is ``{"op": "bench" | "predict" | "memory" | "machine" | "probe", ...}``:

* ``probe``: what this Python can run, for a device check: the machine, Python, numpy and each runtime's
  version (``null`` where missing) and the memory. It needs only the standard library.

* ``bench``: ``models`` (paths), ``settings`` (see :class:`Session`), ``runs``, ``warmup``, ``rounds``,
  optional ``inputs`` (a ``.npy`` of samples per model, else inputs made from each model's signature),
  ``memory`` (default true) and ``keep_times`` (every timed run in the record, as ``times_ms``).
  Every model x setting is opened, then all are timed in turn, round after round, so that a slow spell
  of a shared machine falls on all of them. The figures have LiteRT ``benchmark_model``'s meaning:
  initialization, first inference, warm-up average, then count/avg/std/min/p50/p90/p99/max of the timed
  runs (``perf_counter`` around ``invoke`` only), throughput, and the resident-set high-water mark
  during initialization and overall, measured in a fresh process per model x setting (``memory``) so
  that one model's memory is not charged to another.
* ``predict``: one model, one or more settings, float inputs in the model's form from a ``.npy``; the
  scores (dequantized, float32) of each setting go to ``.npy`` files, with per-image latencies.
* ``predict_folder``: the same for the images of a folder on this machine (data that lives on the device),
  decoded with Pillow and prepared as evaluation does; the labels go to a ``.npy`` too.

Settings: ``runtime`` (``auto``, ``litert``, ``tflite-runtime``, or ``openvino``: OpenVINO's CPU plugin
reading the ``.tflite`` itself, with ``precision`` ``f32`` (default) or ``bf16`` and ``weight_cache`` as
its model cache folder), ``accelerator`` (``null``: the classic
``Interpreter``; ``cpu`` / ``gpu``: LiteRT's ``CompiledModel`` with ``HardwareAccelerator.CPU`` or
``GPU | CPU``), ``fallback`` (a GPU that does not start falls back to the CPU, and the result says so),
``kernels`` (``xnnpack``: the runtime's default delegate; ``builtin``: TFLite's own kernels, no default
delegate), ``threads``, ``delegate`` and ``delegate_options`` (an external delegate library, Interpreter
API), ``weight_cache`` (a folder for XNNPACK's weight cache, CompiledModel CPU).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import platform
import subprocess
import sys
import time

try:
    import numpy as np
except ImportError:  # only the probe runs without numpy; it reports the absence
    np = None

#: Image files of an image folder, and how evaluation resizes them: below CIFAR_STYLE_BELOW pixels a plain
#: resize, else the shorter side to size / EVAL_CROP and a centered crop (ImageNet style). Training's
#: pipeline (resnet_edge.data) and eval use these same values.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CIFAR_STYLE_BELOW = 96
EVAL_CROP = 0.875
#: The oldest Python the edge side runs on (ai-edge-litert's and this file's minimum).
MIN_PYTHON = (3, 9)
KERNELS = ("xnnpack", "builtin")
ACCELERATORS = ("cpu", "gpu")
RUNTIMES = {"litert": "ai_edge_litert", "tflite-runtime": "tflite_runtime"}  # name -> package, best first
#: OpenVINO reads a .tflite itself (its TensorFlow Lite frontend) and runs it with its CPU plugin: an engine
#: beside the TFLite interpreters, chosen by name only (``auto`` never picks it).
OPENVINO = "openvino"
#: OpenVINO's INFERENCE_PRECISION_HINT: f32 computes a float32 model in float32; bf16 lets a CPU with AMX or
#: AVX-512 BF16 compute it in bfloat16 (OpenVINO's own default there: faster, less exact).
PRECISIONS = ("f32", "bf16")
#: Runs of the memory pass (the high-water mark settles after the first few invocations).
MEMORY_RUNS = 10


class HarnessError(Exception):
    """A problem with the job, the model or the runtime: printed as one line, exit code 2."""


def runtime_module(runtime: str = "auto"):
    """``(name, version, interpreter module)`` of ``runtime`` (``auto``: LiteRT, else tflite-runtime)."""
    names = list(RUNTIMES) if runtime == "auto" else [runtime]
    for name in names:
        if name not in RUNTIMES:
            raise ValueError(f"unknown runtime {name!r}; valid: auto, {', '.join(RUNTIMES)}")
        try:
            module = importlib.import_module(RUNTIMES[name] + ".interpreter")
        except ImportError:
            continue
        package = importlib.import_module(RUNTIMES[name])
        return name, getattr(package, "__version__", "?"), module
    raise ImportError(f"no TFLite runtime importable for {runtime!r} by {sys.executable}: {sys.executable} -m pip install "
                      "ai-edge-litert (or tflite-runtime)")


def interpreter_kwargs(module, threads: int | None, kernels: str) -> dict:
    """Constructor arguments for ``module.Interpreter``: threads and the kernel choice."""
    if kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {', '.join(KERNELS)}, got {kernels!r}")
    kwargs = {"num_threads": threads} if threads else {}
    if kernels == "builtin":
        kwargs["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return kwargs


# --- the machine -------------------------------------------------------------------------------------


def machine() -> dict:
    """This machine: CPU model and the ISA extensions that matter to int8 speed, cores, OS, Python."""
    cpu, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model", "Hardware") and cpu in ("", platform.machine(), platform.processor()):
                    cpu = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    isa = [name for name, flag in (("AVX-512 VNNI", "avx512_vnni"), ("AVX-512", "avx512f"), ("AVX-VNNI", "avx_vnni"),
                                   ("AVX2", "avx2"), ("NEON dot product", "asimddp"), ("NEON", "asimd"))
           if flag in flags]
    under_qemu = emulated(flags)
    if under_qemu:  # /proc/cpuinfo is the host's: say what runs, not the host's extensions
        cpu, isa = f"{platform.machine()} emulated by qemu on {cpu}", []
    return {"cpu": cpu[:200], "isa": isa, "arch": platform.machine(), "cores": os.cpu_count(),
            "system": f"{platform.system()} {platform.release()}"[:200], "python": platform.python_version(),
            "emulated": under_qemu}


def temperatures(root: str = "/sys/class/thermal", zones: int = 16) -> dict:
    """``{zone type: degrees C}`` of the machine's thermal zones (Linux sysfs: a Pi's ``cpu-thermal``, a
    phone's ``cpu-*``), the first ``zones`` of them; {} where the system exposes none (a container, a VM).
    Heat alone has moved a phone's latency by 40%: a bench records it before and after."""
    out: dict = {}
    try:
        names = sorted((n for n in os.listdir(root) if n.startswith("thermal_zone") and n[12:].isdigit()),
                       key=lambda n: int(n[12:]))[:zones]
    except OSError:
        return out
    for name in names:
        try:
            with open(os.path.join(root, name, "temp"), encoding="ascii", errors="replace") as f:
                milli = int(f.read(32).strip())
            with open(os.path.join(root, name, "type"), encoding="utf-8", errors="replace") as f:
                kind = f.read(64).strip() or name
        except (OSError, ValueError):
            continue
        if -50_000 <= milli <= 200_000:
            out[f"{kind} ({name})" if kind in out else kind] = milli / 1000
    return out


def emulated(flags: set) -> bool:
    """Whether this Python runs under qemu user-mode emulation (an Arm system on an x86 machine): the
    kernel's CPU flags are x86's, or the kernel runs Arm binaries through qemu. Latencies then mean nothing."""
    arch = platform.machine().lower()
    if not arch.startswith(("aarch64", "arm")):
        return False
    if flags & {"sse2", "avx2", "lm"}:
        return True
    try:
        with open(f"/proc/sys/fs/binfmt_misc/qemu-{'aarch64' if arch.startswith('aarch64') else 'arm'}",
                  encoding="ascii", errors="replace") as f:
            return f.readline().strip() == "enabled"
    except OSError:
        return False


# --- memory ------------------------------------------------------------------------------------------


def _status_kb(field: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024


def reset_peak() -> bool:
    """Reset the resident-set high-water mark to the current resident set (Linux ``clear_refs`` 5)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_mb() -> float | None:
    kb = _status_kb("VmHWM")
    if kb is None:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform == "darwin" else 1)
    return kb / 1024


# --- one model, one setting ----------------------------------------------------------------------------


def _setting(raw: dict) -> dict:
    s = {"runtime": "auto", "accelerator": None, "fallback": False, "kernels": "xnnpack", "threads": None,
         "delegate": None, "delegate_options": {}, "weight_cache": None, "precision": None, **(raw or {})}
    if s["threads"] is not None and (not isinstance(s["threads"], int) or s["threads"] < 1):
        raise HarnessError(f"threads must be a whole number >= 1, got {s['threads']!r}")
    if s["runtime"] == OPENVINO:
        if s["accelerator"] or s["fallback"] or s["delegate"] or s["kernels"] != "xnnpack":
            raise HarnessError("OpenVINO runs the model with its own CPU plugin: --accelerator, --fallback, --delegate "
                               "and --kernels mean nothing there")
        s["precision"] = s["precision"] or "f32"
        if s["precision"] not in PRECISIONS:
            raise HarnessError(f"precision must be one of {', '.join(PRECISIONS)}, got {s['precision']!r}")
        return s
    if s["precision"] is not None:
        raise HarnessError(f"precision {s['precision']!r} is an OpenVINO setting")
    if s["kernels"] not in KERNELS:
        raise HarnessError(f"kernels must be one of {', '.join(KERNELS)}, got {s['kernels']!r}")
    if s["accelerator"] not in (None, *ACCELERATORS):
        raise HarnessError(f"accelerator must be one of {', '.join(ACCELERATORS)}, got {s['accelerator']!r}")
    if s["accelerator"] and s["delegate"]:
        raise HarnessError("an external delegate runs through the Interpreter API: leave out the accelerator")
    if s["weight_cache"] and s["accelerator"] != "cpu":
        raise HarnessError("the XNNPACK weight cache is a CompiledModel CPU option: use it with accelerator cpu")
    return s


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith("=== ")]
    useful = [line for line in lines if "ERROR:" in line and not line.rstrip().endswith("]")]
    return (useful or lines or [type(exc).__name__])[-1 if useful else 0][:300]


def tensor_detail(d: dict) -> dict:
    """An interpreter tensor detail as plain JSON: name, index, shape, dtype name, scale, zero point."""
    scale, zero = d.get("quantization", (0.0, 0))
    return {"name": str(d.get("name", "")), "index": int(d["index"]), "shape": [int(v) for v in d["shape"]],
            "dtype": np.dtype(d["dtype"]).name, "scale": float(scale), "zero_point": int(zero)}


def _io_details(interpreter) -> tuple[list[dict], list[dict]]:
    """A TFLite interpreter's input and output tensor details (see :func:`tensor_detail`)."""
    return ([tensor_detail(d) for d in interpreter.get_input_details()],
            [tensor_detail(d) for d in interpreter.get_output_details()])


class Session:
    """One model opened with one setting. ``init_s`` is the time to create it and make it ready to run
    (model load, delegate or accelerator preparation, tensor allocation)."""

    def __init__(self, path: str, setting: dict):
        self.path, self.setting = path, _setting(setting)
        s = self.setting
        self.notes: list[str] = []
        if s["runtime"] == OPENVINO:
            self._open_openvino()
            return
        try:
            self.runtime, self.version, module = runtime_module(s["runtime"])
        except (ImportError, ValueError) as exc:
            raise HarnessError(str(exc)) from None
        self.module = module
        self.fully_accelerated = None
        self.accelerator = s["accelerator"]
        if s["accelerator"] and self.runtime != "litert":
            raise HarnessError(f"--accelerator needs LiteRT's CompiledModel API; {self.runtime} {self.version} has only "
                               "the Interpreter: pip install ai-edge-litert")
        self.weight_cache_ms = None
        if s["weight_cache"]:
            self.weight_cache_ms = self._weight_cache_figures()
        started = time.perf_counter()
        self._open(s["accelerator"])
        self.init_s = time.perf_counter() - started
        # Tensor details (with quantization) come from a plain Interpreter: the CompiledModel API omits them.
        self._details(*_io_details(self.interpreter if self.api == "interpreter" else self._plain_interpreter(module)))

    def _plain_interpreter(self, module):
        """The model in ``module``'s Interpreter with no delegate: what the tensors' details are read from."""
        return module.Interpreter(model_path=self.path,
                                  experimental_op_resolver_type=module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)

    def _details(self, inputs: list[dict], outputs: list[dict]) -> None:
        """The model's tensor details (see :func:`tensor_detail`); a model without inputs or outputs is refused."""
        self.inputs, self.outputs = inputs, outputs
        if not self.inputs or not self.outputs:
            raise HarnessError(f"{self.path} has {len(self.inputs)} inputs and {len(self.outputs)} outputs; "
                               "nothing to run")

    # opening

    def _open_openvino(self) -> None:
        """Read the .tflite with OpenVINO's TensorFlow Lite frontend and compile it for its CPU plugin:
        ``threads`` is INFERENCE_NUM_THREADS, ``precision`` INFERENCE_PRECISION_HINT, ``weight_cache``
        its model cache (CACHE_DIR). The tensors' quantization comes from a TFLite interpreter when one
        is installed (OpenVINO takes and gives the model's own types); without one, float I/O only."""
        s = self.setting
        try:
            ov = importlib.import_module("openvino")
        except ImportError:
            raise HarnessError(f"OpenVINO is not installed for {sys.executable}: {sys.executable} -m pip install "
                               "openvino (or 'resnet-edge[openvino]')") from None
        self.runtime, self.version, self.api = OPENVINO, str(ov.get_version()).split("-")[0], "openvino"
        self.module, self.accelerator, self.fully_accelerated = ov, None, None
        self.weight_cache_ms = None
        if s["weight_cache"]:
            try:
                os.makedirs(s["weight_cache"], exist_ok=True)
            except OSError as exc:
                raise HarnessError(f"model cache folder {s['weight_cache']}: {exc.strerror or exc}") from None
            cached_before = bool(os.listdir(s["weight_cache"]))
            started = time.perf_counter()
            self._compile_openvino(None)
            without = (time.perf_counter() - started) * 1e3
            building = None
            if not cached_before:
                started = time.perf_counter()
                self._compile_openvino(s["weight_cache"])
                building = (time.perf_counter() - started) * 1e3
            self.weight_cache_ms = {"path": s["weight_cache"], "init_without_ms": without, "init_building_ms": building}
        started = time.perf_counter()
        self._compile_openvino(s["weight_cache"])
        self.init_s = time.perf_counter() - started
        try:
            meta = self._plain_interpreter(runtime_module("auto")[2])
        except ImportError:  # OpenVINO alone: what it says of the tensors, and no quantized I/O
            meta = None
        except (ValueError, RuntimeError) as exc:
            raise HarnessError(f"{self.path}: the runtime cannot load it ({_first_line(exc)})") from None
        if meta is None:
            self._details([self._ov_detail(p, i) for i, p in enumerate(self.compiled.inputs)],
                          [self._ov_detail(p, i) for i, p in enumerate(self.compiled.outputs)])
            if any(d["dtype"] not in ("float32", "float16") for d in self.inputs + self.outputs):
                raise HarnessError(f"{self.path} has integer inputs or outputs, whose scale only a TFLite runtime "
                                   "reads here: pip install ai-edge-litert beside openvino")
        else:
            self._details(*_io_details(meta))

    def _compile_openvino(self, cache: str | None) -> None:
        ov, s = self.module, self.setting
        config = {"INFERENCE_PRECISION_HINT": s["precision"], "PERFORMANCE_HINT": "LATENCY"}
        if s["threads"]:
            config["INFERENCE_NUM_THREADS"] = int(s["threads"])
        if cache:
            config["CACHE_DIR"] = cache
        try:
            core = ov.Core()
            self.compiled = core.compile_model(core.read_model(self.path), "CPU", config)
            self.request = self.compiled.create_infer_request()
            self.device = str(core.get_property("CPU", "FULL_DEVICE_NAME"))
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own RuntimeError subclasses and more
            raise HarnessError(f"{self.path}: OpenVINO cannot load it ({_first_line(exc)})") from None

    @staticmethod
    def _ov_detail(port, index: int) -> dict:
        names = sorted(port.get_names())
        dtype = {"f32": "float32", "f16": "float16", "i8": "int8", "u8": "uint8", "i32": "int32"}.get(
            port.get_element_type().get_type_name(), port.get_element_type().get_type_name())
        return {"name": names[0] if names else "", "index": index, "shape": [int(d) for d in port.get_shape()],
                "dtype": dtype, "scale": 0.0, "zero_point": 0}

    def _cache_file(self) -> str:
        folder = self.setting["weight_cache"]
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise HarnessError(f"weight cache folder {folder}: {exc.strerror or exc}") from None
        with open(self.path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:24]
        return os.path.join(folder, f"{digest}.xnnpack_cache")

    def _weight_cache_figures(self) -> dict:
        """Initialization without the cache, and with it (built now if missing, then loaded)."""
        cache = self._cache_file()
        figures = {"path": cache, "init_without_ms": None, "init_building_ms": None}
        started = time.perf_counter()
        self._open("cpu", cache="")
        figures["init_without_ms"] = (time.perf_counter() - started) * 1e3
        if not os.path.exists(cache):
            started = time.perf_counter()
            self._open("cpu", cache=cache)
            figures["init_building_ms"] = (time.perf_counter() - started) * 1e3
        self.compiled = None
        self._cache = cache
        return figures

    def _open(self, accelerator: str | None, cache: str | None = None) -> None:
        s, module = self.setting, self.module
        if accelerator is None:
            self.api = "interpreter"
            kwargs = interpreter_kwargs(module, s["threads"], s["kernels"])
            if s["delegate"]:
                options = {str(k): str(v) for k, v in (s["delegate_options"] or {}).items()}
                try:
                    kwargs["experimental_delegates"] = [module.load_delegate(s["delegate"], options)]
                except (ValueError, RuntimeError, OSError) as exc:
                    raise HarnessError(f"delegate {s['delegate']} did not load ({_first_line(exc)}); give the path "
                                       "of a TFLite external delegate library (.so) built for this runtime") from None
            try:
                self.interpreter = module.Interpreter(model_path=self.path, **kwargs)
                self.interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as exc:
                raise HarnessError(f"{self.path}: the runtime cannot load it ({_first_line(exc)})") from None
            self._in = [d["index"] for d in self.interpreter.get_input_details()]
            self._out = [d["index"] for d in self.interpreter.get_output_details()]
            return
        self.api = "compiled_model"
        cm = importlib.import_module("ai_edge_litert.compiled_model")
        if s["kernels"] != "xnnpack":
            raise HarnessError("the CompiledModel CPU accelerator is XNNPACK; --kernels builtin needs the Interpreter "
                               "(leave out --accelerator)")
        cpu = cm.CpuOptions(num_threads=s["threads"] or 0,
                            xnnpack_weight_cache_path=getattr(self, "_cache", "") if cache is None else cache)
        hw = cm.HardwareAccelerator.CPU
        if accelerator == "gpu":
            hw = cm.HardwareAccelerator.GPU | cm.HardwareAccelerator.CPU
        try:
            compiled = cm.CompiledModel.from_file(self.path, options=cm.Options(hw, cpu_options=cpu))
            self._buffers(compiled)
        except (ValueError, RuntimeError) as exc:
            if accelerator != "gpu":
                raise HarnessError(f"{self.path}: LiteRT's CompiledModel cannot load it ({_first_line(exc)})") from None
            why = _first_line(exc)
            if not s["fallback"]:
                raise HarnessError(f"no usable GPU here: LiteRT's GPU accelerator did not start ({why}); run where "
                                   "there is one, or add --fallback to run on the CPU instead") from None
            self.notes.append(f"GPU did not start ({why}): fell back to the CPU")
            self.accelerator = "cpu (fallback)"
            return self._open("cpu")
        self.compiled = compiled
        self.fully_accelerated = bool(compiled.is_fully_accelerated())

    def _buffers(self, compiled) -> None:
        self._in_buffers = compiled.create_input_buffers(0)
        self._out_buffers = compiled.create_output_buffers(0)

    # running

    def set_inputs(self, xs: list[np.ndarray]) -> None:
        if self.api == "openvino":
            for i, x in enumerate(xs):
                self.request.set_input_tensor(i, self.module.Tensor(np.ascontiguousarray(x)))
        elif self.api == "interpreter":
            for index, x in zip(self._in, xs):
                self.interpreter.set_tensor(index, x)
        else:
            for buffer, x in zip(self._in_buffers, xs):
                buffer.write(x)

    def invoke(self) -> None:
        if self.api == "openvino":
            self.request.infer()
        elif self.api == "interpreter":
            self.interpreter.invoke()
        else:
            self.compiled.run_by_index(0, self._in_buffers, self._out_buffers)

    def get_outputs(self) -> list[np.ndarray]:
        if self.api == "openvino":
            return [np.array(self.request.get_output_tensor(i).data) for i in range(len(self.outputs))]
        if self.api == "interpreter":
            return [self.interpreter.get_tensor(i).copy() for i in self._out]
        return [b.read(int(np.prod(d["shape"])), np.dtype(d["dtype"])).reshape(d["shape"])
                for b, d in zip(self._out_buffers, self.outputs)]

    def describe(self) -> dict:
        s = self.setting
        return {"runtime": self.runtime, "runtime_version": self.version, "api": self.api,
                "accelerator": self.accelerator, "fully_accelerated": self.fully_accelerated,
                "kernels": {"interpreter": s["kernels"], "compiled_model": "xnnpack"}.get(self.api), "threads": s["threads"],
                "delegate": s["delegate"], "delegate_options": s["delegate_options"] or {},
                "weight_cache": s["weight_cache"], "notes": self.notes,
                **({"precision": s["precision"], "device_name": self.device} if self.api == "openvino" else {})}


# --- inputs --------------------------------------------------------------------------------------------


def signature_input(detail: dict, rng: np.random.Generator, raw_pixels: bool = True) -> np.ndarray:
    """A random input of the tensor's own shape and type. Quantized integers span their whole range (the
    real range scale * (q - zero_point) that calibration gave them); float inputs get 0..255 (raw pixels)
    or -1..1 (normalized); other integers small non-negative values; booleans either value."""
    dtype, shape = np.dtype(detail["dtype"]), detail["shape"]
    if dtype.kind == "f":
        low, high = (0.0, 255.0) if raw_pixels else (-1.0, 1.0)
        return rng.uniform(low, high, shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(dtype)
    info = np.iinfo(dtype)
    if detail.get("scale") or dtype in (np.uint8, np.int8):
        return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
    return rng.integers(0, 10, shape).astype(dtype)


def to_model_dtype(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float values in the model's form -> the input tensor's type (quantized with its scale and zero
    point; raw integers rounded and clipped)."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    if detail["scale"]:
        x = x / detail["scale"] + detail["zero_point"]
    return np.clip(np.round(x), info.min, info.max).astype(dtype)


def from_model_dtype(y: np.ndarray, detail: dict) -> np.ndarray:
    if np.dtype(detail["dtype"]).kind != "f" and detail["scale"]:
        return (y.astype(np.float32) - detail["zero_point"]) * detail["scale"]
    return y.astype(np.float32)


def _load_npy(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise HarnessError(f"inputs {path}: {exc}") from None


def _sample_batches(session: Session, samples: np.ndarray | None, seed: int, raw_pixels: bool) -> list[list[np.ndarray]]:
    """Input sets to cycle through: one per sample (in the model's form), or one made from the signature."""
    if samples is None:
        rng = np.random.default_rng(seed)
        return [[signature_input(d, rng, raw_pixels) for d in session.inputs]]
    if len(session.inputs) != 1:
        raise HarnessError(f"{session.path} has {len(session.inputs)} inputs; data samples feed single-input models "
                           "(leave out --data to use inputs made from its signature)")
    d = session.inputs[0]
    if tuple(samples.shape[1:]) != tuple(d["shape"][1:]):
        raise HarnessError(f"{session.path} takes {d['shape']}; the samples are {list(samples.shape[1:])}")
    return [[to_model_dtype(samples[i:i + 1], d)] for i in range(len(samples))]


#: The most pixels an image may have before it is decoded (a 48-megapixel phone photo is data; a
#: 164 kB PNG of 13000 x 13000 would take 500 MB): ``$RESNET_EDGE_MAX_PIXELS``, or ``--max-pixels``.
MAX_PIXELS_ENV = "RESNET_EDGE_MAX_PIXELS"
MAX_PIXELS = 100_000_000


class BadImage(Exception):
    """An image file that cannot be used: not a regular file, too many pixels, or not decodable. Its
    message names why; the caller counts the file as skipped (or fails with --strict: :meth:`refusal`)."""

    def refusal(self, path: str) -> str:
        """The one line --strict fails with (``path`` already made safe to print)."""
        return f"unreadable image {path} ({self}); remove it, or drop --strict to skip and count such files"


@contextlib.contextmanager
def pixel_limit(limit: int | None):
    """Within the block, :func:`max_pixels` is ``limit`` (None: as it was); restored after."""
    if not limit:
        yield
        return
    saved = os.environ.get(MAX_PIXELS_ENV)
    os.environ[MAX_PIXELS_ENV] = str(int(limit))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(MAX_PIXELS_ENV, None)
        else:
            os.environ[MAX_PIXELS_ENV] = saved


def max_pixels() -> int:
    try:
        return max(1, int(float(os.environ.get(MAX_PIXELS_ENV, MAX_PIXELS))))
    except (ValueError, OverflowError):
        return MAX_PIXELS


def open_image(path: str, limit: int | None = None, decode: bool = True):
    """A decoded Pillow image (RGB) from a regular file whose header states at most ``limit`` pixels
    (default :func:`max_pixels`), checked before anything is decoded; the whole file is decoded here, so a
    truncated one fails now. ``decode=False`` only checks the file (type, header, pixel count, Pillow's
    ``verify``) and returns None. Raises :class:`BadImage`."""
    import stat as st
    import warnings

    from PIL import Image

    limit = limit or max_pixels()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise BadImage(exc.strerror or str(exc)) from None
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fd).st_mode
        if not st.S_ISREG(mode):
            raise BadImage("not a regular file (a FIFO, device or link to one)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own bound decides
                img = Image.open(fh)
                pixels = img.size[0] * img.size[1]
                if pixels > limit:
                    raise BadImage(f"{img.size[0]} x {img.size[1]} pixels, more than the limit of {limit:,} "
                                   f"(--max-pixels or {MAX_PIXELS_ENV})")
                if not decode:
                    img.verify()
                    return None
                img.load()
                return img.convert("RGB")
        except BadImage:
            raise
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for a broken or hostile file
            raise BadImage(str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__) from None


def load_image(path: str, size: tuple[int, int], limit: int | None = None) -> np.ndarray:
    """An image file as float32 H x W x 3 RGB (0..255), resized as evaluation does (see EVAL_CROP).
    Raises :class:`BadImage` (:func:`open_image`): the caller counts the file as unreadable."""
    from PIL import Image

    img = open_image(path, limit)
    with img:
        h, w = size
        if min(h, w) < CIFAR_STYLE_BELOW:
            return np.asarray(img.resize((w, h), Image.BILINEAR), np.float32)
        scale = (min(h, w) / EVAL_CROP) / min(img.size)
        new = (max(w, round(img.size[0] * scale)), max(h, round(img.size[1] * scale)))
        img = img.resize(new, Image.BILINEAR)
        left, top = (new[0] - w) // 2, (new[1] - h) // 2
        return np.asarray(img.crop((left, top, left + w, top + h)), np.float32)


def folder_images(folder: str, limit: int | None, odd: list | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    """The class folders of ``folder`` (sorted, hidden ones skipped) and its image files with their class
    index, interleaved across classes so that a ``limit`` keeps every class. Entries with an image's name
    that are not regular files (a FIFO, a link to /dev/zero, a broken link) go to ``odd`` (to be counted as
    skipped), never to the list."""
    try:
        classes = sorted(d.name for d in os.scandir(folder) if d.is_dir() and not d.name.startswith("."))
    except OSError as exc:
        raise HarnessError(f"{folder}: {exc.strerror or exc}; give a folder of class folders (DIR/<class>/<image>.jpg)") from None
    if len(classes) < 2:
        raise HarnessError(f"{folder} has {len(classes)} class folder(s); give a folder of class folders "
                           "(DIR/<class>/<image>.jpg, at least 2)")
    per_class = []
    for label, name in enumerate(classes):
        entries = [e for e in os.scandir(os.path.join(folder, name)) if e.name.lower().endswith(IMAGE_SUFFIXES)]
        files = sorted(e.path for e in entries if _regular(e.path))
        if odd is not None:
            odd += sorted(e.path for e in entries if not _regular(e.path))
        per_class.append([(f, label) for f in files])
    longest = max(len(files) for files in per_class)
    order = [files[i] for i in range(longest) for files in per_class if i < len(files)]
    if not order:
        raise HarnessError(f"{folder} has no .jpg/.png images in its class folders")
    return classes, order[:limit] if limit else order


def _regular(path: str) -> bool:
    """A regular file (a link is followed: a link to an image is an image, a link to /dev/zero is not)."""
    import stat as st

    try:
        return st.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


# --- jobs ----------------------------------------------------------------------------------------------


def _progress(text: str) -> None:
    print(f"progress {text}", file=sys.stderr, flush=True)


def _stats(seconds: list[float], batch: int) -> dict:
    us = np.asarray(seconds) * 1e3
    avg = float(us.mean())
    return {"count": int(len(us)), "avg_ms": avg, "std_ms": float(us.std()), "min_ms": float(us.min()),
            "p50_ms": float(np.percentile(us, 50)), "p90_ms": float(np.percentile(us, 90)),
            "p99_ms": float(np.percentile(us, 99)), "max_ms": float(us.max()),
            "throughput_per_s": (1e3 * batch / avg) if avg > 0 else None}


def memory(job: dict) -> dict:
    """The resident-set figures of one model x setting in this (fresh) process, as benchmark_model's
    ``--report_peak_memory_footprint``: the high-water mark after initialization and after running,
    and their growth over the process's resident set before the model was opened."""
    start = rss_mb()
    resettable = reset_peak()
    session = Session(job["model"], job["setting"])
    init_peak = peak_mb()
    sets = _sample_batches(session, None, 0, job.get("raw_pixels", True))
    for _ in range(MEMORY_RUNS):
        session.set_inputs(sets[0])
        session.invoke()
    overall = peak_mb()
    exact = resettable and start is not None
    return {"rss_start_mb": start, "peak_rss_init_mb": init_peak, "peak_rss_overall_mb": overall,
            "memory_init_mb": (init_peak - start) if exact else None,
            "memory_overall_mb": (overall - start) if exact else None}


def _memory_in_child(model: str, setting: dict, raw_pixels: bool) -> dict:
    job = json.dumps({"op": "memory", "model": model, "setting": setting, "raw_pixels": raw_pixels})
    try:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__)], input=job.encode(), capture_output=True,
                              timeout=600)
        return json.loads(proc.stdout.decode().strip().splitlines()[-1])["result"]
    except (OSError, subprocess.SubprocessError, ValueError, IndexError, KeyError, UnicodeDecodeError):
        return {"error": "the memory pass failed"}


def bench(job: dict) -> dict:
    models, settings = job["models"], [_setting(s) for s in job["settings"]]
    runs, warmup, rounds = int(job.get("runs", 50)), int(job.get("warmup", 5)), int(job.get("rounds", 1))
    if runs < 1 or warmup < 0 or rounds < 1:
        raise HarnessError("runs and rounds must be >= 1 and warmup >= 0")
    inputs = job.get("inputs") or {}
    raw = job.get("raw_pixels") or {}
    heat_before = temperatures()
    records = []
    total = len(models) * len(settings)
    for m, path in enumerate(models):
        samples = _load_npy(inputs[path]) if inputs.get(path) else None
        for s, setting in enumerate(settings):
            _progress(f"open {len(records) + 1}/{total} {os.path.basename(path)}")
            session = Session(path, setting)
            sets = _sample_batches(session, samples, job.get("seed", 0), raw.get(path, True))
            records.append({"model": path, "setting_index": s, "session": session, "sets": sets, "times": [],
                            "batch": int(session.inputs[0]["shape"][0]) if session.inputs[0]["shape"] else 1})
    for r in records:  # first inference and warm-up, in turn
        session, sets = r["session"], r["sets"]
        session.set_inputs(sets[0])
        started = time.perf_counter()
        session.invoke()
        r["first_ms"] = (time.perf_counter() - started) * 1e3
        spent = []
        for i in range(warmup):
            session.set_inputs(sets[(i + 1) % len(sets)])
            started = time.perf_counter()
            session.invoke()
            spent.append(time.perf_counter() - started)
        r["warmup_avg_ms"] = float(np.mean(spent) * 1e3) if spent else None
    for rnd in range(rounds):
        for k, r in enumerate(records):
            _progress(f"round {rnd + 1}/{rounds} model {k + 1}/{len(records)}")
            session, sets, times = r["session"], r["sets"], r["times"]
            if rnd:  # caches refilled after the other models ran (untimed)
                for i in range(min(warmup, 2)):
                    session.set_inputs(sets[i % len(sets)])
                    session.invoke()
            for i in range(runs):
                session.set_inputs(sets[i % len(sets)])
                started = time.perf_counter()
                session.invoke()
                times.append(time.perf_counter() - started)
    out = []
    for r in records:
        session = r["session"]
        record = {"model": r["model"], "setting_index": r["setting_index"], "model_bytes": os.path.getsize(r["model"]), **session.describe(),
                  "inputs": [{k: d[k] for k in ("name", "shape", "dtype")} for d in session.inputs],
                  "input_source": "data" if inputs.get(r["model"]) else "signature",
                  "init_ms": session.init_s * 1e3, "weight_cache_init": session.weight_cache_ms,
                  "first_inference_ms": r["first_ms"], "warmup_runs": warmup, "warmup_avg_ms": r["warmup_avg_ms"],
                  "runs": runs, "rounds": rounds, **_stats(r["times"], r["batch"])}
        if job.get("keep_times"):
            record["times_ms"] = [t * 1e3 for t in r["times"]]
        out.append(record)
    del records
    if job.get("memory", True):
        for k, record in enumerate(out):
            _progress(f"memory {k + 1}/{len(out)}")
            record.update(_memory_in_child(record["model"], settings[record["setting_index"]],
                                           raw.get(record["model"], True)))
    return {"machine": {**machine(), "temperature_c": {"before": heat_before, "after": temperatures()}},
            "records": out}


def predict(job: dict) -> dict:
    """Scores of one model for the samples in ``job["inputs"]`` (float, in the model's form), with each
    setting; each setting's scores go to ``job["outputs"][i]`` (.npy, float32)."""
    x = _load_npy(job["inputs"])
    results = []
    for i, setting in enumerate(job["settings"]):
        session = Session(job["model"], setting)
        if len(session.inputs) != 1 or len(session.outputs) != 1:
            raise HarnessError(f"{job['model']} has {len(session.inputs)} inputs and {len(session.outputs)} outputs; "
                               "accuracy is measured on image classifiers with one of each")
        d_in, d_out = session.inputs[0], session.outputs[0]
        if tuple(x.shape[1:]) != tuple(d_in["shape"][1:]):
            raise HarnessError(f"{job['model']} takes {d_in['shape']}; the images are {list(x.shape[1:])}")
        scores = np.empty((len(x), *d_out["shape"][1:]), np.float32)
        times = []
        step = max(1, len(x) // 20)
        for n in range(len(x)):
            session.set_inputs([to_model_dtype(x[n:n + 1], d_in)])
            started = time.perf_counter()
            session.invoke()
            times.append(time.perf_counter() - started)
            scores[n] = from_model_dtype(session.get_outputs()[0], d_out)[0]
            if n % step == 0:
                _progress(f"setting {i + 1}/{len(job['settings'])} image {n + 1}/{len(x)}")
        np.save(job["outputs"][i], scores, allow_pickle=False)
        results.append({**session.describe(), "init_ms": session.init_s * 1e3, **_stats(times, 1)})
    return {"machine": machine(), "settings": results}


def predict_folder(job: dict) -> dict:
    """Scores of one model for the images of a folder on this machine (``folder``: one sub-folder per class),
    decoded with Pillow and prepared as ``raw`` / ``mean`` / ``std`` say, with each setting; scores go to
    ``outputs[i]`` and the class index of each image to ``labels_out`` (.npy). Unreadable images are
    skipped and counted."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise HarnessError(f"decoding images needs Pillow: {sys.executable} -m pip install pillow") from None
    sessions = [Session(job["model"], s) for s in job["settings"]]
    first = sessions[0]
    if len(first.inputs) != 1 or len(first.outputs) != 1 or len(first.inputs[0]["shape"]) != 4:
        raise HarnessError(f"{job['model']} is not an image classifier with one N x H x W x 3 input and one output")
    d_in, d_out = first.inputs[0], first.outputs[0]
    odd: list[str] = []
    classes, files = folder_images(job["folder"], job.get("limit"), odd)
    limit = int(job.get("max_pixels") or max_pixels())
    size = (int(d_in["shape"][1]), int(d_in["shape"][2]))
    mean = None if job.get("raw", True) else np.asarray(job["mean"], np.float32)
    std = None if job.get("raw", True) else np.asarray(job["std"], np.float32)
    scores = [np.empty((len(files), *d_out["shape"][1:]), np.float32) for _ in sessions]
    labels, times, n = [], [[] for _ in sessions], 0
    skipped = [(f, "not a regular file") for f in odd]
    step = max(1, len(files) // 20)
    for k, (path, label) in enumerate(files):
        try:
            x = load_image(path, size, limit)[None]
        except BadImage as exc:
            skipped.append((path, str(exc)))
            continue
        if mean is not None:
            x = (x - mean) / std
        for i, session in enumerate(sessions):
            session.set_inputs([to_model_dtype(x, d_in)])
            started = time.perf_counter()
            session.invoke()
            times[i].append(time.perf_counter() - started)
            scores[i][n] = from_model_dtype(session.get_outputs()[0], d_out)[0]
        labels.append(label)
        n += 1
        if k % step == 0:
            _progress(f"image {k + 1}/{len(files)}")
    if not n:
        raise HarnessError(f"none of the {len(files)} images in {job['folder']} could be read")
    for i, out in enumerate(job["outputs"]):
        np.save(out, scores[i][:n], allow_pickle=False)
    np.save(job["labels_out"], np.asarray(labels, np.int64), allow_pickle=False)
    return {"machine": machine(), "classes": classes, "images": n, "skipped": len(skipped),
            "skipped_files": [{"path": f[-300:], "why": why[:200]} for f, why in skipped[:20]],
            "settings": [{**s.describe(), "init_ms": s.init_s * 1e3, **_stats(t, 1)} for s, t in zip(sessions, times)]}


def probe(job: dict) -> dict:
    """What this Python can run: the machine, Python, numpy and each runtime's version (None: missing)."""
    runtimes = {}
    for name, package in (*RUNTIMES.items(), (OPENVINO, OPENVINO)):
        try:
            runtimes[name] = str(getattr(importlib.import_module(package), "__version__", "?"))[:40]
        except Exception:  # noqa: BLE001 - a missing or broken runtime is reported as absent
            runtimes[name] = None
    memory_mb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    memory_mb = int(line.split()[1]) // 1024
    return {**machine(), "executable": sys.executable[:300], "numpy": None if np is None else np.__version__,
            "runtimes": runtimes, "memory_mb": memory_mb}


OPS = {"bench": bench, "predict": predict, "predict_folder": predict_folder, "memory": memory,
       "machine": lambda job: machine(), "probe": probe}


def main() -> int:
    try:
        if sys.version_info < MIN_PYTHON:
            raise HarnessError(f"Python {platform.python_version()} at {sys.executable} is too old: the edge runner needs "
                               f"Python >= {'.'.join(map(str, MIN_PYTHON))}")
        job = json.loads(sys.stdin.read())
        op = OPS.get(job.get("op"))
        if op is None:
            raise HarnessError(f"unknown op {job.get('op')!r}; valid: {', '.join(OPS)}")
        if np is None and op is not probe:
            raise HarnessError(f"numpy is not installed for {sys.executable}: {sys.executable} -m pip install "
                               "ai-edge-litert (it brings numpy)")
        result = op(job)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, TypeError) as exc:
        print(f"error: bad job ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 2
    print(json.dumps({"result": result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
