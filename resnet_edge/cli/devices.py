"""``resnet-edge devices``, ``sweep`` and ``results``: saved devices, many models on many devices, and the
store every measurement lands in. Edge side: none of them imports TensorFlow.
"""

from __future__ import annotations

import os

import click

from resnet_edge.cli.options import STORE_OPTION, _words
from resnet_edge.cli.render import _csv_safe, _echo_json_or, _json_or_text
from resnet_edge.ui import safe_text


@click.group()
def devices():
    """Saved devices: a name for each target URL, usable wherever --target takes a URL.

    \b
    resnet-edge devices add pi5 ssh://pi@raspberrypi.local --note "Pi 5, 8 GB"
    resnet-edge devices check pi5
    resnet-edge bench model_int8.tflite --target pi5
    Kept in $RESNET_EDGE_DEVICES, else $XDG_CONFIG_HOME/resnet-edge/devices.json (~/.config/...).
    """


@devices.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--note", default="", help="One line about the device (model, OS, where it is).")
@click.option("--replace", is_flag=True, help="Replace a device saved under the same name.")
def devices_add(name, url, note, replace):
    """Save URL (ssh://[user@]host[:port][/?python=PATH] or adb://[SERIAL]) as NAME."""
    from resnet_edge.targets import devices as store

    store.add(name, url, note, replace=replace)
    click.echo(f"saved {name} = {safe_text(url, 200)} in {safe_text(store.path(), 200)}")


@devices.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def devices_list(as_json):
    """The saved devices."""
    from resnet_edge.targets import devices as store
    from resnet_edge.ui import table

    rows = [{"name": name, **entry} for name, entry in sorted(store.load().items())]

    def human(rows):
        if not rows:
            return f"no devices saved (in {safe_text(store.path(), 200)}); add one with resnet-edge devices add NAME URL"
        shown = [{**r, "note": f"DAMAGED: {r['error']}" if r.get("error") else r["note"]} for r in rows]
        return table([{k: safe_text(v, 80) for k, v in r.items()} for r in shown],
                     [("name", "name"), ("url", "url"), ("note", "note"), ("added", "added")])

    _echo_json_or(rows, as_json, human)


@devices.command("remove")
@click.argument("name")
def devices_remove(name):
    """Forget the device NAME."""
    from resnet_edge.targets import devices as store

    entry = store.remove(name)
    click.echo(f"removed {name} ({safe_text(entry['url'], 200)})")


