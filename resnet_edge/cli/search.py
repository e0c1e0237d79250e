"""``resnet-edge search``: the most accurate ResNet under a latency budget measured on the user's own device
(:mod:`resnet_edge.search.study`). Its options are checked before TensorFlow is imported."""

from __future__ import annotations

import re

import click

from resnet_edge.cli.render import _echo_json_or, _search_human
from resnet_edge.errors import ConfigError

_UNITS_MS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3}
_UNITS_B = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3}


def parse_budget(text: str, what: str = "--budget") -> float:
    """``20ms``, ``0.5 ms``, ``500us``, ``1s`` -> milliseconds (a bare number is milliseconds)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(us|µs|ms|s)?\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise click.BadParameter(f"{text!r} is not a time: give one like 20ms, 0.5ms or 500us", param_hint=what)
    return float(m.group(1)) * _UNITS_MS[m.group(2) or "ms"]


def parse_bytes(text: str | None, what: str) -> int | None:
    """``8MB``, ``300 MiB``, ``2000000`` -> bytes."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgG]i?[bB]|[bB])?\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise click.BadParameter(f"{text!r} is not a size: give one like 8MB or 300MiB", param_hint=what)
    return int(float(m.group(1)) * _UNITS_B[(m.group(2) or "b").lower()])


def parse_duration(text: str | None) -> float | None:
    """``2h``, ``30m``, ``90s``, ``1h30m`` -> seconds."""
    if text is None:
        return None
    parts = re.findall(r"([0-9]*\.?[0-9]+)\s*([hms])", str(text).strip())
    if not parts or re.sub(r"[0-9.\shms]", "", str(text)) or float(sum(float(n) for n, _ in parts)) <= 0:
        raise click.BadParameter(f"{text!r} is not a duration: give one like 2h, 30m or 1h30m", param_hint="--time")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


@click.command("search")
@click.option("--data", "source", default="digits", show_default=True, help="digits, cifar10:DIR or folder:DIR.")
@click.option("--target", default="local", show_default=True,
              help="Where the latency is measured: local, ssh://user@host, adb://SERIAL or a saved device.")
@click.option("--budget", help="The latency budget at --metric: 20ms, 0.5ms, 500us (needed unless --join).")
@click.option("--metric", type=click.Choice(["p90", "p50"]), default="p90", show_default=True,
              help="p90: a model that meets the budget only at the median misses it every tenth frame.")
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--max-size", help="The largest .tflite allowed: 8MB.")
@click.option("--max-memory", help="The most peak memory a candidate may take on the device while it runs: 300MB "
                                   "(measured with its latency, in a fresh process each).")
@click.option("--min-accuracy", type=click.FloatRange(0, 100), help="Say so when the winner's test top-1 (%) is below.")
@click.option("--trials", type=click.IntRange(1, 10_000), default=12, show_default=True,
              help="Trials trained (pruned ones count).")
@click.option("--time", "time_limit", help="Stop starting trials after this long (2h, 30m); with --trials, whichever "
                                          "comes first.")
@click.option("--epochs", type=click.IntRange(1, 1000), default=6, show_default=True,
              help="The most epochs a trial trains (successive halving stops most sooner).")
@click.option("--max-epochs", type=click.IntRange(1), help="Stop starting trials when the trials have trained this "
                                                           "many epochs in all (the training budget; at least --epochs).")
@click.option("--depths", help="Depths to search (default: the family that fits the data).")
@click.option("--widths", help="Keep ratios per stage to search (default 0.25,0.5,0.75,1).")
@click.option("--streams", help="Keep ratios of each stage's residual stream to search, 0.5,1 (default: the stream "
                                "keeps its width; with shortcut A no stage's stream ends narrower than the one "
                                "before).")
@click.option("--modes", help="Quantization modes (default int8,float16,int16x8,qat; qat: int8 after "
                              "quantization-aware fine-tuning, a fifth of --epochs more). A trial is worth the "
                              "validation accuracy of its converted model.")
@click.option("--sizes", help="Input resolutions to search, for an image folder (its images are resized): 96,128,160.")
@click.option("--runtimes", help="Runtimes to time each candidate on: litert (the default; what app frameworks run), "
                                 "openvino (x86 devices that have it).")
@click.option("--io", type=click.Choice(["float32", "int8", "uint8"]), default="float32", show_default=True,
              help="The winner's input and output type (uint8 for apps that feed camera frames); int8 and uint8 "
                   "need --modes int8 or int8,qat.")
@click.option("--measure", type=click.IntRange(1, 10_000), default=24, show_default=True,
              help="Candidates timed on the device before the search (the latency model predicts the rest).")
@click.option("--runs", type=click.IntRange(2, 100_000), default=50, show_default=True,
              help="Timed runs per candidate (the winner: at least 100).")
