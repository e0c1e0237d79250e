#!/usr/bin/env python
"""What `resnet-edge bench` adds to a plain timing loop of the same interpreter (figures, not a test).

For each model: a plain loop in a fresh Python (``Interpreter``, ``allocate_tensors``, the input set once,
then ``invoke()`` N times between two ``perf_counter`` calls: mean per call) against ``bench``'s average
for the same model, threads and runs (its harness, in its own child). The two alternate for ``--rounds``
rounds; the ratio of the medians of the per-round means is the overhead. Goal: <= 1.02.

    python tools/bench_overhead.py MODEL.tflite [MODEL2 ...] --threads 1 --runs 200 --rounds 5
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PLAIN = """
import sys, time, numpy as np
from ai_edge_litert.interpreter import Interpreter
path, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
it = Interpreter(model_path=path, num_threads=threads)
it.allocate_tensors()
d = it.get_input_details()[0]
it.set_tensor(d["index"], np.random.default_rng(0).uniform(0, 255, d["shape"]).astype(d["dtype"]))
for _ in range(5):
    it.invoke()
t0 = time.perf_counter()
for _ in range(runs):
    it.invoke()
print((time.perf_counter() - t0) / runs * 1e3)
"""


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("models", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--runs", type=int, default=200, show_default=True)
@click.option("--rounds", type=int, default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def main(models, threads, runs, rounds, as_json):
    import numpy as np

    from resnet_edge.measure.bench import bench

    from resnet_edge.runtime.setting import Setting
    from resnet_edge.harness import machine
    from resnet_edge.ui import table

    rows = []
    for model in models:
        plain, ours = [], []
        for _ in range(rounds):
            out = subprocess.run([sys.executable, "-c", PLAIN, model, str(threads), str(runs)], capture_output=True,
                                 text=True, check=True)
            plain.append(float(out.stdout.strip().splitlines()[-1]))
            r = bench([model], [Setting(threads=threads)], runs=runs, warmup=5, measure_memory=False)
            ours.append(r["records"][0]["avg_ms"])
        ratio = float(np.median(ours) / np.median(plain))
        rows.append({"model": Path(model).name, "plain": f"{np.median(plain):.3f}", "bench": f"{np.median(ours):.3f}",
                     "ratio": f"{ratio:.3f}", "goal": "ok" if ratio <= 1.02 else "MISS",
                     "plain_ms": plain, "bench_ms": ours, "ratio_value": ratio})
    m = machine()
    if as_json:
        print(json.dumps({"machine": m, "threads": threads, "runs": runs, "rounds": rounds, "models": rows}, indent=2))
        return
    print(f"{m['cpu']} ({', '.join(m['isa'])}), {m['cores']} cores; {threads} thread(s), {runs} runs x {rounds} rounds, "
          "alternating")
    print(table(rows, [("model", "model"), ("plain", "plain loop ms"), ("bench", "bench avg ms"),
                       ("ratio", "bench / plain"), ("goal", "goal <= 1.02")], right={"plain", "bench", "ratio"}))


if __name__ == "__main__":
    main()
