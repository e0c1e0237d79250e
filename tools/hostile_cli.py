"""Hostile command lines through the real `resnet-edge`: 0 tracebacks, every error one line.

Paths with spaces, quotes, ``$()`` and bytes that are not UTF-8, symlink loops, zero-byte and huge
images, FIFOs and devices, absurd numbers, read-only outputs. Each case runs the command in its own
process (with a time limit) and is classified: ``ok`` (exit 0 where success is right), ``refused``
(exit != 0 and exactly one ``Error:`` line), or a defect: ``traceback``, ``multi-line``, ``hang``,
``wrong-exit``, ``shell`` (a ``$()`` in a name ran).

    python tools/hostile_cli.py            # every case (a few need TensorFlow: about 3 minutes)
    python tools/hostile_cli.py --fast     # only the cases answered before TensorFlow loads
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHELLY = "a b 'c\" $(touch PWNED) `touch PWNED2`"


def setup(work: Path) -> dict[str, str]:
    """The hostile files, and a small trained model when TensorFlow is there."""
    from PIL import Image

    f = {}
    (work / "loop.tflite").symlink_to("loop.tflite")
    f["loop"] = str(work / "loop.tflite")
    (work / "empty.tflite").write_bytes(b"")
    f["empty"] = str(work / "empty.tflite")
    (work / "empty.safetensors").write_bytes(b"")
    f["empty_safetensors"] = str(work / "empty.safetensors")
    os.mkfifo(work / "fifo.tflite")
    f["fifo"] = str(work / "fifo.tflite")
    os.mkfifo(work / "fifo.h5")
    f["fifo_h5"] = str(work / "fifo.h5")
    f["nonutf8"] = os.fsdecode(bytes(work) + b"/\xff\xfe.tflite")
    Path(f["nonutf8"]).write_bytes(b"TFL3" * 8)
    f["shelly"] = str(work / f"{SHELLY}.tflite")
    f["readonly_out"] = "/proc/resnet-edge-out.tflite"
    folder = work / "images"
    for c in ("cat", "dog"):
        (folder / c).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / c / f"{i}.png")
    (folder / "cat" / "loop.png").symlink_to("loop.png")
    (folder / "dog" / "empty.png").write_bytes(b"")
    # a PNG whose header claims 100,000 x 100,000 pixels (a decompression bomb)
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    (folder / "dog" / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    f["folder"] = str(folder)
    return f


def cases(f: dict[str, str]) -> list[tuple[str, list[str], str, bool]]:
    """(name, argv, expected: "ok" or "refused", needs TensorFlow)."""
    return [
        ("inspect missing path with shell syntax", ["inspect", f["shelly"]], "refused", False),
        ("inspect symlink loop", ["inspect", f["loop"]], "refused", False),
        ("inspect zero-byte file", ["inspect", f["empty"]], "refused", False),
        ("inspect FIFO", ["inspect", f["fifo"]], "refused", False),
        ("inspect /dev/zero", ["inspect", "/dev/zero"], "refused", False),
        ("inspect a directory", ["inspect", "/"], "refused", False),
        ("inspect non-UTF-8 name, not a model", ["inspect", f["nonutf8"]], "refused", False),
        ("metadata on a name with shell syntax", ["metadata", f["shelly"], "--mean", "0", "--std", "1"], "refused", False),
        ("metadata on a FIFO", ["metadata", f["fifo"]], "refused", False),
        ("metadata on /dev/zero", ["metadata", "/dev/zero"], "refused", False),
        ("metadata on a symlink loop", ["metadata", f["loop"]], "refused", False),
        ("metadata labels from a FIFO", ["metadata", f["nonutf8"], "--labels", f["fifo"]], "refused", False),
        ("metadata labels from /dev/zero", ["metadata", f["nonutf8"], "--labels", "/dev/zero"], "refused", False),
        ("metadata NaN std", ["metadata", f["nonutf8"], "--mean", "0", "--std", "nan"], "refused", False),
        ("build weights from a FIFO", ["build", "--weights", f["fifo"]], "refused", False),
        ("build weights from a FIFO named .h5", ["build", "--weights", f["fifo_h5"]], "refused", False),
        ("build weights /dev/zero", ["build", "--weights", "/dev/zero"], "refused", False),
        ("build weights symlink loop", ["build", "--weights", f["loop"]], "refused", False),
        ("build weights zero-byte .safetensors", ["build", "--weights", f["empty_safetensors"]], "refused", False),
        ("train absurd epochs", ["train", "--model", "resnet20", "--epochs", "9" * 20, "--out", "r"], "refused", False),
        ("train NaN learning rate", ["train", "--model", "resnet20", "--lr", "nan", "--out", "r"], "refused", False),
        ("train negative limit", ["train", "--model", "resnet20", "--limit", "-1", "--out", "r"], "refused", False),
        ("train huge batch", ["train", "--model", "resnet20", "--batch-size", "10000000", "--out", "r"], "refused", False),
        ("train weights from a FIFO", ["train", "--weights", f["fifo"], "--data", f"folder:{f['folder']}", "--out", "r"],
         "refused", False),
        ("train freeze with shell syntax", ["train", "--weights", f["empty_safetensors"], "--freeze", "stages:$(touch PWNED)",
                                            "--data", f"folder:{f['folder']}", "--out", "r"], "refused", False),
        ("train head epochs absurd", ["train", "--model", "resnet20", "--head-epochs", "9" * 20, "--out", "r"], "refused",
         False),
        ("convert absurd calibration", ["convert", "m.keras", "--int8", "--calibration", "1e9"], "refused", False),
        ("prune sparsity 1.5", ["prune", "m.keras", "--sparsity", "1.5", "--out", "p.keras"], "refused", False),
        ("models bad family", ["models", "--family", "x$(touch PWNED)"], "refused", False),
        ("build unknown depth", ["build", "--depth", "19"], "refused", True),
        ("build into /proc (read-only)", ["build", "--depth", "20", "--out", "/proc/m.keras"], "refused", True),
        ("evaluate missing model", ["evaluate", f["shelly"] + ".keras"], "refused", True),
        ("evaluate FIFO model", ["evaluate", f["fifo"]], "refused", True),
        ("evaluate symlink-loop model", ["evaluate", f["loop"]], "refused", True),
        ("train on a missing data folder", ["train", "--model", "resnet20", "--data", "folder:/nonexistent $(x)",
                                            "--out", f["work"] + "/r2"], "refused", True),
        ("convert into /proc (read-only)", ["convert", "--model", "resnet20", "--out", f["readonly_out"]], "refused", True),
        ("train on hostile folder", ["train", "--model", "resnet20", "--data", f"folder:{f['folder']}", "--epochs", "1",
                                     "--limit", "8", "--out", f["work"] + "/run"], "ok", True),
        ("convert to a name with shell syntax", ["convert", "--model", "resnet20", "--samples", "8",
                                                 "--out", f["shelly"]], "ok", True),
    ]


def run_case(argv: list[str], cwd: Path, timeout: float = 600) -> tuple[str, str]:
    try:
        proc = subprocess.run([sys.executable, "-m", "resnet_edge", *argv], cwd=cwd, capture_output=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "hang", ""
    err = proc.stderr.decode("utf-8", errors="replace")
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    if "Traceback (most recent call last)" in err:
        return "traceback", err.strip().splitlines()[-1][:200]
    if (cwd / "PWNED").exists() or (cwd / "PWNED2").exists():
        return "shell", ""
    if proc.returncode == 0:
        return "ok", ""
    if len(errors) != 1:
        return "multi-line", err.strip()[-300:]
    after = err.split(errors[0], 1)[1].strip()
    return ("refused", errors[0][:200]) if not after else ("multi-line", after[:200])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fast", action="store_true", help="Only the cases answered before TensorFlow loads.")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="hostile-"))
    try:
        f = setup(work)
        f["work"] = str(work)
        defects = 0
        for name, case_argv, expected, needs_tf in cases(f):
            if args.fast and needs_tf:
                continue
            outcome, detail = run_case(case_argv, work)
            wrong = outcome != expected
            defects += wrong
            print(f"{'DEFECT' if wrong else 'ok    '}  {name:<40} {outcome:<10} {detail}", flush=True)
        print(f"{defects} defect(s)")
        return 1 if defects else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
