"""``resnet-edge devices``, ``sweep`` and ``results``: saved devices, many models on many devices, and the
store every measurement lands in. Edge side: none of them imports TensorFlow.
"""

from __future__ import annotations

import click

from resnet_edge.cli import _echo_json_or
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
        return table([{k: safe_text(v, 80) for k, v in r.items()} for r in rows],
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
    if target.kind == "local":
        from resnet_edge.runtime.bench import python_for, run_job

        facts = run_job(python_for("auto"), {"op": "probe"}, memory=1 << 30, timeout=timeout)
    else:
        facts = open_target(target).probe(timeout=timeout)
    from resnet_edge.runtime.bench import clean

    facts = {"name": target.name, "url": target.url, "reachable": True, **clean(facts)}

    def human(f):
        pairs = [(k, safe_text(", ".join(map(str, v)) if isinstance(v, list) else
                               ", ".join(f"{a} {b or 'missing'}" for a, b in v.items()) if isinstance(v, dict) else v, 200))
                 for k, v in f.items()]
        return key_values(pairs)

    _echo_json_or(facts, as_json, human)
