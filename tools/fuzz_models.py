"""Fuzz our own .tflite models: seeded, reproducible mutants through `inspect` and the runtime.

Every mutant of a model of ours is run, in worker processes with memory and time limits, through:

* ``verify`` mode (the default of every command): ``inspect`` and ``TFLiteModel`` must refuse it in one
  line (its checksum no longer matches). A mutant they accept and run is *damaged and run silently*.
* ``no-verify`` mode (``--no-verify``, looking anyway): the flatbuffer checks, the readers and the runtime
  (loaded in a limited child first, then in the worker) must answer with a report or one clean line.

Counted per mode: clean refusals, accepted, tracebacks (an exception that is not a one-line
``ResnetEdgeError``), hangs (a worker past its time limit) and signals (a worker killed by a signal: in
our process, since runtime children are separate). Goal: 0 signals, 0 hangs, 0 tracebacks, 0 damaged
models run silently.

Mutations: bit flips, byte overwrites, truncations, insertions, and flatbuffer-aware edits: every
table of the model (operator codes, subgraphs, tensors, quantization, operators and their options,
buffers, metadata, signatures) is found through its vtable, and an edit hits one of its fields: an
offset, a vector's length, or a scalar (indices, shapes, types, scales, zero points, option values).

    python tools/fuzz_models.py --mutants 10000 --workers 2          # converts its seed models first
    python tools/fuzz_models.py --models DIR --mutants 500 --seed 1   # .tflite files of ours in DIR
    python tools/fuzz_models.py --atheris --runs 20000                # coverage-guided, the readers only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MUTATIONS = ("bitflip", "overwrite", "truncate", "insert", "field", "vector_length", "offset")


# --- flatbuffer-aware sites -----------------------------------------------------------------------


def _u32(buf: bytes, pos: int) -> int:
    return struct.unpack_from("<I", buf, pos)[0]


def table_fields(buf: bytes, pos: int) -> list[tuple[int, int]]:
    """(absolute position, width guess) of every field present in the table at ``pos`` (from its vtable)."""
    vtable = pos - struct.unpack_from("<i", buf, pos)[0]
    vsize, tsize = struct.unpack_from("<HH", buf, vtable)
    offsets = sorted(o for o in struct.unpack_from(f"<{(vsize - 4) // 2}H", buf, vtable + 4) if o)
    fields = []
    for i, o in enumerate(offsets):
        end = offsets[i + 1] if i + 1 < len(offsets) else tsize
        fields.append((pos + o, max(1, min(8, end - o))))
    return fields


def sites(buf: bytes) -> list[tuple[str, int, int]]:
    """Every place a structure-aware edit can hit: ("field", pos, width) for each table field,
    ("offset", pos, 4) for each uoffset field, ("vector_length", pos, 4) for each vector's length."""
    from ai_edge_litert import schema_py_generated as s

    tables = []
    model = s.Model.GetRootAs(buf, 0)
    tables.append(model._tab.Pos)
    for i in range(model.OperatorCodesLength()):
        tables.append(model.OperatorCodes(i)._tab.Pos)
    for i in range(model.BuffersLength()):
        tables.append(model.Buffers(i)._tab.Pos)
    for i in range(model.MetadataLength()):
        tables.append(model.Metadata(i)._tab.Pos)
    for i in range(model.SignatureDefsLength()):
        sd = model.SignatureDefs(i)
        tables.append(sd._tab.Pos)
        tables += [sd.Inputs(j)._tab.Pos for j in range(sd.InputsLength())]
        tables += [sd.Outputs(j)._tab.Pos for j in range(sd.OutputsLength())]
    for i in range(model.SubgraphsLength()):
        g = model.Subgraphs(i)
        tables.append(g._tab.Pos)
        for j in range(g.TensorsLength()):
            t = g.Tensors(j)
            tables.append(t._tab.Pos)
            if t.Quantization() is not None:
                tables.append(t.Quantization()._tab.Pos)
        for j in range(g.OperatorsLength()):
            op = g.Operators(j)
            tables.append(op._tab.Pos)
            opts = op.BuiltinOptions()
            if opts is not None:
                tables.append(opts.Pos)
    out = []
    for pos in tables:
        for fpos, width in table_fields(buf, pos):
            out.append(("field", fpos, width))
            if width == 4:
                target = fpos + _u32(buf, fpos)
                if target + 4 <= len(buf):
                    out.append(("offset", fpos, 4))
                    out.append(("vector_length", target, 4))
    return out


