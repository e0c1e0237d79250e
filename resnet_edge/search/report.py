"""The search's own page: ``search.md`` beside ``search.json``, with two plots: the latency model's predictions
against the device's measurements (a +-10% band), and accuracy against measured latency for every trial with the
Pareto front, the budget, the winner and the plain grid."""

from __future__ import annotations

from pathlib import Path


def write(out: str | Path, result: dict) -> Path:
    from resnet_edge.io import atomic_path, atomic_write_bytes
    from resnet_edge.report.plots import _pyplot, pareto_figure

    out = Path(out)
    plt = _pyplot()
    lm = result["latency_model"]
    if lm.get("points"):
        fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=110)
        xs = [p["measured_ms"] for p in lm["points"]]
        ys = [p["predicted_ms"] for p in lm["points"]]
        top = max(xs + ys) * 1.1
        ax.fill_between([0, top], [0, 0.9 * top], [0, 1.1 * top], color="green", alpha=0.12, label="within 10%")
        ax.plot([0, top], [0, top], color="green", lw=1)
        ax.scatter(xs, ys, s=18, color="#1f77b4", label="held-out candidate (leave-one-out)")
        ax.axvline(result["budget_ms"], color="red", ls="--", lw=1, label="budget")
        ax.set(xlim=(0, top), ylim=(0, top), xlabel=f"measured {result['metric']} (ms)",
               ylabel="predicted (ms)", title="the latency model against the device")
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
        with atomic_path(out / "search-latency.png") as tmp:
            fig.savefig(tmp, format="png", bbox_inches="tight")
        plt.close(fig)
    fig = pareto_figure(result)  # the run report draws it too
    if fig is not None:
        with atomic_path(out / "search-pareto.png") as tmp:
            fig.savefig(tmp, format="png", bbox_inches="tight")
        plt.close(fig)
    w = result["winner"]
    lines = [f"# resnet-edge search: {result['budget_ms']:g} ms at {result['metric']} on {result['target']} "
             f"({result['setting']})", "",
             f"**Winner: {w['key']}** (`{w['file']}`, {w['bytes'] / 1e3:,.1f} kB): p50 {_n(w['p50_ms'])} ms, p90 "
             f"{_n(w['p90_ms'])} ms" + (f", mean {_n(w.get('avg_ms'))} ms" if result["metric"] == "avg" else "")
             + f" over {w['runs']} runs after warm-up on {w.get('measured_on', 'LiteRT')} (CV "
             f"{100 * (w['cv'] or 0):.1f}%){' (' + w['app_path'] + ')' if w.get('app_path') else ''}, "
             f"{'meets' if w['meets_budget'] else 'MISSES'} the budget; measured untrained during the search: "
             f"{_n(w.get('searched_ms'))} ms. Validation top-1 {100 * (w['val_acc'] or 0):.2f}%, test "
             f"{100 * w['test_top1']:.2f}% (the test split used once). Rebuild it: `resnet-edge run {w['recipe']}`.", "",
             f"Space: {result['space']['family']} depths {result['space']['depths']}, keep per stage "
             f"{result['space']['keeps']}"
             + (f", residual stream per stage {result['space']['streams']}"
                if result['space'].get('streams', [1.0]) != [1.0] else "")
             + f", modes {result['space']['modes']}: {result['space']['candidates']} candidates, "
             f"{result['feasible']} feasible, {result['measured']} timed on the device ({result['device_measurements']} "
             f"measurements, {result['device_seconds']:.0f} s); training {result['train_seconds']:.0f} s, "
             f"{result.get('epochs_trained', 0)} epochs in all; {result.get('draws_skipped', 0)} draws of the sampler "
             "skipped (over the budget, or a candidate tried already: told to it at no cost).", ""]
    if lm.get("n"):
        lines += [f"Latency model: within 10% for {100 * lm['within_10pct']:.0f}% of {lm['n']} held-out measurements "
                  f"(median error {100 * lm['median_abs_error']:.1f}%). ![](search-latency.png)", ""]
    for d in result.get("drift") or []:
        if d.get("drift"):
            lines.append(f"Drift after {d['after']}: the reference {d['reference']} moved {100 * d['moved']:+.0f}% "
                         f"({d['was_ms']:.3g} -> {d['now_ms']:.3g} ms); "
                         + (f"settled after {d['waited_s']:.0f} s" if d["settled"] else "it had not settled")
                         + f"; {len(d['retimed'])} candidate(s) timed again.")
    if result.get("drift"):
        lines += [f"The reference was timed {len(result['drift'])} time(s) during the search to catch drift.", ""]
    lines += ["| trial | candidate | state | latency ms | predicted ms | val top-1 | epochs |", "|---:|---|---|---:|---:|---:|---:|"]
    for t in result["trials"]:
        acc = "-" if t.get("val_acc") is None else f"{100 * t['val_acc']:.2f}%"
        state = t["state"].lower() + (" (over budget)" if t.get("over_budget") else "") + \
            (f" ({t['stopped']})" if t.get("stopped") else "") + (" (the prior's pick)" if t.get("prior") else "")
        lines.append(f"| {t['number']} | {t['candidate']} | {state} | {_n(t.get('latency_ms'))} | "
                     f"{_n(t.get('predicted_ms'))} | {acc} | {t.get('epochs') or '-'} |")
    b = result.get("baseline")
    if b:
        lines += ["", "The plain grid (every depth at full width, int8), on the same device:", "",
                  "| candidate | latency ms | under budget | val top-1 | training s |", "|---|---:|---|---:|---:|"]
        for row in b["rows"]:
            acc = "-" if row.get("val_acc") is None else f"{100 * row['val_acc']:.2f}%"
            lines.append(f"| {row['candidate']} | {_n(row['latency_ms'])} | {'yes' if row['under_budget'] else 'no'} | "
                         f"{acc} | {row.get('train_seconds', '-')} |")
    for role, x in (result.get("second_seed") or {}).items():
        lines.append(f"- {role} {x['candidate']} with seed {x['seed']}: validation {100 * (x['val_acc'] or 0):.2f}%, "
                     f"test {100 * (x['test_top1'] or 0):.2f}% (Keras)")
    lines += ["", "![](search-pareto.png)", ""]
    path = out / "search.md"
    atomic_write_bytes(path, "\n".join(lines).encode())
    return path


def _n(v) -> str:
    return "-" if v is None else f"{v:.3g}"
