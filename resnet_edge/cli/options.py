"""The options the commands share, and their checks: bounded counts, finite numbers, R,G,B triples, the
runtime and target options, the data source. Every check runs before TensorFlow is imported, so a typo fails in
a second with one line; nothing here prints.
"""

from __future__ import annotations

import math

import click

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Finite(click.FloatRange):
    """A float in a range that is also finite: ``nan`` and ``inf`` pass a plain range check."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


# Every count is bounded by what makes sense, so that a typo fails in a second with one line instead
# of starting "Epoch 17/99999999999999999999" (the checks run before TensorFlow is imported).
DEPTH = click.IntRange(1, 10_000)


SIZE = click.IntRange(1, 8192)


CLASSES = click.IntRange(1, 1_000_000)


EPOCHS = click.IntRange(1, 100_000)


EPOCHS0 = click.IntRange(0, 100_000)  # fine-tuning may be skipped


BATCH = click.IntRange(1, 65_536)


LIMIT = click.IntRange(1, 1_000_000_000)


SAMPLES = click.IntRange(1, 1_000_000)


def _numbers(counts: tuple[int, ...] | None = (3,)):
    """Click callback: 'a,b,c' -> a tuple of finite floats, as many as one of ``counts`` (None: any)."""
    words = {1: "one number", 3: "three numbers (R,G,B)"}

    def parse(ctx, param, value):
        if value is None:
            return None
        try:
            parts = tuple(float(v) for v in value.split(","))
        except ValueError:
            raise click.BadParameter(f"expected numbers separated by commas, got {value!r}") from None
        if not all(math.isfinite(v) for v in parts):
            raise click.BadParameter(f"{value!r} holds a number that is not finite")
        if counts and len(parts) not in counts:
            raise click.BadParameter(f"expected {' or '.join(words.get(c, f'{c} numbers') for c in counts)}, got {len(parts)}")
        return parts

    return parse


def _triple(name: str):
    """Click callback: 'a,b,c' -> (a, b, c) floats."""
    return _numbers((3,))


TRUST_OPTION = click.option("--trust", is_flag=True,
                            help="Load MODEL even if its config carries code (a Lambda layer, ...): only for a file you trust.")


DATA_OPTION = click.option("--data", "source", default="digits", show_default=True, envvar="RESNET_EDGE_DATA",
                           help="digits | cifar10:DIR | folder:DIR (env RESNET_EDGE_DATA).")


def _check_model_file(model_path, trust: bool) -> None:
    """Refuse a Keras model file that carries code before TensorFlow and the data load (seconds sooner)."""
    if model_path is not None:
        from resnet_edge.keras_files import check_model_file

        check_model_file(model_path, trust=trust)


def _floats(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected numbers separated by commas, got {value!r}") from None


def _ratio(ctx, param, value):
    if value is not None and not 0 < value <= 1:
        raise click.BadParameter(f"must be in (0, 1], got {value}")
    return value


def _warmup(value: str):
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"expected auto, 0 or a number of steps, got {value!r}", param_hint="--warmup") from None


def _threads(ctx, param, value):
    """'1,2,4' -> (1, 2, 4)."""
    if value is None:
        return (None,)
    try:
        counts = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected thread counts separated by commas (1,2,4), got {value!r}") from None
    if not counts or any(not 1 <= n <= 256 for n in counts):
        raise click.BadParameter(f"thread counts are 1..256, got {value!r}")
    if len(set(counts)) != len(counts):
        raise click.BadParameter(f"a thread count is repeated in {value!r}")
    return counts


def _key_values(ctx, param, values):
    out = []
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {v!r}")
        out.append((key.strip(), value))
    return tuple(out)


def runtime_options(threads_help: str):
    """The options that choose how a model runs (shared by bench and eval)."""
    def apply(f):
        for option in reversed([
            click.option("--runtime", type=click.Choice(["auto", "litert", "tflite-runtime", "openvino"]), default="auto",
                         show_default=True, help="LiteRT (ai-edge-litert), tflite-runtime 2.14 (its side "
                         "environment from tools/make_tflite_runtime_env.sh when it is not installed here), or "
                         "OpenVINO's CPU plugin reading the .tflite itself (pip install 'resnet-edge[openvino]')."),
            click.option("--precision", type=click.Choice(["f32", "bf16"]),
                         help="--runtime openvino: compute in float32 (f32, the default here) or let a CPU with "
                              "AMX/AVX-512 BF16 compute a float model in bfloat16 (bf16: faster, less exact)."),
            click.option("--accelerator", type=click.Choice(["cpu", "gpu"]),
                         help="Run through LiteRT's CompiledModel API on this accelerator (gpu: GPU | CPU). "
                              "Default: the Interpreter API."),
            click.option("--fallback", is_flag=True, help="With --accelerator gpu: run on the CPU when no GPU starts "
                                                          "(the result says so) instead of failing."),
            click.option("--kernels", type=click.Choice(["xnnpack", "builtin"]),
                         help="Interpreter kernels: XNNPACK (the default delegate; the default) or TFLite's built-in "
                              "ones only."),
            click.option("--threads", callback=_threads, help=threads_help),
            click.option("--delegate", type=click.Path(dir_okay=False),
                         help="An external delegate library (.so) to load into the Interpreter."),
            click.option("--delegate-option", "delegate_options", multiple=True, callback=_key_values, metavar="K=V",
                         help="An option for --delegate (repeatable)."),
            click.option("--no-verify", "no_verify", is_flag=True,
                         help="Do not refuse a model of ours whose checksum does not match."),
        ]):
            f = option(f)
        return f
    return apply


def _settings(runtime, accelerator, fallback, kernels, threads, delegate, delegate_options, weight_cache=None,
              local=True, precision=None):
    from resnet_edge.runtime.setting import Setting

    if runtime == "openvino" and kernels:
        raise click.BadParameter("--kernels chooses TFLite's kernels; OpenVINO runs the model with its own CPU plugin: "
                                 "leave it out (or use --runtime litert)", param_hint="--kernels")
    return [Setting(runtime=runtime, accelerator=accelerator, fallback=fallback, kernels=kernels or "xnnpack",
                    threads=n, delegate=delegate, delegate_options=delegate_options, weight_cache=weight_cache,
                    precision=precision).check(local)
            for n in threads]


def target_options(f):
    """--target and --timeout (shared by bench, eval and sweep)."""
    f = click.option("--timeout", type=click.IntRange(1, 86_400), default=1800, show_default=True,
                     help="Seconds one run on a device may take before it is stopped.")(f)
    return click.option("--target", "target_text", metavar="URL|NAME",
                        help="Where to run: local (default), ssh://[user@]host[:port][/?python=PATH], adb://[SERIAL], "
                             "or a saved device's name (resnet-edge devices).")(f)


def _load_data(source: str, need: bool = True):
    from resnet_edge.data import load

    return load(source) if need else None


def _words(allowed: tuple[str, ...]):
    def parse(ctx, param, value):
        words = [w.strip().lower() for w in value.split(",") if w.strip()]
        bad = [w for w in words if w not in allowed]
        if not words or bad or len(set(words)) != len(words):
            raise click.BadParameter(f"expected some of {', '.join(allowed)} separated by commas, got {value!r}")
        return tuple(words)
    return parse


STORE_OPTION = click.option("--store", "store_path", type=click.Path(dir_okay=False),
                            help="The results file (default: $RESNET_EDGE_RESULTS, else "
                                 "$XDG_DATA_HOME/resnet-edge/results.sqlite).")

