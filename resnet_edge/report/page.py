"""The report of a run: one self-contained HTML page (plots inlined as PNG, CSS inline, no script, nothing
fetched) and the same content as Markdown, made from the run folder's files alone (``results.json`` and the
stages' records), so it can be made again, or for an older run, without running anything.

The verdict comes first (which variants meet every gate, with file, size, accuracy and latency; why the others
fail), then accuracy against latency for every variant and target, the accuracy ladder across modes, the chosen
variant's per-class accuracy and confusion matrix, training curves, each target's fingerprint and latency
distribution, and how to reproduce the run (the resolved recipe, the toolkit's version, every artifact's sha256).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from resnet_edge.errors import ResnetEdgeError
from resnet_edge.io import atomic_write_bytes

MODE_ORDER = ["float32", "float16", "dynamic", "int8", "int16x8"]
COLOURS = {"float32": "#1f77b4", "float16": "#17becf", "dynamic": "#9467bd", "int8": "#d62728", "int16x8": "#ff7f0e"}


def rank(row: dict) -> tuple:
    """How variants are ranked for the verdict: the most accurate first, the fastest of equals."""
    return (-(row["top1"] or 0), row["p50_ms"] if row.get("p50_ms") is not None else float("inf"))


def _chosen_result(ctx: dict) -> dict:
    """The validate record of the variant the run chose (empty when none was)."""
    chosen = ctx["results"].get("chosen")
    return ((ctx["stages"].get(f"validate:{chosen[0]}:{chosen[1]}") or {}).get("result") or {}) if chosen else {}


def collect(folder: str | Path) -> dict:
    """What the report shows, read from the run folder: results.json, the stages' records, the training
    history. Raises one line when the folder holds no finished run."""
    folder = Path(folder)
    try:
        results = json.loads((folder / "results.json").read_text())
    except (OSError, ValueError):
        raise ResnetEdgeError(f"{folder} holds no finished run (no readable results.json): run `resnet-edge run` "
                              "there first") from None
    stages = {}
    for record in sorted(folder.rglob("stage.json")):
        try:
            r = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        stages[r.get("stage", str(record.parent))] = {**r, "folder": str(record.parent.relative_to(folder))}
    try:
        history = json.loads((folder / "train" / "history.json").read_text())
    except (OSError, ValueError):
        history = []
    return {"folder": str(folder), "results": results, "stages": stages, "history": history,
            "search": _search_record((results.get("recipe") or {}).get("search"))}


#: The largest search.json the report reads (a search of thousands of trials is a few MB).
MAX_SEARCH_BYTES = 64 * 2**20


def _search_record(path) -> dict | None:
    """The search.json a recipe names (``search:``), read as data and checked for the fields the report shows; a
    file that is missing, too large or not a search's record gives ``{"error": ...}`` (the report says so)."""
    if not path:
        return None
    p = Path(str(path))
    try:
        if p.stat().st_size > MAX_SEARCH_BYTES:
            return {"path": str(p), "error": f"larger than {MAX_SEARCH_BYTES // 2**20} MiB"}
        record = json.loads(p.read_bytes())
    except OSError as exc:
        return {"path": str(p), "error": f"cannot be read ({exc.strerror or type(exc).__name__})"}
    except ValueError:
        return {"path": str(p), "error": "is not JSON"}
    ok = (isinstance(record, dict) and isinstance(record.get("trials"), list) and isinstance(record.get("winner"), dict)
          and isinstance(record.get("budget_ms"), (int, float)) and all(isinstance(t, dict) for t in record["trials"]))
    return {"path": str(p), **record} if ok else {"path": str(p), "error": "is not the record of a resnet-edge search"}


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def pareto(items: list, latency=lambda x: x[0], accuracy=lambda x: x[1]) -> list:
    """The items no other item beats on both latency (lower) and accuracy (higher), by latency (default: items
    are ``(latency, accuracy)`` pairs)."""
    front, best = [], -float("inf")
    for item in sorted(items, key=lambda x: (latency(x), accuracy(x))):
        if accuracy(item) > best:
            front.append(item)
            best = accuracy(item)
    return front