# --- mutants --------------------------------------------------------------------------------------


def mutate(data: bytes, kind: str, rng: np.random.Generator, site_list: list) -> bytes:
    b = bytearray(data)
    n = len(b)
    if kind == "bitflip":
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(0, n))
            b[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == "overwrite":
        i, k = int(rng.integers(0, n)), int(rng.integers(1, 17))
        b[i:i + k] = rng.integers(0, 256, min(k, n - i), dtype=np.uint8).tobytes()
    elif kind == "truncate":
        del b[int(rng.integers(0, n)):]
    elif kind == "insert":
        i = int(rng.integers(0, n))
        b[i:i] = rng.integers(0, 256, int(rng.integers(1, 17)), dtype=np.uint8).tobytes()
    else:
        candidates = [x for x in site_list if x[0] == kind] or site_list
        _, pos, width = candidates[int(rng.integers(0, len(candidates)))]
        width = min(width, n - pos)
        old = int.from_bytes(b[pos:pos + width], "little")
        choice = int(rng.integers(0, 6))
        new = [old ^ (1 << int(rng.integers(0, 8 * width))), old + 1, old - 1, 0, (1 << (8 * width)) - 1,
               int(rng.integers(0, 1 << min(8 * width, 62)))][choice] % (1 << (8 * width))
        b[pos:pos + width] = new.to_bytes(width, "little")
    return bytes(b)


def mutants(models: list[Path], count: int, seed: int):
    """``count`` distinct (name, kind, bytes) mutants, round-robin over models and mutation kinds."""
    rng = np.random.default_rng(seed)
    originals = [(f"{p.parent.name}/{p.name}", p.read_bytes()) for p in models]
    site_lists = [sites(d) for _, d in originals]
    made = 0
    while made < count:
        for (name, data), site_list in zip(originals, site_lists):
            kind = MUTATIONS[int(rng.integers(0, len(MUTATIONS)))]
            m = mutate(data, kind, rng, site_list)
            if m == data:
                continue
            yield name, kind, m
            made += 1
            if made >= count:
                return


# --- one mutant, in a worker ----------------------------------------------------------------------


def classify(fn) -> tuple[str, str]:
    from resnet_edge.errors import ResnetEdgeError

    try:
        fn()
        return "accepted", ""
    except ResnetEdgeError as exc:
        text = str(exc)
        if "\n" in text or len(text) > 600:
            return "traceback", f"multi-line or unbounded message ({len(text)} chars)"
        return "refused", text[:160]
    except Exception as exc:  # anything else would reach the user as a traceback
        import traceback

        where = traceback.extract_tb(exc.__traceback__)[-1]
        return "traceback", f"{type(exc).__name__}: {str(exc)[:120]} at {Path(where.filename).name}:{where.lineno}"


def run_one(data: bytes) -> dict:
    """inspect and the runtime on one mutant, in both modes."""
    from resnet_edge.runtime.runner import TFLiteModel
    from resnet_edge.tflite.inspect import inspect

    out = {}
    out["verify_inspect"] = classify(lambda: inspect(data, targets=("gpu", "nnapi"), load_check=False))

    def run_verified():
        model = TFLiteModel(data, probe=False)  # a verified model of ours needs no probe; a foreign one is probed
        model.predict(np.zeros((1, *model.input_shape[1:]), np.float32))

    out["verify_runtime"] = classify(run_verified)
    loaded = {}

    def look():
        loaded["report"] = inspect(data, targets=("cpu", "gpu", "nnapi"), verify=False)

    out["noverify_inspect"] = classify(look)

    def run_anyway():
        # inspect's child proved that the runtime loads and runs it; only then does the worker load it
        model = TFLiteModel(data, verify=False, probe=False)
        model.predict(np.zeros((1, *model.input_shape[1:]), np.float32))

    out["noverify_runtime"] = classify(run_anyway) if "report" in loaded else ("refused", "not loadable")
    return out


def worker() -> None:
    """Read length-prefixed mutants on stdin; write one JSON line per mutant."""
    stdin, stdout = sys.stdin.buffer, sys.stdout
    while True:
        head = stdin.read(4)
        if len(head) < 4:
            return
        data = stdin.read(struct.unpack("<I", head)[0])
        stdout.write(json.dumps(run_one(data)) + "\n")
        stdout.flush()


class Worker:
    def __init__(self, memory: int, timeout: float):
        from resnet_edge import _child

        self.timeout = timeout
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     preexec_fn=_child._limits(memory))

    def submit(self, data: bytes) -> None:
        self.proc.stdin.write(struct.pack("<I", len(data)) + data)
        self.proc.stdin.flush()

    def result(self) -> dict | str:
        import select

        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        if not ready:
            self.proc.kill()
            self.proc.wait()
            return "hang"
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            return f"signal {-code}" if code < 0 else f"exit {code}"
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


