"""``resnet-edge bench`` and ``resnet-edge eval``: latency and accuracy of any ``.tflite``, edge side.

Neither imports TensorFlow (``eval --compare`` does, for the Keras model only). Every option is checked
before a model is read or a runtime starts; the measuring itself runs in the harness child
(:mod:`resnet_edge.runtime.bench`).
"""

from __future__ import annotations

import dataclasses

import click

from resnet_edge.cli import TRUST_OPTION, Finite, _check_model_file, _echo_json_or, _plural, _triple
from resnet_edge.errors import ConfigError, ResnetEdgeError
from resnet_edge.ui import end_progress, progress_line


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
    from resnet_edge.runtime.bench import Setting

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


def _target(text):
    """The parsed target (no connection yet): a malformed URL or unknown name fails here, in one line."""
    from resnet_edge.targets import resolve

    return resolve(text)


def _load_data(source: str, need: bool = True):
    from resnet_edge.data import load

    return load(source) if need else None


# --- bench -----------------------------------------------------------------------------------------------


@click.command()
@click.argument("model_paths", metavar="MODEL.tflite...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@runtime_options("Threads, or a list (1,2,4) for one row each. Default: the runtime's choice.")
@click.option("--weight-cache", type=click.Path(file_okay=False),
              help="XNNPACK weight cache folder (with --accelerator cpu), or OpenVINO's model cache (with --runtime "
                   "openvino): reports initialization with and without it.")
@click.option("--runs", type=click.IntRange(1, 1_000_000), default=50, show_default=True, help="Timed invocations per round.")
@click.option("--warmup", type=click.IntRange(0, 100_000), default=5, show_default=True, help="Untimed invocations first.")
@click.option("--rounds", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="Time all models and settings in turn, this many times (a noisy spell falls on all of them).")
@click.option("--data", "source",
              help="Real inputs: digits | cifar10:DIR | folder:DIR (default: inputs made from each model's signature).")
@click.option("--samples", type=click.IntRange(1, 10_000), default=32, show_default=True, help="Images taken from --data.")
@click.option("--baseline", type=click.Path(dir_okay=False), help="A model to compare with: each row gets median / baseline's median.")
@target_options
@click.option("--store", "store_path", type=click.Path(dir_okay=False),
              help="The results file the records are added to (default: $RESNET_EDGE_RESULTS, else "
                   "$XDG_DATA_HOME/resnet-edge/results.sqlite).")
@click.option("--no-store", is_flag=True, help="Do not add the records to the results store.")
@click.option("--benchmark-binary", type=click.Path(dir_okay=False),
              help="adb:// targets: LiteRT's benchmark_model for Android (pushed to the device; default: "
                   "/data/local/tmp/benchmark_model there, or $RESNET_EDGE_BENCHMARK_BINARY).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one record per model x setting (fields in the README).")
def bench(model_paths, runtime, precision, accelerator, fallback, kernels, threads, delegate, delegate_options, no_verify,
          weight_cache, runs, warmup, rounds, source, samples, baseline, target_text, timeout, store_path, no_store,
          benchmark_binary, as_json):
    """Latency and memory of .tflite models, with LiteRT benchmark_model's figures: initialization,
    first inference, warm-up average, avg/std/min/p50/p90/p99/max of the timed runs, throughput and
    peak resident memory (during initialization and overall).

    \b
    Models and settings are timed in turn, round after round, in one child process; memory is measured
    in a fresh process per model and setting. No TensorFlow is imported.
      resnet-edge bench model_float32.tflite model_int8.tflite --threads 1,2 --baseline model_float32.tflite
      resnet-edge bench model_int8.tflite --target ssh://pi@raspberrypi.local --threads 1,4
    On a device (--target), one run per model; if the device fails midway, what was measured is printed,
    marked incomplete, and the exit code is 1. Every record is added to the results store
    (resnet-edge results) unless --no-store.
    """
    from resnet_edge import _tmp
    from resnet_edge.runtime.bench import bench as run_bench

    target = _target(target_text)
    settings = _settings(runtime, accelerator, fallback, kernels, threads, delegate, delegate_options, weight_cache,
                         local=target.kind == "local", precision=precision)
    _tmp.use_private_tempdir()
    inputs = None
    if source:
        inputs = _bench_samples(model_paths, baseline, source, samples, not no_verify)
    show = progress_line(as_json)
    try:
        result = run_bench(list(model_paths), settings, runs=runs, warmup=warmup, rounds=rounds, samples=inputs,
                           baseline=baseline, verify=not no_verify, progress=show, target=target, timeout=timeout,
                           benchmark_binary=benchmark_binary)
    finally:
        end_progress(show)
    _echo_json_or(result, as_json, _bench_human)  # the figures first: a store that fails cannot lose them
    if not no_store and result["records"]:
        try:
            _store(result, settings, store_path)
        except ResnetEdgeError as exc:
            click.echo(f"warning: not stored: {exc}", err=True)
    if result.get("incomplete"):
        raise click.ClickException(f"incomplete: {result['incomplete']}")


def _store(result: dict, settings, store_path) -> None:
    """Add bench's records to the results store (see resnet-edge results)."""
    from resnet_edge.io import sha256_file
    from resnet_edge.results import Store

    models = {r["model"]: sha256_file(r["model"]) for r in result["records"]}
    with Store(store_path) as store:
        store.add(result["records"], target=result["target"], target_url=result["target_url"],
                  machine=result.get("machine"), models=models,
                  settings={i: s.as_job() for i, s in enumerate(settings)})


def _bench_samples(paths, baseline, source, n, verify) -> dict:
    """Real test images in each model's form (single-input RGB classifiers)."""
    from resnet_edge.runtime.bench import check_model
    from resnet_edge.runtime.evaluation import model_inputs, preprocessing

    data = _load_data(source)
    out = {}
    for p in dict.fromkeys([*paths, *([baseline] if baseline else [])]):
        c = check_model(p, verify)
        if c["inputs"] is None:
            raise ConfigError("reading the model's inputs needs the flatbuffer schema (pip install ai-edge-litert)")
        pre = preprocessing(c["info"], data)
        out[str(p)], _ = model_inputs(data, "test", c["inputs"], None, pre, limit=n, resize=True)
    return out


def _ms(v) -> str:
    return "-" if v is None else (f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}")


def _mb(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def _bench_human(r: dict) -> str:
    from resnet_edge.ui import safe_text, table

    rows = []
    for x in r["records"]:
        rows.append({"model": safe_text(x["model"], 60), "setting": x["setting"], "init": _ms(x["init_ms"]),
                     "first": _ms(x["first_inference_ms"]), "warm": _ms(x["warmup_avg_ms"]), "avg": _ms(x["avg_ms"]),
                     "std": _ms(x["std_ms"]), "min": _ms(x["min_ms"]), "p50": _ms(x["p50_ms"]), "p90": _ms(x["p90_ms"]),
                     "p99": _ms(x["p99_ms"]), "max": _ms(x["max_ms"]),
                     "tput": "-" if not x["throughput_per_s"] else f"{x['throughput_per_s']:.1f}",
                     "mem": "-" if x.get("peak_rss_overall_mb") is None else
                            f"{_mb(x.get('peak_rss_init_mb'))}/{_mb(x['peak_rss_overall_mb'])}",
                     "ratio": "" if x.get("vs_baseline") is None else f"{x['vs_baseline']:.2f}x"})
    cols = [("model", "model"), ("setting", "setting"), ("init", "init ms"), ("first", "first ms"), ("warm", "warm-up ms"),
            ("avg", "avg ms"), ("std", "std"), ("min", "min"), ("p50", "p50"), ("p90", "p90"), ("p99", "p99"),
            ("max", "max"), ("tput", "inf/s"), ("mem", "peak RSS MB init/all")]
    if r.get("baseline"):
        cols.append(("ratio", "p50 vs base"))
    lines = [table(rows, cols, right={k for k, _ in cols[2:]})]
    m = r.get("machine") or {}
    first = r["records"][0] if r["records"] else {}
    where = "" if r.get("target", "local") == "local" else f" (target {safe_text(r['target'], 80)})"
    lines.append(f"machine{where}: {safe_text(m.get('cpu'), 80)} ({safe_text(', '.join(m.get('isa') or []) or m.get('arch'), 120)}), "
                 f"{safe_text(m.get('cores'), 8)} cores; {safe_text(first.get('runtime'), 40)} {safe_text(first.get('runtime_version'), 40)}; "
                 f"{_plural(first.get('count', 0), 'timed run')} per row ({first.get('rounds')} x {first.get('runs')}), "
                 f"inputs from {'the data' if first.get('input_source') == 'data' else 'each signature'}")
    if m.get("emulated"):
        lines.append("EMULATED: this target runs under qemu user-mode emulation; its latencies are not a device's")
    for x in r["records"]:
        where = f"{safe_text(x['model'], 60)} [{x['setting']}]"
        if x.get("fully_accelerated") is not None:
            lines.append(f"{where}: {safe_text(x.get('accelerator'), 40)}, fully accelerated: {'yes' if x['fully_accelerated'] else 'no (some ops run on the CPU fallback)'}")
        for note in x.get("notes") or []:
            lines.append(f"{where}: {safe_text(note, 300)}")
        wc = x.get("weight_cache_init")
        if wc:
            built = "" if wc["init_building_ms"] is None else f", {_ms(wc['init_building_ms'])} ms building it"
            lines.append(f"{where}: weight cache {safe_text(wc['path'], 120)}: init {_ms(wc['init_without_ms'])} ms "
                         f"without it, {_ms(x['init_ms'])} ms with it{built}")
    for model in dict.fromkeys(x["model"] for x in r["records"] if x.get("integrity") == "unverified"):
        lines.append(f"{safe_text(model, 60)}: not verified (no resnet-edge checksum inside: a model from another tool)")
    return "\n".join(lines)


# --- eval ------------------------------------------------------------------------------------------------


@click.command("eval")
@click.argument("model_path", metavar="MODEL.tflite", type=click.Path(dir_okay=False))
@click.option("--data", "source", default="digits", show_default=True, envvar="RESNET_EDGE_DATA",
              help="digits | cifar10:DIR | folder:DIR (env RESNET_EDGE_DATA), or device-folder:DIR for images that "
                   "live on the --target device (one sub-folder per class; every image is evaluated).")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True)
@click.option("--limit", type=click.IntRange(1, 10_000_000), help="Evaluate at most N images.")
@click.option("--resize", is_flag=True, help="Resize fixed-size images (digits, CIFAR-10) to the model's input.")
@click.option("--mean", callback=_triple("mean"), help="For a model from another tool: per-channel mean (0..255 units, R,G,B).")
@click.option("--std", callback=_triple("std"), help="For a model from another tool: per-channel std (0..255 units, R,G,B).")
@runtime_options("Threads (one number).")
@click.option("--compare", "compare_path", type=click.Path(dir_okay=False),
              help="A Keras model (.keras/.h5) to compare with on the same inputs (needs TensorFlow).")
@TRUST_OPTION
@click.option("--diff", "diff_spec", metavar="A,B",
              help="Run the same inputs with two settings and compare: cpu,gpu | xnnpack,builtin | litert,tflite-runtime "
                   "| litert,openvino | openvino,openvino+bf16 | words joined by + (gpu+fallback, builtin+1).")
@click.option("--max-drop", type=Finite(0, 100),
              help="Fail (exit 1) when top-1 is more than P points below the reference: --compare's model, else the "
                   "Keras accuracy in the manifest convert wrote beside the model.")
@click.option("--min-accuracy", type=Finite(0, 100), help="Fail (exit 1) when top-1 is below A percent.")
@click.option("--strict", is_flag=True, help="Fail on an unreadable image (image folders) instead of skipping and "
                                             "counting it.")
@click.option("--max-pixels", type=click.IntRange(1, 10_000_000_000), envvar="RESNET_EDGE_MAX_PIXELS",
              help="Image folders: refuse (skip) an image whose header states more pixels than this, before decoding "
                   "it. Default 100,000,000 (a 48-megapixel photo is fine). Env RESNET_EDGE_MAX_PIXELS.")
@target_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with the confusion matrix).")
def eval_(model_path, source, split, limit, resize, mean, std, runtime, precision, accelerator, fallback, kernels, threads,
          delegate, delegate_options, no_verify, compare_path, trust, diff_spec, max_drop, min_accuracy, strict,
          max_pixels, target_text, timeout, as_json):
    """Accuracy of a .tflite on real data: top-1, top-5, per class and the most frequent confusions,
    with the chosen runtime and accelerator; images are prepared as the model's metadata says.

    \b
    resnet-edge eval model_int8.tflite --data digits
    resnet-edge eval model_int8.tflite --compare model.keras --max-drop 1
    resnet-edge eval model_float32.tflite --diff cpu,gpu --fallback
    resnet-edge eval model_int8.tflite --target ssh://pi@raspberrypi.local   (images prepared here, sent along)
    resnet-edge eval model_int8.tflite --target pi5 --data device-folder:/home/pi/val   (images on the device)
    (evaluate is for Keras models; eval for .tflite files)
    """
    if len(threads) > 1:
        raise click.BadParameter("eval takes one thread count", param_hint="--threads")
    target = _target(target_text)
    if target.kind == "adb":
        raise click.BadParameter("eval needs Python on the device (ssh://); on Android, bench measures latency with "
                                 "benchmark_model, which gives no predictions", param_hint="--target")
    base = _settings(runtime, accelerator, fallback, kernels, threads, delegate, delegate_options,
                     local=target.kind == "local", precision=precision)[0]
    diff = None
    if diff_spec:
        from resnet_edge.runtime.bench import parse_setting

        sides = diff_spec.split(",")
        if len(sides) != 2:
            raise click.BadParameter(f"expected two settings separated by a comma (cpu,gpu), got {diff_spec!r}",
                                     param_hint="--diff")
        diff = [parse_setting(side, base, local=target.kind == "local") for side in sides]
    from resnet_edge.runtime.evaluation import DEVICE_FOLDER

    on_device = (source or "").startswith(DEVICE_FOLDER)
    if on_device:
        folder = source[len(DEVICE_FOLDER):]
        if target.kind != "ssh" or not folder:
            raise click.BadParameter(f"{DEVICE_FOLDER}DIR is a folder on the device: give --target ssh://... (or a "
                                     "saved ssh device) and the folder's path there", param_hint="--data")
        if compare_path or max_drop is not None or resize:
            raise click.BadParameter("--compare, --max-drop and --resize need the images here; with data on the "
                                     "device use --min-accuracy", param_hint="--data")
    if compare_path:
        _check_model_file(compare_path, trust)
    from resnet_edge import _tmp
    from resnet_edge.runtime.evaluation import evaluate_on_device_folder, evaluate_tflite

    from resnet_edge.runtime.harness import pixel_limit

    _tmp.use_private_tempdir()
    show = progress_line(as_json)
    try:
        if on_device:
            report = evaluate_on_device_folder(model_path, folder, target, limit=limit, mean=mean, std=std,
                                               setting=base, diff=diff, verify=not no_verify,
                                               min_accuracy=min_accuracy, timeout=timeout, progress=show,
                                               strict=strict, max_pixels=max_pixels)
        else:
            from resnet_edge.data import load

            with pixel_limit(max_pixels):  # the folder's scan and every decode here
                report = evaluate_tflite(model_path, load(source, strict=strict), split=split, limit=limit,
                                         resize=resize, mean=mean, std=std, setting=base, diff=diff, compare=compare_path,
                                         trust=trust, verify=not no_verify, max_drop=max_drop,
                                         min_accuracy=min_accuracy, progress=show, target=target, timeout=timeout,
                                         strict=strict)
    finally:
        end_progress(show)
    _echo_json_or(report, as_json, _eval_human)
    if report["gate"]["failed"]:
        raise click.ClickException(report["gate"]["why"])


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _eval_human(r: dict) -> str:
    from resnet_edge.ui import key_values, safe_text, table

    s = r["setting"]
    pairs = [("model", f"{safe_text(r['model'], 120)} ({r['integrity']}{'; ' + safe_text(r['model_name'], 80) if r.get('model_name') else ''})"),
             *([("target", safe_text(r["target"], 120))] if r.get("target", "local") != "local" else []),
             ("data", f"{safe_text(r['data'], 80)}, {r['split'] + ' split' if r['split'] != 'all' else 'every image'}, "
                      f"{r['n']} images" + (f" ({r['skipped']} unreadable, skipped; e.g. "
                                            f"{safe_text((r.get('skipped_files') or ['?'])[0], 200)}; --strict fails "
                                            "instead)" if r.get("skipped") else "")),
             ("inputs", safe_text(r["preprocessing"]["from"], 200)),
             ("runtime", safe_text(f"{s['runtime']} {s['runtime_version']}, {s['api']}", 80) +
              safe_text(f", {s['accelerator']}" if s.get("accelerator") else f", {s.get('kernels')}", 60) +
              (f", {s['threads']} threads" if s.get("threads") else "") +
              ("" if s.get("fully_accelerated") is None else f", fully accelerated: {'yes' if s['fully_accelerated'] else 'no'}")),
             ("top-1", _pct(r["top1"])), (f"top-{r['top_k']}", _pct(r["top5"])),
             ("latency", f"p50 {_ms(s['p50_ms'])} ms, p90 {_ms(s['p90_ms'])} ms per image (batch 1)" +
              (" (EMULATED by qemu: not the device's)" if s.get("emulated") else ""))]
    for note in s.get("notes") or []:
        pairs.append(("note", safe_text(note, 300)))
    if r.get("compare"):
        c = r["compare"]
        pairs.append(("keras", f"{safe_text(c['model'], 80)}: top-1 {_pct(c['keras_top1'])} (tflite {_pct(r['top1'])}, "
                               f"drop {c['drop_points']:+.2f} points); top-1 agreement {_pct(c['top1_agreement'])}, "
                               f"max |diff| {c['max_abs_diff']:.3g}, mean |diff| {c['mean_abs_diff']:.3g}"))
    if r.get("reference"):
        pairs.append(("reference", f"{safe_text(r['reference']['from'], 120)}: top-1 {_pct(r['reference']['top1'])}"))
    if r["confusions"]:
        pairs.append(("confusions", ", ".join(f"{c['true']} -> {c['predicted']} x{c['count']}" for c in r["confusions"])))
    text = key_values(pairs)
    per = table([{"class": c["class"], "n": c["n"], "acc": _pct(c["accuracy"])} for c in r["per_class"][:50]],
                [("class", "class"), ("n", "images"), ("acc", "top-1")], right={"n", "acc"})
    text += "\n\n" + per + ("\n(first 50 classes; --json has all)" if len(r["per_class"]) > 50 else "")
    if r.get("diff"):
        d = r["diff"]
        rows = [{"setting": x["setting"], "top1": _pct(x["top1"]), "p50": _ms(x["p50_ms"]), "init": _ms(x["init_ms"]),
                 "acc": ("yes" if x["fully_accelerated"] else "no") if x.get("fully_accelerated") is not None else "-"}
                for x in d["sides"]]
        text += "\n\n" + table(rows, [("setting", "setting"), ("top1", "top-1"), ("p50", "p50 ms"), ("init", "init ms"),
                                      ("acc", "fully accelerated")], right={"top1", "p50", "init"})
        text += (f"\n{d['sides'][0]['setting']} vs {d['sides'][1]['setting']}: top-1 agreement {_pct(d['top1_agreement'])}, "
                 f"max |diff| {d['max_abs_diff']:.3g}, mean |diff| {d['mean_abs_diff']:.3g} over {d['n']} images")
    if r["gate"]["checked"]:
        text += "\n" + ("gate: FAILED: " + r["gate"]["why"] if r["gate"]["failed"] else "gate: passed (" + r["gate"]["why"] + ")")
    return text