def figures(ctx: dict, other: dict | None = None) -> dict[str, str]:
    """The plots as base64 PNGs: ``tradeoff``, ``ladder``, ``confusion``, ``curves`` (those the data allows)."""
    from resnet_edge.report.plots import _pyplot

    plt = _pyplot()
    rows = [x for x in ctx["results"]["rows"] if x.get("p50_ms")]
    gates = ctx["results"]["recipe"].get("gates") or {}
    out = {}
    if rows:
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        biggest = max(x["bytes"] for x in rows)
        for run_ctx, marker, label in ((ctx, "o", ""), (other, "s", " (B)")):
            if not run_ctx:
                continue
            these = [x for x in run_ctx["results"]["rows"] if x.get("p50_ms")]
            for i, x in enumerate(sorted(these, key=lambda x: x["p50_ms"])):
                ax.errorbar(x["p50_ms"], 100 * x["top1"], xerr=[[0], [max(0, (x["p90_ms"] or x["p50_ms"]) - x["p50_ms"])]],
                            fmt=marker, ms=6 + 18 * (x["bytes"] / biggest) ** 0.5, color=COLOURS.get(x["mode"], "gray"),
                            alpha=0.8, ecolor="gray", capsize=3)
                ax.annotate(f"{x['variant']} {x['mode']}{label}", (x["p50_ms"], 100 * x["top1"]), fontsize=7,
                            xytext=(8, 10 if i % 2 else -14), textcoords="offset points")
            front = pareto([(x["p50_ms"], 100 * x["top1"]) for x in these])
            ax.plot([p[0] for p in front], [p[1] for p in front], "-", color="black", lw=1, alpha=0.5,
                    label=f"Pareto front{label}")
        lat = gates.get("latency") or {}
        if lat.get("p50_ms"):
            ax.axvline(lat["p50_ms"], color="red", ls="--", lw=1, label=f"p50 budget on {lat['target']}")
        if gates.get("min_top1") is not None:
            ax.axhline(gates["min_top1"], color="orange", ls=":", lw=1, label="minimum top-1")
        for mode, colour in COLOURS.items():
            if any(x["mode"] == mode for x in rows):
                ax.plot([], [], "o", color=colour, label=mode)
        ax.set_xscale("log")
        from matplotlib.ticker import FormatStrFormatter

        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set(xlabel="latency p50 (ms, batch 1, log scale; whisker to p90)", ylabel="top-1 (%)",
               title="accuracy against latency (marker area: file size)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        out["tradeoff"] = _png(fig)
    per_variant = {}
    for x in ctx["results"]["rows"]:
        per_variant.setdefault((x["variant"], x["mode"]), x)
    if per_variant:
        ordered = sorted(per_variant.values(), key=lambda x: (x["variant"] != "float", x["variant"],
                                                              MODE_ORDER.index(x["mode"]) if x["mode"] in MODE_ORDER else 9))
        fig, ax = plt.subplots(figsize=(7.5, 3.2))
        labels = [f"{x['variant']}\n{x['mode']}" for x in ordered]
        ax.bar(range(len(ordered)), [100 * x["top1"] for x in ordered],
               color=[COLOURS.get(x["mode"], "gray") for x in ordered])
        reference = ctx["results"].get("float_top1")
        if reference is not None:
            ax.axhline(100 * reference, color="black", ls="--", lw=1, label="float Keras model")
            ax.legend(fontsize=7, loc="lower right")
        low = min([100 * x["top1"] for x in ordered] + ([100 * reference] if reference is not None else []))
        ax.set_ylim(max(0, low - 5), 100.5)
        ax.set_xticks(range(len(ordered)), labels, fontsize=7)
        ax.set(ylabel="top-1 (%)", title="the accuracy ladder across modes and variants")
        ax.grid(alpha=0.3, axis="y")
        out["ladder"] = _png(fig)
    chosen, result = ctx["results"].get("chosen"), _chosen_result(ctx)
    if result.get("confusion_matrix"):
        import numpy as np

        m = np.asarray(result["confusion_matrix"])
        classes = [c["class"] for c in result["per_class"]]
        fig, ax = plt.subplots(figsize=(4.8, 4.2))
        ax.imshow(m, cmap="Blues")
        for i in range(len(m)):
            for j in range(len(m)):
                if m[i, j]:
                    ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if m[i, j] > m.max() / 2 else "black")
        ticks = range(len(classes)) if len(classes) <= 30 else []
        ax.set_xticks(ticks, [classes[i] for i in ticks], fontsize=6)
        ax.set_yticks(ticks, [classes[i] for i in ticks], fontsize=6)
        ax.set(xlabel="predicted", ylabel="true", title=f"confusion matrix: {chosen[0]} {chosen[1]}")
        out["confusion"] = _png(fig)
    layers = _layer_view(ctx)
    if layers:
        shown = layers[0]  # the chosen variant's when it was calibrated, else the first
        top = shown["rows"][:15][::-1]
        fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.28 * len(top)))
        ax.barh(range(len(top)), [x["rmse_scale"] or 0 for x in top], color="#d62728", alpha=0.8)
        ax.axvline(12 ** -0.5, color="black", ls="--", lw=1, label="rounding alone (0.29 steps)")
        ax.set_yticks(range(len(top)), [f"{x['layer']} ({x['op']})" for x in top], fontsize=7)
        ax.set(xlabel="rmse / scale (error in int8 steps, each layer on its own input)",
               title=f"the int8 layers with the largest error: {shown['variant']}")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3, axis="x")
        out["layers"] = _png(fig)
    stages = _stage_view(ctx)
    if stages:
        n = len(stages["targets"])
        fig, axes = plt.subplots(n, 1, figsize=(7.5, 0.6 + 1.5 * n * len(stages["models"]) ** 0.5), squeeze=False)
        colours = plt.get_cmap("tab10")
        for ax, t in zip(axes[:, 0], stages["targets"]):
            for i, label in enumerate(stages["models"]):
                left = 0.0
                for j, part in enumerate(stages["parts"]):
                    ms = t["ms"].get(label, {}).get(part) or 0.0
                    ax.barh(i, ms, left=left, color=colours(j), label=part if i == 0 else None)
                    left += ms
            ax.set_yticks(range(len(stages["models"])), stages["models"], fontsize=8)
            ax.set(xlabel="ms (p50 of each prefix; a part = its prefix minus the one before)",
                   title=f"where the time goes on {t['target']} ({t['setting']})")
            ax.legend(fontsize=7, ncol=len(stages["parts"]), loc="lower right")
            ax.grid(alpha=0.3, axis="x")
        fig.tight_layout()
        out["stages"] = _png(fig)
    history = ctx["history"]
    if history:
        fig, ax = plt.subplots(figsize=(7.5, 3.2))
        epochs = [h["epoch"] for h in history]
        ax.plot(epochs, [100 * h["train_error"] for h in history], label="training error")
        ax.plot(epochs, [100 * (1 - h["val_acc"]) for h in history], "--", label="validation error")
        ax.set(xlabel="epoch", ylabel="error (%)", title="training")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        out["curves"] = _png(fig)
    search = _search_view(ctx)
    if search and search["trials"]:
        from resnet_edge.report.plots import pareto_figure

        fig = pareto_figure(search["record"])
        if fig is not None:
            out["search"] = _png(fig)
    return out


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _search_view(ctx: dict) -> dict | None:
    """The search this recipe's model won, as the report shows it: what was asked, what it cost, every trial (read
    from its search.json as plain values: a damaged or foreign record shows what it can, never fails the report)."""
    record = ctx.get("search")
    if not record:
        return None
    if record.get("error"):
        return {"path": record["path"], "error": record["error"], "trials": []}
    trials = []
    for t in record["trials"]:
        trials.append({"number": t.get("number") if isinstance(t.get("number"), int) else "-",
                       "candidate": str(t.get("candidate", "?"))[:120], "state": str(t.get("state", "?")).lower()[:20],
                       "latency_ms": _num(t.get("latency_ms")), "val_acc": _num(t.get("val_acc")),
                       "epochs": t.get("epochs") if isinstance(t.get("epochs"), int) else None,
                       "note": "over budget" if t.get("over_budget") else ("the prior's pick" if t.get("prior") else
                                                                         str(t.get("stopped") or "")[:60])})
    clean = all(isinstance(t.get("latency_ms"), (int, float, type(None))) and isinstance(t.get("val_acc"), (int, float, type(None)))
                for t in record["trials"])
    w = record["winner"]
    best = ((record.get("baseline") or {}).get("best") or {}) if isinstance(record.get("baseline"), dict) else {}
    return {"path": record["path"], "error": None, "trials": trials,
            "budget_ms": _num(record.get("budget_ms")), "metric": str(record.get("metric", "p90"))[:10],
            "target": str(record.get("target", "?"))[:300], "setting": str(record.get("setting", ""))[:200],
            "winner": str(w.get("key", "?"))[:120], "winner_ms": _num(w.get(f"{record.get('metric', 'p90')}_ms")),
            "winner_val": _num(w.get("val_acc")), "winner_test": _num(w.get("test_top1")),
            "feasible": _num(record.get("feasible")), "candidates": _num((record.get("space") or {}).get("candidates"))
            if isinstance(record.get("space"), dict) else None,
            "train_seconds": _num(record.get("train_seconds")), "device_seconds": _num(record.get("device_seconds")),
            "device_measurements": _num(record.get("device_measurements")),
            "baseline": {"candidate": str(best.get("candidate", ""))[:120], "val_acc": _num(best.get("val_acc")),
                         "latency_ms": _num(best.get("latency_ms"))} if isinstance(best, dict) and best else None,
            "record": record if clean else {**record, "trials": []}}


