"""How app frameworks classify with our models, against our own runtime: the figures in the README's
"Use it in an app".

Each framework runs in its own virtual environment (tools/app_client.py; neither installs beside
TensorFlow 2.21). Images are read from class folders (the folder name is the true class), the same files
for every side, and our runtime classifies the same decoded pixels. Prints a table (or --json): for every
model and framework, whether it loaded, its top-1 accuracy, ours, and the share of images on which the
two top-1 classes agree.

    python -m venv /tmp/mp && /tmp/mp/bin/pip install mediapipe==1.2.3
    python -m venv /tmp/tl && /tmp/tl/bin/pip install tflite-support==0.4.4
    python tools/app_agreement.py --images png/ --mediapipe /tmp/mp/bin/python --task-library /tmp/tl/bin/python *.tflite
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    from PIL import Image

    from resnet_edge.measure.bench import predict
    from resnet_edge.runtime.runner import check_model
    from resnet_edge.runtime.setting import Setting
    from resnet_edge.tflite.inspect import io_tensors
    from resnet_edge.tflite import standard as std
    from resnet_edge.tflite.model import load_bytes
    from resnet_edge.ui import table

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", required=True, help="class folders of images")
    ap.add_argument("--mediapipe", help="python of an environment with mediapipe")
    ap.add_argument("--task-library", help="python of an environment with tflite-support")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("models", nargs="+")
    args = ap.parse_args(argv)
    clients = [(c, py) for c, py in (("mediapipe", args.mediapipe), ("task-library", args.task_library)) if py]
    if not clients:
        ap.error("give --mediapipe and/or --task-library")
    rows = []
    for client, python in clients:
        proc = subprocess.run([python, str(HERE / "app_client.py"), "--client", client, "--images", args.images,
                               *args.models], capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"{client}: {proc.stderr.strip()[-500:]}")
        for line in proc.stdout.splitlines():
            r = json.loads(line)
            row = {"model": r["model"], "framework": r.get("framework", client), "loads": "error" not in r}
            if "error" in r:
                row["error"] = r["error"][:160]
                rows.append(row)
                continue
            files = [e["file"] for e in r["results"]]
            truth = np.array([Path(f).parts[0] for f in files])
            names = np.array([e["name"] for e in r["results"]])
            x = np.stack([np.asarray(Image.open(Path(args.images) / f).convert("RGB")) for f in files]).astype(np.float32)
            data = load_bytes(r["model"])
            size = io_tensors(data)[0][0]["shape"][1:3]
            files_in = std.packed_files(data)
            labels = std.parse_labels(files_in[std.LABELS_FILE], std.LABELS_FILE) if std.LABELS_FILE in files_in else None
            if list(x.shape[1:3]) != list(size):
                sys.exit(f"the images are {x.shape[1]}x{x.shape[2]}; give images of the model's size {size}")
            ((scores, _),) = predict(check_model(r["model"]), [Setting(threads=2)], x)
            ours = scores.argmax(1)
            index = np.array([e["index"] for e in r["results"]])
            row.update(images=len(files), top1=float((names == truth).mean()),
                       ours=float((np.array([labels[i] for i in ours]) == truth).mean()) if labels else None,
                       agree=float((index == ours).mean()), names=sorted(set(names.tolist()))[:12])
            rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(table([{**r, "loads": "yes" if r["loads"] else "REFUSED", "top1": f"{r['top1']:.2%}" if "top1" in r else "-",
                  "ours": f"{r['ours']:.2%}" if r.get("ours") is not None else "-",
                  "agree": f"{r['agree']:.2%}" if "agree" in r else r.get("error", "")} for r in rows],
                [("model", "model"), ("framework", "framework"), ("loads", "loads"), ("top1", "its top-1"),
                 ("ours", "our top-1"), ("agree", "top-1 agreement")], right={"top1", "ours"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