@devices.command("check")
@click.argument("target_text", metavar="NAME|URL")
@click.option("--timeout", type=click.IntRange(1, 3600), default=60, show_default=True, help="Seconds to wait.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def devices_check(target_text, timeout, as_json):
    """Is the device reachable, and what does it run: Python, numpy, runtimes and their versions, CPU and
    its ISA, cores and memory (ssh); Android version, ABI and benchmark_model (adb)."""
    from resnet_edge.targets import open_target, resolve
    from resnet_edge.ui import key_values

    target = resolve(target_text)
    facts = open_target(target).probe(timeout=timeout)
    from resnet_edge.runtime.replies import clean

    facts = {"name": target.name, "url": target.url, "reachable": True, **clean(facts)}

    def human(f):
        pairs = [(safe_text(k, 60), safe_text(", ".join(map(str, v)) if isinstance(v, list) else
                               ", ".join(f"{a} {b or 'missing'}" for a, b in v.items()) if isinstance(v, dict) else v, 200))
                 for k, v in f.items()]
        return key_values(pairs)

    _echo_json_or(facts, as_json, human)


@click.command()
@click.argument("model_paths", metavar="MODEL.tflite...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--target", "target_texts", multiple=True, required=True, metavar="URL|NAME",
              help="A device (repeatable): local, ssh://..., adb://... or a saved name.")
@click.option("--accelerator", "accelerators", default="interpreter", show_default=True,
              callback=_words(("interpreter", "cpu", "gpu", "nnapi")),
              help="Ways to run, comma-separated: interpreter (XNNPACK), cpu / gpu (LiteRT CompiledModel; on adb:// "
                   "XNNPACK / the GPU delegate), nnapi (adb:// only).")
@click.option("--threads", "threads_text", default=None, help="Thread counts, comma-separated (1,4). Default: the runtime's.")
@click.option("--runtime", "runtimes", default="auto", show_default=True,
              callback=_words(("auto", "litert", "tflite-runtime", "openvino")),
              help="Runtimes, comma-separated: auto, litert, tflite-runtime, openvino (OpenVINO's CPU plugin on our "
                   ".tflite; local and ssh:// targets, one setting per --precision, --accelerator does not apply).")
@click.option("--precision", "precisions", default="f32", show_default=True, callback=_words(("f32", "bf16")),
              help="--runtime openvino: f32, bf16 or both (f32,bf16).")
@click.option("--runs", type=click.IntRange(1, 1_000_000), default=50, show_default=True, help="Timed runs per job.")
@click.option("--warmup", type=click.IntRange(0, 100_000), default=5, show_default=True)
@click.option("--again", is_flag=True, help="Measure again what the store already holds (same model, target, setting).")
@click.option("--timeout", type=click.IntRange(1, 86_400), default=1800, show_default=True,
              help="Seconds one job may take on a device.")
@click.option("--no-verify", "no_verify", is_flag=True, help="Do not refuse a model of ours whose checksum does not match.")
@click.option("--benchmark-binary", type=click.Path(dir_okay=False),
              help="adb:// targets: LiteRT's benchmark_model for Android, pushed to the device.")
@STORE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sweep(model_paths, target_texts, accelerators, threads_text, runtimes, precisions, runs, warmup, again, timeout,
          no_verify, benchmark_binary, store_path, as_json):
    """Every model with every setting on every target, into the results store: one job at a time per
    device, devices in parallel. Run it again after an interruption: what is stored is skipped.

    \b
    resnet-edge sweep m_f32.tflite m_int8.tflite --target pi5 --target adb://R58M --accelerator cpu,gpu --threads 1,4
    resnet-edge sweep m_int8.tflite --target nuc --runtime litert,openvino --threads 1,4
    resnet-edge results compare m_f32.tflite m_int8.tflite
    """
    from resnet_edge.cli.options import _threads
    from resnet_edge.targets import resolve
    from resnet_edge.errors import ConfigError
    from resnet_edge.io import sha256_file
    from resnet_edge.measure import sweep as sweeping
    from resnet_edge.measure.results import Store
    from resnet_edge.runtime.runner import check_model
    from resnet_edge.runtime.setting import Setting

    threads = _threads(None, None, threads_text)
    targets = [resolve(t) for t in dict.fromkeys(target_texts)]
    for t in targets:
        if "nnapi" in accelerators and t.kind != "adb":
            raise click.BadParameter(f"nnapi runs on Android only ({t} is not adb://)", param_hint="--accelerator")
    if len(set(model_paths)) != len(model_paths):
        raise ConfigError("a model is named twice; name each once")
    if "openvino" in runtimes:
        android = [str(t) for t in targets if t.kind == "adb"]
        if android:
            raise click.BadParameter(f"OpenVINO runs on x86 machines with Python (local, ssh://), not on {android[0]}",
                                     param_hint="--runtime")
    settings = []
    for runtime in runtimes:
        if runtime == "openvino":
            settings += [Setting(runtime=runtime, threads=n, precision=p) for p in precisions for n in threads]
            continue
        for acc in accelerators:
            for n in threads:
                settings.append(Setting(runtime=runtime, accelerator=None if acc == "interpreter" else acc, threads=n))
    for s in settings:
        if s.accelerator != "nnapi":
            s.check(local=False)
    models = {}
    for p in model_paths:
        check_model(p, not no_verify)
        models[str(p)] = sha256_file(p)
    jobs = sweeping.plan(models, targets, settings)
    Store(store_path).close()  # a store that cannot be opened is reported before anything runs
    from resnet_edge.measure.results import path as default_path

    where = store_path or default_path()
    bar_state = {"done": 0}
    show = not as_json and __import__("sys").stderr.isatty()

    def events(kind, job, info):
        if kind in ("measured", "skipped", "failed"):
            bar_state["done"] += 1
        line = {"start": "measuring", "measured": "measured", "skipped": "already stored",
                "failed": "FAILED", "waiting": "waiting for another job on"}[kind]
        filled = round(20 * bar_state["done"] / max(1, len(jobs)))
        text = f"[{'#' * filled}{'.' * (20 - filled)}] {bar_state['done']}/{len(jobs)} {line} {job.target} " \
               f"{safe_text(os.path.basename(job.model), 60)} [{job.setting.label()}]"
        if kind == "failed":
            text += f": {safe_text(info.get('error'), 300)}"
        if show or kind == "failed" and not as_json:
            click.echo(("\r\x1b[K" if show else "") + text, err=True, nl=not show or kind == "failed")

    out = sweeping.run(jobs, store_path=store_path, again=again, runs=runs, warmup=warmup, verify=not no_verify,
                       timeout=timeout, events=events, benchmark_binary=benchmark_binary)
    if show:
        click.echo("\r\x1b[K", err=True, nl=False)
    out["store"] = where

    def human(o):
        from resnet_edge.cli.render import _ms
        from resnet_edge.ui import table

        rows = [{"model": safe_text(os.path.basename(m["model"]), 50), "target": safe_text(m["target"], 50),
                 "setting": m["setting"], "p50": _ms(m.get("p50_ms")), "p90": _ms(m.get("p90_ms")),
                 "init": _ms(m.get("init_ms")),
                 "mem": "-" if m.get("peak_rss_overall_mb") is None else f"{m['peak_rss_overall_mb']:.0f}"}
                for m in o["measured"]]
        text = table(rows, [("model", "model"), ("target", "target"), ("setting", "setting"), ("p50", "p50 ms"),
                            ("p90", "p90 ms"), ("init", "init ms"), ("mem", "peak RSS MB")],
                     right={"p50", "p90", "init", "mem"}) if rows else "nothing measured"
        text += (f"\n{len(o['measured'])} measured, {len(o['skipped'])} already in the store (--again measures them "
                 f"again), {len(o['failed'])} failed; store: {safe_text(o['store'], 200)}")
        return text

    _echo_json_or(out, as_json, human)
    if out["failed"]:
        raise click.ClickException(f"{len(out['failed'])} of {len(jobs)} jobs failed (first: "
                                   f"{safe_text(out['failed'][0]['error'], 300)}); run the same command again to retry them")


@click.group(invoke_without_command=True)
@click.option("--model", help="A model's file name or the start of its sha256.")
@click.option("--target", help="A target's name or URL.")
@click.option("--since", help="From a date (2026-11-20), a time, or an age (7d, 12h).")
@click.option("--limit", type=click.IntRange(1, 1_000_000), help="The newest N rows only.")
@STORE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every field of every row).")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
@click.pass_context
def results(ctx, model, target, since, limit, store_path, as_json, as_csv):
    """The measurements in the results store (bench and sweep write them), oldest first.

    \b
    resnet-edge results --target pi5 --since 7d
    resnet-edge results compare pi5 adb://R58M              (two devices: same models and settings)
    resnet-edge results compare m_f32.tflite m_int8.tflite  (two models: same devices and settings)
    """
    ctx.ensure_object(dict)
    ctx.obj["store_path"] = store_path
    if ctx.invoked_subcommand:
        return
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    from resnet_edge.measure.results import FIGURES, Store, parse_since

    if since:
        parse_since(since)
    with Store(store_path, write=False) as store:  # reading never writes
        rows = store.query(model=model, target=target, since=since, limit=limit)
    if as_csv:
        import csv
        import io

        buf = io.StringIO()
        fields = ["id", "measured_at", "model_name", "model_sha256", "target", "target_url", "setting", "runtime",
                  "runtime_version", *FIGURES, "toolkit_version"]
        writer = csv.DictWriter(buf, fields, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: _csv_safe(r.get(k)) for k in fields})
        click.echo(buf.getvalue(), nl=False)
        return
    for r in rows:
        r["device"] = _json_or_text(r["device"])
        r["record"] = _json_or_text(r["record"])

    def human(rows):
        from resnet_edge.cli.render import _ms
        from resnet_edge.ui import table

        if not rows:
            return "no results match (bench and sweep add them)"
        return table([{"when": r["measured_at"][:16].replace("T", " "), "model": safe_text(r["model_name"], 40),
                       "sha": r["model_sha256"][:8], "target": safe_text(r["target"], 40),
                       "setting": safe_text(r["setting"], 30),
                       "runtime": safe_text(f"{r['runtime']} {r['runtime_version']}", 30),
                       "p50": _ms(r["p50_ms"]), "p90": _ms(r["p90_ms"]), "init": _ms(r["init_ms"]),
                       "mem": "-" if r["peak_rss_overall_mb"] is None else f"{r['peak_rss_overall_mb']:.0f}"}
                      for r in rows],
                     [("when", "measured (UTC)"), ("model", "model"), ("sha", "sha256"), ("target", "target"),
                      ("setting", "setting"), ("runtime", "runtime"), ("p50", "p50 ms"), ("p90", "p90 ms"),
                      ("init", "init ms"), ("mem", "peak RSS MB")], right={"p50", "p90", "init", "mem"})

    _echo_json_or(rows, as_json, human)


