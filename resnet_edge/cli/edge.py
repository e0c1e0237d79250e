"""The edge-side commands: ``inspect``, ``metadata``, ``bench`` and ``eval`` of any ``.tflite``.

None imports TensorFlow (``eval --compare`` does, for the Keras model only: it composes the host side's
:func:`~resnet_edge.evaluate.keras_reference` with the edge side's evaluation). Every option is checked before a
model is read or a runtime starts; the measuring runs in the harness child (:mod:`resnet_edge.measure.bench`).
"""

from __future__ import annotations

import click

from resnet_edge.cli.options import (TRUST_OPTION, Finite, _check_model_file, _load_data, _numbers, _settings,
                                     _triple, runtime_options, target_options)
from resnet_edge.cli.render import _bench_human, _echo_json_or, _eval_human, _inspect_human, _metadata_human
from resnet_edge.errors import ConfigError, ResnetEdgeError
from resnet_edge.targets import resolve
from resnet_edge.ui import end_progress, progress_line


@click.command()
@click.argument("model_path", metavar="MODEL.tflite", type=click.Path(dir_okay=False))
@click.option("--target", "targets", multiple=True, type=click.Choice(["cpu", "gpu", "nnapi"]),
              help="Readiness for these accelerators only (default: all three).")
@click.option("--no-verify", "no_verify", is_flag=True,
              help="Do not refuse a model of ours whose checksum does not match (look at a damaged file anyway).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inspect(model_path, targets, no_verify, as_json):
    """Ops, tensors, quantization, size, sparsity, metadata, signatures and accelerator readiness of a
    .tflite, read without TensorFlow.

    \b
    Metadata: resnet-edge's own entry (labels, normalization, recipe) and the standard TFLite Metadata
    that MediaPipe, the Task Library and Android Studio read, with every place where it disagrees with
    the model's tensors (PROBLEM lines). A damaged appended zip of associated files is an error.

    \b
    The checksum that resnet-edge writes into every model is verified first: a damaged model of ours
    is refused (--no-verify looks anyway); a model from another tool is shown as not verified. The
    flatbuffer is checked before it is read, and LiteRT loads and runs it in a child process with
    memory and time limits: a model the runtime cannot load is an error (exit 1).
    """
    from resnet_edge.tflite.inspect import inspect as run_inspect

    report = run_inspect(model_path, targets=tuple(targets) or ("cpu", "gpu", "nnapi"), verify=not no_verify)
    _echo_json_or(report, as_json, lambda r: _inspect_human(model_path, r))


@click.command()
@click.argument("model_path", metavar="MODEL.tflite", type=click.Path(dir_okay=False))
@click.option("--labels", "labels_path", type=click.Path(dir_okay=False),
              help="Class names, one per line in the order of the scores (default: the model's own, if any).")
@click.option("--mean", callback=_numbers((1, 3)), help="What the framework subtracts from a pixel (0..255): one value or one "
                                                "per channel. With --std. Default: what the model already says.")
@click.option("--std", "std_", callback=_numbers((1, 3)), help="What the framework divides by after --mean.")
@click.option("--name", help="Model name (default: the model's own, or the file name).")
@click.option("--description", help="What the model does.")
@click.option("--model-version", "version", help="The model's version.")
@click.option("--author", help="Author, shown by Android Studio and the frameworks' tools.")
@click.option("--license", "license_", help="License of the model.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Write here instead of replacing MODEL.tflite.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def metadata(model_path, labels_path, mean, std_, name, description, version, author, license_, out, as_json):
    """Add or replace the standard TFLite Metadata of an image classifier, so that MediaPipe's and the
    Task Library's ImageClassifier (and Android Studio's model binding) can use it.

    \b
    Examples:
      resnet-edge metadata someone_elses.tflite --labels labels.txt --mean 127.5 --std 127.5
      resnet-edge metadata runs/r20/model_int8.tflite --author "Team" --license Apache-2.0
    --mean/--std say what a pixel p becomes before it enters the model, (p - mean) / std. A uint8 input
    needs none: frameworks feed its pixels as they are, and its quantization must say so. Every tensor,
    weight and other metadata entry is kept; a model of resnet-edge keeps its own entry and checksum (and
    its manifest is updated with it). The file is replaced atomically.
    """
    from resnet_edge.tflite.apps import set_app_metadata

    texts = {"name": name, "description": description, "version": version, "author": author, "license": license_}
    r = set_app_metadata(model_path, out=out, labels_path=labels_path, mean=mean, std_=std_, texts=texts)
    _echo_json_or(r, as_json, _metadata_human)


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
    from resnet_edge.measure.bench import bench as run_bench

    target = resolve(target_text)
    settings = _settings(runtime, accelerator, fallback, kernels, threads, delegate, delegate_options, weight_cache,
                         local=target.local, precision=precision)
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
    from resnet_edge.measure.results import Store

    models = {r["model"]: sha256_file(r["model"]) for r in result["records"]}
    with Store(store_path) as store:
        store.add(result["records"], target=result["target"], target_url=result["target_url"],
                  machine=result.get("machine"), models=models,
                  settings={i: s.as_job() for i, s in enumerate(settings)})


def _bench_samples(paths, baseline, source, n, verify) -> dict:
    """Real test images in each model's form (single-input RGB classifiers)."""
    from resnet_edge.measure.evaluation import model_inputs, preprocessing
    from resnet_edge.runtime.runner import check_model

    data = _load_data(source)
    out = {}
    for p in dict.fromkeys([*paths, *([baseline] if baseline else [])]):
        c = check_model(p, verify)
        if c["inputs"] is None:
            raise ConfigError("reading the model's inputs needs the flatbuffer schema (pip install ai-edge-litert)")
        pre = preprocessing(c["info"], data)
        out[str(p)], _ = model_inputs(data, "test", c["inputs"], None, pre, limit=n, resize=True)
    return out


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
    target = resolve(target_text)
    if target.kind == "adb":
        raise click.BadParameter("eval needs Python on the device (ssh://); on Android, bench measures latency with "
                                 "benchmark_model, which gives no predictions", param_hint="--target")
    base = _settings(runtime, accelerator, fallback, kernels, threads, delegate, delegate_options,
                     local=target.local, precision=precision)[0]
    diff = None
    if diff_spec:
        from resnet_edge.runtime.setting import parse_setting

        sides = diff_spec.split(",")
        if len(sides) != 2:
            raise click.BadParameter(f"expected two settings separated by a comma (cpu,gpu), got {diff_spec!r}",
                                     param_hint="--diff")
        diff = [parse_setting(side, base, local=target.local) for side in sides]
    from resnet_edge.measure.evaluation import DEVICE_FOLDER

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
    from resnet_edge.harness import pixel_limit
    from resnet_edge.measure.evaluation import DeviceFolder, evaluate_tflite

    _tmp.use_private_tempdir()
    reference = None
    if compare_path:
        from resnet_edge.evaluate import (
            keras_reference,  # the host side, composed here: the edge side knows no Keras
        )

        reference = keras_reference(compare_path, trust)
    show = progress_line(as_json)
    try:
        with pixel_limit(max_pixels):  # the folder's scan and every decode here
            if on_device:
                images = DeviceFolder(folder, max_pixels)
            else:
                from resnet_edge.data import load

                images = load(source, strict=strict)
            report = evaluate_tflite(model_path, images, split=split, limit=limit, resize=resize, mean=mean, std=std,
                                     setting=base, diff=diff, reference=reference, verify=not no_verify,
                                     max_drop=max_drop, min_accuracy=min_accuracy, progress=show, target=target,
                                     timeout=timeout, strict=strict)
    finally:
        end_progress(show)
    _echo_json_or(report, as_json, _eval_human)
    if report["gate"]["failed"]:
        raise click.ClickException(report["gate"]["why"])



COMMANDS = (inspect, metadata, bench, eval_)
