#!/usr/bin/env python
"""Is `resnet-edge search` worth running? The search against the exhaustive grid and random search, at one thread on
this machine (the device), under two latency budgets. A benchmark that prints figures, not a test.

The task is harder than the full digits set (where top-1 sits near 99% and one validation image is 0.56 points):
scikit-learn's real digits at 32 px with **few training images a class** (``--shots``, as tools/transfer.py does),
the validation images chosen from the rest and the test split everything left (about 1,100 images: a 95% interval
of about +-2.5 points at 85%).

* **Grid:** every candidate of a small space (``--depths`` x keep ratio per stage in ``--widths`` x int8) timed on
  this machine untrained, then trained for ``--epochs`` with the paper's recipe; its best feasible member per budget
  (by validation accuracy), its test top-1 with a 95% Wilson interval, and the grid's training cost.
* **Search:** `resnet-edge search` over the same space, budget and epochs, with a training budget of a fifth of the
  grid's epochs (``max_epochs``): as many trials as fit, successive halving stopping most early; ``--search-seeds``
  searches per budget (default one), each with its own seed, for the sampler and for training. Seed 0 trains as the
  grid does (the same curves to the last digit), so the searches run first and the grid takes their trials trained
  whole instead of training those members again (their time counted in the search and in the grid alike).
* **The search's spread** over its sampler: the search replayed over the grid's curves with ``--replay-seeds``
  sampler seeds (tools/pruner_replay.py: the search's own loop, each trial reading its measured curve), in a minute.
* **Random search** at the search's mean cost in epochs: k feasible candidates drawn at random, each trained fully
  (the grid's runs), the best by validation accuracy. Not one draw but its exact expectation over every draw of k,
  and the chance that it does as well as the search.
* **Thinned ResNet-56:** the fastest thinning of ResNet-56 in the grid against the full one: measured speed-up and
  test top-1 inside the full one's interval or not.
* **Latency model:** its leave-one-out error over every grid member.

Budgets: the 35th and 65th percentile of the grid's measured p90 latencies, so that each budget cuts the grid on
any machine. Usage::

    python tools/search_vs_grid.py --out runs/search-vs-grid                 # about 45 min on a 2-core Zen 4
    python tools/search_vs_grid.py --out runs/sg --depths 20,56 --epochs 10  # a quick look

Writes OUT/search-vs-grid.json and OUT/search-vs-grid.md; a grid member already trained there is not trained again.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def random_search(feasible: list[dict], k: int, beat: float | None = None) -> dict:
    """Random search with ``k`` draws (without replacement) from ``feasible`` (grid results: val_acc, test_top1),
    keeping the best by validation accuracy: its expected test top-1, exactly (each member's chance to be the
    best-by-validation of the draw), and the chance that it reaches ``beat`` or more."""
    n = len(feasible)
    k = max(1, min(k, n))
    ranked = sorted(feasible, key=lambda r: r["val_acc"])  # ties: the earlier counts as below
    total = math.comb(n, k)
    expected = reach = 0.0
    for i, r in enumerate(ranked):
        p = math.comb(i, k - 1) / total  # r drawn, and the other k-1 drawn all below it
        expected += p * r["test_top1"]
        if beat is not None and r["test_top1"] >= beat:
            reach += p
    return {"draws": k, "expected_test_top1": expected, "chance_at_least": reach if beat is not None else None}


def make_data(root: Path, shots: int, val: int) -> str:
    from tools.transfer import digits_by_class, write_digit_folder

    if not (root / "train").exists():
        order = digits_by_class()
        for split, part in (("train", slice(0, shots)), ("val", slice(shots, shots + val)),
                            ("test", slice(shots + val, None))):
            write_digit_folder(root / split, {c: order[c][part] for c in range(10)}, size=32)
    return f"folder:{root}"


def cpu() -> str:
    from resnet_edge.harness import machine

    m = machine()
    return f"{m['cpu']} ({', '.join(m['isa'])}; {m['cores']} cores)"


@click.command()
@click.option("--out", type=click.Path(file_okay=False), default="runs/search-vs-grid", show_default=True)
@click.option("--depths", default="20,32,44,56", show_default=True)
@click.option("--widths", default="0.25,1", show_default=True, help="Keep ratios per stage.")
@click.option("--epochs", default=30, show_default=True)
@click.option("--shots", default=20, show_default=True, help="Training images per class.")
@click.option("--search-seeds", default=1, show_default=True,
              help="Searches per budget, each with its own seed, for the sampler and for training.")
@click.option("--replay-seeds", default=12, show_default=True,
              help="Sampler seeds the search is replayed with over the grid's curves (tools/pruner_replay.py): the "
                   "search's spread over its sampler, in a minute.")
@click.option("--runs", default=60, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--grid-only", is_flag=True, help="Time and train the grid, then stop (a later run reuses it).")
def main(out, depths, widths, epochs, shots, search_seeds, replay_seeds, runs, seed, grid_only):
    from resnet_edge.data import load
    from resnet_edge.evaluate import evaluate
    from resnet_edge.runtime.setting import Setting
    from resnet_edge.search.latency import Meter, held_out
    from resnet_edge.search.space import parse_list, space_for
    from resnet_edge.search.study import search
    from resnet_edge.targets import resolve

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    source = make_data(out / "data", shots, 20)
    data = load(source)
    space = space_for(data.image_size, parse_list(depths, int, "depths"), parse_list(widths, float, "widths"), ("int8",))
    grid = space.candidates()
    meter = Meter(resolve("local"), Setting(threads=1), data, out / "latency", runs=runs, metric="p90_ms")
    t0 = time.monotonic()
    meter.measure(grid)
    device_s = time.monotonic() - t0
    lat = {c.key: meter.latency(c) for c in grid}
    points = [(c, meter.features(c), lat[c.key]) for c in grid]
    model_error = held_out(points)
    budgets = [float(np.percentile(list(lat.values()), q)) for q in (35, 65)]
    print(f"{len(grid)} candidates timed in {device_s:.0f} s on {cpu()}; budgets {budgets[0]:.3g} and "
          f"{budgets[1]:.3g} ms", file=sys.stderr)

    # The searches first: a seed-0 trial trains exactly as the grid trains its member (the same recipe, seed and
    # images: the curves agree to the last digit), so the grid takes the trials trained whole instead of training them
    # again. Their cost is counted where it was spent: in the search's epochs, and in the grid's.
    searched = {}
    if not grid_only:
        for budget in budgets:
            feasible = [c for c in grid if lat[c.key] <= budget]
            for s_seed in range(seed, seed + search_seeds):
                s_out = out / f"search-{budget:.4f}-seed{s_seed}"
                t = time.monotonic()
                # the training budget: a fifth of the grid's epochs (at least one trial's); as many trials as fit
                r = search(source, "local", budget, metric="p90", threads=1, trials=len(feasible), epochs=epochs,
                           max_epochs=max(epochs * len(feasible) // 5, epochs), seed=s_seed, out=s_out,
                           depths=space.depths, widths=space.keeps, modes=("int8",), measure=len(grid), runs=runs,
                           batch_size=32, baseline=False, second_seed=False)
                searched[budget, s_seed] = (r, time.monotonic() - t, s_out)

    whole, spent = {}, {}  # of the seed-0 searches' trials: the folder of one trained whole, and the time they took
    for (_, s_seed), (r, _, _) in searched.items():
        for x in r["trials"] if s_seed == seed else ():
            if x["state"] == "COMPLETE" and x.get("folder") and x.get("epochs") == epochs:
                whole.setdefault(x["candidate"], Path(x["folder"]))
            if not x.get("twin_of"):
                spent[x["candidate"]] = spent.get(x["candidate"], 0) + (x.get("train_seconds") or 0)
    trained = {}
    for i, c in enumerate(sorted(grid, key=lambda c: lat[c.key])):
        folder = out / "grid" / c.key
        record = folder / "result.json"
        if record.exists():
            trained[c.key] = json.loads(record.read_text())
            continue
        t = time.monotonic()
        done = whole.get(c.key)
        if done is not None:  # trained whole by a seed-0 trial: that training, its time counted there
            import shutil

            print(f"grid {i + 1}/{len(grid)}: {c.key}, trained by the search", file=sys.stderr)
            folder.mkdir(parents=True, exist_ok=True)
            for name in ("model.keras", "history.json"):
                shutil.copy2(done / name, folder / name)
            seconds = spent.get(c.key) or None
        else:
            print(f"grid {i + 1}/{len(grid)}: {c.key}", file=sys.stderr)
            from resnet_edge.train import Recipe, train

            train(meter.spec(c), data, folder, Recipe(epochs=epochs, batch_size=32, seed=seed), verbose=0)
            seconds = None
        report = evaluate(folder / "model.keras", data, "test")
        history = json.loads((folder / "history.json").read_text())
        trained[c.key] = {"val_acc": max(h["val_acc"] for h in history), "test_top1": report["top1"],
                          "n": report["n"], "seconds": seconds or time.monotonic() - t, "epochs": epochs,
                          **({"from_search": True} if done is not None else {})}
        record.write_text(json.dumps(trained[c.key]))

    if grid_only:
        return

    def ci(r):
        return wilson(round(r["test_top1"] * r["n"]), r["n"])

    from tools.pruner_replay import replay

    rows = []
    for budget in budgets:
        feasible = [c for c in grid if lat[c.key] <= budget]
        best = max(feasible, key=lambda c: trained[c.key]["val_acc"])
        b = trained[best.key]
        grid_epochs = epochs * len(feasible)
        searches = []
        for s_seed in range(seed, seed + search_seeds):
            r, seconds, _ = searched[budget, s_seed]
            w = r["winner"]
            searches.append({
                "seed": s_seed, "winner": w["key"], "p90_ms": w["p90_ms"], "cv": w["cv"], "cv_robust": w.get("cv_robust"),
                "misses": [m["key"] for m in r.get("misses") or []], "meets_budget": w["meets_budget"],
                "test_top1": w["test_top1"], "ci95": wilson(round(w["test_top1"] * b["n"]), b["n"]),
                "epochs": r["epochs_trained"], "trials": len(r["trials"]), "skipped": r["draws_skipped"],
                "seconds": seconds, "within_grid_ci": ci(b)[0] <= w["test_top1"],
                "grid_test_of_winner": trained.get(w["key"], {}).get("test_top1")})
        mean_test = sum(x["test_top1"] for x in searches) / len(searches)
        mean_epochs = sum(x["epochs"] for x in searches) / len(searches)
        rand = random_search([trained[c.key] for c in feasible], int(mean_epochs // epochs), beat=mean_test)
        again = replay(out, budget, len(feasible), epochs, seeds=replay_seeds, runs=runs) if replay_seeds else None
        if again:
            rand_replay = random_search([trained[c.key] for c in feasible], int(again["mean_epochs"] // epochs),
                                        beat=again["mean_test_top1"])
            again.update({"inside_grid_ci": sum(t >= ci(b)[0] for t in again["tests"]) / replay_seeds,
                          "beats_random": sum(t > rand_replay["expected_test_top1"] for t in again["tests"]) / replay_seeds,
                          "random": rand_replay})
        rows.append({
            "budget_ms": budget, "feasible": len(feasible),
            "grid": {"best": best.key, "latency_ms": lat[best.key], "test_top1": b["test_top1"], "ci95": ci(b),
                     "epochs": grid_epochs, "seconds": sum(trained[c.key]["seconds"] for c in feasible)},
            "searches": searches, "search_mean_test_top1": mean_test, "search_mean_epochs": mean_epochs,
            "random": {**rand, "epochs": rand["draws"] * epochs}, "replay": again,
        })
    full = [c for c in grid if c.depth == 56 and min(c.keep) == 1.0]
    thin = [c for c in grid if c.depth == 56 and min(c.keep) < 1.0]
    resnet56 = None
    if full and thin:
        fast = min(thin, key=lambda c: lat[c.key])
        f = trained[full[0].key]
        resnet56 = {"thin": fast.key, "speedup": lat[full[0].key] / lat[fast.key],
                    "thin_test_top1": trained[fast.key]["test_top1"], "full_test_top1": f["test_top1"],
                    "full_ci95": ci(f), "inside": ci(f)[0] <= trained[fast.key]["test_top1"]}
    result = {"cpu": cpu(), "python": platform.python_version(), "shots": shots, "epochs": epochs,
              "candidates": len(grid), "device_seconds": device_s, "latency_model": {
                  k: v for k, v in model_error.items() if k != "points"}, "budgets": rows, "resnet56": resnet56}
    (out / "search-vs-grid.json").write_text(json.dumps(result, indent=2, default=str))
    lines = [f"# search against grid ({result['cpu']}, 1 thread, {shots} training images a class, {epochs} epochs)", "",
             "| budget ms | feasible | grid best (test, 95% CI) | grid epochs | search seed: winner (test) | epochs "
             "(share of the grid's) | within CI | re-timed (p90, CV, robust CV) | random at the same cost: expected test "
             "(chance to do as well as the search) |", "|---:|---:|---|---:|---|---|---|---|---|"]
    for x in rows:
        g, rn = x["grid"], x["random"]
        for i, s in enumerate(x["searches"]):
            head = (f"| {x['budget_ms']:.3g} | {x['feasible']} | {g['best']} {100 * g['test_top1']:.1f}% "
                    f"[{100 * g['ci95'][0]:.1f}, {100 * g['ci95'][1]:.1f}] | {g['epochs']} |") if i == 0 else "| | | | |"
            tail = (f" {rn['draws']} draw(s): {100 * rn['expected_test_top1']:.1f}% "
                    f"({100 * rn['chance_at_least']:.0f}% to reach the search's mean {100 * x['search_mean_test_top1']:.1f}%) |"
                    if i == 0 else " |")
            lines.append(f"{head} {s['seed']}: {s['winner']} {100 * s['test_top1']:.1f}% | {s['epochs']} "
                         f"({s['epochs'] / g['epochs']:.2f}), {s['trials']} trials | {'yes' if s['within_grid_ci'] else 'no'} | "
                         f"{'meets' if s['meets_budget'] else 'MISSES'}: {s['p90_ms']:.3g} ms, {100 * (s['cv'] or 0):.1f}%, "
                         f"{100 * (s['cv_robust'] or 0):.1f}%{', after ' + str(len(s['misses'])) + ' over' if s['misses'] else ''} |"
                         f"{tail}")
    for x in rows:
        a = x["replay"]
        if a:
            lines.append(f"Replayed over the grid's curves with sampler seeds 0-{a['seeds'] - 1} under {x['budget_ms']:.3g} ms: "
                         f"test {100 * a['mean_test_top1']:.1f}% (sd {100 * a['sd_test_top1']:.1f}), inside the grid's "
                         f"interval {100 * a['inside_grid_ci']:.0f}% of seeds, ahead of random search at its cost "
                         f"({a['random']['draws']} draw(s): {100 * a['random']['expected_test_top1']:.1f}%) "
                         f"{100 * a['beats_random']:.0f}% of seeds; {a['mean_epochs']:.0f} epochs.")
    lm = result["latency_model"]
    lines += ["", f"Latency model: within 10% for {100 * (lm['within_10pct'] or 0):.0f}% of {lm['n']} held-out "
              f"candidates (median error {100 * (lm['median_abs_error'] or 0):.1f}%)."]
    if resnet56:
        lines.append(f"Thinned ResNet-56 ({resnet56['thin']}): {resnet56['speedup']:.2f}x the full one's measured speed, "
                     f"test {100 * resnet56['thin_test_top1']:.1f}% against {100 * resnet56['full_test_top1']:.1f}% "
                     f"[{100 * resnet56['full_ci95'][0]:.1f}, {100 * resnet56['full_ci95'][1]:.1f}]: "
                     f"{'inside' if resnet56['inside'] else 'outside'} its interval.")
    (out / "search-vs-grid.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