def fuzz(models: list[Path], count: int, seed: int = 0, workers: int = 2, timeout: float = 60,
         memory: int = 4 << 30, progress: bool = True) -> dict:
    """Run ``count`` mutants; return counts per mode and outcome, and examples of every failure."""
    pool = [Worker(memory, timeout) for _ in range(workers)]
    counts: dict[str, Counter] = {k: Counter() for k in ("verify_inspect", "verify_runtime", "noverify_inspect",
                                                           "noverify_runtime")}
    worker_deaths: Counter = Counter()
    by_kind: Counter = Counter()
    failures: list[dict] = []
    t0 = time.perf_counter()
    pending: list[tuple[int, str, str, bytes]] = []
    done = 0
    source = mutants(models, count, seed)

    def collect(w: int, item) -> None:
        nonlocal done
        name, kind, data = item
        res = pool[w].result()
        done += 1
        by_kind[kind] += 1
        if isinstance(res, str):  # the worker hung or died: restart it
            worker_deaths[res.split()[0]] += 1
            failures.append({"model": name, "kind": kind, "outcome": res, "bytes": len(data)})
            pool[w] = Worker(memory, timeout)
            return
        for mode, (outcome, detail) in res.items():
            counts[mode][outcome] += 1
            bad = outcome == "traceback" or (mode.startswith("verify") and outcome == "accepted")
            if bad and len(failures) < 50:
                failures.append({"model": name, "kind": kind, "mode": mode, "outcome": outcome, "detail": detail})
        if progress and done % 100 == 0:
            rate = done / (time.perf_counter() - t0)
            print(f"  {done}/{count} mutants, {rate:.1f}/s", file=sys.stderr, flush=True)

    busy: list = [None] * workers
    for item in source:
        free = next((i for i, b in enumerate(busy) if b is None), None)
        if free is None:
            free = 0 if len(busy) == 1 else _first_ready(pool, busy)
            collect(free, busy[free])
            busy[free] = None
        pool[free].submit(item[2])
        busy[free] = item
    for i, item in enumerate(busy):
        if item is not None:
            collect(i, item)
    for w in pool:
        w.close()
    silently = counts["verify_runtime"]["accepted"]
    return {"mutants": done, "seed": seed, "models": [f"{p.parent.name}/{p.name}" for p in models], "seconds": round(time.perf_counter() - t0, 1),
            "by_kind": dict(by_kind), "outcomes": {k: dict(v) for k, v in counts.items()},
            "signals": worker_deaths.get("signal", 0), "hangs": worker_deaths.get("hang", 0),
            "tracebacks": sum(c["traceback"] for c in counts.values()),
            "damaged_run_silently": silently, "detection_rate": 1 - silently / max(1, done),
            "failures": failures}


def _first_ready(pool, busy) -> int:
    import select

    streams = {pool[i].proc.stdout: i for i, b in enumerate(busy) if b is not None}
    ready, _, _ = select.select(list(streams), [], [], None)
    return streams[ready[0]]


# --- seed models ----------------------------------------------------------------------------------