def _layer_view(ctx: dict) -> list[dict]:
    """Per calibrated int8 variant, its layers by int8 error, largest first (the chosen variant first)."""
    chosen = ctx["results"].get("chosen") or [None]
    out = []
    for name, s in sorted(ctx["stages"].items()):
        if name.startswith("layers:") and (s.get("result") or {}).get("layers"):
            out.append({"variant": name.split(":", 1)[1], "rows": s["result"]["layers"],
                        "images": s["result"].get("images"), "split": s["result"].get("split")})
    out.sort(key=lambda x: x["variant"] != chosen[0])
    return out


def _stage_view(ctx: dict) -> dict | None:
    """The per-stage latency of the chosen variant and float32: models, parts in order, one entry per target."""
    r = (ctx["stages"].get("stage_latency") or {}).get("result") or {}
    targets = [t for t in r.get("targets") or [] if t.get("ms")]
    if not targets:
        return None
    parts = list(next(iter(targets[0]["ms"].values())))
    return {"models": r["models"], "parts": parts, "targets": targets,
            "errors": [t for t in r.get("targets") or [] if t.get("error")]}


def _template():
    try:
        import jinja2
    except ImportError:  # pragma: no cover - in the host extra
        raise ResnetEdgeError("the report needs Jinja2: pip install jinja2 (or 'resnet-edge[host]')") from None
    env = jinja2.Environment(loader=jinja2.PackageLoader("resnet_edge.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html.j2"], default=False), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v: "-" if v is None else f"{100 * v:.2f}%"
    env.filters["ms"] = lambda v: "-" if v is None else f"{v:.3g}"
    env.filters["kb"] = lambda v: "-" if v is None else f"{v / 1e3:,.1f} kB"
    return env