@results.command("compare")
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def results_compare(ctx, a, b, as_json):
    """Ratios B / A of the newest p50 of two models (same target and setting) or two targets (same model
    and setting); A and B are targets when both are, else models (file names or sha256 starts)."""
    from resnet_edge.measure.results import Store, compare

    with Store(ctx.obj.get("store_path"), write=False) as store:
        out = compare(store.query(), a, b)

    def human(o):
        from resnet_edge.cli.render import _ms
        from resnet_edge.ui import table

        rows = [{"model": safe_text(p["model"], 60), "target": safe_text(p["target"], 60), "setting": p["setting"],
                 "a": _ms(p["a_p50_ms"]), "b": _ms(p["b_p50_ms"]),
                 "ratio": "-" if p["ratio"] is None else f"{p['ratio']:.2f}x"} for p in o["pairs"]]
        return table(rows, [("model", "model"), ("target", "target"), ("setting", "setting"),
                            ("a", "A p50 ms"), ("b", "B p50 ms"), ("ratio", "B / A")], right={"a", "b", "ratio"}) + \
            f"\nA = {safe_text(o['a'], 80)}, B = {safe_text(o['b'], 80)} (two {o['kind']}s; newest measurement of each)"

    _echo_json_or(out, as_json, human)



COMMANDS = (devices, sweep, results)