def make_models(folder: Path) -> list[Path]:
    """A ResNet-20 trained briefly on the digits, converted by `resnet-edge convert` in every mode."""
    from resnet_edge.data import load
    from resnet_edge.convert import convert
    from resnet_edge.train import Recipe, spec_for_data, train

    digits = load("digits")
    run = folder / "r20"
    if not (run / "model.keras").exists():
        train(spec_for_data(digits, model="resnet20"), digits, run, Recipe(epochs=2, batch_size=64), verbose=0)
    paths = []
    for modes, io in ((["float32", "float16", "dynamic", "int8", "int16x8"], "float32"), (["int8"], "uint8")):
        out = folder / f"io_{io}"
        if not out.exists():
            convert(model_path=run / "model.keras", modes=modes, out=str(out) + "/", data=digits, io=io,
                    parity_samples=20, check_old_runtime=False)
        paths += sorted(out.glob("*.tflite"))
    return paths


def atheris_main(models: list[Path], runs: int) -> None:
    """Coverage-guided fuzzing of the checks and readers (in process, with --no-verify so the readers
    past the checksum are reached), starting from a corpus of our own models."""
    import tempfile

    import atheris

    with atheris.instrument_imports():
        from resnet_edge.errors import ResnetEdgeError
        from resnet_edge.tflite import integrity
        from resnet_edge.tflite.inspect import inspect

    corpus = Path(tempfile.mkdtemp(prefix="fuzz-corpus-"))
    for i, p in enumerate(models):
        (corpus / f"seed{i}").write_bytes(p.read_bytes())

    def one(data: bytes) -> None:
        try:
            integrity.verify(data)
        except ResnetEdgeError as exc:
            assert "\n" not in str(exc)
        try:
            inspect(data, targets=("gpu", "nnapi"), verify=False, load_check=False)
        except ResnetEdgeError as exc:
            assert "\n" not in str(exc) and len(str(exc)) < 600, str(exc)[:300]

    longest = max(p.stat().st_size for p in models)
    atheris.Setup([sys.argv[0], str(corpus), f"-runs={runs}", f"-max_len={longest}"], one)
    atheris.Fuzz()


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                flags = open("/proc/cpuinfo").read()
                isa = "AVX-512 VNNI" if "avx512_vnni" in flags else ("AVX2" if "avx2" in flags else "other")
                return f"{line.split(':', 1)[1].strip()} ({isa})"
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, help="A folder of .tflite models written by resnet-edge (default: make them).")
    ap.add_argument("--work", type=Path, default=Path("runs/fuzz"), help="Where seed models are made and kept.")
    ap.add_argument("--mutants", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60, help="Seconds one mutant may take before it counts as a hang.")
    ap.add_argument("--json", type=Path, help="Also write the full result here.")
    ap.add_argument("--atheris", action="store_true", help="Coverage-guided fuzzing of the readers with atheris.")
    ap.add_argument("--runs", type=int, default=10000, help="atheris iterations.")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker()
        return 0
    models = sorted(args.models.glob("*.tflite")) if args.models else make_models(args.work)
    if args.atheris:
        atheris_main(models, args.runs)
        return 0
    print(f"fuzzing {len(models)} models ({', '.join(p.name for p in models)}), {args.mutants} mutants, seed {args.seed}, "
          f"{args.workers} workers on {cpu_name()}", file=sys.stderr)
    r = fuzz(models, args.mutants, args.seed, args.workers, args.timeout)
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))
    print(f"mutants                 {r['mutants']} in {r['seconds']} s (seed {r['seed']})")
    print(f"by mutation             {', '.join(f'{k} {v}' for k, v in sorted(r['by_kind'].items()))}")
    for mode, c in r["outcomes"].items():
        print(f"{mode:<23} {', '.join(f'{k} {v}' for k, v in sorted(c.items()))}")
    print(f"signals in our process  {r['signals']}")
    print(f"hangs                   {r['hangs']}")
    print(f"tracebacks              {r['tracebacks']}")
    print(f"damaged, run silently   {r['damaged_run_silently']} (detection {r['detection_rate']:.2%})")
    for f in r["failures"][:15]:
        print("  " + json.dumps(f))
    ok = not (r["signals"] or r["hangs"] or r["tracebacks"] or r["damaged_run_silently"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