def view(ctx: dict, other: dict | None = None) -> dict:
    """The values the templates show (the same for HTML and Markdown)."""
    r = ctx["results"]
    rows = r["rows"]
    passing = [tuple(p) for p in r["passing"]]
    verdict = []
    for variant, mode in passing:
        mine = [x for x in rows if (x["variant"], x["mode"]) == (variant, mode)]
        best = min((x for x in mine if x.get("p50_ms")), key=lambda x: x["p50_ms"], default=mine[0])
        verdict.append({**best, "file": f"variants/{variant}/convert/{variant}_{mode}.tflite"})
    verdict.sort(key=rank)
    failing = {}
    for x in rows:
        if x["failed"]:
            failing.setdefault((x["variant"], x["mode"]), x["failed"])
    machines = {}
    for name, s in sorted(ctx["stages"].items()):
        for lat in (s.get("result") or {}).get("latency") or []:
            if lat.get("machine"):
                m = machines.setdefault(lat["target"], {"machine": lat["machine"], "runtime": lat.get("runtime"),
                                                        "runtime_version": lat.get("runtime_version"), "heat": []})
                heat = lat["machine"].get("temperature_c") or {}
                if heat.get("before") or heat.get("after"):
                    m["heat"].append({"stage": name.split(":", 1)[1], **heat})
    distributions = []
    for name, s in sorted(ctx["stages"].items()):
        if name.startswith("validate:"):
            for lat in (s.get("result") or {}).get("latency") or []:
                if lat.get("p50_ms") is not None:
                    cv = lat["std_ms"] / lat["avg_ms"] if lat.get("std_ms") is not None and lat.get("avg_ms") else None
                    shown = {k: lat.get(k) for k in ("target", "setting", "init_ms", "first_inference_ms", "min_ms",
                                                     "p50_ms", "p90_ms", "p99_ms", "peak_rss_overall_mb")}
                    distributions.append({"stage": name.split(":", 1)[1], **shown, "cv": cv})
    artifacts = sorted((f"{s['folder']}/{n}", d) for s in ctx["stages"].values() for n, d in (s.get("outputs") or {}).items())
    return {"name": r["recipe"].get("name"), "description": r["recipe"].get("description"), "rows": rows,
            "verdict": verdict, "failing": sorted(failing.items()), "chosen": r.get("chosen"),
            "float_top1": r.get("float_top1"), "machines": machines, "distributions": distributions,
            "recipe_yaml": r.get("recipe_yaml", ""), "version": r.get("version"), "finished": r.get("finished"),
            "artifacts": artifacts, "gates": _gates_text(r["recipe"].get("gates") or {}),
            "other": None if other is None else {"name": other["results"]["recipe"].get("name"),
                                                 "folder": other["folder"], "rows": other["results"]["rows"]},
            "per_class": _chosen_result(ctx).get("per_class", []), "layers": _layer_view(ctx),
            "stages": _stage_view(ctx), "qat_variants": _qat_variants(r["recipe"]), "search": _search_view(ctx)}


