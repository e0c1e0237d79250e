#!/usr/bin/env python
"""Which early-stopping schedule should `resnet-edge search` use? A replay, not a test, and not a search: the search's
own code (its prior, TPE sampler, successive halving, training budget) run over the learning curves that
tools/search_vs_grid.py measured, so that a schedule is judged over many sampler seeds in minutes instead of hours.

Every grid member of a search_vs_grid folder was trained --epochs epochs with seed 0, exactly as a search trial with
seed 0 trains it (checked: the trials of that benchmark's seed-0 searches have the grid's validation curves to the
last digit). Here a trial "trains" by reading its candidate's curve epoch by epoch, reported to the pruner as the
search reports it, and the winner is the search's best trial, scored with the grid's test top-1 of that candidate.
The latencies are the benchmark's measurements (its results store): nothing is timed or trained. Sampler seeds
vary; the training seed does not (every curve is seed 0's).

For each schedule and budget: the mean test top-1 of the winners over the seeds, how often the winner is the grid's
best feasible member or inside its 95% interval, and the mean epochs spent (of the budget of a fifth of the grid's)::

    python tools/pruner_replay.py --grid /tmp/sg/run --seeds 20

Writes GRID/pruner-replay.json and prints a table.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def schedules(epochs: int) -> dict:
    """The schedules compared: name -> a function of the trial's epochs giving an Optuna pruner."""
    import optuna

    return {
        "halving, first rung at a third (today)": lambda e: optuna.pruners.SuccessiveHalvingPruner(
            min_resource=max(1, e // 3), reduction_factor=3),
        "halving, first rung at half": lambda e: optuna.pruners.SuccessiveHalvingPruner(
            min_resource=max(1, e // 2), reduction_factor=3),
        "halving, first rung at a third, keep half": lambda e: optuna.pruners.SuccessiveHalvingPruner(
            min_resource=max(1, e // 3), reduction_factor=2),
        "hyperband from a ninth": lambda e: optuna.pruners.HyperbandPruner(
            min_resource=max(1, e // 9), max_resource=e, reduction_factor=3),
        "hyperband from a third": lambda e: optuna.pruners.HyperbandPruner(
            min_resource=max(1, e // 3), max_resource=e, reduction_factor=3),
        "none": lambda e: optuna.pruners.NopPruner(),
    }


@contextlib.contextmanager
def replayed(curves: dict, grid: dict, pruner):
    """The search's training and final step replaced by the measured curves and the grid's test figures."""
    from resnet_edge.search import study

    def train_candidate(meter, c, data, folder, *, epochs, batch_size, seed, limit, report=None):
        curve = curves[c.key]
        for epoch in range(1, epochs + 1):
            acc = curve[epoch - 1]
            if report is not None and report(acc, epoch) and epoch < epochs:
                return {"val_acc": acc, "epochs": epoch, "pruned": True, "seconds": 0.0}
        return {"val_acc": curve[epochs - 1], "float_val_acc": curve[epochs - 1], "epochs": epochs, "pruned": False,
                "seconds": 0.0}

    def finish(meter, winner, folder, *args, **kwargs):
        return {"winner": {"key": winner.key, "meets_budget": True, "test_top1": grid[winner.key]["test_top1"]}}

    from resnet_edge.search import report

    saved = study.train_candidate, study._finish, study.pruner_for, report.write
    study.train_candidate, study._finish, study.pruner_for = train_candidate, finish, pruner
    report.write = lambda out, result: out / "search.md"  # no report: there is no measured winner to draw
    try:
        yield
    finally:
        study.train_candidate, study._finish, study.pruner_for, report.write = saved


def curves_of(grid_dir: Path) -> tuple[dict, dict]:
    """Each grid member's validation curve and its result (val_acc, test_top1, ...), by candidate key."""
    curves, grid = {}, {}
    for folder in (grid_dir / "grid").iterdir():
        if (folder / "result.json").exists():
            curves[folder.name] = [h["val_acc"] for h in json.loads((folder / "history.json").read_text())]
            grid[folder.name] = json.loads((folder / "result.json").read_text())
    return curves, grid


def replay(grid_dir: Path, budget: float, feasible: int, epochs: int, *, seeds: int, make=None, runs: int = 60,
           store: str | None = None, tag: str = "0") -> dict:
    """The search under ``budget`` (``feasible`` grid members within it) replayed with sampler seeds 0..seeds-1 and
    the pruner ``make`` (default: the search's own): the winners' grid test top-1 (mean, sd, each), the epochs
    spent, each winner."""
    import numpy as np

    from resnet_edge.search import study

    curves, grid = curves_of(grid_dir)
    depths = sorted({int(k.split("-")[0][6:]) for k in curves})
    widths = sorted({float(x) for k in curves for x in k.split("-k")[1].split("-int8")[0].split("-")})
    tests, spent, winners = [], [], []
    t0 = time.monotonic()
    for seed in range(seeds):
        out = grid_dir / "replay" / f"{tag}-{budget:.4f}-{seed}"
        with replayed(curves, grid, make or study.pruner_for):
            r = study.search(f"folder:{grid_dir / 'data'}", "local", budget, metric="p90", threads=1, trials=feasible,
                             epochs=epochs, max_epochs=max(epochs * feasible // 5, epochs), seed=seed, out=out,
                             depths=depths, widths=widths, modes=("int8",), measure=len(curves), runs=runs,
                             batch_size=32, baseline=False, second_seed=False, store_path=store)
        tests.append(r["winner"]["test_top1"])
        spent.append(r["epochs_trained"])
        winners.append(r["winner"]["key"])
    return {"seeds": seeds, "mean_test_top1": float(np.mean(tests)), "sd_test_top1": float(np.std(tests)),
            "tests": tests, "winners": winners, "mean_epochs": float(np.mean(spent)),
            "seconds": round(time.monotonic() - t0, 1)}


@click.command()
@click.option("--grid", "grid_dir", type=click.Path(exists=True, file_okay=False), required=True,
              help="A tools/search_vs_grid.py output folder (its grid trained, its search-vs-grid.json written).")
@click.option("--seeds", default=20, show_default=True, help="Sampler seeds per schedule and budget.")
@click.option("--only", default=None, help="Only the schedules whose name holds this text.")
@click.option("--store", default=None, help="The results store the benchmark timed into (default: the usual one, "
                                            "$RESNET_EDGE_RESULTS).")
def main(grid_dir, seeds, only, store):
    grid_dir = Path(grid_dir)
    bench = json.loads((grid_dir / "search-vs-grid.json").read_text())
    epochs = bench["epochs"]
    rows = []
    for index, (name, make) in enumerate(schedules(epochs).items()):
        if only and only not in name:
            continue
        for b in bench["budgets"]:
            best = b["grid"]
            r = replay(grid_dir, b["budget_ms"], b["feasible"], epochs, seeds=seeds, make=make,
                       runs=bench.get("runs", 60), store=store, tag=str(index))
            rows.append({"schedule": name, "budget_ms": b["budget_ms"], **r, "grid_best": best["best"],
                         "grid_best_test_top1": best["test_top1"],
                         "found_grid_best": sum(w == best["best"] for w in r["winners"]) / seeds,
                         "inside_grid_ci": sum(t >= best["ci95"][0] for t in r["tests"]) / seeds,
                         "grid_epochs": best["epochs"], "random_at_a_fifth": b["random"]["expected_test_top1"]})
            x = rows[-1]
            print(f"{name:45s} {x['budget_ms']:.3f} ms: test {100 * x['mean_test_top1']:.1f}% (sd "
                  f"{100 * x['sd_test_top1']:.1f}), grid's best {100 * x['found_grid_best']:.0f}%, inside its CI "
                  f"{100 * x['inside_grid_ci']:.0f}%, {x['mean_epochs']:.0f} of {x['grid_epochs']} epochs", file=sys.stderr)
    (grid_dir / "pruner-replay.json").write_text(json.dumps(rows, indent=2))
    print("| schedule | budget ms | mean test top-1 (sd) | winner is the grid's best | inside the grid's 95% CI | "
          "epochs (grid's) | random search at the benchmark's cost |\n|---|---:|---|---:|---:|---|---:|")
    for x in rows:
        print(f"| {x['schedule']} | {x['budget_ms']:.3f} | {100 * x['mean_test_top1']:.1f}% "
              f"({100 * x['sd_test_top1']:.1f}) | {100 * x['found_grid_best']:.0f}% | {100 * x['inside_grid_ci']:.0f}% | "
              f"{x['mean_epochs']:.0f} ({x['grid_epochs']}) | {100 * x['random_at_a_fifth']:.1f}% |")


if __name__ == "__main__":
    main()
