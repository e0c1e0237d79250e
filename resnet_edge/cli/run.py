"""``resnet-edge run``: every stage of a recipe, each skipped when nothing it depends on has changed, then one
table of every variant and the gates' verdict (:mod:`resnet_edge.pipeline`); ``resnet-edge report``: the page of a
finished run (:mod:`resnet_edge.report.page`)."""

from __future__ import annotations

import click

from resnet_edge.cli.render import _echo_json_or, _run_human


@click.command("run")
@click.argument("recipe_path", metavar="[RECIPE]", required=False)
@click.option("--out", "-o", type=click.Path(file_okay=False), help="The run's folder. Default: runs/NAME.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override one value of the recipe, checked as the file is: train.epochs=3, "
                   "variants.0.modes=[float32,int8], data=folder:photos. Repeat for more.")
@click.option("--show", is_flag=True, help="Print the recipe as resolved, every default filled in, and stop.")
@click.option("--dry-run", is_flag=True, help="Say which stages would run and why; run none.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Stages that time nothing (optimizing, converting: the variants) run up to this many at once, "
                   "each in a process of its own; the stages that time models always run alone.")
@click.option("--json", "as_json", is_flag=True, help="Print the final table as JSON.")
def run(recipe_path, out, overrides, show, dry_run, jobs, as_json):
    """Run a recipe: train, optimize, convert and validate every variant it names, where it will run.

    \b
    resnet-edge run                                  models/resnet20-digits.yaml on the bundled digits
    resnet-edge run resnet56-digits-compact          a recipe of models/ by its name
    resnet-edge run my.yaml --set train.epochs=3     a file, one value changed
    resnet-edge run --show                           the recipe with every default, nothing run
    A stage whose inputs, settings and code are those of its last run is skipped; a changed setting reruns
    the stages after it; a run killed at any moment continues when run again. Exit 1 when no variant meets
    every gate (each failing gate is named, with by how much).
    """
    from pathlib import Path

    from resnet_edge import recipe as recipes

    r = recipes.load(recipe_path, tuple(overrides))
    if show:
        click.echo(recipes.dump(r), nl=False)
        return
    from resnet_edge import pipeline
    from resnet_edge.ui import end_progress, progress_line, safe_text

    folder = Path(out) if out else Path("runs") / r["name"]
    show = progress_line(as_json)  # a stage's own steps, on one overwriting line (a terminal only)

    def detail(text: str) -> None:
        if show:
            show(text)

    def stage_line(text: str) -> None:  # [i/n] stage: what and why, elapsed; kept on the screen
        if not as_json:
            detail("")
            click.echo(safe_text(text, 400), err=True)

    try:
        plan = pipeline.plan(r, folder, say=detail)
        stages = pipeline.execute(plan, dry_run=dry_run, progress=stage_line, jobs=jobs)
    finally:
        end_progress(show)
    if dry_run:
        if as_json:
            _echo_json_or([{"stage": s.name, "runs": bool(s.why), "why": s.why} for s in stages], True, None)
        return
    result = pipeline.finish(plan, stages)
    result["folder"] = str(folder)
    _echo_json_or(result, as_json, _run_human)
    passing = result["passing"]
    if not passing:
        failed = sorted({f"{x['variant']} {x['mode']}: {'; '.join(x['failed'])}" for x in result["rows"] if x["failed"]})
        raise click.ClickException("no variant meets every gate: " + " | ".join(failed))


@click.command("report")
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False))
@click.argument("other", metavar="[RUN2]", required=False, type=click.Path(file_okay=False))
@click.option("--out", "-o", type=click.Path(dir_okay=False),
              help="The HTML file; the Markdown goes beside it (.md). Default: RUN/report.html.")
def report(run_dir, other, out):
    """Write the report of a finished run (resnet-edge run writes it at its end): one self-contained HTML page,
    plots inlined, nothing fetched, and the same as Markdown. RUN2: a second run beside it.

    \b
    resnet-edge report runs/resnet20-digits
    resnet-edge report runs/resnet20-digits runs/resnet56-digits-compact --out compare.html
    """
    from resnet_edge.report.page import write

    html, md = write(run_dir, out, other)
    click.echo(f"wrote {html} and {md}")


COMMANDS = (run, report)