def _qat_variants(recipe: dict) -> list[str]:
    """The int8 variants whose ranges were learned (QAT): no per-layer calibration error to show."""
    from resnet_edge.recipe import learns_ranges

    return [v["name"] for v in recipe.get("variants") or [] if "int8" in (v.get("modes") or []) and learns_ranges(v)]


def _gates_text(gates: dict) -> list[str]:
    """The recipe's gates as a reader says them."""
    out = []
    if gates.get("max_drop") is not None:
        out.append(f"top-1 at most {gates['max_drop']:g} points below the float model")
    if gates.get("min_top1") is not None:
        out.append(f"top-1 at least {gates['min_top1']:g}%")
    lat = gates.get("latency") or {}
    for key in ("p50_ms", "p90_ms"):
        if lat.get(key) is not None:
            out.append(f"{key[:3]} at most {lat[key]:g} ms on {lat.get('target', 'local')}")
    if gates.get("max_bytes") is not None:
        out.append(f"a file of at most {gates['max_bytes']:,} bytes")
    return out


def render(ctx: dict, other: dict | None = None) -> tuple[str, str]:
    """The report as HTML (plots inlined) and as Markdown (the same tables; plots named, not drawn)."""
    env = _template()
    v = view(ctx, other)
    html = env.get_template("report.html.j2").render(**v, figures=figures(ctx, other))
    md = env.get_template("report.md.j2").render(**v)
    return html, md


def write(folder: str | Path, out: str | Path | None = None, other: str | Path | None = None) -> tuple[Path, Path]:
    """Write the report of the run in ``folder`` (with ``other``: two runs side by side) to ``out`` (default
    ``folder/report.html``) and the Markdown beside it; each file whole or not at all."""
    ctx = collect(folder)
    html, md = render(ctx, collect(other) if other else None)
    out = Path(out) if out else Path(folder) / "report.html"
    atomic_write_bytes(out, html.encode())
    atomic_write_bytes(out.with_suffix(".md"), md.encode())
    return out, out.with_suffix(".md")