@click.option("--limit", type=click.IntRange(1), help="At most this many images per split (quick runs).")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "-o", type=click.Path(file_okay=False), default="runs/search", show_default=True)
@click.option("--storage", help="Optuna storage URL shared by workers (default: sqlite in --out).")
@click.option("--baseline/--no-baseline", default=True, show_default=True,
              help="Also time and train the plain grid (every depth, full width, int8) under the same budget.")
@click.option("--second-seed/--no-second-seed", default=True, show_default=True,
              help="Train the winner and the best of the grid again with the next seed, to show the spread.")
@click.option("--weights", help="Start every candidate from published ImageNet weights: imagenet (the files in the "
                                "weight folders, one per depth) or FILE (its depth only); a thinner candidate keeps "
                                "its parent's channels that rank highest. For image folders (ImageNet family).")
@click.option("--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Workers training trials at once on this machine (each a process of `search --join`); the device "
                   "must be elsewhere (ssh://, adb://): timings beside training would carry its load.")
@click.option("--join", "join_dir", type=click.Path(file_okay=False),
              help="Add a worker to the search in this folder (or in --storage): it trains trials until the search "
                   "has its number; the search's own settings are read from its storage.")
@click.option("--json", "as_json", is_flag=True)
def search(source, target, budget, metric, threads, max_size, max_memory, min_accuracy, trials, time_limit, epochs, max_epochs,
           depths, widths, streams, modes, sizes, runtimes, io, measure, runs, limit, batch_size, seed, out, storage, baseline,
           second_seed, weights, jobs, join_dir, as_json):
    """The most accurate ResNet under a latency budget, measured on the device.

    \b
    resnet-edge search --budget 0.3ms                          the bundled digits, this machine, 1 thread
    resnet-edge search --data folder:photos --target pi5 --budget 20ms --trials 40
    Candidates (depth, a keep ratio per stage, mode) are timed untrained on the device; a latency model fitted on
    them picks what else to time; an Optuna study trains only candidates under the budget, with successive
    halving over epochs. Run it again to continue: the study and every measurement are kept.
    """
    from resnet_edge.search.space import parse_list
    from resnet_edge.ui import safe_text

    say = (lambda text: None) if as_json else (lambda text: click.echo(safe_text(text, 400), err=True))
    if join_dir or (storage and budget is None):
        if jobs > 1:
            raise click.UsageError("--jobs starts workers for a search it starts; to add several workers to a running "
                                   "one, run --join once for each")
        from resnet_edge.search.study import join

        done = join(join_dir, storage, progress=say)
        _echo_json_or(done, as_json, lambda d: f"worker {d['worker']} on {d['host']}: trained {d['trials_trained']} "
                                               f"trial(s) in {d['train_seconds']:.0f} s for the search in {d['storage']}")
        return
    if budget is None:
        raise click.UsageError("give --budget (for example --budget 20ms), or --join a search already started")
    budget_ms = parse_budget(budget)
    seconds = parse_duration(time_limit)
    max_bytes = parse_bytes(max_size, "--max-size")
    max_memory_bytes = parse_bytes(max_memory, "--max-memory")
    depths = parse_list(depths, int, "depths")
    widths = parse_list(widths, float, "widths")
    streams = parse_list(streams, float, "streams")
    modes = parse_list(modes, str, "modes")
    sizes = parse_list(sizes, int, "sizes")
    runtimes = parse_list(runtimes, str, "runtimes")
    from resnet_edge.search.space import check_choices, check_epochs, check_io, check_jobs

    check_choices(depths, widths, modes, sizes, runtimes, streams)  # before TensorFlow: a wrong depth is said in a second
    check_epochs(epochs, max_epochs)
    check_io(io, modes)
    if weights is not None and weights != "imagenet":
        from resnet_edge.arch.weights import choose

        choose(weights)  # a missing or damaged file is said before TensorFlow loads
    try:  # a saved device that is this machine is said after it resolves
        check_jobs(jobs, target in (None, "local"))
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    from resnet_edge.search.study import search as run_search

    result = run_search(source, target, budget_ms, metric=metric, threads=threads, max_bytes=max_bytes,
                        max_memory_mb=max_memory_bytes / 2**20 if max_memory_bytes else None,
                        min_accuracy=min_accuracy, trials=trials, epochs=epochs, seed=seed, out=out, storage=storage,
                        depths=depths, widths=widths, modes=modes, measure=measure, batch_size=batch_size,
                        limit=limit, runs=runs, baseline=baseline, time_limit=seconds, second_seed=second_seed,
                        max_epochs=max_epochs, sizes=sizes, runtimes=runtimes, io=io, streams=streams, jobs=jobs, weights=weights,
                        progress=say)
    _echo_json_or(result, as_json, _search_human)


COMMANDS = (search,)
