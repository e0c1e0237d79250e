"""How a model is run: :class:`Setting` (runtime, API and accelerator, kernels, threads, delegates, OpenVINO's
precision), checked in one place, and :func:`parse_setting` for the short words of ``--diff`` and ``sweep``.

Edge side: imports nothing but the harness's constants.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from resnet_edge import harness
from resnet_edge.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Setting:
    """How a model is run: the runtime, the API and accelerator, kernels, threads and delegates."""

    runtime: str = "auto"
    accelerator: str | None = None  # None: the Interpreter API; "cpu" / "gpu": LiteRT's CompiledModel
    fallback: bool = False
    kernels: str = "xnnpack"
    threads: int | None = None
    delegate: str | None = None
    delegate_options: tuple[tuple[str, str], ...] = ()
    weight_cache: str | None = None
    precision: str | None = None  # OpenVINO's inference precision: "f32" (its default here) or "bf16"

    def check(self, local: bool = True) -> "Setting":
        """Raise :class:`ConfigError` (one line) for a combination that cannot run; return self.
        ``local=False``: the paths (a delegate) are on a device, not checked here."""
        if self.runtime not in RUNTIME_CHOICES:
            raise ConfigError(f"unknown runtime {self.runtime!r}; valid: {', '.join(RUNTIME_CHOICES)}")
        if self.runtime == harness.OPENVINO:
            given = [name for name, on in (("--accelerator", self.accelerator), ("--fallback", self.fallback),
                                           ("--delegate", self.delegate), ("--kernels builtin", self.kernels != "xnnpack"))
                     if on]
            if given:
                raise ConfigError(f"{', '.join(given)} mean(s) nothing to OpenVINO, which runs the model with its own CPU "
                                  "plugin: leave it out (or use --runtime litert)")
            if self.precision not in (None, *harness.PRECISIONS):
                raise ConfigError(f"--precision must be one of {', '.join(harness.PRECISIONS)}, got {self.precision!r}")
            return self
        if self.precision is not None:
            raise ConfigError("--precision is an OpenVINO setting (a TFLite runtime computes in the model's own types): "
                              "add --runtime openvino")
        if self.accelerator not in (None, *harness.ACCELERATORS):
            raise ConfigError(f"unknown accelerator {self.accelerator!r}; valid: {', '.join(harness.ACCELERATORS)}")
        if self.kernels not in harness.KERNELS:
            raise ConfigError(f"kernels must be one of {', '.join(harness.KERNELS)}, got {self.kernels!r}")
        if self.accelerator and self.runtime == "tflite-runtime":
            raise ConfigError("--accelerator uses LiteRT's CompiledModel API, which tflite-runtime does not have; "
                              "use --runtime litert (or leave out --accelerator)")
        if self.accelerator and self.kernels == "builtin":
            raise ConfigError("--kernels builtin is an Interpreter option; leave out --accelerator to use it")
        if self.delegate and self.accelerator:
            raise ConfigError("--delegate loads into the Interpreter API; leave out --accelerator")
        if self.weight_cache and self.accelerator != "cpu":
            raise ConfigError("--weight-cache is a CompiledModel CPU option: use it with --accelerator cpu")
        if self.fallback and self.accelerator != "gpu":
            raise ConfigError("--fallback applies to --accelerator gpu")
        if local and self.delegate and not os.path.isfile(self.delegate):
            raise ConfigError(f"delegate library not found: {self.delegate}; give the path of a .so file")
        return self

    def as_job(self) -> dict:
        job = {"runtime": self.runtime, "accelerator": self.accelerator, "fallback": self.fallback,
               "kernels": self.kernels, "threads": self.threads, "delegate": self.delegate,
               "delegate_options": dict(self.delegate_options), "weight_cache": self.weight_cache}
        if self.runtime == harness.OPENVINO:  # only there: the settings stored before keep their keys
            job["precision"] = self.precision or "f32"
        return job

    def label(self) -> str:
        """Short text for a table: ``gpu``, ``xnnpack 2t``, ``tflite-runtime builtin 1t``."""
        if self.runtime == harness.OPENVINO:
            parts = ["openvino", self.precision or "f32", f"{self.threads}t" if self.threads else "",
                     "cache" if self.weight_cache else ""]
            return " ".join(p for p in parts if p)
        parts = [self.runtime if self.runtime != "auto" else "", self.accelerator or self.kernels,
                 Path(self.delegate).name if self.delegate else "",
                 f"{self.threads}t" if self.threads else "", "cache" if self.weight_cache else ""]
        return " ".join(p for p in parts if p)


SETTING_WORDS = {"cpu": ("accelerator", "cpu"), "gpu": ("accelerator", "gpu"), "interpreter": ("accelerator", None),
                 "xnnpack": ("kernels", "xnnpack"), "builtin": ("kernels", "builtin"), "litert": ("runtime", "litert"),
                 "tflite-runtime": ("runtime", "tflite-runtime"), "fallback": ("fallback", True),
                 "openvino": ("runtime", "openvino"), "f32": ("precision", "f32"), "bf16": ("precision", "bf16")}
#: What --runtime takes.
RUNTIME_CHOICES = ("auto", *harness.RUNTIMES, harness.OPENVINO)


def parse_setting(text: str, base: Setting, local: bool = True) -> Setting:
    """``gpu``, ``tflite-runtime+builtin``, ``cpu+2`` (words joined by ``+``, a number is threads) on
    top of ``base``."""
    changes: dict = {}
    for word in text.strip().lower().split("+"):
        if word in SETTING_WORDS:
            key, value = SETTING_WORDS[word]
            changes[key] = value
        elif word.isdigit() and 0 < int(word) <= 256:
            changes["threads"] = int(word)
        else:
            raise ConfigError(f"unknown setting {word!r} in {text!r}; use words joined by '+': "
                              f"{', '.join(SETTING_WORDS)} or a thread count (e.g. cpu,gpu or xnnpack+1,builtin+1)")
    if changes.get("runtime", base.runtime) != harness.OPENVINO and "precision" not in changes:
        changes["precision"] = None  # a TFLite runtime has no precision to set (litert,openvino+bf16)
    if changes.get("runtime") == harness.OPENVINO and base.runtime != harness.OPENVINO:
        changes.setdefault("kernels", "xnnpack")
    return dataclasses.replace(base, **changes).check(local)
